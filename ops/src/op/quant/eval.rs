//! The quant family's host-kernel dispatch: one line per op, reached from
//! [`crate::kernels::eval`] through [`crate::op::Op::family`].

use super::kernel;
use crate::error::Result;
use crate::kernels::util::one;
use crate::op::common::other_family;
use crate::op::Op;
use crate::tensor::Tensor;

/// Runs `op`, one of this family's ops, on host tensors (the contract of
/// [`crate::kernels::eval`]; the caller checks the output count).
pub(crate) fn eval(op: &Op, inputs: &[Option<&Tensor>], _n_outputs: usize) -> Result<Vec<Tensor>> {
    match op {
        Op::QuantizeLinear {
            axis,
            block_size,
            dtype,
        } => one(kernel::quantize(*axis, *block_size, *dtype, inputs)),
        Op::DequantizeLinear {
            axis,
            block_size,
            dtype,
        } => one(kernel::dequantize(*axis, *block_size, *dtype, inputs)),
        Op::DynamicQuantizeLinear => kernel::dynamic_quantize(inputs),
        Op::BitCast { to } => one(kernel::bit_cast(*to, inputs)),
        _ => Err(other_family(op, "quant")),
    }
}
