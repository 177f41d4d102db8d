//! Flops and cost-model class of the quantisation ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{out_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(op: &Op) -> OpClass {
    match op {
        Op::BitCast { .. } => OpClass::Movement,
        _ => OpClass::Elementwise,
    }
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, _inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    match op {
        Op::BitCast { .. } => 0.0,
        _ => out_elems(outputs),
    }
}
