//! Flops and cost-model class of the `ai.onnx.ml` ops (from
//! [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{in0_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(_op: &Op) -> OpClass {
    OpClass::Elementwise
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]): a tree
/// ensemble compares about one feature per tree level (taken as the
/// interior node count, an upper bound), the others one per element.
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], _outputs: &[&Fact]) -> f64 {
    match op {
        Op::TreeEnsemble(t) => {
            let rows = inputs
                .first()
                .copied()
                .flatten()
                .and_then(|f| f.concrete_shape())
                .and_then(|s| s.first().copied())
                .unwrap_or(1);
            (rows * t.nodes.len().max(1)) as f64
        }
        _ => in0_elems(inputs),
    }
}
