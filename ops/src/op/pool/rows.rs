//! f32 2-D MaxPool (and AveragePool, [`avg_pool`]) in two passes, for
//! windows with column stride 1 or 2
//! and no dilation: the 3x3 / 2 pools of SqueezeNet, ResNet, DenseNet and
//! the Inception nets, 3x3 / 1 pools, any padding and ceil mode.
//!
//! Per plane, the horizontal maxima of each input row are taken 16
//! outputs at a time: for each of the `kw` kernel columns one unaligned
//! load (stride 1) or two loads and a permute that gathers every second
//! column (stride 2), then a max. The loads are masked to the row, -inf
//! in the lanes a window reaches past it (padding, ceil mode). The vertical pass
//! takes, for each output row, the max of the `kh` rows of horizontal
//! maxima its window covers (rows past the input are skipped: padding is
//! -inf, and a window with no input cell gives -inf, as in the generic
//! kernel). NaN wins, as there and in onnxruntime.
//!
//! The padded, phase-split planes of `conv/depthwise.rs` that this
//! replaces for these windows gathered every second column with a scalar
//! loop while filling the planes. SqueezeNet's three pools at one thread
//! (trace spans, `hetflow bench --trace`): 750 → 330-420 µs (64x111x111),
//! 367 → 160-190 (128x55x55), 214 → 100 (256x27x27); onnxruntime's NCHWc
//! pools take 132, 39 and 17 µs in its profile, so there is more to win
//! (a channel-blocked layout; small planes spend most of their time on
//! edges). AVX-512F only ([`fits`]); elsewhere the generic kernel runs.

use crate::kernels::util::{inside16, isa, Isa};
use crate::op::Window;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Lanes per chunk.
const L: usize = 16;

/// Whether a window takes this kernel: 2-D, no dilation, column stride 1
/// or 2, on a CPU with AVX-512F.
pub(super) fn fits(spatial: &[usize], w: &Window) -> bool {
    isa() == Isa::Avx512
        && spatial.len() == 2
        && !spatial.contains(&0)
        && !w.output.contains(&0)
        && w.dilations.iter().all(|&d| d == 1)
        && matches!(w.strides[1], 1 | 2)
        && w.strides[0] >= 1
        && w.kernel.iter().all(|&k| k >= 1)
}

/// The sizes of one plane's passes.
struct Plan {
    ih: usize,
    iw: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    /// Chunks per output row; the horizontal maxima rows are this many
    /// chunks wide.
    chunks: usize,
    /// Per chunk and kernel column, the lanes of its (first, second)
    /// load that lie inside the row: the same for every row. Masked
    /// lanes are not read (they hold -inf), so a load may start outside.
    masks: Vec<[u16; 2]>,
}

impl Plan {
    /// The input rows `r0..r1` under output row `y`'s window (padding
    /// rows left out).
    fn window_rows(&self, y: usize) -> (usize, usize) {
        let top = (y * self.sh) as isize - self.ph as isize;
        let r1 = ((top + self.kh as isize).max(0) as usize).min(self.ih);
        (top.max(0) as usize, r1)
    }

    fn new(spatial: &[usize], w: &Window) -> Plan {
        let chunks = w.output[1].div_ceil(L);
        let (sw, pw, iw) = (w.strides[1], w.pads_begin[1], spatial[1]);
        let mut masks = Vec::with_capacity(chunks * w.kernel[1]);
        for c in 0..chunks {
            for j in 0..w.kernel[1] {
                let o = (c * L * sw + j) as isize - pw as isize;
                masks.push([inside16(o, iw), inside16(o + L as isize, iw)]);
            }
        }
        Plan {
            ih: spatial[0],
            iw: spatial[1],
            oh: w.output[0],
            ow: w.output[1],
            kh: w.kernel[0],
            kw: w.kernel[1],
            sh: w.strides[0],
            sw,
            ph: w.pads_begin[0],
            pw: w.pads_begin[1],
            chunks,
            masks,
        }
    }
    fn hmax_len(&self) -> usize {
        self.ih * self.chunks * L
    }
}

