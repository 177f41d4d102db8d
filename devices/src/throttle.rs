//! [`Throttled`]: a device wrapper that makes another device slower by a
//! fixed factor, for tests and what-if experiments on one machine.
//!
//! After each kernel it sleeps `(factor - 1) ×` the kernel's own time, so
//! the wrapped device behaves like one `factor` times slower without
//! burning the cores the sleep stands for. The scheduler's heterogeneity
//! tests use it to get unlike devices out of identical cores. Copies are
//! not slowed. Asynchronous devices (whose kernels finish after
//! `execute` returns) are slowed only by their queueing time. The wrapper keeps the inner device's id, so plans name it
//! as usual; its reported peak rate is divided by the factor.

use crate::{Device, DeviceInfo, DeviceTensor, Result};
use hetflow_ops::{Op, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A device `factor` times slower than `inner` (see the module docs).
pub struct Throttled {
    inner: Arc<dyn Device>,
    factor: f64,
    info: DeviceInfo,
}

impl Throttled {
    /// Wraps `inner`; `factor` must be at least 1.
    pub fn new(inner: Arc<dyn Device>, factor: f64) -> Result<Throttled> {
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(crate::DeviceError::Other(format!(
                "throttle factor for {} must be a number >= 1, got {factor}",
                inner.id()
            )));
        }
        let mut info = inner.info().clone();
        info.peak_gflops_f32 /= factor;
        info.name = format!("{} (throttled x{factor})", info.name);
        Ok(Throttled {
            inner,
            factor,
            info,
        })
    }
}

impl Device for Throttled {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn supports(&self, op: &Op) -> std::result::Result<(), String> {
        self.inner.supports(op)
    }
    fn upload(&self, t: Arc<Tensor>) -> Result<DeviceTensor> {
        self.inner.upload(t)
    }
    fn download(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        self.inner.download(t)
    }
    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        outputs: &[crate::OutputSpec],
    ) -> Result<Vec<DeviceTensor>> {
        let t = Instant::now();
        let out = self.inner.execute(op, inputs, outputs)?;
        let extra = t.elapsed().as_secs_f64() * (self.factor - 1.0);
        if extra > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(extra));
        }
        Ok(out)
    }
    fn init_executor_thread(&self) {
        self.inner.init_executor_thread()
    }
    fn prepare_weight(
        &self,
        op: &Op,
        slot: usize,
        t: &DeviceTensor,
        lhs_shape: Option<&[usize]>,
    ) -> Result<()> {
        self.inner.prepare_weight(op, slot, t, lhs_shape)
    }
    fn view(&self, t: &DeviceTensor, shape: Vec<usize>) -> Option<Result<DeviceTensor>> {
        self.inner.view(t, shape)
    }
    fn host_value(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        self.inner.host_value(t)
    }
    fn on_kernel_done(
        &self,
        output: &DeviceTensor,
        done: Box<dyn FnOnce(crate::KernelReport) + Send>,
    ) -> bool {
        self.inner.on_kernel_done(output, done)
    }
    fn transfer_modelled_us(&self, bytes: u64) -> Option<f64> {
        self.inner.transfer_modelled_us(bytes)
    }
}
