//! The CUDA backend's op table and the top of its dispatch: which ops run
//! on the GPU and what each needs (`op_table`, read at plan time by
//! `supports`), which launch file runs each op (`dispatch`), and the
//! [`Device`] implementation that ties the device's queues to them.
//!
//! ## Layering
//! This file is the only one that names every launch file: `ops.rs`
//! (cuBLAS, element-wise, Softmax, LayerNorm), `conv.rs`, `nn.rs`
//! (pooling, normalisations, reductions) and `data.rs` (views, data
//! movement, Cast); below them `launch.rs` (what every launch shares),
//! `device.rs` (the device, its buffers and streams) and `codes.rs` (the
//! numbers the kernels switch on). Nothing below imports this file, so
//! the backend's files form no import circle. Adding an op to CUDA is its
//! line in `op_table`, its arm in `dispatch` and its launch below.
//!
//! Output shapes come from the runtime with each call (`OutputSpec`):
//! views use them as given; the backend runs no shape inference.

use super::codes::{binary_code, reduce_code, type_code, unary_code};
use super::device::{peer_route, CudaBuffer, CudaDevice, PeerRoute, HOST_MIRROR_BYTES};
use super::launch::float_suffix as suffix;
use super::{conv, data, nn, ops};
use crate::{Device, DeviceError, DeviceInfo, DeviceTensor, OutputSpec, Result};
use cudarc::driver::result;
use hetflow_ops::op::BinaryOp;
use hetflow_ops::{Op, Tensor};
use std::sync::Arc;

/// What an op needs on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    Blas,
    Kernels,
    BlasAndKernels,
    /// Views run no kernel.
    Nothing,
}

/// The plan-time op table: which ops (with their attributes) the CUDA
/// backend runs, whatever the GPU. `Err` says why an op stays on a CPU.
fn op_table(op: &Op) -> std::result::Result<Needs, String> {
    Ok(match op {
        Op::MatMul | Op::Gemm { .. } => Needs::Blas,
        Op::Conv(_) => Needs::BlasAndKernels,
        Op::Binary(BinaryOp::Equal) => Needs::Kernels,
        Op::Binary(b) if binary_code(*b).is_some() => Needs::Kernels,
        Op::Reduce { kind, .. } if reduce_code(*kind).is_some() => Needs::Kernels,
        Op::Cast { to, .. } if type_code(*to).is_some() => Needs::Kernels,
        Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::LayerNorm { .. }
        | Op::BatchNorm { .. }
        | Op::Lrn { .. }
        | Op::MaxPool(_)
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::Clip { .. }
        | Op::Sum
        | Op::Where
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::Split { .. }
        | Op::Gather { .. }
        | Op::Expand => Needs::Kernels,
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout => Needs::Nothing,
        _ if unary_code(op).is_some() => Needs::Kernels,
        other => {
            return Err(format!(
                "no CUDA kernel for {} yet (runs on a CPU)",
                other.name()
            ))
        }
    })
}

/// Whether the CUDA backend has a kernel (or a view) for `op`, before any
/// GPU is asked: a device also needs cuBLAS and NVRTC to have loaded (see
/// [`crate::Device::supports`] on [`super::CudaDevice`]).
pub fn op_supported(op: &Op) -> std::result::Result<(), String> {
    op_table(op).map(|_| ())
}

fn supports(dev: &CudaDevice, op: &Op) -> std::result::Result<(), String> {
    crate::cpu_only(op)?;
    let kernels = || dev.kernels.as_ref().map(|_| ()).map_err(Clone::clone);
    let blas = || dev.blas.as_ref().map(|_| ()).map_err(Clone::clone);
    match op_table(op)? {
        Needs::Blas => blas(),
        Needs::Kernels => kernels(),
        Needs::BlasAndKernels => blas().and_then(|()| kernels()),
        Needs::Nothing => Ok(()),
    }
}

type Out = Result<Option<Vec<DeviceTensor>>>;

