//! Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
//!
//! This module holds the family's attributes and, in `infer.rs`, its shape
//! and type inference. Its ONNX mapping is in `onnx/convert.rs`, its cost
//! in `cost.rs` and its host kernel in `kernels/loss.rs`.

pub(crate) mod infer;

/// Loss reductions (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossReduction {
    None,
    Sum,
    Mean,
}
