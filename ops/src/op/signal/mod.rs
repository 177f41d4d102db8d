//! Signal and detection ops: DFT, NonMaxSuppression, Col2Im, and the
//! integer matrix products QLinearMatMul and MatMulInteger.
//!
//! This module holds the family's attributes and, in `infer.rs`, its shape
//! and type inference. Its ONNX mapping is in `onnx/convert.rs`, its cost
//! in `cost.rs` and its host kernel in `kernels/signal.rs`.

pub(crate) mod infer;
