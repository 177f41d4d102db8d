//! Flops and cost-model class of the reduction ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{in0_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(_op: &Op) -> OpClass {
    OpClass::Reduce
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], _outputs: &[&Fact]) -> f64 {
    match op {
        Op::Reduce { .. } => in0_elems(inputs),
        _ => 0.0,
    }
}