/// MaxPool of `planes` planes of `spatial` (`[h, w]`) in `x` over `w`.
/// `None` where the kernel does not apply or the lengths do not fit.
pub(super) fn max_pool(
    planes: usize,
    spatial: &[usize],
    w: &Window,
    x: &[f32],
) -> Option<Vec<f32>> {
    // SAFETY (for the plane function): AVX-512F (`fits`, checked by
    // `two_pass`); the maxima have the plan's length, `dst` the plane's
    // `oh·ow` outputs, written by this piece only.
    two_pass(planes, spatial, w, x, |p, src, hmax, dst| {
        #[cfg(target_arch = "x86_64")]
        unsafe {
            plane512(p, src, hmax, dst)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (p, src, hmax, dst);
    })
}

/// The driver of both pools: a plan for `w`, then `plane(plan, input
/// plane, row scratch, output)` for every plane, over the team, into an
/// output written only by those calls. `None` where the kernel does not
/// apply or `x` does not hold `planes` planes.
fn two_pass(
    planes: usize,
    spatial: &[usize],
    w: &Window,
    x: &[f32],
    plane: impl Fn(&Plan, &[f32], &mut [f32], *mut f32) + Sync,
) -> Option<Vec<f32>> {
    if !fits(spatial, w) {
        return None;
    }
    let p = Plan::new(spatial, w);
    let (isz, osz) = (p.ih * p.iw, p.oh * p.ow);
    if x.len() != planes * isz {
        return None;
    }
    let piece = |r: std::ops::Range<usize>, dst: &dyn Fn(usize) -> *mut f32| {
        let mut rows = crate::pool::take::<f32>(p.hmax_len());
        rows.resize(p.hmax_len(), 0.0);
        for i in r {
            plane(&p, &x[i * isz..(i + 1) * isz], &mut rows, dst(i));
        }
        crate::pool::give(rows);
    };
    // SAFETY: each piece stores every output of its planes (both plane
    // functions store each row's chunks, the last one masked to its end).
    let o = unsafe { super::pair::planes_out(planes, osz, osz * p.kh * p.kw, piece) };
    Some(o)
}

/// AveragePool of `planes` planes of `spatial` in `x` over `w`, the same
/// two passes with sums (lanes outside the row read as 0), each output
/// then multiplied by `inv`, one over its count per output position of
/// a plane (row-major; the generic kernel's count rules). `None` where
/// the kernel does not apply or the lengths do not fit. The generic
/// separable loop took 0.33-0.48 ms on a 256x28x28 3x3 / 1 pool of
/// Inception-v2 at one thread, onnxruntime 0.06 ms.
pub(super) fn avg_pool(
    planes: usize,
    spatial: &[usize],
    w: &Window,
    x: &[f32],
    inv: &[f32],
) -> Option<Vec<f32>> {
    if inv.len() != w.output.iter().product::<usize>() {
        return None;
    }
    // SAFETY (for the plane function): AVX-512F (`fits`, checked by
    // `two_pass`); the sums have the plan's length, `inv` and `dst` the
    // plane's `oh·ow`, written by this piece only.
    two_pass(planes, spatial, w, x, |p, src, sums, dst| {
        #[cfg(target_arch = "x86_64")]
        unsafe {
            plane512_avg(p, src, sums, inv, dst)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (p, src, sums, inv, dst);
    })
}

/// [`plane512`] for an average: horizontal sums of each input row, then
/// the vertical sums times `inv`.
///
/// # Safety
/// As for [`plane512`]; `inv` has `oh·ow` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane512_avg(p: &Plan, src: &[f32], sums: &mut [f32], inv: &[f32], dst: *mut f32) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let hw = p.chunks * L;
    for (y, row) in src.chunks_exact(p.iw).enumerate() {
        let rp = row.as_ptr();
        let hp = sums[y * hw..(y + 1) * hw].as_mut_ptr();
        for c in 0..p.chunks {
            let base = (c * L * p.sw) as isize - p.pw as isize;
            let mut acc = _mm512_setzero_ps();
            let masks = &p.masks[c * p.kw..(c + 1) * p.kw];
            for (j, &[ma, mb]) in masks.iter().enumerate() {
                let o = rp.wrapping_offset(base + j as isize);
                // SAFETY: the masks hold the lanes inside the row.
                let v = unsafe {
                    if p.sw == 1 {
                        _mm512_maskz_loadu_ps(ma, o)
                    } else {
                        let a = _mm512_maskz_loadu_ps(ma, o);
                        let b = _mm512_maskz_loadu_ps(mb, o.wrapping_add(L));
                        _mm512_permutex2var_ps(a, even, b)
                    }
                };
                acc = _mm512_add_ps(acc, v);
            }
            // SAFETY: chunk c of row y of the sums.
            unsafe { _mm512_storeu_ps(hp.add(c * L), acc) };
        }
    }
    for y in 0..p.oh {
        let (r0, r1) = p.window_rows(y);
        for c in 0..p.chunks {
            let mut acc = _mm512_setzero_ps();
            for r in r0..r1 {
                // SAFETY: row r < ih of the sums, chunk c.
                let v = unsafe { _mm512_loadu_ps(sums.as_ptr().add(r * hw + c * L)) };
                acc = _mm512_add_ps(acc, v);
            }
            let n = L.min(p.ow - c * L);
            let mask = if n == L { u16::MAX } else { (1u16 << n) - 1 };
            let o = y * p.ow + c * L;
            // SAFETY: outputs (and reciprocals) o .. o + n are inside
            // the plane.
            unsafe {
                let r = _mm512_maskz_loadu_ps(mask, inv.as_ptr().add(o));
                _mm512_mask_storeu_ps(dst.add(o), mask, _mm512_mul_ps(acc, r));
            }
        }
    }
}

/// One step of a NaN-propagating max: `acc` takes the max of the
/// ordered values, `bits` the largest `|v|` bit pattern seen (above
/// +inf's only for a NaN). Both are one-cycle vector ops with no mask
/// register on the chain: collecting a NaN mask per step (compare, move
/// the mask out, or) made the mask moves most of the kernel's time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn fold(acc: __m512, bits: __m512i, v: __m512) -> (__m512, __m512i) {
    let abs = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fff_ffff));
    (_mm512_max_ps(acc, v), _mm512_max_epu32(bits, abs))
}

