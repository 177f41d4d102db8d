//! The matrix unit's arithmetic, bit for bit: bf16 operands, exact
//! products, f32 accumulation in a fixed order.
//!
//! Order of accumulation (what makes results reproducible and testable):
//! for output `(i, j)` and K tiles `t = 0, 1, ..` of `tile_k` (= the array's
//! rows) in increasing order,
//!
//! ```text
//! s_t   = ((0 + a[i,k0]*b[k0,j]) + a[i,k0+1]*b[k0+1,j]) + ...   k ascending within tile t
//! out   = ((0 + s_0) + s_1) + ...                               tiles ascending
//! ```
//!
//! every `+` an f32 addition rounded to nearest even, both sums starting
//! from +0.0. This is the weight-stationary dataflow: a partial sum runs
//! down one column of the array, gaining one product per row, and the
//! column's results are added into f32 accumulators tile after tile. The
//! operands are rounded to bf16 first ([`round_bf16`]); the product of two
//! bf16 values has at most 16 significant bits, so it is exact in f32 (up
//! to overflow and underflow) and only the additions round.

use rayon::prelude::*;

/// Rounds an f32 to the nearest bf16 (ties to even) and returns it as an
/// f32. Infinities stay infinite, finite values too large for bf16 become
/// infinite, NaNs stay NaN (quietened, sign kept).
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    if x.is_nan() {
        return f32::from_bits((b | 0x0040_0000) & 0xffff_0000);
    }
    let lsb = (b >> 16) & 1;
    f32::from_bits(b.wrapping_add(0x7fff + lsb) & 0xffff_0000)
}

/// Rounds every element to bf16 in place.
pub fn round_all(v: &mut [f32]) {
    for x in v {
        *x = round_bf16(*x);
    }
}

/// `out[m x n] = a[m x k] . b[k x n]` (row-major) with the accumulation
/// order of the module docs. The operands must already be bf16 values
/// (see [`round_all`]); `tile_k` is the array's row count. Rows of the
/// output are computed in parallel on the current rayon pool; the result
/// does not depend on the thread count.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, tile_k: usize, out: &mut [f32]) {
    debug_assert!(a.len() >= m * k && b.len() >= k * n && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let tile_k = tile_k.max(1);
    let rows_per_job = (16384 / (k * n).max(1)).clamp(1, 64);
    out[..m * n]
        .par_chunks_mut(rows_per_job * n)
        .enumerate()
        .for_each(|(job, chunk)| {
            let mut s = vec![0f32; n];
            for (r, o) in chunk.chunks_mut(n).enumerate() {
                let i = job * rows_per_job + r;
                let arow = &a[i * k..i * k + k];
                o.fill(0.0);
                for t0 in (0..k).step_by(tile_k) {
                    s.fill(0.0);
                    for kk in t0..(t0 + tile_k).min(k) {
                        let av = arow[kk];
                        let brow = &b[kk * n..kk * n + n];
                        for (sj, &bj) in s.iter_mut().zip(brow) {
                            *sj += av * bj;
                        }
                    }
                    for (oj, &sj) in o.iter_mut().zip(&s) {
                        *oj += sj;
                    }
                }
            }
        });
}

/// `v` split into `parts` bf16 parts whose sum approximates it (part 0
/// the rounding of `v`, each next one the rounding of what is left).
pub fn split(v: &[f32], parts: usize) -> Vec<Vec<f32>> {
    let mut rest = v.to_vec();
    let mut out = Vec::with_capacity(parts);
    for _ in 0..parts.max(1) {
        let p: Vec<f32> = rest.iter().map(|&x| round_bf16(x)).collect();
        for (r, &q) in rest.iter_mut().zip(&p) {
            *r -= q;
        }
        out.push(p);
    }
    out
}

