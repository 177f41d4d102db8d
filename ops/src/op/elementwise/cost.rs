//! Flops and cost-model class of the element-wise ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{out_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(_op: &Op) -> OpClass {
    OpClass::Elementwise
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    let out_elems = out_elems(outputs);
    match op {
        Op::Gelu { .. } => 8.0 * out_elems,
        Op::Sum | Op::Mean => {
            out_elems * (inputs.iter().flatten().count().saturating_sub(1)) as f64
        }
        Op::Act { .. } => 4.0 * out_elems,
        Op::UnaryGrad(_) => 4.0 * out_elems,
        _ => out_elems,
    }
}
