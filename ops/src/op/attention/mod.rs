//! Attention (opset 23+) and FlexAttention (`ai.onnx.preview`, whose
//! score and probability modifiers are subgraphs run by the host
//! interpreter of [`crate::op::control`]; kernel in `flex.rs`).
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod flex;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;

/// Attention attributes (opset 23+).
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionAttrs {
    /// Mask keys after each query's position.
    pub is_causal: bool,
    /// Heads of 3-D Q.
    pub q_num_heads: Option<usize>,
    /// Heads of 3-D K and V.
    pub kv_num_heads: Option<usize>,
    /// Logit scale; default `1 / sqrt(head_size)`.
    pub scale: Option<f32>,
    /// `softcap * tanh(logits / softcap)` when positive.
    pub softcap: f32,
    /// What the optional fourth output holds: 0 or 1 the (softcapped)
    /// logits, 2 the logits plus mask, 3 the probabilities.
    pub qk_output_mode: i64,
    /// Keys at most this far before the query (-1: unbounded).
    pub left_window: i64,
    /// Keys at most this far after the query (-1: unbounded).
    pub right_window: i64,
}

impl Default for AttentionAttrs {
    fn default() -> Self {
        AttentionAttrs {
            is_causal: false,
            q_num_heads: None,
            kv_num_heads: None,
            scale: None,
            softcap: 0.0,
            qk_output_mode: 0,
            left_window: -1,
            right_window: -1,
        }
    }
}

/// FlexAttention attributes (`ai.onnx.preview` opset 1).
#[derive(Clone, Debug, PartialEq)]
pub struct FlexAttrs {
    /// Logit scale; default `1 / sqrt(head_size)`.
    pub scale: Option<f32>,
    /// Maps the scores `[B, H, L, S]` (in the softmax dtype) before the
    /// softmax; its captures follow Q, K, V among the node's inputs.
    pub score_mod: Option<crate::op::control::Body>,
    /// Maps the probabilities after the softmax; its captures follow
    /// `score_mod`'s.
    pub prob_mod: Option<crate::op::control::Body>,
    /// The dtype of the softmax and of the product with V; default f32
    /// for f16, bf16 and f32 inputs, f64 for f64.
    pub softmax_precision: Option<crate::dtype::DType>,
}
