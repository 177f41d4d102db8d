//! Shape and dtype inference of the optimizers (from
//! [`crate::infer::infer_op`]).

use crate::error::Result;
use crate::graph::Fact;
use crate::op::common::{input, other_family, same};
use crate::op::Op;

/// The number n of optimized tensors of a node with `n_in` inputs and
/// `n_out` outputs and `states` states per tensor; an error when the
/// counts do not fit.
pub(crate) fn tensor_count(n_in: usize, n_out: usize, states: usize) -> Result<usize> {
    let per = 2 + states;
    let n = n_in.saturating_sub(2) / per;
    if n == 0 || n_in != 2 + per * n || n_out != (1 + states) * n {
        crate::bail!(
            "expected R, T and {per} inputs per optimized tensor, and {} outputs per tensor; got {n_in} inputs and {n_out} outputs",
            1 + states
        );
    }
    Ok(n)
}

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    let Op::Optimizer(o) = op else {
        return Err(other_family(op, "optim"));
    };
    let n = tensor_count(inputs.len(), n_out, o.states())?;
    // X_new like X; each state's new value like the old state.
    let mut outs = Vec::with_capacity(n_out);
    for i in 0..n {
        outs.push(same(input(inputs, 2 + i)?));
    }
    for s in 0..o.states() {
        for i in 0..n {
            outs.push(same(input(inputs, 2 + (2 + s) * n + i)?));
        }
    }
    Ok(outs)
}
