//! Flops and cost-model class of the signal ops (from [`crate::cost`]).

use crate::graph::Fact;
use crate::op::common::OpClass;
use crate::op::Op;

/// The cost-model class of an op of this family.
pub(crate) fn class(op: &Op) -> OpClass {
    match op {
        Op::QLinearMatMul | Op::MatMulInteger => OpClass::Gemm,
        _ => OpClass::Reduce,
    }
}

/// Arithmetic operations of one execution of an op of this family at
/// concrete shapes (counting conventions: [`crate::cost`]).
pub(crate) fn flops(_op: &Op, _inputs: &[Option<&Fact>], _outputs: &[&Fact]) -> f64 {
    0.0
}
