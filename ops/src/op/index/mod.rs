//! Indexing ops: GatherElements, GatherND, ScatterElements, ScatterND,
//! Trilu, CumSum / CumProd, TopK, OneHot, NonZero, Compress, Tile,
//! DepthToSpace / SpaceToDepth, EyeLike and Pad.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;
#[cfg(test)]
mod tests;

/// How ScatterElements / ScatterND combine an update with the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScatterReduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

/// Pad modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}
