//! [`KernelClock`]: the kernels and copies running now, for the session's
//! kernel timeout.

use crate::error::RuntimeError;
use std::collections::HashMap;
use std::time::Instant;

/// A kernel or copy in flight: node, op, device, and when it started.
type Running = (String, &'static str, hetflow_devices::DeviceId, Instant);

/// The kernels and copies running now, for the session's kernel timeout
/// ([`crate::SessionOptions::kernel_timeout`]): a task registers before it
/// calls the device and leaves after, and the session's run loop asks for
/// the oldest one while it waits. A kernel that never returns (a hung
/// driver call) is then reported, naming its node, op and device, instead
/// of waiting forever.
#[derive(Default)]
pub struct KernelClock {
    running: std::sync::Mutex<HashMap<u64, Running>>,
    next: std::sync::atomic::AtomicU64,
}

impl KernelClock {
    pub(crate) fn start(
        &self,
        node: &str,
        op: &'static str,
        device: hetflow_devices::DeviceId,
    ) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        r.insert(id, (node.to_string(), op, device, Instant::now()));
        id
    }
    pub(crate) fn stop(&self, id: u64) {
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        r.remove(&id);
    }
    /// The longest-running kernel or copy when it has run longer than
    /// `limit`, as the error that reports it.
    pub fn overdue(&self, limit: std::time::Duration) -> Option<RuntimeError> {
        let r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let (node, op, device, since) = r.values().min_by_key(|v| v.3)?;
        let ran = since.elapsed();
        (ran > limit).then(|| RuntimeError::Op {
            node: node.clone(),
            op: op.to_string(),
            device: device.to_string(),
            msg: format!(
                "still running after {:.0} ms (kernel timeout {} ms); the session is stopped",
                ran.as_secs_f64() * 1e3,
                limit.as_millis()
            ),
        })
    }
}
