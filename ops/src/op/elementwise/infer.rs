//! Shape and dtype inference of the element-wise ops (from
//! [`crate::infer::infer_op`]).

use crate::dtype::DType;
use crate::error::Result;
use crate::graph::Fact;
use crate::op::common::{
    broadcast_facts, check_same_dtype, input, one, other_family, same, with_dtype,
};
use crate::op::{BinaryOp, Op};

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::UnaryGrad(_) => super::grad::infer(op, inputs),
        Op::Unary(_)
        | Op::LeakyRelu { .. }
        | Op::Clip { .. }
        | Op::Gelu { .. }
        | Op::Act { .. } => {
            let x = input(inputs, 0)?;
            if let (Op::Act { .. } | Op::Gelu { .. }, Some(d)) = (op, x.dtype) {
                if !d.is_float() {
                    crate::bail!("input 0 must be a float tensor, got {d}");
                }
            }
            if let Op::Unary(u) = op {
                if let Some(d) = x.dtype {
                    super::kernel::check_unary_dtype(*u, d)?;
                }
            }
            one(same(x))
        }
        Op::IsNaN | Op::IsInf { .. } => {
            let x = input(inputs, 0)?;
            if let Some(d) = x.dtype {
                if !d.is_float() {
                    crate::bail!("input 0 must be a float tensor, got {d}");
                }
            }
            one(with_dtype(Some(DType::Bool), x.shape.clone()))
        }
        Op::Mean => {
            let fs: Vec<&Fact> = inputs.iter().flatten().copied().collect();
            if fs.is_empty() {
                crate::bail!("Mean needs at least one input");
            }
            let dt = check_same_dtype(&fs, "Mean")?;
            one(with_dtype(dt, broadcast_facts(&fs)?))
        }
        Op::Binary(b) => {
            let a = input(inputs, 0)?;
            let c = input(inputs, 1)?;
            let dt = if *b == BinaryOp::Pow {
                a.dtype
            } else {
                check_same_dtype(&[a, c], op.name())?
            };
            if let Some(d) = dt {
                super::kernel::check_binary_dtype(*b, d)?;
            }
            let shape = broadcast_facts(&[a, c])?;
            let dtype = if b.is_comparison() || b.is_logical() {
                Some(DType::Bool)
            } else {
                dt
            };
            one(with_dtype(dtype, shape))
        }
        Op::Where => {
            let c = input(inputs, 0)?;
            let a = input(inputs, 1)?;
            let b = input(inputs, 2)?;
            if let Some(d) = c.dtype {
                if d != DType::Bool {
                    crate::bail!("condition must be bool, got {d}");
                }
            }
            let dt = check_same_dtype(&[a, b], "Where")?;
            one(with_dtype(dt, broadcast_facts(&[c, a, b])?))
        }
        Op::Sum | Op::Extremum(_) => {
            let fs: Vec<&Fact> = inputs.iter().flatten().copied().collect();
            if fs.is_empty() {
                crate::bail!("{} needs at least one input", op.name());
            }
            let dt = check_same_dtype(&fs, op.name())?;
            one(with_dtype(dt, broadcast_facts(&fs)?))
        }
        Op::Cast { to, .. } => one(with_dtype(Some(*to), input(inputs, 0)?.shape.clone())),
        Op::CastLike { .. } => {
            let like = input(inputs, 1)?;
            one(with_dtype(like.dtype, input(inputs, 0)?.shape.clone()))
        }
        _ => Err(other_family(op, "elementwise")),
    }
}
