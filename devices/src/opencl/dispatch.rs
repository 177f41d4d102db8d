//! The top of the OpenCL backend's dispatch: the op table, gathered from
//! the launch files' declarations (`decl`, read at plan time by
//! `supports` and by the binary mode's check), the generic checks every
//! launch gets (ranks, output counts, the declared input dtypes; inputs
//! the kernels do not take go through the host kernel), and the
//! [`Device`] implementation.
//!
//! ## One declaration per op
//! Each launch file declares the ops it runs in its own `table` function,
//! one line per op (a [`Decl`]: the kernels, the inputs they take, the
//! launch): `elementwise.rs` (element-wise functions, broadcasting
//! arithmetic and comparisons, Sum, Clip), `ops.rs` (MatMul, Gemm),
//! `nn.rs` (Softmax, normalisations, reductions, Conv, pooling),
//! `movement.rs` (data movement, Cast, views) and `host.rs` (Shape, Size,
//! ConstantOfShape). [`TABLES`] lists the files; no op is claimed by two
//! of them (a test checks). The list of kernels a program holds is read
//! from the `.cl` source itself (`program::kernels`), and a test checks
//! that every declared kernel is in it. So adding an op to OpenCL is its
//! line (and launch, when it needs one of its own) in one launch file,
//! plus its kernel in the `.cl` source.
//!
//! ## Layering
//! This is the one file that names every launch file; below them are
//! `gemm.rs` (the GEMM launch), `launch.rs` (what every launch shares, and
//! the [`Decl`] type), `device.rs` (the device, buffers, programs) and
//! the leaves `codes.rs`, `discovery.rs`, `pool.rs`, `program.rs`,
//! `timing.rs`. Nothing below imports this file, so the backend's files
//! form no import circle.
//!
//! Output shapes come from the runtime with each call (`OutputSpec`):
//! views use them as given; the backend runs no shape inference.

use super::device::{other, wait_list, ClTensor, OpenclDevice, HOST_MIRROR_ELEMS};
use super::launch::{Call, Decl, In, Run, MAX_RANK};
use super::program::ProgramSource;
use super::{elementwise, host, movement, nn, ops, timing};
use crate::{Device, DeviceError, DeviceInfo, DeviceTensor, OutputSpec, Result};
use hetflow_ops::{Op, Tensor};
use opencl3::types::{CL_BLOCKING, CL_NON_BLOCKING};
use std::borrow::Cow;
use std::sync::Arc;

/// Every launch file's op table, asked in turn.
const TABLES: [fn(&Op) -> Option<Decl>; 5] = [
    elementwise::table,
    ops::table,
    nn::table,
    movement::table,
    host::table,
];

/// The declaration of `op`, or `None` when the backend has no kernel for it.
fn decl(op: &Op) -> Option<Decl> {
    TABLES.iter().find_map(|table| table(op))
}

/// The kernels `op` needs (empty for views and for the ops computed from
/// metadata or tiny host values), or `None` when the backend has no kernel
/// for it. Ops over any element type list their 4-byte variant.
pub(super) fn kernels_for(op: &Op) -> Option<&'static [&'static str]> {
    decl(op).map(|d| d.kernels)
}

pub(super) fn execute(
    dev: &OpenclDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    outputs: &[OutputSpec],
) -> Result<Vec<DeviceTensor>> {
    let n_outputs = outputs.len();
    let d = decl(op).ok_or_else(|| DeviceError::Unsupported {
        device: dev.info.id,
        op: op.name().into(),
        why: format!("no OpenCL kernel for {}", op.name()),
    })?;
    let mut ins: Vec<Option<In>> = Vec::with_capacity(inputs.len());
    for t in inputs {
        ins.push(match t {
            Some(t) => Some(In { t, c: dev.cl(t)? }),
            None => None,
        });
    }
    match d.run {
        Run::Host => return host::shape_op(dev, op, inputs, n_outputs),
        Run::View => return movement::view(dev, op, inputs, outputs),
        Run::One(_) | Run::Many(_) => {}
    }
    if let Err(why) = native(op, &d, &ins, n_outputs) {
        return host::eval(dev, op, inputs, n_outputs, &why);
    }
    let x = ins
        .first()
        .and_then(Option::as_ref)
        .ok_or_else(|| DeviceError::Other("input 0 is missing".into()))?;
    let call = Call {
        dev,
        op,
        kernels: d.kernels,
        ins: &ins,
        x,
        n_outputs,
    };
    let outs = match d.run {
        Run::One(run) => vec![run(&call)?],
        Run::Many(run) => run(&call)?,
        Run::View | Run::Host => return Err(call.mismatch()),
    };
    dev.compute
        .flush()
        .map_err(|e| other(dev.info.id, format!("flush: {e}")))?;
    Ok(outs)
}

