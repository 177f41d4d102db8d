//! Normalisations and softmaxes: BatchNormalization, LayerNormalization,
//! RMSNormalization, InstanceNormalization, GroupNormalization, LRN,
//! LpNormalization, Softmax, LogSoftmax, Hardmax, and RotaryEmbedding.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference. Its cost is in `cost.rs` and
//! its host kernel in `kernels/norm.rs`.

pub(crate) mod infer;
pub(crate) mod onnx;
