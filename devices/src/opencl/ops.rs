//! Op dispatch: which kernels an op needs, output shapes, and launches.

use super::{other, wait_list, ClTensor, OpenclDevice};
use crate::Device;
use crate::{DeviceError, DeviceTensor, Result};
use hetflow_ops::graph::Fact;
use hetflow_ops::infer::infer_op;
use hetflow_ops::op::{BinaryOp, UnaryOp};
use hetflow_ops::shape::{broadcast_shapes, norm_axis};
use hetflow_ops::{DType, Op, Tensor};
use opencl3::event::Event;
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, CL_MEM_COPY_HOST_PTR, CL_MEM_READ_ONLY};
use std::sync::Arc;

/// Ranks the broadcasting and transpose kernels handle.
pub(super) const MAX_RANK: usize = 8;

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

/// A kernel argument.
pub(super) enum Arg<'a> {
    Buf(&'a Buffer<u8>),
    U32(u32),
    F32(f32),
    I32(i32),
    V8([u32; 8]),
    I8([i32; 8]),
}

pub(super) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| DeviceError::Other(format!("{what} {v} exceeds 32 bits")))
}

pub(super) fn v8(v: &[usize]) -> Result<[u32; 8]> {
    let mut a = [0u32; 8];
    for (k, &x) in v.iter().enumerate() {
        a[k] = u32_of(x, "dimension")?;
    }
    Ok(a)
}

pub(super) fn contiguous_strides(d: &[usize]) -> Vec<usize> {
    let mut s = vec![1; d.len()];
    for k in (0..d.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * d[k + 1];
    }
    s
}

/// Strides of `shape` (right-aligned) when read as `out` (0 on broadcast dims).
pub(super) fn bcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = contiguous_strides(shape);
    let pad = out.len() - shape.len();
    (0..out.len())
        .map(|k| {
            if k < pad || shape[k - pad] == 1 {
                0
            } else {
                st[k - pad]
            }
        })
        .collect()
}

pub(super) fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m).max(1) * m
}

pub(super) struct In<'a> {
    pub(super) t: &'a DeviceTensor,
    pub(super) c: &'a ClTensor,
}

impl OpenclDevice {
    pub(super) fn launch(
        &self,
        name: &'static str,
        args: &[Arg],
        global: &[usize],
        local: Option<&[usize]>,
        waits: &[&Option<Arc<Event>>],
    ) -> Result<Event> {
        let prog = self.program_for(name)?;
        let k = Kernel::create(&prog, name)
            .map_err(|e| other(self.info.id, format!("kernel {name}: {e}")))?;
        let mut ek = ExecuteKernel::new(&k);
        // SAFETY: argument types match the kernel signatures in kernels.cl.
        unsafe {
            for a in args {
                match a {
                    Arg::Buf(b) => ek.set_arg(*b),
                    Arg::U32(v) => ek.set_arg(v),
                    Arg::F32(v) => ek.set_arg(v),
                    Arg::I32(v) => ek.set_arg(v),
                    Arg::V8(v) => ek.set_arg(v),
                    Arg::I8(v) => ek.set_arg(v),
                };
            }
        }
        ek.set_global_work_sizes(global);
        if let Some(l) = local {
            ek.set_local_work_sizes(l);
        }
        let wl = wait_list(waits);
        ek.set_event_wait_list(&wl);
        // SAFETY: buffers are sized by the callers for these work sizes.
        let ev = unsafe { ek.enqueue_nd_range(&self.compute) }
            .map_err(|e| other(self.info.id, format!("enqueue {name}: {e}")))?;
        self.record(name, &ev);
        Ok(ev)
    }

    pub(super) fn out_buf(&self, elems: usize) -> Result<super::PooledBuffer> {
        self.pool.get(elems * 4).map_err(|e| other(self.info.id, e))
    }

    pub(super) fn finish_out(
        &self,
        shape: Vec<usize>,
        buf: super::PooledBuffer,
        ev: Event,
    ) -> DeviceTensor {
        self.finish_out_as(DType::F32, shape, buf, ev)
    }

    /// An output of `dtype` written by the command `ev`.
    pub(super) fn finish_out_as(
        &self,
        dtype: DType,
        shape: Vec<usize>,
        buf: super::PooledBuffer,
        ev: Event,
    ) -> DeviceTensor {
        self.finish_span(dtype, shape, buf, None, ev)
    }

