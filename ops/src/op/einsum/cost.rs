//! Flops and cost-model class of the Einsum ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{elems, out_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(_op: &Op) -> OpClass {
    OpClass::Gemm
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(_op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    // At least one multiply-add per input element.
    2.0 * inputs
        .iter()
        .flatten()
        .map(|f| elems(f))
        .sum::<f64>()
        .max(out_elems(outputs))
}
