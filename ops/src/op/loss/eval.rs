//! The loss family's host-kernel dispatch: one line per op, reached from
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
pub(crate) fn eval(op: &Op, inputs: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
    match op {
        Op::SoftmaxCrossEntropyGrad {
            reduction,
            ignore_index,
        } => one(grad::softmax_ce_grad(*reduction, *ignore_index, inputs)),
        Op::NllLoss {
            reduction,
            ignore_index,
        } => one(kernel::nll_loss(*reduction, *ignore_index, inputs)),
        Op::SoftmaxCrossEntropy {
            reduction,
            ignore_index,
        } => kernel::softmax_cross_entropy(*reduction, *ignore_index, inputs, n_outputs),
        _ => Err(other_family(op, "loss")),
    }
}

/// True for the ops of this family that compute in float arithmetic: their
/// f16/bf16 inputs are widened to f32 by [`crate::kernels::eval`] and the
/// results narrowed back.
pub(crate) fn widens_half(op: &Op) -> bool {
    matches!(op, Op::NllLoss { .. } | Op::SoftmaxCrossEntropy { .. })
}
