//! Host kernels: the reference semantics of every op, also run by the CPU
//! device. One file per op family.
//!
//! Contract of [`eval`]: `inputs` are positional as in the node (`None` for an
//! omitted optional input); the result has exactly `n_outputs` tensors.
//! Kernels never panic on bad input: shapes, dtypes and attribute values are
//! checked and reported as [`Error`]s (the caller adds the node name).
//! Multi-threaded kernels use the rayon pool they are called in (the CPU
//! device installs its own pool, sized to its cores).

use crate::error::{Error, Result};
use crate::op::Op;
use crate::tensor::Tensor;

/// Evaluates `op` on host tensors.
pub fn eval(op: &Op, inputs: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
    let _ = (inputs, n_outputs);
    Err(Error::msg(format!("no host kernel for {}", op.name())))
}
