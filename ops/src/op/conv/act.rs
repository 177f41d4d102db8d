//! The generic kernels' epilogue for a fused [`Activation`]: Conv's im2col
//! path (`kernel.rs`) and Gemm (`op/matmul/kernel.rs`). The f32 kernels
//! apply it in registers before their stores.

use super::Activation;
use crate::kernels::util::Float;

/// Applies `act` to an output block in place.
pub(crate) fn apply<F: Float>(act: Activation, v: &mut [F]) {
    match act {
        Activation::None => {}
        Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(F::ZERO)),
        Activation::Clip { lo, hi } => {
            let (lo, nhi) = (F::c(lo as f64), F::c(-(hi as f64)));
            // min(x, hi) = -max(-x, -hi)
            v.iter_mut().for_each(|x| *x = -((-x.max(lo)).max(nhi)));
        }
    }
}
