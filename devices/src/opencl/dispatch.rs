//! The OpenCL backend's op table and the top of its dispatch: which
//! kernels each op needs (`kernels_for`, read at plan time by
//! `supports` and by the binary mode's check), which inputs the kernels
//! take (`native`; others go through the host kernel), which launch file
//! runs each op (`execute`, `single`), and the [`Device`] implementation.
//!
//! ## Layering
//! This is the one file that names every launch file: `ops.rs` (MatMul,
//! Gemm), `nn.rs` (element-wise arithmetic, Conv, pooling, reductions,
//! normalisations), `movement.rs` (data movement), `host.rs` (the host
//! path); below them `gemm.rs` (the GEMM launch), `launch.rs` (what every
//! launch shares), `device.rs` (the device, buffers, programs) and the
//! leaves `codes.rs`, `discovery.rs`, `pool.rs`, `program.rs`,
//! `timing.rs`. Nothing below imports this file, so the backend's files
//! form no import circle. Adding an op to OpenCL is its kernels in
//! `kernels_for`, its dtypes in `native`, its arm in `single` (or a
//! launch file's `other`), and the kernel in the `.cl` source.
//!
//! Output shapes come from the runtime with each call (`OutputSpec`):
//! views use them as given; the backend runs no shape inference.

use super::device::{other, wait_list, ClTensor, OpenclDevice, HOST_MIRROR_ELEMS};
use super::launch::{round_up, u32_of, Arg, In, MAX_RANK};
use super::ops::{gemm, matmul};
use super::program::ProgramSource;
use super::{host, movement, nn, timing};
use crate::{Device, DeviceError, DeviceInfo, DeviceTensor, OutputSpec, Result};
use hetflow_ops::op::{BinaryOp, UnaryOp};
use hetflow_ops::shape::norm_axis;
use hetflow_ops::{DType, Op, Tensor};
use opencl3::types::{CL_BLOCKING, CL_NON_BLOCKING};
use std::borrow::Cow;
use std::sync::Arc;

/// The kernels `op` needs (empty for views and for the ops computed from
/// metadata or tiny host values), or `None` when the backend has no kernel
/// for it. Ops over any element type list their 4-byte variant.
pub(super) fn kernels_for(op: &Op) -> Option<&'static [&'static str]> {
    Some(match op {
        Op::Unary(u) => match u {
            UnaryOp::Relu => &["u_relu"],
            UnaryOp::Neg => &["u_neg"],
            UnaryOp::Abs => &["u_abs"],
            UnaryOp::Exp => &["u_exp"],
            UnaryOp::Log => &["u_log"],
            UnaryOp::Sqrt => &["u_sqrt"],
            UnaryOp::Sigmoid => &["u_sigmoid"],
            UnaryOp::Tanh => &["u_tanh"],
            UnaryOp::Erf => &["u_erf"],
            UnaryOp::Reciprocal => &["u_reciprocal"],
            UnaryOp::Floor => &["u_floor"],
            UnaryOp::Ceil => &["u_ceil"],
            UnaryOp::Sin => &["u_sin"],
            UnaryOp::Cos => &["u_cos"],
            UnaryOp::Tan => &["u_tan"],
            UnaryOp::Asin => &["u_asin"],
            UnaryOp::Acos => &["u_acos"],
            UnaryOp::Atan => &["u_atan"],
            UnaryOp::Sinh => &["u_sinh"],
            UnaryOp::Cosh => &["u_cosh"],
            UnaryOp::Asinh => &["u_asinh"],
            UnaryOp::Acosh => &["u_acosh"],
            UnaryOp::Atanh => &["u_atanh"],
            UnaryOp::Round => &["u_round"],
            UnaryOp::Sign => &["u_sign"],
            UnaryOp::Softsign => &["u_softsign"],
            _ => return None,
        },
        Op::Gelu { tanh: false } => &["u_gelu_erf"],
        Op::Gelu { tanh: true } => &["u_gelu_tanh"],
        Op::LeakyRelu { .. } => &["u_leaky_relu"],
        Op::Clip { .. } => &["u_clip"],
        Op::Binary(b) => match b {
            BinaryOp::Add => &["b_add"],
            BinaryOp::Sub => &["b_sub"],
            BinaryOp::Mul => &["b_mul"],
            BinaryOp::Div => &["b_div"],
            BinaryOp::Pow => &["b_pow"],
            BinaryOp::Equal => &["c_eq"],
            BinaryOp::Less => &["c_lt"],
            BinaryOp::Greater => &["c_gt"],
            BinaryOp::LessOrEqual => &["c_le"],
            BinaryOp::GreaterOrEqual => &["c_ge"],
            _ => return None,
        },
        Op::Sum => &["b_add"],
        Op::Where => &["where_4"],
        Op::Cast { .. } => &["cast_f32_i64"],
        Op::MatMul | Op::Gemm { .. } => &["gemm_rb", "gemm_rb4", "gemm_edge"],
        Op::Softmax { .. } => &["softmax_axis"],
        Op::LogSoftmax { .. } => &["logsoftmax_axis"],
        Op::LayerNorm { .. } => &["layernorm_rows"],
        Op::BatchNorm { .. } => &["batchnorm"],
        Op::Lrn { .. } => &["lrn"],
        Op::Reduce { .. } | Op::GlobalAveragePool | Op::GlobalMaxPool => &["reduce_nd"],
        Op::Conv(_) => &["conv_direct", "im2col", "gemm_rb", "gemm_rb4", "gemm_edge"],
        Op::MaxPool(_) | Op::AveragePool(_) => &["pool_nd"],
        Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::Split { .. }
        | Op::Expand => &["copy_nd_4"],
        Op::Gather { .. } => &["gather_4"],
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout
        | Op::Shape { .. }
        | Op::Size
        | Op::ConstantOfShape { .. } => &[],
        _ => return None,
    })
}

