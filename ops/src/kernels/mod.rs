//! Host kernels: the reference semantics of every op, also run by the CPU
//! device. Each op family's kernels are its `op/<family>/kernel.rs`, reached
//! through its `op/<family>/eval.rs` (one line per op, and the family's list
//! of ops that compute in float arithmetic); this module dispatches by
//! [`Op::family`] ([`eval`]), holds no line per op, and keeps the plumbing
//! the kernels share (`util.rs`: input fetching, the strided walker, dtype
//! dispatch).
//!
//! Contract of [`eval`]: `inputs` are positional as in the node (`None` for an
//! omitted optional input); the result has exactly `n_outputs` tensors.
//! Kernels never panic on bad input: shapes, dtypes and attribute values are
//! checked and reported as [`Error`]s (the caller adds the node name).
//! Multi-threaded kernels use the [`team::Team`] current on the calling
//! thread (the CPU device runs its kernels in its own team, sized to its
//! cores), else the rayon pool they are called in, else run serially.
//!
//! Float arithmetic is written for f32 and f64; f16 and bf16 inputs of the
//! arithmetic ops are widened to f32 here, computed, and narrowed back.
//! Data-movement ops work on every dtype.

pub(crate) mod par;
pub mod team;
pub(crate) mod util;
pub(crate) mod vmath;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::{self, conv::kernel as conv, matmul::kernel as matmul, Family, Op};
use crate::tensor::Tensor;

/// Prepares input `slot` of `op`, a weight (a constant the op reads every
/// run), for the op's kernel: MatMul's and Gemm's 2-D f32 B is packed into
/// the small-M kernel's panels (`op/matmul/packed.rs`), the f32 filter of
/// a Conv that takes the blocked product into its row blocks
/// (`op/conv/blocked.rs`), and the packing is attached to the tensor,
/// where [`eval`] finds it. `lhs_shape` is input 0's shape when known at
/// build time: a product with too many rows for the small-M kernel is left
/// to the general GEMM and not packed. Returns whether the tensor now
/// carries a prepared form; ops and inputs with nothing to prepare return
/// `Ok(false)`. Cheap to call again.
pub fn prepare(op: &Op, slot: usize, weight: &Tensor, lhs_shape: Option<&[usize]>) -> Result<bool> {
    let rows = |trans_a: bool| {
        lhs_shape.map(|s| match (s.len(), trans_a) {
            (0, _) => 1,
            (_, true) => s.get(1).copied().unwrap_or(1),
            (_, false) if s.len() == 2 => s[0],
            _ => s[..s.len() - 1].iter().product(),
        })
    };
    match op {
        Op::MatMul if slot == 1 => matmul::prepare_b(weight, false, rows(false)),
        Op::Gemm {
            trans_a, trans_b, ..
        } if slot == 1 => matmul::prepare_b(weight, *trans_b, rows(*trans_a)),
        Op::Conv(a) if slot == 1 => conv::prepare_filter(weight, a, lhs_shape),
        _ => Ok(false),
    }
}

/// Multiply-adds (products, convolutions) or elements (every other op) one
/// run of `op` on these inputs does, estimated from the input shapes alone
/// (cheap: no allocation). A device decides from it whether an op is worth
/// handing to its thread pool; the flops of the cost model are
/// [`crate::cost::op_cost`]'s.
///
/// A product with few rows is counted as at least [`STREAM_WEIGHT`] units
/// per element of B: its time is streaming the weight, and two cores
/// each streaming their half of the panels (from their own L2 on the next
/// run) beat one. An MLP at batch 1 (784x512, 512x512 weights) ran at
/// 39 µs on one thread and at two; with its two layers split, 24 µs
/// (onnxruntime at two threads: 28 µs).
pub fn parallel_work(op: &Op, inputs: &[Option<&Tensor>]) -> usize {
    let elems = || inputs.iter().flatten().map(|t| t.len()).sum();
    let (Some(a), Some(b)) = (
        inputs.first().copied().flatten(),
        inputs.get(1).copied().flatten(),
    ) else {
        return elems();
    };
    let last = |t: &Tensor| t.shape().last().copied().unwrap_or(1);
    match op {
        // [.., m, k] x [.., k, n]: a.len() * n (B batched like A).
        Op::MatMul if b.rank() >= 2 => a
            .len()
            .saturating_mul(last(b))
            .max(b.len().saturating_mul(STREAM_WEIGHT)),
        Op::Gemm { trans_b, .. } if b.rank() == 2 => {
            let n = if *trans_b { b.shape()[0] } else { b.shape()[1] };
            a.len()
                .saturating_mul(n)
                .max(b.len().saturating_mul(STREAM_WEIGHT))
        }
        // Output pixels (taken as the input's) x weights per pixel.
        Op::Conv(_) if a.rank() > 2 && a.shape()[1] > 0 => (a.len() / a.shape()[1])
            .saturating_mul(b.len())
            .max(elems()),
        _ => elems(),
    }
}

/// Work units per weight element of a product (see [`parallel_work`]).
const STREAM_WEIGHT: usize = 8;

