//! The top of the CUDA backend's dispatch: the op table, gathered from the
//! launch files' declarations (`decl`, read at plan time by `supports`),
//! the generic checks every launch gets (output count, the declared
//! element types; inputs outside them go through the host kernel), and
//! the [`Device`] implementation that ties the device's queues to them.
//!
//! ## One declaration per op
//! Each launch file declares the ops it runs in its own `table` function,
//! one line per op (a [`Decl`]: what it needs, its element types, its
//! launch): `ops.rs` (cuBLAS, element-wise, Softmax, LayerNorm),
//! `conv.rs`, `nn.rs` (pooling, normalisations, reductions, Sum, Clip)
//! and `data.rs` (views, data movement, Cast). [`TABLES`] lists the
//! files; no op is claimed by two of them (a test checks). The kernel
//! names are read from the `.cu` sources (`kernels::kernel_names`), and
//! the numeric codes the kernels switch on are in `codes.rs`, checked
//! against the sources by its tests. So adding an op to CUDA is its line
//! (and launch) in one launch file, or, for an element-wise function, its
//! code in `codes.rs`; plus its kernel in a `.cu` file.
//!
//! ## Layering
//! This file is the only one that names every launch file; below them
//! `launch.rs` (what every launch shares, and the [`Decl`] type),
//! `device.rs` (the device, its buffers and streams) and `codes.rs` (the
//! numbers the kernels switch on). Nothing below imports this file, so
//! the backend's files form no import circle.
//!
//! Output shapes come from the runtime with each call (`OutputSpec`):
//! views use them as given; the backend runs no shape inference.

use super::device::{peer_route, CudaBuffer, CudaDevice, PeerRoute, HOST_MIRROR_BYTES};
use super::launch::{float_suffix, Call, Decl, Dtypes, Needs};
use super::{conv, data, nn, ops};
use crate::{Device, DeviceError, DeviceInfo, DeviceTensor, OutputSpec, Result};
use cudarc::driver::result;
use hetflow_ops::{Op, Tensor};
use std::sync::Arc;

/// Every launch file's op table, asked in turn.
const TABLES: [fn(&Op) -> Option<Decl>; 4] = [ops::table, conv::table, nn::table, data::table];

/// The declaration of `op`, or `None` when no launch file runs it.
fn decl(op: &Op) -> Option<Decl> {
    TABLES.iter().find_map(|table| table(op))
}

/// The plan-time op table: which ops (with their attributes) the CUDA
/// backend runs, whatever the GPU. `Err` says why an op stays on a CPU.
fn op_table(op: &Op) -> std::result::Result<Needs, String> {
    decl(op)
        .map(|d| d.needs)
        .ok_or_else(|| format!("no CUDA kernel for {} yet (runs on a CPU)", op.name()))
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

/// The kernel suffix `d`'s element types give these inputs, or `None`
/// when the kernels do not take them.
fn suffix(d: &Decl, x: &DeviceTensor, inputs: &[Option<&DeviceTensor>]) -> Option<&'static str> {
    match d.dtypes {
        Dtypes::Float => float_suffix(x.dtype),
        Dtypes::SameFloat => {
            float_suffix(x.dtype).filter(|_| inputs.iter().flatten().all(|t| t.dtype == x.dtype))
        }
        Dtypes::Any => Some(""),
    }
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
    let d = decl(op).ok_or_else(|| dev.err(name, "no launch"))?;
    let x = inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| dev.err(name, "input 0 is missing"))?;
    let sfx = suffix(&d, x, inputs).filter(|_| !d.one || n_outputs == 1);
    let outs = match sfx {
        Some(sfx) => (d.run)(&Call {
            dev,
            op,
            inputs,
            x,
            outputs,
            sfx,
        })?,
        None => None,
    };
    match outs {
        Some(outs) => Ok(outs),
        None => ops::host_fallback(dev, op, inputs, n_outputs),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::codes::{binary_code, reduce_code, type_code, unary_code};
    use hetflow_ops::op::{BinaryOp, ReduceKind, UnaryOp};
    use hetflow_ops::DType;

    /// No op is claimed by two launch files, and the table covers what
    /// the codes declare.
    #[test]
    fn each_op_has_one_home() {
        use UnaryOp::*;
        let mut ops: Vec<Op> = [
            Neg, Abs, Sqrt, Exp, Log, Relu, Sigmoid, Tanh, Erf, Reciprocal, Floor, Ceil, Not, Sin,
            Softplus, Softsign, Mish, HardSwish,
        ]
        .into_iter()
        .map(Op::Unary)
        .collect();
        use BinaryOp::*;
        ops.extend(
            [Add, Sub, Mul, Div, Pow, Equal, Less, Max, Min, And]
                .into_iter()
                .map(Op::Binary),
        );
        ops.extend([
            Op::MatMul,
            Op::Conv(Default::default()),
            Op::Gelu { tanh: true },
            Op::LeakyRelu { alpha: 0.1 },
            Op::Clip {
                min: None,
                max: None,
            },
            Op::Sum,
            Op::Where,
            Op::Transpose { perm: None },
            Op::Concat { axis: 0 },
            Op::Expand,
            Op::Gather { axis: 0 },
            Op::Identity,
            Op::Dropout,
            Op::GlobalMaxPool,
            Op::BatchNorm { epsilon: 1e-5 },
            Op::Softmax {
                axis: -1,
                legacy: false,
            },
            Op::Reduce {
                kind: ReduceKind::Prod,
                axes: None,
                keepdims: true,
                noop_with_empty_axes: false,
            },
            Op::Reduce {
                kind: ReduceKind::Mean,
                axes: None,
                keepdims: true,
                noop_with_empty_axes: false,
            },
            Op::Cast {
                to: DType::F32,
                saturate: true,
                round: hetflow_ops::narrow::RoundMode::default(),
            },
        ]);
        for op in &ops {
            let homes = TABLES.iter().filter(|t| t(op).is_some()).count();
            assert!(
                homes <= 1,
                "{} is declared by {homes} launch files",
                op.name()
            );
            let coded = unary_code(op).is_some()
                || matches!(op, Op::Binary(b) if binary_code(*b).is_some())
                || matches!(op, Op::Reduce { kind, .. } if reduce_code(*kind).is_some())
                || matches!(op, Op::Cast { to, .. } if type_code(*to).is_some());
            if coded {
                assert_eq!(homes, 1, "{} has a code but no launch", op.name());
            }
        }
        assert!(op_supported(&Op::Unary(Relu)).is_ok());
        assert!(op_supported(&Op::Binary(And)).is_err());
    }
}
