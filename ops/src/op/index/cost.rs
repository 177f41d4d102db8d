//! Flops and cost-model class of the indexing ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{elems, in0_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(op: &Op) -> OpClass {
    match op {
        Op::TopK { .. } | Op::Cumulative { .. } => OpClass::Reduce,
        _ => OpClass::Movement,
    }
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    match op {
        Op::Cumulative { .. } => in0_elems(inputs),
        Op::TopK { .. } => {
            // A partial sort: about n log2(k + 1) comparisons.
            let k = outputs.first().map(|f| elems(f)).unwrap_or(0.0);
            let n = in0_elems(inputs);
            n * (1.0 + k / n.max(1.0)).log2().max(1.0)
        }
        _ => 0.0,
    }
}