    /// An output written by the kernels from `first` (None: `last` alone)
    /// to `last` on the in-order compute queue.
    pub(super) fn finish_span(
        &self,
        dtype: DType,
        shape: Vec<usize>,
        buf: super::PooledBuffer,
        first: Option<Arc<Event>>,
        ev: Event,
    ) -> DeviceTensor {
        self.wrap(
            dtype,
            shape,
            ClTensor {
                buf: Arc::new(buf),
                ready: Some(Arc::new(ev)),
                upload_src: None,
                host: None,
                kernel: true,
                first,
                report: Arc::default(),
            },
        )
    }

    /// A small read-only u32 buffer with its data copied in at creation.
    pub(super) fn const_u32(&self, v: &[u32]) -> Result<Buffer<u8>> {
        let mut bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        if bytes.is_empty() {
            bytes.resize(4, 0);
        }
        // SAFETY: the host pointer is copied during the call.
        unsafe {
            Buffer::<u8>::create(
                &self.ctx,
                CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                bytes.len(),
                bytes.as_mut_ptr().cast(),
            )
        }
        .map_err(|e| other(self.info.id, format!("clCreateBuffer: {e}")))
    }
}

pub(super) fn execute(
    dev: &OpenclDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    n_outputs: usize,
) -> Result<Vec<DeviceTensor>> {
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
        return super::host::shape_op(dev, op, inputs, n_outputs);
    }
    if kernels.is_empty() {
        return view(dev, op, inputs, n_outputs);
    }
    if let Err(why) = native(op, &ins, n_outputs) {
        return super::host::eval(dev, op, inputs, n_outputs, &why);
    }
    let x = get(0)?;
    let outs = match op {
        Op::Split { axis, split } => {
            super::movement::split(dev, &ins, *axis, split.as_deref(), n_outputs)?
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
        Op::Cast { to, .. } => super::movement::cast_kernel(dt(0), *to).is_some(),
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
            super::nn::binary(dev, kernels[0], x, get(1)?, out)?
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
        Op::Transpose { perm } => super::movement::transpose(dev, x, perm.as_deref())?,
        other_op => super::nn::other(dev, other_op, kernels, ins, x)?,
    };
    Ok(out)
}

/// Views: the output shares the input's buffer under a new shape computed
/// by shape inference (shape operands read from their host mirrors).
fn view(
    dev: &OpenclDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    n_outputs: usize,
) -> Result<Vec<DeviceTensor>> {
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
    let mut facts = vec![Some(Fact::known(x.dtype, &x.shape))];
    for t in &inputs[1..] {
        facts.push(match t {
            Some(t) => Some(Fact::constant(dev.host_value(t)?)),
            None => None,
        });
    }
    let refs: Vec<Option<&Fact>> = facts.iter().map(Option::as_ref).collect();
    let out = infer_op(op, &refs, 1).map_err(|e| DeviceError::Other(e.to_string()))?;
    let shape = out
        .first()
        .and_then(Fact::concrete_shape)
        .ok_or_else(|| DeviceError::Other("output shape unknown".into()))?;
    if shape.iter().product::<usize>() != x.shape.iter().product::<usize>() {
        return Err(DeviceError::Other(format!(
            "view {:?} -> {shape:?} changes the element count",
            x.shape
        )));
    }
    let mut v = dev.cl(x)?.share();
    // The host mirror takes the view's shape too.
    if let Some(h) = v.host.take() {
        let h = (*h)
            .clone()
            .reshape(shape.clone())
            .map_err(|e| DeviceError::Other(e.to_string()))?;
        v.host = Some(Arc::new(h));
    }
    let mut outs = vec![dev.wrap(x.dtype, shape.clone(), v)];
    if mask {
        // Inference dropout keeps everything: an all-true mask.
        let n = shape.iter().product::<usize>();
        let m = Tensor::from_vec(shape, vec![true; n])
            .map_err(|e| DeviceError::Other(e.to_string()))?;
        outs.push(dev.upload(Arc::new(m))?);
    }
    Ok(outs)
}

