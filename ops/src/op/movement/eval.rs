//! The movement family's host-kernel dispatch: one line per op, reached from
//! [`crate::kernels::eval`] through [`crate::op::Op::family`].

use super::grad;
use super::kernel;
use crate::error::Result;
use crate::kernels::util::{self, one};
use crate::op::common::other_family;
use crate::op::Op;
use crate::tensor::Tensor;

/// Runs `op`, one of this family's ops, on host tensors (the contract of
/// [`crate::kernels::eval`]; the caller checks the output count).
pub(crate) fn eval(op: &Op, inputs: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
    match op {
        Op::Range => one(kernel::range(inputs)),
        Op::Reshape { allowzero, shape } => {
            one(kernel::reshape(*allowzero, shape.as_deref(), inputs))
        }
        Op::Flatten { axis } => one(kernel::flatten(*axis, inputs)),
        Op::Transpose { perm } => one(kernel::transpose(perm.as_deref(), inputs)),
        Op::Squeeze { axes } => one(kernel::squeeze(axes.as_deref(), inputs)),
        Op::Unsqueeze { axes } => one(kernel::unsqueeze(axes.as_deref(), inputs)),
        Op::Concat { axis } => one(super::concat::concat(*axis, inputs)),
        Op::Split { axis, split } => kernel::split(*axis, split.as_deref(), inputs, n_outputs),
        Op::Slice { starts, ends, axes } => one(kernel::slice(
            starts.as_deref(),
            ends.as_deref(),
            axes.as_deref(),
            inputs,
        )),
        Op::Gather { axis } => one(kernel::gather(*axis, inputs)),
        Op::GatherGrad { axis, data_shape } => one(grad::gather_grad(*axis, data_shape, inputs)),
        Op::DropoutTrain { ratio } => grad::dropout_train(*ratio, inputs),
        Op::Shape { start, end } => one(kernel::shape_of(*start, *end, inputs)),
        Op::Size => one(util::input(inputs, 0, "data").map(|t| Tensor::scalar(t.len() as i64))),
        Op::Expand => one(kernel::expand(inputs)),
        Op::Identity => one(util::input(inputs, 0, "input").cloned()),
        Op::Dropout => kernel::dropout(inputs, n_outputs),
        Op::ConstantOfShape { value } => one(kernel::constant_of_shape(value, inputs)),
        Op::OptionalHasElement => one(Ok(Tensor::scalar(util::opt_input(inputs, 0).is_some()))),
        Op::DropoutSeeded { seed } => super::dropout::dropout_seeded(*seed, inputs, n_outputs),
        _ => Err(other_family(op, "movement")),
    }
}

/// Whether `op`'s kernel may split its work over the pool's threads. The
/// ops listed here copy contiguous runs or only relabel a shape, on one
/// thread, so a device gains nothing by handing them to its pool; the
/// strided copies (Transpose, Slice, Expand) split, and the rest of the
/// family is taken to.
pub(crate) fn uses_threads(op: &Op) -> bool {
    !matches!(
        op,
        Op::Range
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Concat { .. }
            | Op::Split { .. }
            | Op::Gather { .. }
            | Op::Shape { .. }
            | Op::Size
            | Op::Identity
            | Op::Dropout
            | Op::ConstantOfShape { .. }
            | Op::OptionalHasElement
    )
}
