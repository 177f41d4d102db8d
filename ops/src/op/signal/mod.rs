//! Signal and detection ops: DFT, NonMaxSuppression, Col2Im, and the
//! integer matrix products QLinearMatMul and MatMulInteger.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference. Its cost is in `cost.rs` and
//! its host kernel in `kernels/signal.rs`.

pub(crate) mod infer;
pub(crate) mod onnx;
