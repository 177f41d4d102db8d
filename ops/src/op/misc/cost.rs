//! Flops and cost-model class of the miscellaneous ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{in0_elems, input_shape, out_elems, per_output_weights, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(op: &Op) -> OpClass {
    match op {
        Op::ConvTranspose(_) => OpClass::Conv,
        Op::GridSample { .. } => OpClass::Elementwise,
        Op::Det | Op::Unique { .. } => OpClass::Reduce,
        _ => OpClass::Movement,
    }
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    match op {
        Op::ConvTranspose(_) => {
            // Each input element: (M / group) * prod(kernel) multiply-adds.
            let per = input_shape(inputs, 1).map_or(0.0, |w| per_output_weights(&w));
            2.0 * in0_elems(inputs) * per
        }
        Op::GridSample { .. } => out_elems(outputs),
        // One multiply-add per homogeneous coordinate of each output entry.
        Op::AffineGrid { .. } => {
            let r = outputs.first().and_then(|f| f.rank()).unwrap_or(1) as f64 - 1.0;
            2.0 * (r + 1.0) * out_elems(outputs)
        }
        _ => 0.0,
    }
}
