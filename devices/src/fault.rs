//! [`Faulty`]: a device wrapper that injects one fault, for testing how the
//! runtime meets a broken device (issue 18, "fault injection").
//!
//! The fault strikes at the `n`-th kernel the wrapper runs (counting from
//! 0), so a test can let a pipeline warm up first:
//!
//! - [`Fault::Fail`]: that kernel returns an error;
//! - [`Fault::Panic`]: that kernel panics;
//! - [`Fault::Hang`]: that kernel blocks for the given time (a hung
//!   driver call) before it returns an error; the runtime's kernel
//!   timeout (`SessionOptions::kernel_timeout`) must notice first;
//! - [`Fault::Vanish`]: from that kernel on, every kernel, upload and
//!   download fails, as when a device falls off the bus.
//!
//! Everything else passes through to the wrapped device, whose id the
//! wrapper keeps, so plans name it as usual. The wrapper offers no
//! [`Device::view`], so the runtime runs views through `execute` and they
//! count as kernels whatever the wrapped backend.

use crate::{Device, DeviceError, DeviceInfo, DeviceTensor, Result};
use hetflow_ops::{Op, Tensor};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which fault [`Faulty`] injects.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// The `n`-th kernel returns an error.
    Fail(u64),
    /// The `n`-th kernel panics.
    Panic(u64),
    /// The `n`-th kernel blocks this long, then fails.
    Hang(u64, Duration),
    /// From the `n`-th kernel on, every call fails.
    Vanish(u64),
}

/// A device that injects one [`Fault`] (see the module docs).
pub struct Faulty {
    inner: Arc<dyn Device>,
    fault: Fault,
    kernels: AtomicU64,
    gone: AtomicBool,
}

impl Faulty {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Device>, fault: Fault) -> Faulty {
        Faulty {
            inner,
            fault,
            kernels: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        }
    }

    /// Kernels started so far, the faulty one included.
    pub fn kernels(&self) -> u64 {
        self.kernels.load(Ordering::Relaxed)
    }

    fn vanished(&self) -> Result<()> {
        if self.gone.load(Ordering::Acquire) {
            return Err(DeviceError::Other(format!(
                "{} disappeared (injected fault)",
                self.inner.id()
            )));
        }
        Ok(())
    }
}

impl Device for Faulty {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn supports(&self, op: &Op) -> std::result::Result<(), String> {
        self.inner.supports(op)
    }
    fn upload(&self, t: Arc<Tensor>) -> Result<DeviceTensor> {
        self.vanished()?;
        self.inner.upload(t)
    }
    fn download(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        self.vanished()?;
        self.inner.download(t)
    }
    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        outputs: &[crate::OutputSpec],
    ) -> Result<Vec<DeviceTensor>> {
        let k = self.kernels.fetch_add(1, Ordering::Relaxed);
        let injected = |what: &str| {
            Err(DeviceError::Other(format!(
                "kernel {k} ({}) {what} (injected fault)",
                op.name()
            )))
        };
        match self.fault {
            Fault::Fail(n) if k == n => return injected("failed"),
            Fault::Panic(n) if k == n => {
                panic!("kernel {k} ({}) panicked (injected fault)", op.name())
            }
            Fault::Hang(n, d) if k == n => {
                std::thread::sleep(d);
                return injected("hung, then failed");
            }
            Fault::Vanish(n) if k >= n => self.gone.store(true, Ordering::Release),
            _ => {}
        }
        self.vanished()?;
        self.inner.execute(op, inputs, outputs)
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
    fn host_value(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        self.vanished()?;
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