/// The folded max, NaN in the lanes where a NaN was seen.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn settle(acc: __m512, bits: __m512i) -> __m512 {
    let nan = _mm512_cmpgt_epu32_mask(bits, _mm512_set1_epi32(0x7f80_0000));
    _mm512_mask_mov_ps(acc, nan, _mm512_set1_ps(f32::NAN))
}

/// One plane: horizontal maxima of every input row into `hmax`, then the
/// vertical maxima into `dst`. The horizontal pass reads the rows in
/// place with masked loads (-inf in the lanes outside the row), their
/// masks computed once per plan.
///
/// # Safety
/// AVX-512F is available; `src` is one `ih × iw` plane, `hmax` has the
/// plan's length, `dst` is valid for `oh·ow` writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane512(p: &Plan, src: &[f32], hmax: &mut [f32], dst: *mut f32) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let hw = p.chunks * L;
    for (y, row) in src.chunks_exact(p.iw).enumerate() {
        let rp = row.as_ptr();
        let hp = hmax[y * hw..(y + 1) * hw].as_mut_ptr();
        for c in 0..p.chunks {
            let base = (c * L * p.sw) as isize - p.pw as isize;
            let (mut acc, mut bits) = (ninf, _mm512_setzero_si512());
            let masks = &p.masks[c * p.kw..(c + 1) * p.kw];
            for (j, &[ma, mb]) in masks.iter().enumerate() {
                let o = rp.wrapping_offset(base + j as isize);
                // SAFETY: the masks hold the lanes inside the row.
                let v = unsafe {
                    if p.sw == 1 {
                        _mm512_mask_loadu_ps(ninf, ma, o)
                    } else {
                        let a = _mm512_mask_loadu_ps(ninf, ma, o);
                        let b = _mm512_mask_loadu_ps(ninf, mb, o.wrapping_add(L));
                        _mm512_permutex2var_ps(a, even, b)
                    }
                };
                (acc, bits) = fold(acc, bits, v);
            }
            let acc = settle(acc, bits);
            // SAFETY: chunk c of row y of the maxima.
            unsafe { _mm512_storeu_ps(hp.add(c * L), acc) };
        }
    }
    for y in 0..p.oh {
        let (r0, r1) = p.window_rows(y);
        for c in 0..p.chunks {
            let (mut acc, mut bits) = (ninf, _mm512_setzero_si512());
            for r in r0..r1 {
                // SAFETY: row r < ih of the maxima, chunk c.
                let v = unsafe { _mm512_loadu_ps(hmax.as_ptr().add(r * hw + c * L)) };
                (acc, bits) = fold(acc, bits, v);
            }
            let acc = settle(acc, bits);
            let n = L.min(p.ow - c * L);
            let mask = if n == L { u16::MAX } else { (1u16 << n) - 1 };
            // SAFETY: outputs y·ow + c·16 .. + n are inside the plane.
            unsafe { _mm512_mask_storeu_ps(dst.add(y * p.ow + c * L), mask, acc) };
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::{in_pool, in_team, rnd, t};
    use crate::op::{Op, PoolAttrs};

    /// f32 2-D AveragePool (this file's sums where AVX-512F runs, the
    /// generic loop elsewhere) against an f64 reference, counting pads or
    /// not: strides 1-3, asymmetric pads, ceil mode (the overhang past the
    /// pads never counts), windows with no input cell, rows of several
    /// chunks, batch > 1, in a pool and a team.
    #[test]
    fn avgpool_2d_f32_matches_reference() {
        // (x shape, kernel, strides, pads [t, l, b, r], ceil)
        type Case = ([usize; 4], [usize; 2], [usize; 2], [usize; 4], bool);
        let cases: [Case; 8] = [
            ([1, 3, 28, 28], [3, 3], [1, 1], [1, 1, 1, 1], false),
            ([2, 2, 9, 35], [3, 3], [1, 1], [1, 1, 1, 1], false),
            ([1, 4, 20, 70], [3, 3], [2, 2], [1, 1, 1, 1], false),
            ([1, 3, 111, 111], [3, 3], [2, 2], [0, 0, 0, 0], true),
            ([1, 3, 9, 10], [3, 2], [3, 2], [0, 1, 2, 0], true),
            ([1, 2, 14, 14], [2, 2], [2, 2], [0, 0, 0, 0], false),
            ([1, 1, 4, 4], [1, 1], [1, 1], [2, 2, 2, 2], false),
            ([1, 2, 7, 7], [7, 7], [1, 1], [0, 0, 0, 0], false),
        ];
        for (xs, k, st, pads, ceil) in cases {
            let x = rnd(xs.iter().product(), 5);
            for include in [false, true] {
                let p = PoolAttrs {
                    kernel_shape: k.to_vec(),
                    strides: st.to_vec(),
                    pads: pads.to_vec(),
                    ceil_mode: ceil,
                    count_include_pad: include,
                    ..Default::default()
                };
                let w = p.window(&xs).expect("window");
                let (oh, ow) = (w.output[0], w.output[1]);
                let (ih, iw) = (xs[2] as isize, xs[3] as isize);
                let mut want = vec![0f64; xs[0] * xs[1] * oh * ow];
                for (plane, o) in want.chunks_mut(oh * ow).enumerate() {
                    let src = &x[plane * xs[2] * xs[3]..(plane + 1) * xs[2] * xs[3]];
                    for y in 0..oh {
                        for xo in 0..ow {
                            let (mut sum, mut n, mut padded) = (0f64, 0usize, 0usize);
                            for ki in 0..k[0] {
                                for kj in 0..k[1] {
                                    let iy = (y * st[0] + ki) as isize - pads[0] as isize;
                                    let ix = (xo * st[1] + kj) as isize - pads[1] as isize;
                                    // Inside the padded input (not the
                                    // ceil-mode overhang past it).
                                    let in_pad = iy >= -(pads[0] as isize)
                                        && iy < ih + pads[2] as isize
                                        && ix >= -(pads[1] as isize)
                                        && ix < iw + pads[3] as isize;
                                    padded += usize::from(in_pad);
                                    if iy < 0 || ix < 0 || iy >= ih || ix >= iw {
                                        continue;
                                    }
                                    sum += src[(iy * iw + ix) as usize] as f64;
                                    n += 1;
                                }
                            }
                            let cnt = if include { padded } else { n };
                            o[y * ow + xo] = if cnt == 0 { 0.0 } else { sum / cnt as f64 };
                        }
                    }
                }
                let xt = t(&xs, x.clone());
                let op = Op::AveragePool(p.clone());
                let run = || eval(&op, &[Some(&xt)], 1).expect("pool").remove(0);
                for got in [run(), in_pool(run), in_team(run)] {
                    let got = got.as_slice::<f32>().unwrap();
                    assert_eq!(got.len(), want.len());
                    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                            "{xs:?} k{k:?} s{st:?} pads{pads:?} include {include} at {i}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}
