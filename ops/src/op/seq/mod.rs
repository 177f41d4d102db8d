//! Sequence-model ops: LinearAttention, CausalConvWithState, TensorScatter
//! and SwiGLU.
//!
//! This module holds the family's attributes and, in `infer.rs`, its shape
//! and type inference. Its ONNX mapping is in `onnx/convert.rs`, its cost
//! in `cost.rs` and its host kernel in `kernels/seq.rs`.

pub(crate) mod infer;

/// LinearAttention state update rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinearAttentionRule {
    Linear,
    Gated,
    Delta,
    GatedDelta,
}
