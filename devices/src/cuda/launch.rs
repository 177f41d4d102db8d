//! What every kernel launch of the CUDA backend shares: waiting on the
//! inputs' events, timing events around the work, output allocation,
//! recording the reads, launch configurations, scratch buffers, and
//! reading small shape-like inputs (axes, starts, shapes) on the host;
//! and the shape of the op table every launch file declares its ops in
//! ([`Decl`]).

use super::device::{CudaBuffer, CudaDevice};
use super::geom::{blocks_for, Layout, ReduceLayout, Win3, THREADS};
use crate::{DeviceError, DeviceTensor, OutputSpec, Result};
use cudarc::driver::{CudaEvent, CudaFunction, DeviceRepr, LaunchConfig};
use hetflow_ops::{DType, Op, Tensor};
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

/// What an op needs on the GPU besides the device itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Needs {
    /// cuBLAS.
    Blas,
    /// The NVRTC kernels.
    Kernels,
    /// Both (Conv: im2col and a GEMM).
    BlasAndKernels,
    /// Nothing: views run no kernel.
    Nothing,
}

/// The element types an op's kernels take. Inputs outside them run
/// through the host kernel on this device's copy streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtypes {
    /// Input 0 in a float storage type; the kernel suffix is its own
    /// (`f32`, `f16`, `bf16`).
    Float,
    /// Every input in input 0's float storage type.
    SameFloat,
    /// Any element type: the launch picks its kernel (data movement by
    /// element size, run-time typed kernels) or reports `Ok(None)`.
    Any,
}

/// Outputs of a launch, or `None` for a case its kernels do not cover
/// (which then runs through the host kernel).
pub(crate) type Out = Result<Option<Vec<DeviceTensor>>>;

/// One op's launch: the device, the op, its inputs (input 0 present),
/// the output specs the runtime resolved, and the kernel suffix its
/// [`Dtypes`] picked (empty for [`Dtypes::Any`]).
pub(crate) struct Call<'a> {
    pub dev: &'a CudaDevice,
    pub op: &'a Op,
    pub inputs: &'a [Option<&'a DeviceTensor>],
    pub x: &'a DeviceTensor,
    pub outputs: &'a [OutputSpec],
    pub sfx: &'static str,
}

impl<'a> Call<'a> {
    /// Input `i` when given.
    pub fn get(&self, i: usize) -> Option<&'a DeviceTensor> {
        self.inputs.get(i).copied().flatten()
    }
    /// Every input, when none is omitted.
    pub fn all(&self) -> Option<Vec<&'a DeviceTensor>> {
        self.inputs.iter().copied().collect()
    }
    /// The error of a launch handed an op it does not declare.
    pub fn mismatch(&self) -> DeviceError {
        self.dev.err(
            self.op.name(),
            "internal: the launch was given an op it does not declare",
        )
    }
}

/// One op's line in the backend's op table: what it needs, the element
/// types its kernels take, whether it runs only when one output is asked
/// (others, MaxPool's indices say, go through the host kernel), and its
/// launch. Each launch file declares its ops in a `table` function;
/// `dispatch.rs` asks them in turn.
#[derive(Clone, Copy)]
pub(crate) struct Decl {
    pub needs: Needs,
    pub dtypes: Dtypes,
    pub one: bool,
    pub run: fn(&Call) -> Out,
}

impl Decl {
    /// NVRTC kernels with one output over `dtypes`.
    pub const fn kernels(dtypes: Dtypes, run: fn(&Call) -> Out) -> Decl {
        Decl {
            needs: Needs::Kernels,
            dtypes,
            one: true,
            run,
        }
    }
}
