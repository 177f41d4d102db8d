//! The epilogue of a fused [`Activation`], in one place for every kernel
//! that applies one: the generic kernels' pass over an output block
//! ([`apply`]: Conv's im2col path, Gemm), the f32 kernels' per-value
//! ([`scalar`]) and per-register ([`lanes512`]) forms.
//!
//! NaN stays NaN, as in the Relu and Clip ops a fusion replaces (and in
//! onnxruntime): `f32::max` and `vmaxps` with the value first would turn
//! it into the bound.

use super::Activation;
use crate::kernels::util::Float;
#[cfg(target_arch = "x86_64")]
use crate::kernels::util::{isa, Isa};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Applies `act` to an output block in place. Selects, not conditional
/// stores: the loop vectorises, and post-conv data (half negative) would
/// mispredict a branch half the time.
#[inline(always)]
pub(crate) fn apply<F: Float>(act: Activation, v: &mut [F]) {
    match act {
        Activation::None => {}
        Activation::Relu => v
            .iter_mut()
            .for_each(|x| *x = if *x < F::ZERO { F::ZERO } else { *x }),
        Activation::Clip { lo, hi } => {
            let (lo, hi) = (F::c(lo as f64), F::c(hi as f64));
            v.iter_mut().for_each(|x| {
                let y = if *x < lo { lo } else { *x };
                *x = if y > hi { hi } else { y };
            });
        }
    }
}

/// Finishes one row of a product's output in place: `y = act(y + r + b)`,
/// the residual `r` and the bias `b` each optional. The generic kernels'
/// epilogue (Conv's GEMM path); compiled for AVX-512 where the CPU has it,
/// as the crate's baseline target would leave these loops at SSE width.
pub(crate) fn finish_row<F: Float>(act: Activation, y: &mut [F], r: Option<&[F]>, b: Option<F>) {
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 {
        // SAFETY: AVX-512F was detected.
        return unsafe { finish_row512(act, y, r, b) };
    }
    finish_row_plain(act, y, r, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn finish_row512<F: Float>(act: Activation, y: &mut [F], r: Option<&[F]>, b: Option<F>) {
    finish_row_plain(act, y, r, b)
}

#[inline(always)]
fn finish_row_plain<F: Float>(act: Activation, y: &mut [F], r: Option<&[F]>, b: Option<F>) {
    match (r, b) {
        (Some(r), Some(b)) => y.iter_mut().zip(r).for_each(|(y, r)| *y = *y + *r + b),
        (Some(r), None) => y.iter_mut().zip(r).for_each(|(y, r)| *y += *r),
        (None, Some(b)) => y.iter_mut().for_each(|y| *y += b),
        (None, None) => {}
    }
    apply(act, y);
}

/// `act` of one value.
#[inline(always)]
pub(crate) fn scalar(act: Activation, v: f32) -> f32 {
    match act {
        Activation::None => v,
        Activation::Relu if v < 0.0 => 0.0,
        Activation::Clip { lo, .. } if v < lo => lo,
        Activation::Clip { hi, .. } if v > hi => hi,
        _ => v,
    }
}

/// `act` of 16 lanes. `vmaxps a, b` returns `b` where either is NaN, so
/// the value goes second.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn lanes512(act: Activation, v: __m512) -> __m512 {
    match act {
        Activation::None => v,
        Activation::Relu => _mm512_max_ps(_mm512_setzero_ps(), v),
        Activation::Clip { lo, hi } => {
            _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form on values below, inside and above the bounds, at them,
    /// infinities and NaN (which stays NaN, as the unfused ops keep it).
    #[test]
    fn every_form_clamps_and_keeps_nan() {
        let vals = [
            -3.0f32,
            -0.0,
            0.0,
            0.2,
            0.5,
            7.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        for act in [
            Activation::None,
            Activation::Relu,
            Activation::Clip { lo: -0.5, hi: 0.5 },
        ] {
            let want: Vec<f64> = vals
                .iter()
                .map(|&v| {
                    let v = v as f64;
                    match act {
                        _ if v.is_nan() => f64::NAN,
                        Activation::None => v,
                        Activation::Relu => v.max(0.0),
                        Activation::Clip { lo, hi } => v.clamp(lo as f64, hi as f64),
                    }
                })
                .collect();
            let mut block = vals.to_vec();
            apply(act, &mut block);
            let one: Vec<f32> = vals.iter().map(|&v| scalar(act, v)).collect();
            let mut got = vec![block, one];
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx512f") {
                let mut lanes = [0f32; 16];
                lanes[..vals.len()].copy_from_slice(&vals);
                // SAFETY: AVX-512F was detected; 16 lanes in and out.
                unsafe {
                    let v = lanes512(act, _mm512_loadu_ps(lanes.as_ptr()));
                    _mm512_storeu_ps(lanes.as_mut_ptr(), v);
                }
                got.push(lanes[..vals.len()].to_vec());
            }
            for g in got {
                for (i, (&g, &w)) in g.iter().zip(&want).enumerate() {
                    assert!(
                        (g.is_nan() && w.is_nan()) || g as f64 == w,
                        "{act:?} of {}: {g}, expected {w}",
                        vals[i]
                    );
                }
            }
        }
    }

    /// The row epilogue adds the residual and the bias, then clamps, on
    /// rows of every length class (vector body and tail), NaN kept.
    #[test]
    fn finish_row_adds_then_activates() {
        for len in [0usize, 1, 15, 16, 17, 100] {
            let y0: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 2.0).collect();
            let mut r: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            if len > 3 {
                r[3] = f32::NAN;
            }
            for act in [
                Activation::None,
                Activation::Relu,
                Activation::Clip { lo: -0.5, hi: 0.5 },
            ] {
                for (res, bias) in [(true, true), (true, false), (false, true), (false, false)] {
                    let mut y = y0.clone();
                    let b = bias.then_some(0.25f32);
                    finish_row(act, &mut y, res.then_some(&r[..]), b);
                    for i in 0..len {
                        let mut v = y0[i] as f64;
                        if res {
                            v += r[i] as f64;
                        }
                        v += b.unwrap_or(0.0) as f64;
                        let w = match act {
                            _ if v.is_nan() => f64::NAN,
                            Activation::None => v,
                            Activation::Relu => v.max(0.0),
                            Activation::Clip { lo, hi } => v.clamp(lo as f64, hi as f64),
                        };
                        let g = y[i] as f64;
                        assert!(
                            (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6,
                            "{act:?} len {len} res {res} bias {bias} at {i}: {g}, expected {w}"
                        );
                    }
                }
            }
        }
    }
}
