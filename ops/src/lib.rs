//! # hetflow-ops
//!
//! Everything about a computation that does not depend on where it runs:
//! [`Tensor`] and [`DType`], the graph IR ([`Graph`], [`Node`], [`Fact`]),
//! the op set ([`Op`], [`op`]), shape arithmetic ([`shape`]), ONNX import
//! ([`onnx`]), `.npy` I/O ([`npy`]), and the host kernels that define each
//! op's semantics.
//!
//! Each op family is one folder, `op/<family>/`, holding its attributes,
//! ONNX mapping, shape and type inference, cost and host kernel. The
//! modules that run those for every op hold no op's rules: [`infer`]
//! (inference and constant folding), [`cost`], [`kernels`] (the host-kernel
//! dispatcher) and the ONNX importer. docs/adding-an-op.md walks through it.
//!
//! The host kernels are the reference semantics of every op and double as
//! the CPU device's kernels (tract's core works the same way): the CPU
//! backend in `hetflow-devices` runs them on its own bound thread pool, with
//! the tuned GEMM (`gemm` crate) under MatMul, Gemm and Conv. Other backends
//! (OpenCL, CUDA, TPU) bring their own kernels and are checked against these.

pub mod alloc;
pub mod autodiff;
pub mod cost;
pub mod dtype;
pub mod error;
pub mod files;
pub mod graph;
pub mod infer;
pub mod kernels;
pub mod narrow;
pub mod npy;
pub mod onnx;
pub mod op;
pub mod optimize;
pub mod pool;
pub mod rng;
pub mod shape;
pub mod specialize;
pub mod tensor;

pub use alloc::AlignedAlloc;
pub use cost::Cost;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use graph::{Dim, Fact, Graph, Node, NodeId, Value, ValueId};
pub use op::Op;
pub use tensor::{Data, Storable, Tensor};
