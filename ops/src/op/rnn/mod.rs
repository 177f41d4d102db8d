//! Recurrent layers: RNN, GRU and LSTM.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;

/// RNN, GRU or LSTM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RnnKind {
    Rnn,
    Gru,
    Lstm,
}

/// Activations of the recurrent layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RnnAct {
    Sigmoid,
    Tanh,
    Relu,
}

/// Recurrent layer attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnAttrs {
    pub kind: RnnKind,
    pub hidden: usize,
    /// 0 forward, 1 reverse, 2 bidirectional.
    pub direction: u8,
    /// `layout = 1`: X and Y batch-major.
    pub batch_major: bool,
    pub clip: Option<f32>,
    /// f, g, h (RNN uses f; GRU f and g).
    pub acts: [RnnAct; 3],
    pub linear_before_reset: bool,
    pub input_forget: bool,
}