/// The ops of `conv.rs`, `nn.rs` and `data.rs`: `None` for the ops this
/// file launches itself; `Some(Ok(None))` for a case those kernels do not
/// cover (it runs through the host kernel).
fn dispatch(
    dev: &CudaDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    x: &DeviceTensor,
    outputs: &[OutputSpec],
) -> Option<Out> {
    let n_outputs = outputs.len();
    let all: Vec<&DeviceTensor> = inputs.iter().flatten().copied().collect();
    let complete = all.len() == inputs.len();
    let get = |i: usize| inputs.get(i).copied().flatten();
    // Float kernels: every input in x's float dtype.
    let fsfx = suffix(x.dtype).filter(|_| all.iter().all(|t| t.dtype == x.dtype));
    let xsfx = suffix(x.dtype);
    let one = n_outputs == 1;
    let none = || Ok(None);
    Some(match op {
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout => {
            if one {
                data::view(dev, x, &outputs[0])
            } else {
                none()
            }
        }
        Op::Transpose { perm } if one => data::transpose(dev, perm.as_deref(), x),
        Op::Slice { .. } if one => data::slice(dev, op, inputs, x),
        Op::Expand if one => data::expand(dev, inputs, x),
        Op::Concat { axis } if one && complete => data::concat(dev, *axis, &all),
        Op::Split { .. } => data::split(dev, op, inputs, x, n_outputs),
        Op::Gather { axis } if one => match get(1) {
            Some(idx) => data::gather(dev, *axis, x, idx),
            None => none(),
        },
        Op::Where if one => match (get(1), get(2)) {
            (Some(a), Some(b)) => data::where_(dev, x, a, b),
            _ => none(),
        },
        Op::Binary(BinaryOp::Equal) if one => match get(1) {
            Some(b) => data::equal(dev, x, b),
            None => none(),
        },
        Op::Cast { to, .. } if one => data::cast(dev, *to, x),
        Op::Conv(a) if one => match (fsfx, get(1)) {
            (Some(sfx), Some(w)) => conv::conv(dev, a, x, w, get(2), sfx),
            _ => none(),
        },
        Op::MaxPool(p) | Op::AveragePool(p) if one => match xsfx {
            Some(sfx) => nn::pool(dev, p, matches!(op, Op::MaxPool(_)), x, sfx),
            None => none(),
        },
        Op::GlobalAveragePool | Op::GlobalMaxPool if one => match xsfx {
            Some(sfx) => nn::global_pool(dev, matches!(op, Op::GlobalMaxPool), x, sfx),
            None => none(),
        },
        Op::BatchNorm { epsilon } if one && complete => match fsfx {
            Some(sfx) => nn::batch_norm(dev, *epsilon, &all, sfx),
            None => none(),
        },
        Op::Lrn { .. } if one => match xsfx {
            Some(sfx) => nn::lrn(dev, op, x, sfx),
            None => none(),
        },
        Op::Reduce { .. } if one => match xsfx {
            Some(sfx) => nn::reduce(dev, op, inputs, x, sfx),
            None => none(),
        },
        Op::Sum if one && complete => match fsfx {
            Some(sfx) => nn::sum(dev, &all, sfx),
            None => none(),
        },
        Op::Clip { .. } if one => match xsfx {
            Some(sfx) => nn::clip(dev, op, inputs, x, sfx),
            None => none(),
        },
        Op::MatMul
        | Op::Gemm { .. }
        | Op::Binary(_)
        | Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::LayerNorm { .. } => return None,
        _ if unary_code(op).is_some() => return None,
        // Supported ops asked for outputs their kernels do not produce
        // (MaxPool's indices, say).
        _ => none(),
    })
}

fn execute(
    dev: &CudaDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    outputs: &[OutputSpec],
) -> Result<Vec<DeviceTensor>> {
    let name = op.name();
    let n_outputs = outputs.len();
    supports(dev, op).map_err(|why| DeviceError::Unsupported {
        device: dev.info.id,
        op: name.into(),
        why,
    })?;
    let x = inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| dev.err(name, "input 0 is missing"))?;
    if let Some(r) = dispatch(dev, op, inputs, x, outputs) {
        return match r? {
            Some(outs) => Ok(outs),
            None => ops::host_fallback(dev, op, inputs, n_outputs),
        };
    }
    ops::execute_own(dev, op, inputs, x, n_outputs)
}

