//! The signal family's host-kernel dispatch: one line per op, reached from
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
        Op::Dft {
            axis,
            inverse,
            onesided,
        } => one(kernel::dft(*axis, *inverse, *onesided, inputs)),
        Op::NonMaxSuppression { center_point_box } => one(kernel::nms(*center_point_box, inputs)),
        Op::QLinearMatMul => one(kernel::qlinear_matmul(inputs)),
        Op::Col2Im {
            dilations,
            pads,
            strides,
        } => one(kernel::col2im(dilations, pads, strides, inputs)),
        Op::MatMulInteger => one(kernel::matmul_integer(inputs)),
        Op::Stft { onesided } => one(super::stft::stft(*onesided, inputs)),
        Op::MelWeightMatrix { dtype } => one(super::stft::mel_weight_matrix(*dtype, inputs)),
        _ => Err(other_family(op, "signal")),
    }
}
