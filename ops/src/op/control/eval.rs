//! The control family's host-kernel dispatch: one line per op, reached from
//! [`crate::kernels::eval`] through [`crate::op::Op::family`].

use super::kernel;
use crate::error::Result;
use crate::op::common::other_family;
use crate::op::Op;
use crate::tensor::Tensor;

/// Runs `op`, one of this family's ops, on host tensors (the contract of
/// [`crate::kernels::eval`]; the caller checks the output count).
pub(crate) fn eval(
    op: &Op,
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
    host: kernel::Eval,
) -> Result<Vec<Tensor>> {
    match op {
        Op::If {
            then_branch,
            else_branch,
        } => kernel::if_(then_branch, else_branch, inputs, n_outputs, host),
        Op::Loop { body } => kernel::loop_(body, inputs, n_outputs, host),
        Op::Scan { body, attrs } => kernel::scan(body, attrs, inputs, n_outputs, host),
        _ => Err(other_family(op, "control")),
    }
}
