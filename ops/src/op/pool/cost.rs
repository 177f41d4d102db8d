//! Flops and cost-model class of the pooling ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::{in0_elems, out_elems, OpClass};
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(_op: &Op) -> OpClass {
    OpClass::Reduce
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    match op {
        Op::MaxPool(p) | Op::AveragePool(p) | Op::LpPool { pool: p, .. } => {
            out_elems(outputs) * p.kernel_shape.iter().map(|&k| k as f64).product::<f64>()
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => in0_elems(inputs),
        Op::PoolGrad { attrs, .. } => {
            in0_elems(inputs)
                + out_elems(outputs) * attrs.kernel_shape.iter().product::<usize>() as f64
        }
        _ => 0.0,
    }
}
