//! The conv family's host-kernel dispatch: one line per op, reached from
//! [`crate::kernels::eval`] through [`crate::op::Op::family`].

use super::grad;
use super::kernel;
use crate::error::Result;
use crate::kernels::util::one;
use crate::op::common::other_family;
use crate::op::Op;
use crate::tensor::Tensor;

/// Runs `op`, one of this family's ops, on host tensors (the contract of
/// [`crate::kernels::eval`]; the caller checks the output count).
pub(crate) fn eval(op: &Op, inputs: &[Option<&Tensor>], _n_outputs: usize) -> Result<Vec<Tensor>> {
    match op {
        Op::Conv(a) => one(kernel::conv(a, inputs)),
        Op::ConvGradFilter(a) => one(grad::grad_filter(a, inputs)),
        Op::ConvGradInput { attrs, x_shape } => one(grad::grad_input(attrs, x_shape, inputs)),
        Op::ConvInteger(a) => one(kernel::conv_integer(a, inputs)),
        Op::QLinearConv(a) => one(super::qlinear::qlinear_conv(a, inputs)),
        Op::DeformConv(a) => one(super::deform::deform_conv(a, inputs)),
        _ => Err(other_family(op, "conv")),
    }
}

/// True for the ops of this family that compute in float arithmetic: their
/// f16/bf16 inputs are widened to f32 by [`crate::kernels::eval`] and the
/// results narrowed back.
pub(crate) fn widens_half(op: &Op) -> bool {
    // The gradients too (bf16 training computes them on bf16 tensors).
    matches!(
        op,
        Op::Conv(_) | Op::ConvGradFilter(_) | Op::ConvGradInput { .. }
    )
}
