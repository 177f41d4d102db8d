//! Reductions (ReduceSum, ReduceMean, ..) and ArgMax / ArgMin.
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

/// Reduction kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    /// Sum of absolute values.
    L1,
    /// Square root of the sum of squares.
    L2,
    /// Log of the sum.
    LogSum,
    /// Log of the sum of exponentials.
    LogSumExp,
    /// Sum of squares.
    SumSquare,
}
