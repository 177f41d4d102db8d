//! The element-wise ops: their lines in the op table and their launches.
//! A plain function of one f32 tensor is one line here (`unary`) plus its
//! kernel, one `UNARY(name, expression)` line in `kernels_nn.cl` or
//! `kernels.cl`; parameterised functions (LeakyRelu, Clip), broadcasting
//! arithmetic and comparisons, and variadic Sum have launches of their own
//! below.

use super::device::OpenclDevice;
use super::launch::{bcast_strides, round_up, u32_of, v8, Arg, Call, Decl, In, MAX_RANK};
use crate::{DeviceError, DeviceTensor, Result};
use hetflow_ops::op::{BinaryOp, UnaryOp};
use hetflow_ops::shape::broadcast_shapes;
use hetflow_ops::{DType, Op};

fn err(msg: impl Into<String>) -> DeviceError {
    DeviceError::Other(msg.into())
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// A function of one f32 tensor by the kernel `name(x, y, n)`.
const fn unary(kernel: &'static [&'static str]) -> Decl {
    Decl::f32(kernel, map)
}

/// A broadcasting binary op by the kernel `name(a, b, y, n, rank, dims,
/// a_strides, b_strides)`.
const fn binary_op(kernel: &'static [&'static str]) -> Decl {
    Decl::f32(kernel, binary_launch)
}

/// The element-wise ops OpenCL runs.
pub(super) fn table(op: &Op) -> Option<Decl> {
    Some(match op {
        Op::Unary(u) => match u {
            UnaryOp::Relu => unary(&["u_relu"]),
            UnaryOp::Neg => unary(&["u_neg"]),
            UnaryOp::Abs => unary(&["u_abs"]),
            UnaryOp::Exp => unary(&["u_exp"]),
            UnaryOp::Log => unary(&["u_log"]),
            UnaryOp::Sqrt => unary(&["u_sqrt"]),
            UnaryOp::Sigmoid => unary(&["u_sigmoid"]),
            UnaryOp::Tanh => unary(&["u_tanh"]),
            UnaryOp::Erf => unary(&["u_erf"]),
            UnaryOp::Reciprocal => unary(&["u_reciprocal"]),
            UnaryOp::Floor => unary(&["u_floor"]),
            UnaryOp::Ceil => unary(&["u_ceil"]),
            UnaryOp::Sin => unary(&["u_sin"]),
            UnaryOp::Cos => unary(&["u_cos"]),
            UnaryOp::Tan => unary(&["u_tan"]),
            UnaryOp::Asin => unary(&["u_asin"]),
            UnaryOp::Acos => unary(&["u_acos"]),
            UnaryOp::Atan => unary(&["u_atan"]),
            UnaryOp::Sinh => unary(&["u_sinh"]),
            UnaryOp::Cosh => unary(&["u_cosh"]),
            UnaryOp::Asinh => unary(&["u_asinh"]),
            UnaryOp::Acosh => unary(&["u_acosh"]),
            UnaryOp::Atanh => unary(&["u_atanh"]),
            UnaryOp::Round => unary(&["u_round"]),
            UnaryOp::Sign => unary(&["u_sign"]),
            UnaryOp::Softsign => unary(&["u_softsign"]),
            UnaryOp::HardSwish => unary(&["u_hard_swish"]),
            _ => return None,
        },
        Op::Gelu { tanh: false } => unary(&["u_gelu_erf"]),
        Op::Gelu { tanh: true } => unary(&["u_gelu_tanh"]),
        Op::LeakyRelu { .. } => Decl::f32(&["u_leaky_relu"], leaky_relu),
        Op::Clip { .. } => Decl::f32(&["u_clip"], clip),
        Op::Binary(b) => match b {
            BinaryOp::Add => binary_op(&["b_add"]),
            BinaryOp::Sub => binary_op(&["b_sub"]),
            BinaryOp::Mul => binary_op(&["b_mul"]),
            BinaryOp::Div => binary_op(&["b_div"]),
            BinaryOp::Pow => binary_op(&["b_pow"]),
            BinaryOp::Equal => binary_op(&["c_eq"]),
            BinaryOp::Less => binary_op(&["c_lt"]),
            BinaryOp::Greater => binary_op(&["c_gt"]),
            BinaryOp::LessOrEqual => binary_op(&["c_le"]),
            BinaryOp::GreaterOrEqual => binary_op(&["c_ge"]),
            _ => return None,
        },
        Op::Sum => Decl::f32(&["b_add"], sum),
        _ => return None,
    })
}

/// One work-item per element: `kernel(x, y, n)`.
fn map(c: &Call) -> Result<DeviceTensor> {
    map_with(c, None)
}

fn leaky_relu(c: &Call) -> Result<DeviceTensor> {
    let Op::LeakyRelu { alpha } = c.op else {
        return Err(c.mismatch());
    };
    map_with(c, Some(*alpha))
}

