//! Sequence-model ops: LinearAttention, CausalConvWithState, TensorScatter
//! and SwiGLU.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference. Its cost is in `cost.rs` and
//! its host kernel in `kernels/seq.rs`.

pub(crate) mod infer;
pub(crate) mod onnx;

/// LinearAttention state update rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinearAttentionRule {
    Linear,
    Gated,
    Delta,
    GatedDelta,
}