/// Numpy matmul: 1-D operands promoted and their dims dropped, batch dims
/// broadcast; one kernel over (N, M, batch).
fn matmul(dev: &OpenclDevice, a: &In, b: &In) -> Result<DeviceTensor> {
    let (mut sa, mut sb) = (a.t.shape.clone(), b.t.shape.clone());
    if sa.is_empty() || sb.is_empty() {
        return Err(DeviceError::Other("MatMul of a scalar".into()));
    }
    let (a1, b1) = (sa.len() == 1, sb.len() == 1);
    if a1 {
        sa.insert(0, 1);
    }
    if b1 {
        sb.push(1);
    }
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k != k2 {
        return Err(DeviceError::Other(format!(
            "inner dims differ: {:?} x {:?}",
            a.t.shape, b.t.shape
        )));
    }
    let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
    let batch = broadcast_shapes(ba, bb).map_err(|e| DeviceError::Other(e.to_string()))?;
    let nb: usize = batch.iter().product();
    let (sta, stb) = (bcast_strides(ba, &batch), bcast_strides(bb, &batch));
    let mut offs = Vec::with_capacity(2 * nb);
    for bi in 0..nb {
        let (mut r, mut oa, mut ob) = (bi, 0usize, 0usize);
        for d in (0..batch.len()).rev() {
            let c = r % batch[d];
            r /= batch[d];
            oa += c * sta[d];
            ob += c * stb[d];
        }
        offs.push([oa * m * k, ob * k * n, 0]);
    }
    let mut shape = batch.clone();
    if !a1 {
        shape.push(m);
    }
    if !b1 {
        shape.push(n);
    }
    launch_gemm(
        dev,
        a,
        b,
        None,
        (m, n, k),
        (k, 1, n, 1),
        offs,
        1.0,
        0.0,
        shape,
    )
}

#[allow(clippy::too_many_arguments)]
fn gemm(
    dev: &OpenclDevice,
    a: &In,
    b: &In,
    c: Option<&In>,
    alpha: f32,
    beta: f32,
    ta: bool,
    tb: bool,
) -> Result<DeviceTensor> {
    let (sa, sb) = (&a.t.shape, &b.t.shape);
    if sa.len() != 2 || sb.len() != 2 {
        return Err(DeviceError::Other(format!(
            "Gemm needs 2-D operands, got {sa:?} and {sb:?}"
        )));
    }
    let (m, k) = if ta { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
    let (k2, n) = if tb { (sb[1], sb[0]) } else { (sb[0], sb[1]) };
    if k != k2 {
        return Err(DeviceError::Other(format!(
            "inner dims differ: {sa:?} x {sb:?} (transA {ta}, transB {tb})"
        )));
    }
    let (sam, sak) = if ta { (1, m) } else { (k, 1) };
    let (sbk, sbn) = if tb { (1, k) } else { (n, 1) };
    launch_gemm(
        dev,
        a,
        b,
        c,
        (m, n, k),
        (sam, sak, sbk, sbn),
        vec![[0; 3]],
        alpha,
        beta,
        vec![m, n],
    )
}

#[allow(clippy::too_many_arguments)]
fn launch_gemm(
    dev: &OpenclDevice,
    a: &In,
    b: &In,
    c: Option<&In>,
    (m, n, k): (usize, usize, usize),
    (sam, sak, sbk, sbn): (usize, usize, usize, usize),
    offs: Vec<[usize; 3]>,
    alpha: f32,
    beta: f32,
    shape: Vec<usize>,
) -> Result<DeviceTensor> {
    // C broadcast to (M, N) by strides.
    let sc = match c.map(|c| c.t.shape.as_slice()) {
        None | Some([]) => (0, 0),
        Some([x]) if *x == n => (0, 1),
        Some([1]) => (0, 0),
        Some([r, q]) if (*r == m || *r == 1) && (*q == n || *q == 1) => {
            (if *r == 1 { 0 } else { *q }, usize::from(*q != 1))
        }
        Some(s) => {
            return Err(DeviceError::Other(format!(
                "C of shape {s:?} does not broadcast to [{m}, {n}]"
            )))
        }
    };
    let y = dev.out_buf(offs.len() * m * n)?;
    if offs.len() * m * n == 0 {
        return Ok(dev.finish_out(shape, y, dev.marker()?));
    }
    let g = super::gemm::Gemm {
        a: operand(a),
        b: operand(b),
        c: c.map(operand),
        mnk: (m, n, k),
        sa: (sam, sak),
        sb: (sbk, sbn),
        sc,
        offs,
        alpha,
        beta,
        act: (0, 0.0, 0.0),
    };
    let (first, last) = super::gemm::launch(dev, &g, y.buffer())?;
    Ok(dev.finish_span(DType::F32, shape, y, first.map(Arc::new), last))
}

/// A tensor as a GEMM operand.
pub(super) fn operand<'a>(t: &'a In) -> super::gemm::Operand<'a> {
    super::gemm::Operand {
        buf: t.c.buf.buffer(),
        ready: &t.c.ready,
    }
}
