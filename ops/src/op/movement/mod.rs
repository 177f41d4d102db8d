//! Shape and data-movement ops: Reshape, Flatten, Squeeze, Unsqueeze,
//! Transpose, Concat, Split, Slice, Gather, Expand, Shape, Size, Range,
//! Identity, Dropout and ConstantOfShape.
//!
//! This module holds the family's attributes and, in `infer.rs`, its shape
//! and type inference. Its ONNX mapping is in `onnx/convert.rs`, its cost
//! in `cost.rs` and its host kernel in `kernels/shape.rs`.

pub(crate) mod infer;