/// `out = a . b` for f32 operands at `precision`: the operands are split
/// into bf16 parts ([`split`]) and the part products with `i + j <
/// parts` each take one pass ([`matmul`]); the passes' results are added
/// in f32, smallest terms first. With one part this is [`matmul`] on the
/// rounded operands, bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn matmul_at(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    tile_k: usize,
    precision: super::config::MatmulPrecision,
    out: &mut [f32],
) {
    let parts = precision.parts();
    if parts == 1 {
        let (ra, rb): (Vec<f32>, Vec<f32>) = (
            a[..m * k].iter().map(|&x| round_bf16(x)).collect(),
            b[..k * n].iter().map(|&x| round_bf16(x)).collect(),
        );
        return matmul(&ra, &rb, m, k, n, tile_k, out);
    }
    let (sa, sb) = (split(&a[..m * k], parts), split(&b[..k * n], parts));
    // Terms by decreasing i + j, so the small ones are summed first.
    let mut terms: Vec<(usize, usize)> = (0..parts)
        .flat_map(|i| (0..parts - i).map(move |j| (i, j)))
        .collect();
    terms.sort_by_key(|&(i, j)| std::cmp::Reverse(i + j));
    let out = &mut out[..m * n];
    out.fill(0.0);
    let mut part = vec![0f32; m * n];
    for (i, j) in terms {
        matmul(&sa[i], &sb[j], m, k, n, tile_k, &mut part);
        for (o, &p) in out.iter_mut().zip(&part) {
            *o += p;
        }
    }
}

/// Geometry of an N-d convolution lowered to a GEMM (im2col).
pub struct ConvGeom {
    /// Input channels.
    pub c: usize,
    /// Input spatial dims.
    pub input: Vec<usize>,
    /// Kernel spatial dims.
    pub kernel: Vec<usize>,
    /// Output spatial dims.
    pub output: Vec<usize>,
    /// Strides per spatial dim.
    pub strides: Vec<usize>,
    /// Dilations per spatial dim.
    pub dilations: Vec<usize>,
    /// Padding before each spatial dim.
    pub pads_begin: Vec<usize>,
}

impl ConvGeom {
    fn positions(&self) -> usize {
        self.output.iter().product()
    }
    fn kernel_size(&self) -> usize {
        self.kernel.iter().product()
    }
}

/// Multi-index odometer over `dims` (last dim fastest).
fn next_index(idx: &mut [usize], dims: &[usize]) {
    for d in (0..dims.len()).rev() {
        idx[d] += 1;
        if idx[d] < dims[d] {
            return;
        }
        idx[d] = 0;
    }
}

