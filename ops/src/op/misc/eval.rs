//! The misc family's host-kernel dispatch: one line per op, reached from
//! [`crate::kernels::eval`] through [`crate::op::Op::family`].

use super::kernel;
use crate::error::Result;
use crate::kernels::util::one;
use crate::op::common::other_family;
use crate::op::Op;
use crate::tensor::Tensor;

/// Runs `op`, one of this family's ops, on host tensors (the contract of
/// [`crate::kernels::eval`]; the caller checks the output count).
pub(crate) fn eval(op: &Op, inputs: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
    match op {
        Op::Window {
            kind,
            periodic,
            dtype,
        } => one(kernel::window(*kind, *periodic, *dtype, inputs)),
        Op::ReverseSequence {
            batch_axis,
            time_axis,
        } => one(kernel::reverse_sequence(*batch_axis, *time_axis, inputs)),
        Op::CenterCropPad { axes } => one(kernel::center_crop_pad(axes.as_deref(), inputs)),
        Op::Det => one(kernel::det(inputs)),
        Op::ConvTranspose(a) => one(kernel::conv_transpose(a, inputs)),
        Op::GridSample {
            mode,
            padding,
            align_corners,
        } => one(kernel::grid_sample(*mode, *padding, *align_corners, inputs)),
        Op::TfIdfVectorizer(t) => one(kernel::tfidf_vectorizer(t, inputs)),
        Op::AffineGrid { align_corners } => one(kernel::affine_grid(*align_corners, inputs)),
        Op::Unique { axis, sorted } => kernel::unique(*axis, *sorted, inputs, n_outputs),
        Op::ImageDecoder { format } => one(super::image::image_decoder(*format, inputs)),
        _ => Err(other_family(op, "misc")),
    }
}

/// True for the ops of this family that compute in float arithmetic: their
/// f16/bf16 inputs are widened to f32 by [`crate::kernels::eval`] and the
/// results narrowed back.
pub(crate) fn widens_half(op: &Op) -> bool {
    matches!(op, Op::ConvTranspose(_))
}
