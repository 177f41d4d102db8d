//! Shape and data-movement ops: Reshape, Flatten, Squeeze, Unsqueeze,
//! Transpose, Concat, Split, Slice, Gather, Expand, Shape, Size, Range,
//! Identity, Dropout and ConstantOfShape.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

pub(crate) mod concat;
pub(crate) mod cost;
pub(crate) mod dropout;
pub(crate) mod eval;
pub(crate) mod grad;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;