impl Device for CudaDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, op: &Op) -> std::result::Result<(), String> {
        supports(self, op)
    }

    /// Stages the bytes in pinned memory and queues the copy on the
    /// host-to-device stream; returns before the copy completes (the
    /// tensor's `ready` event marks it).
    fn upload(&self, t: Arc<Tensor>) -> Result<DeviceTensor> {
        let op = "upload";
        let bytes = t.to_le_bytes();
        let n = bytes.len();
        self.ctx.bind_to_thread().map_err(|e| self.err(op, e))?;
        let mut st = self.staging.take(n).map_err(|e| self.err(op, e))?;
        st.bytes_mut(n).copy_from_slice(&bytes);
        let done = self.event(op)?;
        let buf = self.alloc(op, n, &self.h2d, &done)?;
        let queued = (|| -> std::result::Result<(), result::DriverError> {
            // SAFETY: `buf` holds at least n bytes; the staging buffer is
            // not reused before `done` completes.
            unsafe { result::memcpy_htod_async(buf.ptr(), st.bytes_mut(n), self.h2d.cu_stream()) }?;
            done.record(&self.h2d)
        })();
        st.inflight = Some(done.clone());
        self.staging.give(st);
        queued.map_err(|e| self.err(op, e))?;
        if n <= HOST_MIRROR_BYTES {
            let _ = buf.host.set(t.clone());
        }
        Ok(self.wrap(t.dtype(), t.shape().to_vec(), buf))
    }

    /// Queues the copy on the device-to-host stream after the tensor's
    /// producer, then waits for it.
    fn download(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        let op = "download";
        let buf = self.buffer(t)?;
        let n = t.byte_len();
        self.ctx.bind_to_thread().map_err(|e| self.err(op, e))?;
        self.d2h.wait(&buf.ready).map_err(|e| self.err(op, e))?;
        let mut st = self.staging.take(n).map_err(|e| self.err(op, e))?;
        let done = self.event(op)?;
        let copied = (|| -> std::result::Result<(), result::DriverError> {
            // SAFETY: the staging buffer holds n bytes and is ours until given back.
            unsafe { result::memcpy_dtoh_async(st.bytes_mut(n), buf.ptr(), self.d2h.cu_stream()) }?;
            done.record(&self.d2h)?;
            done.synchronize()
        })();
        let out = copied.map_err(|e| self.err(op, e)).and_then(|()| {
            Tensor::from_le_bytes(t.dtype, t.shape.clone(), st.bytes_mut(n))
                .map_err(|e| self.err(op, e))
        });
        buf.used_until(&done);
        self.staging.give(st);
        if let Some(seq) = buf.report.lock().ok().and_then(|r| *r) {
            self.watcher.wait_for(seq);
        }
        out.map(Arc::new)
    }

    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        outputs: &[crate::OutputSpec],
    ) -> Result<Vec<DeviceTensor>> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| self.err(op.name(), e))?;
        execute(self, op, inputs, outputs)
    }

    /// A view shares the buffer: no kernel, no copy.
    fn view(&self, t: &DeviceTensor, shape: Vec<usize>) -> Option<Result<DeviceTensor>> {
        if shape.iter().product::<usize>() != t.shape.iter().product::<usize>() {
            return None;
        }
        Some(CudaDevice::view(self, t, shape))
    }

    fn host_value(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        super::launch::host_value(self, t)
    }

    /// Kernels run asynchronously on the compute stream: the report comes
    /// from the watcher thread with the GPU-measured duration (see
    /// `timing.rs`).
    fn on_kernel_done(
        &self,
        output: &DeviceTensor,
        done: Box<dyn FnOnce(crate::KernelReport) + Send>,
    ) -> bool {
        // Views ran no kernel.
        let Some(buf) = output.payload::<Arc<CudaBuffer>>() else {
            return false;
        };
        let Some(start) = buf.started.clone() else {
            return false;
        };
        self.watcher.watch(
            super::timing::measure(start, buf.ready.clone()),
            done,
            &buf.report,
        )
    }

    /// GPU to GPU with `cuMemcpyPeerAsync` where the driver reports peer
    /// access between the pair; anything else goes through the host.
    fn copy_from_device(&self, t: &DeviceTensor) -> Option<Result<DeviceTensor>> {
        match peer_route(t.device, self.info.id, Self::can_access_peer) {
            PeerRoute::Direct => Some(self.copy_from_peer(t)),
            PeerRoute::Host => None,
        }
    }

    fn init_executor_thread(&self) {
        if let Err(e) = self.ctx.bind_to_thread() {
            tracing::warn!("{}: binding the CUDA context: {e}", self.info.id);
        }
    }

    fn wire_id(&self) -> Option<Result<Vec<u8>>> {
        Some(super::nccl::unique_id())
    }

    fn open_wire(
        &self,
        end: crate::wire::WireEnd,
        id: &[u8],
    ) -> Option<Result<Arc<dyn crate::wire::Wire>>> {
        Some(super::nccl::open(self, end, id))
    }
}