fn is_compare(b: BinaryOp) -> bool {
    matches!(
        b,
        BinaryOp::Equal
            | BinaryOp::Less
            | BinaryOp::Greater
            | BinaryOp::LessOrEqual
            | BinaryOp::GreaterOrEqual
    )
}

pub(super) fn execute(
    dev: &OpenclDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    outputs: &[OutputSpec],
) -> Result<Vec<DeviceTensor>> {
    let n_outputs = outputs.len();
    let kernels = kernels_for(op).ok_or_else(|| DeviceError::Unsupported {
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
    let get = |i: usize| -> Result<&In> {
        ins.get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| DeviceError::Other(format!("input {i} is missing")))
    };
    if matches!(op, Op::Shape { .. } | Op::Size | Op::ConstantOfShape { .. }) {
        return host::shape_op(dev, op, inputs, n_outputs);
    }
    if kernels.is_empty() {
        return view(dev, op, inputs, outputs);
    }
    if let Err(why) = native(op, &ins, n_outputs) {
        return host::eval(dev, op, inputs, n_outputs, &why);
    }
    let x = get(0)?;
    let outs = match op {
        Op::Split { axis, split } => {
            movement::split(dev, &ins, *axis, split.as_deref(), n_outputs)?
        }
        _ => vec![single(dev, op, kernels, &ins, x)?],
    };
    dev.compute
        .flush()
        .map_err(|e| other(dev.info.id, format!("flush: {e}")))?;
    Ok(outs)
}

/// Whether the kernels take these inputs (dtypes, ranks, output count);
/// `Err(why)` sends the op through the host kernel instead.
fn native(op: &Op, ins: &[Option<In>], n_outputs: usize) -> std::result::Result<(), String> {
    let dt = |i: usize| ins.get(i).and_then(Option::as_ref).map(|x| x.t.dtype);
    let rank_ok = ins.iter().flatten().all(|x| x.t.shape.len() <= MAX_RANK);
    if !rank_ok {
        return Err(format!("rank above {MAX_RANK}"));
    }
    if !matches!(op, Op::Split { .. }) && n_outputs != 1 {
        return Err(format!("{n_outputs} outputs asked"));
    }
    let sized = |d: Option<DType>| matches!(d.map(DType::size), Some(1 | 2 | 4 | 8));
    let ok = match op {
        Op::Transpose { .. } | Op::Slice { .. } | Op::Split { .. } | Op::Expand => sized(dt(0)),
        Op::Concat { .. } => sized(dt(0)) && ins.iter().flatten().all(|x| Some(x.t.dtype) == dt(0)),
        Op::Gather { .. } => sized(dt(0)) && matches!(dt(1), Some(DType::I64 | DType::I32)),
        Op::Where => {
            dt(0) == Some(DType::Bool)
                && dt(1) == dt(2)
                && matches!(dt(1).map(DType::size), Some(1 | 4 | 8))
        }
        Op::Cast { to, .. } => movement::cast_kernel(dt(0), *to).is_some(),
        Op::Reduce { .. } => {
            dt(0) == Some(DType::F32)
                && ins
                    .first()
                    .and_then(Option::as_ref)
                    .is_some_and(|x| x.t.shape.iter().product::<usize>() > 0)
        }
        _ => ins.iter().flatten().all(|x| x.t.dtype == DType::F32),
    };
    if ok {
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

/// Ops with one output.
fn single(
    dev: &OpenclDevice,
    op: &Op,
    kernels: &[&'static str],
    ins: &[Option<In>],
    x: &In,
) -> Result<DeviceTensor> {
    let get = |i: usize| -> Result<&In> {
        ins.get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| DeviceError::Other(format!("input {i} is missing")))
    };
    let out = match op {
        Op::Unary(_) | Op::Gelu { .. } => {
            let n = x.t.shape.iter().product::<usize>();
            let y = dev.out_buf(n)?;
            let ev = dev.launch(
                kernels[0],
                &[
                    Arg::Buf(x.c.buf.buffer()),
                    Arg::Buf(y.buffer()),
                    Arg::U32(u32_of(n, "size")?),
                ],
                &[round_up(n, 64)],
                None,
                &[&x.c.ready],
            )?;
            dev.finish_out(x.t.shape.clone(), y, ev)
        }
        Op::Binary(bop) => {
            let out = if is_compare(*bop) {
                DType::Bool
            } else {
                DType::F32
            };
            nn::binary(dev, kernels[0], x, get(1)?, out)?
        }
        Op::MatMul => matmul(dev, x, get(1)?)?,
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let b = get(1)?;
            let c = ins.get(2).and_then(Option::as_ref);
            gemm(dev, x, b, c, *alpha, *beta, *trans_a, *trans_b)?
        }
        Op::Softmax { axis, legacy } | Op::LogSoftmax { axis, legacy } => {
            let d = &x.t.shape;
            let ax = norm_axis(*axis, d.len()).map_err(|e| DeviceError::Other(e.to_string()))?;
            let outer: usize = d[..ax].iter().product();
            let (dd, inner) = if *legacy {
                (d[ax..].iter().product::<usize>(), 1)
            } else {
                (d[ax], d[ax + 1..].iter().product::<usize>())
            };
            let n = outer * dd * inner;
            let y = dev.out_buf(n)?;
            let ev = dev.launch(
                kernels[0],
                &[
                    Arg::Buf(x.c.buf.buffer()),
                    Arg::Buf(y.buffer()),
                    Arg::U32(u32_of(outer, "size")?),
                    Arg::U32(u32_of(dd, "size")?),
                    Arg::U32(u32_of(inner, "size")?),
                ],
                &[round_up(outer * inner, 64)],
                None,
                &[&x.c.ready],
            )?;
            dev.finish_out(d.clone(), y, ev)
        }
        Op::LayerNorm { axis, epsilon } => {
            let d = &x.t.shape;
            let ax = norm_axis(*axis, d.len()).map_err(|e| DeviceError::Other(e.to_string()))?;
            let rows: usize = d[..ax].iter().product();
            let dd: usize = d[ax..].iter().product();
            let scale = get(1)?;
            let bias = ins.get(2).and_then(Option::as_ref);
            for (what, t) in [("scale", Some(scale)), ("bias", bias)] {
                if let Some(t) = t {
                    let n: usize = t.t.shape.iter().product();
                    if n != dd {
                        return Err(DeviceError::Other(format!(
                            "{what} has {n} elements, the normalised dims {dd}"
                        )));
                    }
                }
            }
            let y = dev.out_buf(rows * dd)?;
            let bias_buf = bias.unwrap_or(scale);
            let ev = dev.launch(
                kernels[0],
                &[
                    Arg::Buf(x.c.buf.buffer()),
                    Arg::Buf(scale.c.buf.buffer()),
                    Arg::Buf(bias_buf.c.buf.buffer()),
                    Arg::Buf(y.buffer()),
                    Arg::U32(u32_of(rows, "size")?),
                    Arg::U32(u32_of(dd, "size")?),
                    Arg::F32(*epsilon),
                    Arg::U32(bias.is_some() as u32),
                ],
                &[round_up(rows, 64)],
                None,
                &[&x.c.ready, &scale.c.ready, &bias_buf.c.ready],
            )?;
            dev.finish_out(d.clone(), y, ev)
        }
        Op::Transpose { perm } => movement::transpose(dev, x, perm.as_deref())?,
        other_op => nn::other(dev, other_op, kernels, ins, x)?,
    };
    Ok(out)
}

/// Views: the output shares the input's buffer under the shape the runtime
/// resolved.
fn view(
    dev: &OpenclDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    outputs: &[OutputSpec],
) -> Result<Vec<DeviceTensor>> {
    let n_outputs = outputs.len();
    let mask = matches!(op, Op::Dropout) && n_outputs == 2;
    if n_outputs != 1 && !mask {
        return Err(DeviceError::Other(format!(
            "{n_outputs} outputs asked; only the data output runs on OpenCL"
        )));
    }
    let x = inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| DeviceError::Other("input 0 is missing".into()))?;
    let shape = outputs[0]
        .shape
        .clone()
        .ok_or_else(|| DeviceError::Other("output shape not resolved".into()))?;
    let mut outs = vec![dev.share_as(x, shape.clone())?];
    if mask {
        // Inference dropout keeps everything: an all-true mask.
        let n = shape.iter().product::<usize>();
        let m = Tensor::from_vec(shape, vec![true; n])
            .map_err(|e| DeviceError::Other(e.to_string()))?;
        outs.push(dev.upload(Arc::new(m))?);
    }
    Ok(outs)
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
    use std::collections::BTreeSet;

    /// Kernels the `.cl` sources define: `__kernel void name(` and the
    /// first argument of each kernel-defining macro's invocation
    /// (`UNARY(u_relu, ...)`, `COPY_ND(copy_nd_4, ...)`).
    fn defined() -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for line in crate::opencl::program::SOURCE.lines() {
            let macro_call = line
                .split_once('(')
                .filter(|(m, _)| {
                    !m.is_empty() && m.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                })
                .and_then(|(_, rest)| rest.split_once(','))
                .map(|(name, _)| name.trim());
            if let Some(n) = macro_call {
                out.insert(n.to_string());
            }
            for part in line.split("__kernel void ").skip(1) {
                let n = part.split('(').next().unwrap_or("").trim();
                if n != "name"
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    out.insert(n.to_string());
                }
            }
        }
        out
    }

    /// `program::KERNELS` lists exactly the kernels of the source, and
    /// every kernel the op table names exists.
    #[test]
    fn op_table_kernels_exist_in_the_source() {
        let src = defined();
        let listed: BTreeSet<String> = crate::opencl::program::KERNELS
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(listed, src, "program::KERNELS and the .cl sources differ");
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
            Op::Gelu { tanh: false },
            Op::Gelu { tanh: true },
            Op::Softmax {
                axis: -1,
                legacy: false,
            },
            Op::Transpose { perm: None },
            Op::Where,
            Op::Gather { axis: 0 },
            Op::Conv(Default::default()),
        ]);
        for op in &ops {
            for k in kernels_for(op).unwrap_or(&[]) {
                assert!(
                    src.contains(*k),
                    "{} names kernel {k}, which the .cl sources do not define",
                    op.name()
                );
            }
        }
    }
}
