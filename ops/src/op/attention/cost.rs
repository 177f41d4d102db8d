//! Flops and cost-model class of the attention ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{in0_elems, input_shape, out_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(_op: &Op) -> OpClass {
    OpClass::Gemm
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    // QK^T and PV: 2 * (D + Dv) flops per query and key, with the
    // key count read from K (dim rank-2) plus any past (Attention's input
    // 4; FlexAttention's later inputs are its modifiers' captures).
    let dim2 = |i: usize| {
        input_shape(inputs, i)
            .and_then(|s| s.len().checked_sub(2).map(|k| s[k]))
            .unwrap_or(0) as f64
    };
    let past = if matches!(op, Op::Attention(_)) {
        dim2(4)
    } else {
        0.0
    };
    let keys = dim2(1) + past;
    2.0 * (in0_elems(inputs) + out_elems(outputs)) * keys
}
