//! Depthwise 2-D convolution read in place: stride-1 layers whose output
//! rows are as long as the input's (`ow == iw`, as with "same" padding),
//! with AVX-512F. These are most of MobileNet's and ShuffleNet's
//! depthwise layers.
//!
//! With equal row lengths, output element `p = y·ow + x` reads input
//! element `p + off` for tap `(ki, kj)`, with `off = (ki·dh − top)·iw +
//! (kj·dw − left)` the same for every output element. So a plane's output
//! is computed as one flat run of 16-lane chunks across row ends, each tap
//! one load at a constant offset from the chunk. A lane whose tap falls in
//! the padding (above or below the plane, or past a row's end, where the
//! flat offset would reach into the next or previous row) is masked off:
//! the masked load neither reads that element nor adds it. The masks come
//! from [`Flat::new`], one per (chunk, tap), computed once per layer.
//!
//! A 3-column undilated kernel with one column of left padding (the
//! common 3x3 "same" layer) on a plane of 16 chunks or more takes
//! [`Flat::group3`]: one load per kernel row and chunk, the left and right
//! taps shifted out of neighbouring vectors, so no per-tap masks. Smaller
//! planes take the per-tap masked loads, where the extra vectors at each
//! group's ends cost more than they save.
//!
//! Against `depthwise.rs`'s kernel, which copies each plane into a padded
//! scratch and computes each output row in whole chunks: no copy (it was
//! about a third of a 56x56 layer's time), and no lanes past each row's
//! end (a 7x7 plane is 4 chunks here, 7 there). One thread, one-Conv
//! models with a fused Clip, `hetflow bench M --threads 1 --iters 300`,
//! best of the run, against onnxruntime 1.32 on the same model (median)
//! (2026-12-04):
//!
//! | layer | scratch kernel | here | onnxruntime |
//! |---|---|---|---|
//! | 192 ch, 56x56 | 0.401 ms | 0.236 ms | 0.335 ms |
//! | 384 ch, 14x14 | 0.078 ms | 0.051 ms | 0.059 ms |
//! | 960 ch, 7x7 | 0.115 ms | 0.043 ms | 0.040 ms |

use super::geom::Geom;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Lanes per chunk.
const L: usize = 16;

/// Chunks computed together (independent FMA chains in flight).
const GROUP: usize = 8;

/// Adds the residual, applies `act` and stores chunks `k0 .. k0 + G`
/// (the last one of the plane masked to its end): the end of both group
/// kernels, a macro so that it is compiled into each (as a function it was
/// not inlined, and the accumulators went through memory).
macro_rules! store {
    ($f:expr, $acc:expr, $res:expr, $act:expr, $dst:expr, $k0:expr) => {{
        let (f, res, act, k0) = ($f, $res, $act, $k0);
        let dp = $dst.as_mut_ptr() as *mut f32;
        for (g, a) in $acc.iter_mut().enumerate() {
            let o = (k0 + g) * L;
            let n = L.min(f.osz - o);
            let mask = if n == L { u16::MAX } else { (1u16 << n) - 1 };
            if let Some(r) = res {
                // SAFETY: the masked lanes are inside the residual plane.
                *a = _mm512_add_ps(*a, unsafe {
                    _mm512_maskz_loadu_ps(mask, r.as_ptr().add(o))
                });
            }
            let v = super::act::lanes512(act, *a);
            // SAFETY: the masked lanes are inside the output plane.
            unsafe { _mm512_mask_storeu_ps(dp.add(o), mask, v) };
        }
    }};
}

/// One plane's operands: its input, its taps' weights, bias, residual
/// plane and activation.
pub(super) struct Plane<'a> {
    pub x: &'a [f32],
    pub w: &'a [f32],
    pub bias: f32,
    pub res: Option<&'a [f32]>,
    pub act: crate::op::Activation,
}

/// One layer's taps and masks. Made when the session is built, attached
/// to the filter ([`crate::kernels::prepare`] through
/// `kernel.rs`'s `prepare_filter`), else per call.
#[derive(Debug)]
pub struct Flat {
    /// The geometry it was made for ([`Flat::key`]).
    key: [usize; 10],
    /// Output elements per plane.
    osz: usize,
    /// Input elements per plane.
    isz: usize,
    /// Chunks per plane.
    chunks: usize,
    /// Flat input offset of each tap (row-major), from the output element.
    taps: Vec<isize>,
    /// `masks[k * taps + t]`: the lanes of chunk `k` whose tap `t` reads
    /// an input element (none past the plane's output).
    masks: Vec<u16>,
    /// `cols[k * kw + kj]`: the lanes of chunk `k` whose tap column `kj`
    /// falls inside the input row (none past the plane's output).
    cols: Vec<u16>,
    /// Whether the kernel is 3 columns wide, undilated, with one column
    /// of padding on the left: [`Flat::group3`] then runs it.
    three: bool,
}

