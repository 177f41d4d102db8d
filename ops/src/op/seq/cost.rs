//! Flops and cost-model class of the sequence-model ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{out_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(op: &Op) -> OpClass {
    match op {
        Op::SwiGlu { .. } => OpClass::Elementwise,
        Op::TensorScatter { .. } => OpClass::Movement,
        _ => OpClass::Reduce,
    }
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, _inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    match op {
        Op::SwiGlu { .. } => out_elems(outputs),
        _ => 0.0,
    }
}
