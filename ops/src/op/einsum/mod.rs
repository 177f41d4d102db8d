//! Einsum.
//!
//! This module holds the family's attributes and, in `infer.rs`, its shape
//! and type inference. Its ONNX mapping is in `onnx/convert.rs`, its cost
//! in `cost.rs` and its host kernel in `kernels/einsum.rs`.

pub(crate) mod infer;
