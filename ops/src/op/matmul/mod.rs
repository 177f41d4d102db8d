//! MatMul and Gemm.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]);
//! `packed.rs` weights packed once at session build and the small-M
//! product that reads them.

#[cfg(test)]
mod act_tests;
pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod grad;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;
pub(crate) mod packed;
