//! Optimizer update rules of the `ai.onnx.preview.training` domain
//! (opset 1): Adagrad, Adam and Momentum (standard and Nesterov). Each
//! takes the learning rate R and the update count T (scalars), then n
//! tensors X, n gradients G and the n optimizer states per state kind,
//! and returns the updated X's followed by the updated states.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;

/// An optimizer's update rule with its attributes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `H += G'^2; X -= R / (1 + T * decay_factor) * G' / (sqrt(H) + epsilon)`
    /// with `G' = G + norm_coefficient * X`; state H.
    Adagrad {
        decay_factor: f32,
        epsilon: f32,
        norm_coefficient: f32,
    },
    /// Adam with bias correction when `T > 0`; states V (momentum) and H
    /// (second moment); the result is scaled by `1 - norm_coefficient_post`.
    Adam {
        alpha: f32,
        beta: f32,
        epsilon: f32,
        norm_coefficient: f32,
        norm_coefficient_post: f32,
    },
    /// SGD with momentum (`nesterov`: Nesterov's variant); state V; the
    /// gradient's coefficient is 1 at `T = 0`, then `beta`.
    Momentum {
        alpha: f32,
        beta: f32,
        nesterov: bool,
        norm_coefficient: f32,
    },
}

impl Optimizer {
    /// The ONNX op type.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Adagrad { .. } => "Adagrad",
            Optimizer::Adam { .. } => "Adam",
            Optimizer::Momentum { .. } => "Momentum",
        }
    }

    /// State tensors per optimized tensor (H; V and H; V).
    pub fn states(&self) -> usize {
        match self {
            Optimizer::Adam { .. } => 2,
            _ => 1,
        }
    }
}
