//! Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod grad;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;

/// Loss reductions (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossReduction {
    None,
    Sum,
    Mean,
}