/// `kernel(x, y, n)`, or `kernel(x, y, n, param)` when the op has a
/// parameter.
fn map_with(c: &Call, param: Option<f32>) -> Result<DeviceTensor> {
    let (dev, x) = (c.dev, c.x);
    let n = numel(&x.t.shape);
    let y = dev.out_buf(n)?;
    let mut args = vec![
        Arg::Buf(x.c.buf.buffer()),
        Arg::Buf(y.buffer()),
        Arg::U32(u32_of(n, "size")?),
    ];
    args.extend(param.map(Arg::F32));
    let ev = dev.launch(c.kernel(), &args, &[round_up(n, 64)], None, &[&x.c.ready])?;
    Ok(dev.finish_out(x.t.shape.clone(), y, ev))
}

fn binary_launch(c: &Call) -> Result<DeviceTensor> {
    let Op::Binary(b) = c.op else {
        return Err(c.mismatch());
    };
    let compare = matches!(
        b,
        BinaryOp::Equal
            | BinaryOp::Less
            | BinaryOp::Greater
            | BinaryOp::LessOrEqual
            | BinaryOp::GreaterOrEqual
    );
    let out = if compare { DType::Bool } else { DType::F32 };
    binary(c.dev, c.kernel(), c.x, c.need(1)?, out)
}

/// Broadcasting binary kernel `kernel` (arithmetic, or a comparison with a
/// bool output).
pub(super) fn binary(
    dev: &OpenclDevice,
    kernel: &'static str,
    a: &In,
    b: &In,
    out: DType,
) -> Result<DeviceTensor> {
    let shape = broadcast_shapes(&a.t.shape, &b.t.shape).map_err(|e| err(e.to_string()))?;
    if shape.len() > MAX_RANK {
        return Err(err(format!("rank {} > {MAX_RANK}", shape.len())));
    }
    let n = numel(&shape);
    let y = dev
        .pool
        .get(n * out.size())
        .map_err(|e| super::device::other(dev.info.id, e))?;
    let ev = dev.launch(
        kernel,
        &[
            Arg::Buf(a.c.buf.buffer()),
            Arg::Buf(b.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(n, "size")?),
            Arg::U32(shape.len() as u32),
            Arg::V8(v8(&shape)?),
            Arg::V8(v8(&bcast_strides(&a.t.shape, &shape))?),
            Arg::V8(v8(&bcast_strides(&b.t.shape, &shape))?),
        ],
        &[round_up(n, 64)],
        None,
        &[&a.c.ready, &b.c.ready],
    )?;
    Ok(dev.finish_out_as(out, shape, y, ev))
}

/// Variadic Sum: a chain of broadcasting adds.
fn sum(c: &Call) -> Result<DeviceTensor> {
    let dev = c.dev;
    let xs: Vec<&In> = c.ins.iter().flatten().collect();
    match xs.as_slice() {
        [] => Err(err("Sum needs at least one input")),
        [only] => Ok(dev.wrap(only.t.dtype, only.t.shape.clone(), only.c.share())),
        [a, b, rest @ ..] => {
            let mut acc = binary(dev, "b_add", a, b, DType::F32)?;
            for t in rest {
                let cl = dev.cl(&acc)?;
                let cur = In { t: &acc, c: cl };
                let next = binary(dev, "b_add", &cur, t, DType::F32)?;
                acc = next;
            }
            Ok(acc)
        }
    }
}

/// Clip: bounds from attributes go in small constant buffers; bounds from
/// inputs are read on the device (no wait on the host).
fn clip(c: &Call) -> Result<DeviceTensor> {
    let Op::Clip { min, max } = c.op else {
        return Err(c.mismatch());
    };
    let (dev, x) = (c.dev, c.x);
    let consts = [*min, *max].map(|v| v.map(|v| dev.const_u32(&[v.to_bits()])));
    let mut bufs = Vec::new();
    let mut waits = vec![&x.c.ready];
    let mut has = [false; 2];
    for (k, cst) in consts.into_iter().enumerate() {
        if let Some(b) = cst {
            bufs.push(Some(b?));
            has[k] = true;
        } else if let Some(t) = c.opt(k + 1).filter(|t| numel(&t.t.shape) > 0) {
            if numel(&t.t.shape) != 1 {
                return Err(err(format!("bound {} has shape {:?}", k + 1, t.t.shape)));
            }
            bufs.push(None);
            waits.push(&t.c.ready);
            has[k] = true;
        } else {
            bufs.push(None);
        }
    }
    let pick = |k: usize| match &bufs[k] {
        Some(b) => b,
        None => c
            .opt(k + 1)
            .filter(|_| has[k])
            .map_or(x.c.buf.buffer(), |t| t.c.buf.buffer()),
    };
    let n = numel(&x.t.shape);
    let y = dev.out_buf(n)?;
    let ev = dev.launch(
        c.kernel(),
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(n, "size")?),
            Arg::Buf(pick(0)),
            Arg::Buf(pick(1)),
            Arg::U32(has[0] as u32),
            Arg::U32(has[1] as u32),
        ],
        &[round_up(n, 64)],
        None,
        &waits,
    )?;
    Ok(dev.finish_out(x.t.shape.clone(), y, ev))
}
