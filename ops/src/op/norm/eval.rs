//! The norm family's host-kernel dispatch: one line per op, reached from
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
        Op::Softmax { axis, legacy } => one(kernel::softmax(*axis, *legacy, false, inputs)),
        Op::LogSoftmax { axis, legacy } => one(kernel::softmax(*axis, *legacy, true, inputs)),
        Op::BatchNorm { epsilon } => one(kernel::batch_norm(*epsilon, inputs)),
        Op::LayerNorm { axis, epsilon } => kernel::layer_norm(*axis, *epsilon, inputs, n_outputs),
        Op::Lrn {
            alpha,
            beta,
            bias,
            size,
        } => one(kernel::lrn(*alpha, *beta, *bias, *size, inputs)),
        Op::SoftmaxGrad { axis, log } => one(grad::softmax_grad(*axis, *log, inputs)),
        Op::LayerNormGrad { axis, epsilon } => grad::layer_norm_grad(*axis, *epsilon, inputs),
        Op::BatchNormTrain { epsilon, momentum } => {
            let mut outs = grad::batch_norm_train(*epsilon, *momentum, inputs)?;
            outs.truncate(n_outputs.clamp(1, 5));
            Ok(outs)
        }
        Op::BatchNormGrad => grad::batch_norm_grad(inputs),
        Op::Hardmax { axis, legacy } => one(kernel::hardmax(*axis, *legacy, inputs)),
        Op::RmsNorm { axis, epsilon } => one(kernel::rms_norm(*axis, *epsilon, inputs)),
        Op::RotaryEmbedding {
            interleaved,
            num_heads,
            rotary_dim,
        } => one(kernel::rotary(
            *interleaved,
            *num_heads,
            *rotary_dim,
            inputs,
        )),
        Op::LpNorm { axis, p } => one(kernel::lp_norm(*axis, *p, inputs)),
        Op::MeanVarianceNorm { axes } => one(kernel::mean_variance_norm(axes, inputs)),
        Op::InstanceNorm { epsilon } => one(kernel::group_norm(*epsilon, None, true, inputs)),
        Op::GroupNorm {
            epsilon,
            groups,
            per_channel,
        } => one(kernel::group_norm(
            *epsilon,
            Some(*groups),
            *per_channel,
            inputs,
        )),
        _ => Err(other_family(op, "norm")),
    }
}

/// True for the ops of this family that compute in float arithmetic: their
/// f16/bf16 inputs are widened to f32 by [`crate::kernels::eval`] and the
/// results narrowed back.
pub(crate) fn widens_half(op: &Op) -> bool {
    matches!(
        op,
        Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::BatchNorm { .. }
            | Op::LayerNorm { .. }
            | Op::Lrn { .. }
            | Op::RmsNorm { .. }
            | Op::Hardmax { .. }
            | Op::RotaryEmbedding { .. }
            | Op::LpNorm { .. }
            | Op::InstanceNorm { .. }
            | Op::GroupNorm { .. }
    )
}