/// Whether the kernels take these inputs (the declared dtypes, ranks,
/// output count); `Err(why)` sends the op through the host kernel instead.
fn native(
    op: &Op,
    d: &Decl,
    ins: &[Option<In>],
    n_outputs: usize,
) -> std::result::Result<(), String> {
    let rank_ok = ins.iter().flatten().all(|x| x.t.shape.len() <= MAX_RANK);
    if !rank_ok {
        return Err(format!("rank above {MAX_RANK}"));
    }
    if !matches!(d.run, Run::Many(_)) && n_outputs != 1 {
        return Err(format!("{n_outputs} outputs asked"));
    }
    if d.takes.accepts(op, ins) {
        Ok(())
    } else {
        let types: Vec<String> = ins
            .iter()
            .map(|x| {
                x.as_ref()
                    .map_or("-".to_string(), |x| x.t.dtype.to_string())
            })
            .collect();
        Err(format!(
            "no OpenCL kernel for inputs ({})",
            types.join(", ")
        ))
    }
}

impl Device for OpenclDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, op: &Op) -> std::result::Result<(), String> {
        crate::cpu_only(op)?;
        let kernels =
            kernels_for(op).ok_or_else(|| format!("no OpenCL kernel for {}", op.name()))?;
        if let ProgramSource::Binaries { manifest, .. } = &self.source {
            for k in kernels {
                self.binary_entry(manifest, k)
                    .map_err(|e| format!("{} needs kernel {k}: {e}", op.name()))?;
            }
        }
        Ok(())
    }

    fn upload(&self, t: Arc<Tensor>) -> Result<DeviceTensor> {
        let id = self.info.id;
        let mut buf = self
            .pool
            .get(t.byte_len())
            .map_err(|e| other(id, format!("upload: {e}")))?;
        // A recycled buffer may still be read by queued kernels.
        // SAFETY: a marker with no wait list.
        let fence = unsafe { self.compute.enqueue_marker_with_wait_list(&[]) }
            .map_err(|e| other(id, format!("upload: {e}")))?;
        let host = (t.dtype().is_int() && t.len() <= HOST_MIRROR_ELEMS).then(|| t.clone());
        let bytes = t.to_le_bytes();
        let (ready, src) = if bytes.is_empty() {
            (None, None)
        } else {
            let b = buf.buffer_mut();
            match &bytes {
                // SAFETY: the source lives in `t`, which the ClTensor keeps
                // alive until the write completes (see its Drop).
                Cow::Borrowed(s) => {
                    let ev = unsafe {
                        self.copy
                            .enqueue_write_buffer(b, CL_NON_BLOCKING, 0, s, &[fence.get()])
                    }
                    .map_err(|e| other(id, format!("upload: {e}")))?;
                    (Some(Arc::new(ev)), Some(t.clone()))
                }
                // A converted copy: write it before it goes away.
                Cow::Owned(v) => {
                    let ev = unsafe {
                        self.copy
                            .enqueue_write_buffer(b, CL_BLOCKING, 0, v, &[fence.get()])
                    }
                    .map_err(|e| other(id, format!("upload: {e}")))?;
                    (Some(Arc::new(ev)), None)
                }
            }
        };
        self.copy
            .flush()
            .map_err(|e| other(id, format!("upload: {e}")))?;
        let c = ClTensor {
            buf: Arc::new(buf),
            ready,
            upload_src: src,
            host,
            kernel: false,
            first: None,
            report: Arc::default(),
        };
        Ok(self.wrap(t.dtype(), t.shape().to_vec(), c))
    }

    fn download(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        let id = self.info.id;
        let c = self.cl(t)?;
        let seq = c.report.lock().ok().and_then(|r| *r);
        if let Some(seq) = seq {
            self.compute
                .flush()
                .map_err(|e| other(id, format!("download: {e}")))?;
            self.watcher.wait_for(seq);
        }
        let n = t.byte_len();
        let mut out = vec![0u8; n];
        if n > 0 {
            self.compute
                .flush()
                .map_err(|e| other(id, format!("download: {e}")))?;
            let waits = wait_list(&[&c.ready]);
            // SAFETY: `out` outlives the blocking read.
            unsafe {
                self.copy
                    .enqueue_read_buffer(c.buf.buffer(), CL_BLOCKING, 0, &mut out, &waits)
            }
            .map_err(|e| other(id, format!("download: {e}")))?;
        }
        let host = Tensor::from_le_bytes(t.dtype, t.shape.clone(), &out)
            .map_err(|e| other(id, format!("download: {e}")))?;
        Ok(Arc::new(host))
    }

    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        outputs: &[crate::OutputSpec],
    ) -> Result<Vec<DeviceTensor>> {
        execute(self, op, inputs, outputs).map_err(|msg| match msg {
            e @ (DeviceError::WrongDevice { .. } | DeviceError::Kernel { .. }) => e,
            e => DeviceError::Kernel {
                device: self.info.id,
                op: op.name().to_string(),
                msg: e.to_string(),
            },
        })
    }

    fn view(&self, t: &DeviceTensor, shape: Vec<usize>) -> Option<Result<DeviceTensor>> {
        Some(self.share_as(t, shape))
    }

    fn host_value(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        OpenclDevice::host_value(self, t)
    }

    /// Kernels run asynchronously on the compute queue: the report comes
    /// from the watcher thread with the time measured by the kernel's
    /// profiling event (see `timing.rs`). MatMul, Gemm and Conv (up to
    /// four launches: im2col and the GEMM kernels) report the span from
    /// their first kernel's start to their last one's end; other ops of
    /// several launches (Concat, Sum) report their last kernel; views,
    /// uploads and host-path outputs report nothing (`false`).
    fn on_kernel_done(
        &self,
        output: &DeviceTensor,
        done: Box<dyn FnOnce(crate::KernelReport) + Send>,
    ) -> bool {
        let Ok(c) = self.cl(output) else {
            return false;
        };
        let Some(ev) = c.ready.clone().filter(|_| c.kernel) else {
            return false;
        };
        if self.compute.flush().is_err() {
            return false;
        }
        self.watcher
            .watch(timing::measure(ev, c.first.clone()), done, &c.report)
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;
    use hetflow_ops::op::{BinaryOp, ReduceKind, UnaryOp};
    use std::collections::BTreeSet;

    /// A sample of every op kind the tables might claim.
    fn ops() -> Vec<Op> {
        use BinaryOp::*;
        use UnaryOp::*;
        let mut ops: Vec<Op> = [
            Neg, Abs, Sqrt, Exp, Log, Relu, Sigmoid, Tanh, Erf, Reciprocal, Floor, Ceil, Not, Sin,
            Cos, Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh, Sign, Round, Softplus,
            Softsign, Mish, HardSwish, BitwiseNot,
        ]
        .into_iter()
        .map(Op::Unary)
        .collect();
        ops.extend(
            [
                Add,
                Sub,
                Mul,
                Div,
                Pow,
                Equal,
                Less,
                Greater,
                LessOrEqual,
                GreaterOrEqual,
                And,
                Or,
                Xor,
                Max,
                Min,
                Mod,
                FMod,
            ]
            .into_iter()
            .map(Op::Binary),
        );
        ops.extend([
            Op::MatMul,
            Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: false,
                act: Default::default(),
            },
            Op::Gelu { tanh: false },
            Op::Gelu { tanh: true },
            Op::LeakyRelu { alpha: 0.1 },
            Op::Clip {
                min: None,
                max: None,
            },
            Op::Sum,
            Op::Softmax {
                axis: -1,
                legacy: false,
            },
            Op::LogSoftmax {
                axis: -1,
                legacy: false,
            },
            Op::LayerNorm {
                axis: -1,
                epsilon: 1e-5,
            },
            Op::BatchNorm { epsilon: 1e-5 },
            Op::Reduce {
                kind: ReduceKind::Sum,
                axes: None,
                keepdims: true,
                noop_with_empty_axes: false,
            },
            Op::GlobalAveragePool,
            Op::GlobalMaxPool,
            Op::Transpose { perm: None },
            Op::Concat { axis: 0 },
            Op::Expand,
            Op::Where,
            Op::Gather { axis: 0 },
            Op::Conv(Default::default()),
            Op::Identity,
            Op::Dropout,
            Op::Size,
        ]);
        ops
    }

    /// Every kernel an op declares is one the `.cl` sources define, and no
    /// op is claimed by two launch files.
    #[test]
    fn declared_kernels_exist_and_each_op_has_one_home() {
        let src: BTreeSet<&str> = crate::opencl::program::kernels().iter().copied().collect();
        assert!(src.contains("u_relu") && src.contains("copy_nd_8") && src.contains("gemm_rb4"));
        let mut declared = 0;
        for op in &ops() {
            let homes = TABLES.iter().filter(|t| t(op).is_some()).count();
            assert!(
                homes <= 1,
                "{} is declared by {homes} launch files",
                op.name()
            );
            for k in kernels_for(op).unwrap_or(&[]) {
                declared += 1;
                assert!(
                    src.contains(k),
                    "{} names kernel {k}, which the .cl sources do not define",
                    op.name()
                );
            }
        }
        assert!(declared > 40, "only {declared} kernels declared");
    }
}
