//! The index family's host-kernel dispatch: one line per op, reached from
//! [`crate::kernels::eval`] through [`crate::op::Op::family`].

use super::kernel;
use crate::error::Result;
use crate::kernels::util::one;
use crate::op::common::other_family;
use crate::op::{Op, ScatterReduction};
use crate::tensor::Tensor;

/// Runs `op`, one of this family's ops, on host tensors (the contract of
/// [`crate::kernels::eval`]; the caller checks the output count).
pub(crate) fn eval(op: &Op, inputs: &[Option<&Tensor>], _n_outputs: usize) -> Result<Vec<Tensor>> {
    match op {
        Op::GatherElements { axis } => one(kernel::gather_elements(*axis, inputs)),
        Op::GatherNd { batch_dims } => one(kernel::gather_nd(*batch_dims, inputs)),
        Op::ScatterElements { axis, reduction } => {
            one(kernel::scatter_elements(*axis, *reduction, inputs))
        }
        Op::ScatterNd { reduction } => one(kernel::scatter_nd(*reduction, inputs)),
        Op::Trilu { upper } => one(kernel::trilu(*upper, inputs)),
        Op::Cumulative {
            prod,
            exclusive,
            reverse,
        } => one(kernel::cumulative(*prod, *exclusive, *reverse, inputs)),
        Op::TopK {
            axis, largest, k, ..
        } => kernel::top_k(*axis, *largest, *k, inputs),
        Op::OneHot { axis } => one(kernel::one_hot(*axis, inputs)),
        Op::NonZero => one(kernel::non_zero(inputs)),
        Op::Compress { axis } => one(kernel::compress(*axis, inputs)),
        Op::Tile => one(kernel::tile(inputs)),
        Op::DepthToSpace { blocksize, crd } => {
            one(kernel::space_depth(true, *blocksize, *crd, inputs))
        }
        Op::SpaceToDepth { blocksize, crd } => {
            one(kernel::space_depth(false, *blocksize, *crd, inputs))
        }
        Op::EyeLike { dtype, k } => one(kernel::eye_like(*dtype, *k, inputs)),
        Op::Pad { mode, pads, value } => one(kernel::pad(*mode, pads.as_deref(), *value, inputs)),
        _ => Err(other_family(op, "index")),
    }
}

/// True for the ops of this family that compute in float arithmetic: their
/// f16/bf16 inputs are widened to f32 by [`crate::kernels::eval`] and the
/// results narrowed back.
pub(crate) fn widens_half(op: &Op) -> bool {
    match op {
        Op::Cumulative { .. } => true,
        // Scatters with a reduction do arithmetic on data and updates.
        Op::ScatterElements { reduction, .. } | Op::ScatterNd { reduction } => {
            *reduction != ScatterReduction::None
        }
        _ => false,
    }
}