/// Columns of one image and channel range: a `(cs x kernel) x positions`
/// matrix whose row `(c, kernel offset)` holds the input values that
/// offset sees at each output position (0 in the padding). Row order is
/// `c` then kernel offsets in row-major order, the order of the weight's
/// `[C/group, k...]` dims, so K is reduced in that order.
pub fn im2col(g: &ConvGeom, x: &[f32], c0: usize, cs: usize, col: &mut [f32]) {
    let plane: usize = g.input.iter().product();
    let p = g.positions();
    let ks = g.kernel_size();
    let nd = g.input.len();
    col[..cs * ks * p]
        .par_chunks_mut(p.max(1))
        .enumerate()
        .for_each(|(row, out)| {
            let (ci, kf) = (row / ks, row % ks);
            let src = &x[(c0 + ci) * plane..(c0 + ci + 1) * plane];
            // Kernel offset of this row, per spatial dim.
            let mut koff = vec![0usize; nd];
            let mut rem = kf;
            for d in (0..nd).rev() {
                koff[d] = rem % g.kernel[d];
                rem /= g.kernel[d];
            }
            // Input coordinate (or None in the padding) per output index,
            // per spatial dim.
            let coords: Vec<Vec<Option<usize>>> = (0..nd)
                .map(|d| {
                    (0..g.output[d])
                        .map(|o| {
                            let pos = (o * g.strides[d] + koff[d] * g.dilations[d]) as isize
                                - g.pads_begin[d] as isize;
                            (pos >= 0 && (pos as usize) < g.input[d]).then_some(pos as usize)
                        })
                        .collect()
                })
                .collect();
            let mut idx = vec![0usize; nd];
            for v in out.iter_mut() {
                let mut off = 0usize;
                let mut inside = true;
                for d in 0..nd {
                    match coords[d][idx[d]] {
                        Some(c) => off = off * g.input[d] + c,
                        None => {
                            inside = false;
                            break;
                        }
                    }
                }
                *v = if inside { src[off] } else { 0.0 };
                next_index(&mut idx, &g.output);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(s: &mut u64) -> u32 {
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*s >> 32) as u32
    }

    /// Our rounding agrees with the `half` crate's bf16 conversion (an
    /// independent implementation of round-to-nearest-even) on random bit
    /// patterns, on every tie, and at the edges.
    #[test]
    fn rounding_matches_half() {
        let mut seed = 1u64;
        let check = |bits: u32| {
            let x = f32::from_bits(bits);
            let ours = round_bf16(x);
            let theirs = half::bf16::from_f32(x).to_f32();
            if x.is_nan() {
                assert!(ours.is_nan(), "{bits:#x}");
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{bits:#x}");
            }
        };
        for _ in 0..200_000 {
            check(lcg(&mut seed));
        }
        // Exact ties: low half 0x8000, odd and even upper halves.
        for hi in [
            0x3f80u32, 0x3f81, 0x4049, 0xbf80, 0xbf81, 0x7f7f, 0x0000, 0x0001,
        ] {
            check((hi << 16) | 0x8000);
            check((hi << 16) | 0x7fff);
            check((hi << 16) | 0x8001);
        }
        for x in [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
        ] {
            check(x.to_bits());
        }
        // Ties go to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
    }

    /// The tile order matters and is the documented one: f32 spacing at
    /// 2^27 is 16, so where the ones are added decides the result.
    #[test]
    fn accumulation_order_is_per_tile() {
        let big = (1u32 << 27) as f32;
        let a = [big, 1.0, -big, 1.0];
        let b = [1.0f32, 1.0, 1.0, 1.0];
        let mut out = [0f32];
        // Tile 4: ((((0 + 2^27) + 1) - 2^27) + 1): 2^27 + 1 rounds to 2^27.
        matmul(&a, &b, 1, 4, 1, 4, &mut out);
        assert_eq!(out[0], 1.0);
        // Tile 2: (2^27 + 1) -> 2^27; (-2^27 + 1) -> -2^27; sum 0.
        matmul(&a, &b, 1, 4, 1, 2, &mut out);
        assert_eq!(out[0], 0.0);
        // Tile 1: every product is its own tile: same as tile 4 here.
        matmul(&a, &b, 1, 4, 1, 1, &mut out);
        assert_eq!(out[0], 1.0);
    }

    #[test]
    fn im2col_pads_and_strides() {
        // 1 channel, 3x3 input, 2x2 kernel, stride 2, pad 1: 2x2 output.
        let g = ConvGeom {
            c: 1,
            input: vec![3, 3],
            kernel: vec![2, 2],
            output: vec![2, 2],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            pads_begin: vec![1, 1],
        };
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut col = vec![-1f32; 4 * 4];
        im2col(&g, &x, 0, 1, &mut col);
        // Kernel offset (0,0) sees input (-1,-1), (-1,1), (1,-1), (1,1).
        assert_eq!(&col[0..4], &[0.0, 0.0, 0.0, 5.0]);
        // Offset (1,1) sees (0,0), (0,2), (2,0), (2,2).
        assert_eq!(&col[12..16], &[1.0, 3.0, 7.0, 9.0]);
    }

    /// Each precision against an f64 product of the f32 operands: one pass
    /// is the rounded-operand product bit for bit; three and six passes
    /// bring the error from bf16's ~1e-2 to about 1e-4 and 1e-6.
    #[test]
    fn precisions_approach_f32() {
        use crate::tpu::config::MatmulPrecision as P;
        let mut seed = 7u64;
        let mut rnd = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (lcg(&mut seed) as f32 / u32::MAX as f32) * 2.0 - 1.0)
                .collect()
        };
        let (m, k, n) = (3, 40, 5);
        let (a, b) = (rnd(m * k), rnd(k * n));
        let exact: Vec<f64> = (0..m * n)
            .map(|ij| {
                (0..k)
                    .map(|kk| f64::from(a[ij / n * k + kk]) * f64::from(b[kk * n + ij % n]))
                    .sum()
            })
            .collect();
        let err = |p: P| {
            let mut out = vec![0f32; m * n];
            matmul_at(&a, &b, m, k, n, 8, p, &mut out);
            out.iter()
                .zip(&exact)
                .map(|(&o, &e)| (f64::from(o) - e).abs())
                .fold(0.0, f64::max)
        };
        let (mut ra, mut rb, mut one) = (a.clone(), b.clone(), vec![0f32; m * n]);
        round_all(&mut ra);
        round_all(&mut rb);
        matmul(&ra, &rb, m, k, n, 8, &mut one);
        let mut at = vec![0f32; m * n];
        matmul_at(&a, &b, m, k, n, 8, P::Default, &mut at);
        assert_eq!(one, at);
        let (e1, e3, e6) = (err(P::Default), err(P::High), err(P::Highest));
        assert!(e1 > 1e-3 && e3 < 1e-3 && e6 < 1e-5, "{e1} {e3} {e6}");
    }
}
