//! Device buffers and their completion events (PJRT_Buffer with its
//! ready event).
//!
//! A [`TpuBuffer`] is created *pending* when an execution is enqueued and
//! is completed exactly once by the device's worker, with the data or with
//! the error that names the op and device. [`TpuBuffer::wait`] blocks until
//! then; [`TpuBuffer::on_ready`] runs a callback at completion (the
//! runtime's tracer uses it). Buffers account for their bytes in the
//! device's memory counter and give them back when dropped.

use crate::KernelReport;
use hetflow_ops::Tensor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

type Callback = Box<dyn FnOnce(KernelReport) + Send>;

#[derive(Default)]
struct State {
    /// Set once, by `complete`.
    result: Option<Result<Arc<Tensor>, String>>,
    report: Option<KernelReport>,
    /// True once the callbacks registered before completion have run:
    /// only then do waiters wake, so a caller that waited sees every
    /// callback's effect.
    published: bool,
    callbacks: Vec<Callback>,
}

/// A tensor in the emulated device's memory, possibly still being computed.
pub struct TpuBuffer {
    state: Mutex<State>,
    ready: Condvar,
    bytes: u64,
    in_use: Arc<AtomicU64>,
}

impl TpuBuffer {
    /// A buffer of `bytes` whose data is still to come; counts against
    /// `in_use` until dropped.
    pub(crate) fn pending(bytes: u64, in_use: Arc<AtomicU64>) -> Arc<TpuBuffer> {
        in_use.fetch_add(bytes, Ordering::SeqCst);
        Arc::new(TpuBuffer {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            bytes,
            in_use,
        })
    }

    /// A buffer holding `t` already.
    pub(crate) fn ready_with(t: Arc<Tensor>, in_use: Arc<AtomicU64>) -> Arc<TpuBuffer> {
        let b = TpuBuffer::pending(t.byte_len() as u64, in_use);
        b.complete(Ok(t), None);
        b
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state torn (each
        // critical section is a few assignments), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Completes the buffer (only the first call counts), runs the
    /// callbacks registered so far, then wakes the waiters.
    pub(crate) fn complete(
        &self,
        result: Result<Arc<Tensor>, String>,
        report: Option<KernelReport>,
    ) {
        let callbacks = {
            let mut s = self.lock();
            if s.result.is_some() {
                return;
            }
            s.result = Some(result);
            s.report = report.clone();
            std::mem::take(&mut s.callbacks)
        };
        if let Some(r) = &report {
            for cb in callbacks {
                cb(r.clone());
            }
        }
        self.lock().published = true;
        self.ready.notify_all();
    }

    /// Blocks until the data is there; returns it or the error of the
    /// execution that was to produce it.
    pub fn wait(&self) -> Result<Arc<Tensor>, String> {
        let mut s = self.lock();
        while !s.published {
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.result
            .clone()
            .unwrap_or_else(|| Err("buffer completed without a result".into()))
    }

    /// True once [`TpuBuffer::wait`] would not block.
    pub fn is_ready(&self) -> bool {
        self.lock().published
    }

    /// Calls `f` with the producing kernel's report when it completes (at
    /// once if it has). Returns false, dropping `f`, for buffers that no
    /// kernel produced (uploads).
    pub fn on_ready(&self, f: Callback) -> bool {
        let mut s = self.lock();
        if s.result.is_some() {
            let Some(r) = s.report.clone() else {
                return false;
            };
            drop(s);
            f(r);
            return true;
        }
        s.callbacks.push(f);
        true
    }

    /// Bytes the buffer occupies in device memory.
    pub fn byte_len(&self) -> u64 {
        self.bytes
    }
}

impl Drop for TpuBuffer {
    fn drop(&mut self) {
        self.in_use.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn waiters_see_callbacks_and_errors() {
        let mem = Arc::new(AtomicU64::new(0));
        let b = TpuBuffer::pending(16, mem.clone());
        assert_eq!(mem.load(Ordering::SeqCst), 16);
        let seen = Arc::new(Mutex::new(None));
        let s2 = seen.clone();
        assert!(b.on_ready(Box::new(move |r| *s2.lock().unwrap() = r.modelled_us)));
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.wait());
        let now = Instant::now();
        b.complete(
            Err("MatMul failed on tpu:0: boom".into()),
            Some(KernelReport {
                start: now,
                end: now,
                modelled_us: Some(2.5),
            }),
        );
        assert_eq!(
            t.join().unwrap().unwrap_err(),
            "MatMul failed on tpu:0: boom"
        );
        assert_eq!(*seen.lock().unwrap(), Some(2.5));
        // Completing twice keeps the first result.
        b.complete(Ok(Arc::new(Tensor::scalar(1f32))), None);
        assert!(b.wait().is_err());
        drop(b);
        assert_eq!(mem.load(Ordering::SeqCst), 0);
    }
}
