//! f32 2-D MaxPool over 2x2 windows with stride 2 and no padding (LeNet,
//! VGG, U-Net's down steps): each output row reads its two input rows
//! once, 32 columns at a time. The rows' maximum is taken lane by lane,
//! then the even and odd columns are gathered into two vectors by one
//! permute each and their maximum is 16 outputs, stored with a mask at a
//! row's end. NaN wins, as in the generic kernel and onnxruntime.
//!
//! The separable loop of `kernel.rs` took 9 µs for LeNet's first pool
//! (6x28x28, one thread) and the padded-plane kernel of `conv/depthwise.rs`
//! about as long: both handle any window, this only the one shape.
//! AVX-512F only ([`fits`]); elsewhere those kernels run.

use crate::kernels::util::{isa, par_for, Isa, SharedMut, PAR_MIN};
use crate::op::Window;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether a 2-D window is 2x2, stride 2, no dilation or padding, every
/// window inside the input, on a CPU that runs the kernel.
pub(super) fn fits(spatial: &[usize], w: &Window) -> bool {
    isa() == Isa::Avx512
        && spatial.len() == 2
        && w.kernel == [2, 2]
        && w.strides == [2, 2]
        && w.dilations == [1, 1]
        && w.pads_begin.iter().chain(&w.pads_end).all(|&p| p == 0)
        && w.output
            .iter()
            .zip(spatial)
            .all(|(&o, &i)| o >= 1 && 2 * o <= i)
}

/// MaxPool of `planes` planes of `spatial` (`[h, w]`) in `x` to the
/// window's output. `None` where the lengths do not fit.
pub(super) fn max_pool(
    planes: usize,
    spatial: &[usize],
    w: &Window,
    x: &[f32],
) -> Option<Vec<f32>> {
    if !fits(spatial, w) {
        return None;
    }
    let (ih, iw, oh, ow) = (spatial[0], spatial[1], w.output[0], w.output[1]);
    let (isz, osz) = (ih * iw, oh * ow);
    if x.len() != planes * isz {
        return None;
    }
    let piece = |r: std::ops::Range<usize>, dst: &dyn Fn(usize) -> *mut f32| {
        for p in r {
            let src = &x[p * isz..(p + 1) * isz];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F (`fits`); `src` is the whole plane and
            // `dst(p)` has the plane's `oh·ow` outputs, written by this
            // piece only.
            unsafe {
                plane512(src, iw, oh, ow, dst(p))
            };
        }
    };
    // SAFETY: each piece stores every output of its planes (`plane512`:
    // the last chunk of each row masked to its end).
    let o = unsafe { planes_out(planes, osz, 4 * osz, piece) };
    Some(o)
}

/// A new output of `planes` planes of `osz` values each, written by
/// `piece(planes, dst)` for ranges of planes split over the current
/// team's threads when there is enough work (`work` per plane); `dst(i)`
/// points at plane `i`'s first value. Shared by the f32 pool kernels.
///
/// # Safety
/// `piece` writes every value of every plane in its range (the output is
/// returned without a fill).
pub(super) unsafe fn planes_out(
    planes: usize,
    osz: usize,
    work: usize,
    piece: impl Fn(std::ops::Range<usize>, &dyn Fn(usize) -> *mut f32) + Sync,
) -> Vec<f32> {
    let total = planes * osz;
    let mut o: Vec<f32> = crate::pool::take(total);
    {
        let out = SharedMut::new(&mut o.spare_capacity_mut()[..total]);
        let dst = |i: usize| out.ptr_at(i * osz) as *mut f32;
        // Planes per piece: enough work to be worth a thread.
        let min = (PAR_MIN / work.max(1)).max(1);
        par_for(planes, min, &|r| piece(r, &dst));
    }
    // SAFETY: every plane was written (the caller's guarantee).
    unsafe { o.set_len(total) };
    o
}

/// `max(a, b)`, NaN where either is.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn nan_max(a: __m512, b: __m512) -> __m512 {
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, b);
    _mm512_mask_add_ps(_mm512_max_ps(a, b), nan, a, b)
}

/// One plane: rows `2y` and `2y + 1` of `src` (`iw` wide) to output row
/// `y` of `dst` (`ow` wide).
///
/// # Safety
/// AVX-512F is available; `src` holds `2·oh` rows of `iw >= 2·ow`
/// values; `dst` is valid for `oh·ow` writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane512(src: &[f32], iw: usize, oh: usize, ow: usize, dst: *mut f32) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mask = |n: usize| -> u16 {
        if n >= 16 {
            u16::MAX
        } else {
            (1u16 << n) - 1
        }
    };
    for y in 0..oh {
        let r0 = src[2 * y * iw..].as_ptr();
        let r1 = src[(2 * y + 1) * iw..].as_ptr();
        let mut x0 = 0;
        while x0 < ow {
            let n = (ow - x0).min(16);
            // Input columns 2·x0 .. 2·(x0 + n): the first 16 and the rest.
            let (lo, hi) = (mask(2 * n), mask((2 * n).saturating_sub(16)));
            // SAFETY: the masked lanes are columns below 2·ow <= iw of
            // rows 2y and 2y + 1 (with no lane, the second pair reads
            // nothing: its address may be past the plane).
            let (a, b) = unsafe {
                (
                    nan_max(
                        _mm512_maskz_loadu_ps(lo, r0.add(2 * x0)),
                        _mm512_maskz_loadu_ps(lo, r1.add(2 * x0)),
                    ),
                    nan_max(
                        _mm512_maskz_loadu_ps(hi, r0.wrapping_add(2 * x0 + 16)),
                        _mm512_maskz_loadu_ps(hi, r1.wrapping_add(2 * x0 + 16)),
                    ),
                )
            };
            let v = nan_max(
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            );
            // SAFETY: outputs y·ow + x0 .. + n are inside the plane.
            unsafe { _mm512_mask_storeu_ps(dst.add(y * ow + x0), mask(n), v) };
            x0 += n;
        }
    }
}