/// Whether `op`'s host kernel may split its work over the threads of the
/// pool it runs in. A device with several threads hands only these ops to
/// its pool: for the rest the hand-off is pure cost (a worker's wake-up
/// and the caller's, ~20 µs each way here). Families answer for their own
/// ops; a family that does not is taken to use threads.
pub fn uses_threads(op: &Op) -> bool {
    match op.family() {
        Family::Movement => op::movement::eval::uses_threads(op),
        _ => true,
    }
}

/// Whether `op` does only a few cycles of work per element (element-wise
/// arithmetic, ReLU, inference BatchNormalization), so that a device
/// should split it over threads only for large tensors.
pub fn cheap_per_element(op: &Op) -> bool {
    match op.family() {
        Family::Elementwise => op::elementwise::eval::cheap(op),
        Family::Norm => matches!(op, Op::BatchNorm { .. }),
        _ => false,
    }
}

/// Evaluates `op` on host tensors.
pub fn eval(op: &Op, inputs: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
    if let Some(dt) = half_input(op, inputs) {
        let wide: Vec<Option<Tensor>> = inputs
            .iter()
            .map(|t| {
                t.map(|t| {
                    if t.dtype() == dt {
                        t.cast(DType::F32)
                    } else {
                        t.clone()
                    }
                })
            })
            .collect();
        let refs: Vec<Option<&Tensor>> = wide.iter().map(|t| t.as_ref()).collect();
        let outs = eval_native(op, &refs, n_outputs)?;
        return Ok(outs
            .into_iter()
            .map(|t| {
                if t.dtype() == DType::F32 {
                    t.cast(dt)
                } else {
                    t
                }
            })
            .collect());
    }
    eval_native(op, inputs, n_outputs)
}

/// The f16/bf16 dtype of input 0 when `op` computes in float arithmetic.
fn half_input(op: &Op, inputs: &[Option<&Tensor>]) -> Option<DType> {
    let dt = inputs.first().copied().flatten()?.dtype();
    if dt != DType::F16 && dt != DType::BF16 {
        return None;
    }
    let arith = match op.family() {
        Family::Elementwise => op::elementwise::eval::widens_half(op),
        Family::MatMul => op::matmul::eval::widens_half(op),
        Family::Norm => op::norm::eval::widens_half(op),
        Family::Reduce => op::reduce::eval::widens_half(op),
        Family::Conv => op::conv::eval::widens_half(op),
        Family::Pool => op::pool::eval::widens_half(op),
        Family::Index => op::index::eval::widens_half(op),
        Family::Loss => op::loss::eval::widens_half(op),
        Family::Attention => op::attention::eval::widens_half(op),
        Family::Einsum => op::einsum::eval::widens_half(op),
        Family::Resize => op::resize::eval::widens_half(op),
        Family::Misc => op::misc::eval::widens_half(op),
        _ => false,
    };
    arith.then_some(dt)
}

fn eval_native(op: &Op, inputs: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
    let mut outs = match op.family() {
        Family::Elementwise => op::elementwise::eval::eval(op, inputs, n_outputs),
        Family::Movement => op::movement::eval::eval(op, inputs, n_outputs),
        Family::Reduce => op::reduce::eval::eval(op, inputs, n_outputs),
        Family::MatMul => op::matmul::eval::eval(op, inputs, n_outputs),
        Family::Norm => op::norm::eval::eval(op, inputs, n_outputs),
        Family::Conv => op::conv::eval::eval(op, inputs, n_outputs),
        Family::Pool => op::pool::eval::eval(op, inputs, n_outputs),
        Family::Index => op::index::eval::eval(op, inputs, n_outputs),
        Family::Loss => op::loss::eval::eval(op, inputs, n_outputs),
        // FlexAttention's score modifiers run through this dispatcher.
        Family::Attention => op::attention::eval::eval(op, inputs, n_outputs, eval),
        Family::Resize => op::resize::eval::eval(op, inputs, n_outputs),
        Family::Einsum => op::einsum::eval::eval(op, inputs, n_outputs),
        Family::Misc => op::misc::eval::eval(op, inputs, n_outputs),
        Family::Rnn => op::rnn::eval::eval(op, inputs, n_outputs),
        Family::Signal => op::signal::eval::eval(op, inputs, n_outputs),
        Family::Seq => op::seq::eval::eval(op, inputs, n_outputs),
        Family::Quant => op::quant::eval::eval(op, inputs, n_outputs),
        Family::Optim => op::optim::eval::eval(op, inputs, n_outputs),
        Family::Ml => op::ml::eval::eval(op, inputs, n_outputs),
        // Control flow runs its bodies through this dispatcher.
        Family::Control => op::control::eval::eval(op, inputs, n_outputs, eval),
    }?;
    if outs.len() < n_outputs {
        return Err(Error::msg(format!(
            "{} produces {} output(s), the node asks for {}",
            op.name(),
            outs.len(),
            n_outputs
        )));
    }
    outs.truncate(n_outputs);
    Ok(outs)
}