impl Flat {
    /// What a plan depends on: input and output sizes, kernel,
    /// dilations and leading pads.
    fn key(g: &Geom) -> [usize; 10] {
        let w = &g.win;
        [
            g.spatial[0],
            g.spatial[1],
            w.output[0],
            w.output[1],
            w.kernel[0],
            w.kernel[1],
            w.dilations[0],
            w.dilations[1],
            w.pads_begin[0],
            w.pads_begin[1],
        ]
    }

    /// Whether this plan was made for `g`'s geometry.
    pub(super) fn is_for(&self, g: &Geom) -> bool {
        g.spatial.len() == 2 && self.key == Flat::key(g)
    }

    /// The plan for `g`, when it is a 2-D stride-1 depthwise layer whose
    /// output rows are as long as its input rows.
    pub(super) fn new(g: &Geom) -> Option<Flat> {
        let win = &g.win;
        if !g.depthwise2d() || win.strides.iter().any(|&s| s != 1) {
            return None;
        }
        let (ih, iw) = (g.spatial[0], g.spatial[1]);
        let (oh, ow) = (win.output[0], win.output[1]);
        if ow != iw || oh == 0 || ow == 0 {
            return None;
        }
        let (kh, kw) = (win.kernel[0], win.kernel[1]);
        let (dh, dw) = (win.dilations[0], win.dilations[1]);
        let (top, left) = (win.pads_begin[0] as isize, win.pads_begin[1] as isize);
        let (osz, isz) = (oh * ow, ih * iw);
        let chunks = osz.div_ceil(L);
        let mut taps = Vec::with_capacity(kh * kw);
        for ki in 0..kh {
            for kj in 0..kw {
                let (ry, rx) = ((ki * dh) as isize - top, (kj * dw) as isize - left);
                taps.push(ry * iw as isize + rx);
            }
        }
        let nt = taps.len();
        let mut masks = vec![0u16; chunks * nt];
        let mut cols = vec![0u16; chunks * kw];
        for k in 0..chunks {
            for l in 0..L.min(osz - k * L) {
                let p = k * L + l;
                let (y, x) = ((p / ow) as isize, (p % ow) as isize);
                for ki in 0..kh {
                    let iy = y + (ki * dh) as isize - top;
                    let row_in = iy >= 0 && iy < ih as isize;
                    for kj in 0..kw {
                        let ix = x + (kj * dw) as isize - left;
                        let col_in = ix >= 0 && ix < iw as isize;
                        if col_in {
                            cols[k * kw + kj] |= 1 << l;
                            if row_in {
                                masks[k * nt + ki * kw + kj] |= 1 << l;
                            }
                        }
                    }
                }
            }
        }
        Some(Flat {
            key: Flat::key(g),
            osz,
            isz,
            chunks,
            taps,
            masks,
            cols,
            three: kw == 3 && dw == 1 && left == 1 && chunks >= 2 * GROUP,
        })
    }

    /// Output and input elements per plane, and taps.
    pub(super) fn sizes(&self) -> (usize, usize, usize) {
        (self.osz, self.isz, self.taps.len())
    }

