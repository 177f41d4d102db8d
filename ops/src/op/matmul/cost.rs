//! Flops and cost-model class of the matrix-product ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{out_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(_op: &Op) -> OpClass {
    OpClass::Gemm
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    // out = [.., M, N]; K from the second-to-last / last dim of A.
    let k = inputs
        .first()
        .copied()
        .flatten()
        .and_then(|a| a.concrete_shape())
        .map(|s| match op {
            Op::Gemm { trans_a: true, .. } => s.first().copied().unwrap_or(1),
            _ => s.last().copied().unwrap_or(1),
        })
        .unwrap_or(0) as f64;
    2.0 * out_elems(outputs) * k
}
