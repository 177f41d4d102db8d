//! The pool family's host-kernel dispatch: one line per op, reached from
//! [`crate::kernels::eval`] through [`crate::op::Op::family`].

use super::grad;
use super::kernel;
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::one;
use crate::op::common::other_family;
use crate::op::Op;
use crate::tensor::Tensor;

/// Runs `op`, one of this family's ops, on host tensors (the contract of
/// [`crate::kernels::eval`]; the caller checks the output count).
pub(crate) fn eval(op: &Op, inputs: &[Option<&Tensor>], _n_outputs: usize) -> Result<Vec<Tensor>> {
    match op {
        Op::PoolGrad { max, attrs } => one(grad::pool_grad(attrs, *max, inputs)),
        Op::MaxPool(p) => match inputs.first().copied().flatten() {
            // Integer max pooling is exact through f64.
            Some(x) if x.dtype().is_int() => {
                let wide = x.cast(DType::F64);
                let mut rest: Vec<Option<&Tensor>> = inputs.to_vec();
                rest[0] = Some(&wide);
                one(kernel::pool(p, true, &rest).map(|t| t.cast(x.dtype())))
            }
            _ => one(kernel::pool(p, true, inputs)),
        },
        Op::AveragePool(p) => one(kernel::pool(p, false, inputs)),
        Op::GlobalAveragePool => one(kernel::global_pool(false, inputs)),
        Op::GlobalMaxPool => one(kernel::global_pool(true, inputs)),
        Op::LpPool { pool, p } => one(kernel::lp_pool(pool, *p, inputs)),
        Op::MaxUnpool {
            kernel_shape,
            strides,
            pads,
        } => one(kernel::max_unpool(kernel_shape, strides, pads, inputs)),
        Op::MaxPoolIndices { pool, column_major } => {
            super::indices::max_pool_indices(pool, *column_major, inputs)
        }
        Op::RoiAlign(a) => one(super::roi::roi_align(a, inputs)),
        _ => Err(other_family(op, "pool")),
    }
}

/// True for the ops of this family that compute in float arithmetic: their
/// f16/bf16 inputs are widened to f32 by [`crate::kernels::eval`] and the
/// results narrowed back.
pub(crate) fn widens_half(op: &Op) -> bool {
    matches!(
        op,
        Op::MaxPool(_)
            | Op::AveragePool(_)
            | Op::GlobalAveragePool
            | Op::GlobalMaxPool
            | Op::LpPool { .. }
            // The gradient too (bf16 training).
            | Op::PoolGrad { .. }
    )
}
