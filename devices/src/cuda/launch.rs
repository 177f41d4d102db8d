//! What every kernel launch of the CUDA backend shares: waiting on the
//! inputs' events, timing events around the work, output allocation,
//! recording the reads, launch configurations, scratch buffers, and
//! reading small shape-like inputs (axes, starts, shapes) on the host.

use super::device::{CudaBuffer, CudaDevice};
use super::geom::{blocks_for, Layout, ReduceLayout, Win3, THREADS};
use crate::{DeviceError, DeviceTensor, Result};
use cudarc::driver::{CudaEvent, CudaFunction, DeviceRepr, LaunchConfig};
use hetflow_ops::{DType, Tensor};
use std::sync::Arc;

// SAFETY: plain-old-data with the C layouts of `hf_layout`, `hf_reduce`
// and `hf_win` (checked by the size asserts in geom's tests).
unsafe impl DeviceRepr for Layout {}
// SAFETY: as above.
unsafe impl DeviceRepr for ReduceLayout {}
// SAFETY: as above.
unsafe impl DeviceRepr for Win3 {}

/// A grid-stride launch over `n` elements.
pub(crate) fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks_for(n), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block of [`THREADS`] threads per row, with a float of shared
/// memory per thread. Capped at 2^31 - 1 blocks (the grid's limit):
/// callers check their row counts, or loop over rows in the kernel.
pub(crate) fn rows_cfg(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.clamp(1, i32::MAX as usize) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: THREADS * 4,
    }
}

/// Kernel suffix of a float storage type.
pub(crate) fn float_suffix(dt: DType) -> Option<&'static str> {
    match dt {
        DType::F32 => Some("f32"),
        DType::F16 => Some("f16"),
        DType::BF16 => Some("bf16"),
        _ => None,
    }
}

/// Kernel suffix of the data-movement kernels for an element type.
pub(crate) fn byte_suffix(dt: DType) -> &'static str {
    match dt.size() {
        1 => "b1",
        2 => "b2",
        4 => "b4",
        _ => "b8",
    }
}

/// The state of one op's launches: its output pointers and the event
/// recorded after its last kernel.
pub(crate) struct Launch<'a> {
    pub dev: &'a CudaDevice,
    pub name: &'a str,
    pub done: Arc<CudaEvent>,
    pub outs: Vec<u64>,
}

impl Launch<'_> {
    pub fn err(&self, msg: impl std::fmt::Display) -> DeviceError {
        self.dev.err(self.name, msg)
    }
    pub fn func(&self, family: &str, suffix: &str) -> Result<&CudaFunction> {
        let k = self.dev.kernels.as_ref().map_err(|m| self.err(m))?;
        k.get(family, suffix).map_err(|m| self.err(m))
    }
    /// Device pointer of an input.
    pub fn ptr(&self, t: &DeviceTensor) -> Result<u64> {
        Ok(self.dev.buffer(t)?.ptr())
    }
    /// A scratch buffer for this op's kernels; its memory is reused only
    /// after `done`.
    pub fn scratch(&self, bytes: usize) -> Result<Arc<CudaBuffer>> {
        self.dev
            .alloc(self.name, bytes, &self.dev.compute, &self.done)
    }
    /// Maps a launch result.
    pub fn check<T, E: std::fmt::Display>(&self, r: std::result::Result<T, E>) -> Result<()> {
        r.map(|_| ()).map_err(|e| self.err(e))
    }
}

/// Runs `body` on the compute stream after every input is ready, between
/// two timing events, with `outs` allocated; records the reads of the
/// inputs and returns the outputs.
pub(crate) fn run(
    dev: &CudaDevice,
    name: &str,
    inputs: &[&DeviceTensor],
    outs: Vec<(DType, Vec<usize>)>,
    body: impl FnOnce(&Launch) -> Result<()>,
) -> Result<Vec<DeviceTensor>> {
    for t in inputs {
        dev.compute
            .wait(&dev.buffer(t)?.ready)
            .map_err(|e| dev.err(name, e))?;
    }
    let (start, done) = (dev.timing_event(name)?, dev.timing_event(name)?);
    // Allocate first: reusing a block may make the stream wait on its
    // last users, which is not this kernel's time.
    let bufs: Vec<Arc<CudaBuffer>> = outs
        .iter()
        .map(|(dt, s)| {
            let bytes = s.iter().product::<usize>() * dt.size();
            dev.alloc_timed(name, bytes, &dev.compute, &done, Some(&start))
        })
        .collect::<Result<_>>()?;
    start.record(&dev.compute).map_err(|e| dev.err(name, e))?;
    let l = Launch {
        dev,
        name,
        done: done.clone(),
        outs: bufs.iter().map(|b| b.ptr()).collect(),
    };
    let launched = body(&l);
    // Record even after a failed launch so the outputs' memory is never
    // handed out while earlier work is pending.
    let recorded = done.record(&dev.compute).map_err(|e| dev.err(name, e));
    launched?;
    recorded?;
    for t in inputs {
        dev.buffer(t)?.used_until(&done);
    }
    Ok(outs
        .into_iter()
        .zip(bufs)
        .map(|((dt, s), b)| dev.wrap(dt, s, b))
        .collect())
}

/// The value of a small shape-like input on the host: the mirror kept at
/// upload, else a (blocking) download.
pub(crate) fn host_value(dev: &CudaDevice, t: &DeviceTensor) -> Result<Arc<Tensor>> {
    use crate::Device;
    match dev.buffer(t)?.host.get() {
        // A view of the upload shares the mirror but not its shape.
        Some(h) if h.shape() == t.shape.as_slice() && h.dtype() == t.dtype => Ok(h.clone()),
        _ => dev.download(t),
    }
}

/// Integers of an optional shape-like input (`None` when absent or empty).
pub(crate) fn host_ints(
    dev: &CudaDevice,
    inputs: &[Option<&DeviceTensor>],
    i: usize,
) -> Result<Option<Vec<i64>>> {
    match inputs.get(i).copied().flatten() {
        Some(t) if t.shape.iter().product::<usize>() > 0 => {
            Ok(Some(host_value(dev, t)?.to_i64_vec()))
        }
        _ => Ok(None),
    }
}
