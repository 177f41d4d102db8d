//! Flops and cost-model class of the normalisation ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{in0_elems, out_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(op: &Op) -> OpClass {
    match op {
        Op::RotaryEmbedding { .. } => OpClass::Elementwise,
        _ => OpClass::Reduce,
    }
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    let out_elems = out_elems(outputs);
    match op {
        Op::Softmax { .. } | Op::LogSoftmax { .. } => 4.0 * out_elems,
        Op::BatchNorm { .. } => 2.0 * out_elems,
        Op::LayerNorm { .. } => 8.0 * out_elems,
        Op::Lrn { size, .. } => out_elems * (*size as f64 + 4.0),
        Op::RmsNorm { .. } | Op::LpNorm { .. } => 4.0 * out_elems,
        Op::InstanceNorm { .. } | Op::GroupNorm { .. } => 8.0 * out_elems,
        Op::RotaryEmbedding { .. } => 4.0 * out_elems,
        Op::Hardmax { .. } => in0_elems(inputs),
        Op::SoftmaxGrad { .. } => 3.0 * out_elems,
        Op::LayerNormGrad { .. } | Op::BatchNormGrad => 10.0 * in0_elems(inputs),
        Op::BatchNormTrain { .. } => 6.0 * in0_elems(inputs),
        _ => 0.0,
    }
}
