//! The seq family's host-kernel dispatch: one line per op, reached from
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
        Op::LinearAttention {
            rule,
            q_num_heads,
            kv_num_heads,
            scale,
        } => kernel::linear_attention(*rule, *q_num_heads, *kv_num_heads, *scale, inputs),
        Op::CausalConvWithState { silu } => kernel::causal_conv(*silu, inputs),
        Op::TensorScatter { axis, circular } => {
            one(kernel::tensor_scatter(*axis, *circular, inputs))
        }
        Op::SwiGlu { alpha } => one(kernel::swiglu(*alpha, inputs)),
        _ => Err(other_family(op, "seq")),
    }
}
