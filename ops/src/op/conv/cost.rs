//! Flops and cost-model class of the convolution ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{input_shape, out_elems, per_output_weights, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(_op: &Op) -> OpClass {
    OpClass::Conv
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    if !matches!(op, Op::Conv(_) | Op::DeformConv(_)) {
        return super::grad::flops(op, inputs, outputs);
    }
    // Each output element: C_in/group * prod(kernel) MACs.
    let per = input_shape(inputs, 1).map_or(0.0, |w| per_output_weights(&w));
    2.0 * out_elems(outputs) * per
}
