//! The TPU's op table: which ops the device refuses at plan time, and
//! which unit runs each of the others. The matrix unit runs MatMul, Gemm
//! and Conv (bf16 operands, f32 accumulation, `matrix.rs`); the vector
//! unit runs every other op through the reference host kernel of
//! `hetflow-ops`, in f32 and the integer dtypes. So an op new to the
//! host runs here with no line at all; it needs one only to be refused
//! (a data-dependent shape, addressing the units lack) or to go to the
//! matrix unit.
//!
//! A leaf of the backend, like `codes.rs` in the others: `program.rs`
//! (compiling and running executables) and the [`crate::Device`]
//! implementation in `mod.rs` read it; it imports nothing of the backend.

use hetflow_ops::op::ConvAttrs;
use hetflow_ops::Op;

/// Whether the device runs `op` at all (plan-time check).
pub fn supports(op: &Op) -> Result<(), String> {
    crate::cpu_only(op)?;
    match op {
        Op::Gather { .. } => Err(
            "gathers need data-dependent addressing, which the matrix and vector units lack; \
             place Gather on a CPU"
                .into(),
        ),
        Op::Range
        | Op::ConstantOfShape { .. }
        | Op::NonZero
        | Op::NonMaxSuppression { .. }
        | Op::Unique { .. }
        | Op::Compress { .. }
        | Op::ImageDecoder { .. } => Err(format!(
            "{} has a data-dependent (dynamic) output shape; the device runs static shapes only",
            op.name()
        )),
        _ => Ok(()),
    }
}

/// The unit and program that run an op.
#[derive(Clone, Debug)]
pub(crate) enum Program {
    /// Matrix unit: a (batched) matrix product.
    MatMul,
    /// Matrix unit: a GEMM with its alpha, beta and C epilogue.
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    /// Matrix unit: im2col and a GEMM per image and group.
    Conv(ConvAttrs),
    /// Vector unit: the host kernel.
    Vector,
}

/// The program of a supported op.
pub(crate) fn unit(op: &Op) -> Program {
    match op {
        Op::MatMul => Program::MatMul,
        // A fused activation (CPU-only sessions) is not run here.
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
            act: hetflow_ops::op::Activation::None,
        } => Program::Gemm {
            alpha: *alpha,
            beta: *beta,
            trans_a: *trans_a,
            trans_b: *trans_b,
        },
        Op::Conv(a) => Program::Conv(a.clone()),
        _ => Program::Vector,
    }
}
