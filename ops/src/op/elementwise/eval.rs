//! The elementwise family's host-kernel dispatch: one line per op, reached from
//! [`crate::kernels::eval`] through [`crate::op::Op::family`].

use super::grad;
use super::kernel;
use crate::error::Result;
use crate::kernels::util::{self, one};
use crate::op::common::other_family;
use crate::op::{BinaryOp, Op, UnaryOp};
use crate::tensor::Tensor;

/// Runs `op`, one of this family's ops, on host tensors (the contract of
/// [`crate::kernels::eval`]; the caller checks the output count).
pub(crate) fn eval(op: &Op, inputs: &[Option<&Tensor>], _n_outputs: usize) -> Result<Vec<Tensor>> {
    match op {
        Op::Unary(u) => one(kernel::unary(*u, inputs)),
        Op::Binary(b) => one(kernel::binary(*b, inputs)),
        Op::LeakyRelu { alpha } => one(kernel::leaky_relu(*alpha, inputs)),
        Op::Gelu { tanh } => one(kernel::gelu(*tanh, inputs)),
        Op::UnaryGrad(f) => one(grad::unary_grad(*f, inputs)),
        Op::Clip { min, max } => one(kernel::clip(*min, *max, inputs)),
        Op::Where => one(kernel::where_(inputs)),
        Op::Sum => one(kernel::fold(BinaryOp::Add, inputs)),
        Op::Extremum(b) => one(kernel::fold(*b, inputs)),
        Op::Cast {
            to,
            saturate,
            round,
        } => one(util::input(inputs, 0, "input").map(|t| t.cast_with(*to, *saturate, *round))),
        Op::CastLike { saturate, round } => {
            let like = util::input(inputs, 1, "target_type")?;
            one(util::input(inputs, 0, "input")
                .map(|t| t.cast_with(like.dtype(), *saturate, *round)))
        }
        Op::Act { kind, alpha, beta } => one(kernel::act(*kind, *alpha, *beta, inputs)),
        Op::IsNaN => one(kernel::is_special(true, false, false, inputs)),
        Op::IsInf { positive, negative } => {
            one(kernel::is_special(false, *positive, *negative, inputs))
        }
        Op::Mean => one(kernel::mean(inputs)),
        _ => Err(other_family(op, "elementwise")),
    }
}

/// True for the ops of this family that compute in float arithmetic: their
/// f16/bf16 inputs are widened to f32 by [`crate::kernels::eval`] and the
/// results narrowed back.
pub(crate) fn widens_half(op: &Op) -> bool {
    match op {
        Op::Unary(u) => !matches!(u, UnaryOp::Not | UnaryOp::BitwiseNot),
        Op::Binary(b) => !b.is_comparison() && !b.is_logical() && !b.is_bitwise(),
        Op::LeakyRelu { .. }
        | Op::Gelu { .. }
        | Op::Sum
        | Op::Extremum(_)
        | Op::Act { .. }
        | Op::Mean
        // The backward of the activations (bf16 training).
        | Op::UnaryGrad(_) => true,
        _ => false,
    }
}

/// Whether `op` does a few cycles of work per element (a compare, an add,
/// a multiply), so that only large tensors repay splitting it over threads
/// (the CPU device's `PAR_ELEMS_CHEAP`); transcendental unary ops and Pow
/// are not cheap.
pub(crate) fn cheap(op: &Op) -> bool {
    use crate::op::{BinaryOp, UnaryOp};
    match op {
        Op::Binary(b) => !matches!(b, BinaryOp::Pow),
        Op::Unary(u) => matches!(
            u,
            UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Relu
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Reciprocal
        ),
        Op::LeakyRelu { .. } | Op::Clip { .. } | Op::Where | Op::Sum | Op::Extremum(_) => true,
        _ => false,
    }
}