    /// One plane into `dst`.
    ///
    /// # Safety
    /// AVX-512F is available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn plane512(&self, p: &Plane<'_>, dst: &mut [MaybeUninit<f32>]) {
        if p.x.len() != self.isz
            || p.w.len() != self.taps.len()
            || dst.len() != self.osz
            || p.res.is_some_and(|r| r.len() != self.osz)
        {
            // Unreachable by construction (the caller slices by `sizes`);
            // the output would stay unwritten.
            panic!("internal: depthwise plane buffers mis-sized");
        }
        let mut k = 0;
        while k + GROUP <= self.chunks {
            // SAFETY: the lengths are checked above; chunks k..k+GROUP
            // exist.
            unsafe { self.chunks::<GROUP>(p, dst, k) };
            k += GROUP;
        }
        while k < self.chunks {
            // SAFETY: as above.
            unsafe { self.chunks::<1>(p, dst, k) };
            k += 1;
        }
    }

    /// Chunks `k0 .. k0 + G` on this layer's path.
    ///
    /// # Safety
    /// As for [`Flat::group`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn chunks<const G: usize>(
        &self,
        p: &Plane<'_>,
        dst: &mut [MaybeUninit<f32>],
        k0: usize,
    ) {
        // SAFETY: the caller's guarantee.
        unsafe {
            if self.three {
                self.group3::<G>(p, dst, k0)
            } else {
                self.group::<G>(p, dst, k0)
            }
        }
    }

    /// Chunks `k0 .. k0 + G`.
    ///
    /// # Safety
    /// AVX-512F; the lengths [`Flat::plane512`] checks; `k0 + G <=
    /// chunks`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn group<const G: usize>(&self, p: &Plane<'_>, dst: &mut [MaybeUninit<f32>], k0: usize) {
        let nt = self.taps.len();
        let xp = p.x.as_ptr();
        let mut acc = [_mm512_set1_ps(p.bias); G];
        for (t, (&off, &wv)) in self.taps.iter().zip(p.w).enumerate() {
            let wv = _mm512_set1_ps(wv);
            for (g, a) in acc.iter_mut().enumerate() {
                let m = self.masks[(k0 + g) * nt + t];
                // SAFETY: only the lanes in `m` are read, each an element
                // of the plane; the pointer itself may lie outside it,
                // hence the wrapping arithmetic.
                let v = unsafe {
                    _mm512_maskz_loadu_ps(m, xp.wrapping_offset(((k0 + g) * L) as isize + off))
                };
                *a = _mm512_fmadd_ps(wv, v, *a);
            }
        }
        store!(self, acc, p.res, p.act, dst, k0);
    }

    /// Chunks `k0 .. k0 + G` of a 3-column kernel ([`Flat::three`]):
    /// per kernel row, the G + 2 vectors around the chunks are loaded
    /// once, and each chunk's left and right taps are shifted out of
    /// them (`valignd`) instead of loaded again at an offset of one
    /// element. A lane outside the plane is masked off in the load, which
    /// covers rows above and below it (their flat positions lie outside
    /// it); a lane whose left or right tap crosses a row end is masked off
    /// in the multiply-add. One load per kernel row and chunk instead of
    /// three unaligned ones, and no mask per tap.
    ///
    /// # Safety
    /// As for [`Flat::group`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn group3<const G: usize>(
        &self,
        p: &Plane<'_>,
        dst: &mut [MaybeUninit<f32>],
        k0: usize,
    ) {
        let isz = self.isz as isize;
        let xp = p.x.as_ptr();
        // The lanes of the 16 elements from flat position `c` that lie in
        // the plane.
        let inside = |c: isize| -> u16 {
            let lo = (-c).clamp(0, L as isize) as u32;
            let hi = (isz - c).clamp(0, L as isize) as u32;
            let below = |n: u32| {
                if n >= 16 {
                    u16::MAX
                } else {
                    ((1u32 << n) - 1) as u16
                }
            };
            below(hi) & !below(lo)
        };
        let mut acc = [_mm512_set1_ps(p.bias); G];
        let ml: [u16; G] = std::array::from_fn(|g| self.cols[(k0 + g) * 3]);
        let mr: [u16; G] = std::array::from_fn(|g| self.cols[(k0 + g) * 3 + 2]);
        for (row, wr) in self.taps.chunks_exact(3).zip(p.w.chunks_exact(3)) {
            // The middle tap's offset: the row's, no column shift.
            let c0 = (k0 * L) as isize + row[1];
            // G + 2 vectors (G is at most GROUP).
            let mut v = [_mm512_setzero_si512(); GROUP + 2];
            if c0 >= L as isize && c0 + ((G + 1) * L) as isize <= isz {
                for (j, vj) in v.iter_mut().enumerate().take(G + 2) {
                    let c = c0 + (j as isize - 1) * L as isize;
                    // SAFETY: all 16 elements from `c` are in the plane.
                    *vj = _mm512_castps_si512(unsafe { _mm512_loadu_ps(xp.offset(c)) });
                }
            } else {
                for (j, vj) in v.iter_mut().enumerate().take(G + 2) {
                    let c = c0 + (j as isize - 1) * L as isize;
                    // SAFETY: only the lanes inside the plane are read.
                    *vj = _mm512_castps_si512(unsafe {
                        _mm512_maskz_loadu_ps(inside(c), xp.wrapping_offset(c))
                    });
                }
            }
            let (w0, w1, w2) = (
                _mm512_set1_ps(wr[0]),
                _mm512_set1_ps(wr[1]),
                _mm512_set1_ps(wr[2]),
            );
            for (g, a) in acc.iter_mut().enumerate() {
                let (prev, cur, next) = (v[g], v[g + 1], v[g + 2]);
                let left = _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(cur, prev));
                let right = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(next, cur));
                *a = _mm512_mask3_fmadd_ps(w0, left, *a, ml[g]);
                *a = _mm512_fmadd_ps(w1, _mm512_castsi512_ps(cur), *a);
                *a = _mm512_mask3_fmadd_ps(w2, right, *a, mr[g]);
            }
        }
        store!(self, acc, p.res, p.act, dst, k0);
    }
}
