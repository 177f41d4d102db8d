//! Flops and cost-model class of the optimizers (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{out_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(_op: &Op) -> OpClass {
    OpClass::Elementwise
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]): about eight
/// per element of every output.
pub(crate) fn flops(_op: &Op, _inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    8.0 * out_elems(outputs)
}
