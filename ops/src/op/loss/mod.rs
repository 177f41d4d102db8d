//! Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference. Its cost is in `cost.rs` and
//! its host kernel in `kernels/loss.rs`.

pub(crate) mod infer;
pub(crate) mod onnx;

/// Loss reductions (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossReduction {
    None,
    Sum,
    Mean,
}
