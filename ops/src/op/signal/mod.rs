//! Signal and detection ops: DFT, STFT and MelWeightMatrix (`stft.rs`),
//! NonMaxSuppression, Col2Im, and the
//! integer matrix products QLinearMatMul and MatMulInteger.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;
pub(crate) mod stft;
