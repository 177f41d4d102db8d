//! Winograd F(4x4, 3x3) one row of tiles at a time (f32, AVX-512F).
//!
//! `winograd.rs` runs the conv as four passes over the whole map: the
//! padded, channel-blocked copy of the input, the input transform of
//! every tile into `V[ξ][tile][C]`, the 36 products into `Y[ξ][tile][M]`
//! and the output transform. At 56x56 with 64 channels V and Y are 1.8 MB
//! each: every pass streamed megabytes through L3 or memory, and the three
//! passes around the products ran no faster on two threads than on one
//! (ResNet-50's 56x56 3x3 layers, `HETFLOW_WINOGRAD`-timed passes at one
//! thread: copy 146 µs, input 150, products 293, output 267; at two
//! threads 161, 157, 185, 248).
//!
//! Here every step runs per row of tiles (one image's `tw` tiles, 4
//! output rows), and a thread takes a contiguous range of rows with its
//! own scratch, which stays in L2:
//!
//! 1. the row's six padded input rows, channels innermost in blocks of 16
//!    (`[C/16][6][Wp][16]`), gathered from NCHW by 16x16 transposes;
//! 2. the input transform of the row's tiles into `V[ξ][tile][C]`;
//! 3. for each ξ, `V[ξ] (tiles × C) · U[ξ] (C × M)` in register tiles of
//!    up to 14 tiles × 32 filters (two filter vectors, one broadcast of V
//!    per tile and channel) into `Y[ξ][tile][M]`;
//! 4. the output transform, bias added with filters in the lanes, then
//!    16x16 transposes turn 16 positions of 16 filters into 16 row runs,
//!    where the residual is added, the activation applied and the run
//!    stored.
//!
//! The transformed filter `U` is read once per row of tiles, so the path
//! is taken where it is small next to the row's work ([`fits`]).

use super::chanvec::transpose16;
use super::winoplan::{input_tile, lanes, output_tile, Epi, Plan, L, TI, TO, XI};
use crate::kernels::util::{inside16, par_split, threads, SharedMut};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Tiles per register tile of the products (two accumulators each).
const TN: usize = 14;

/// Whether the conv planned in `p` runs here: channels and filters in
/// whole blocks of 16, at most [`MAX_FILTER`] transformed filter values
/// (re-read for every row of tiles), and rows of tiles that spread
/// [`even`]ly over the threads.
pub(super) fn fits(p: &Plan) -> bool {
    computes(p) && XI * p.c * p.m <= MAX_FILTER && even(p.n * p.th, threads()) && enabled()
}

/// Whether `rows` rows of tiles spread over `t` threads with at most a
/// tenth of the time lost to the thread that runs one row more. At two
/// threads the 7 rows of a 28x28 map go 4 and 3, and the four passes,
/// which split finer, ran faster (ResNet-50's 28x28 3x3 layers in the
/// model: 0.29-0.30 ms against 0.34); its 14 rows at 56x56 split evenly.
fn even(rows: usize, t: usize) -> bool {
    rows.div_ceil(t) * t * 10 <= rows * 11
}

/// The plans the path computes at all (which of them it is chosen for is
/// [`fits`]).
pub(super) fn computes(p: &Plan) -> bool {
    p.c.is_multiple_of(L) && p.m.is_multiple_of(L)
}

/// Transformed filter values up to which the path is taken: 128x128
/// channels (2.4 MB), the 28x28 layers of ResNet-50. At 14x14 (256
/// channels, 9.4 MB re-read for each of 4 rows of tiles) the four passes
/// stay.
const MAX_FILTER: usize = XI * 128 * 128;

/// `HETFLOW_WINOGRAD_FUSED=0` turns the path off (for comparisons).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    crate::kernels::util::env_switch(&ON, "HETFLOW_WINOGRAD_FUSED")
}

/// The conv (`p` [`fits`], the CPU has AVX-512F, the operands were
/// checked by the caller): `u` is the transformed filter, `o` the output
/// (written in full).
pub(super) fn conv(p: &Plan, x: &[f32], u: &[f32], epi: &Epi<'_>, o: SharedMut<'_, f32>) {
    let rows = p.n * p.th;
    let body = |rs: std::ops::Range<usize>| {
        let mut s = RowScratch::new(p);
        for r in rs {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F (the caller's guarantee); row r writes its
            // own output rows only.
            unsafe {
                row(p, x, u, epi, o, r, &mut s)
            };
        }
        s.give();
    };
    if threads() > 1 && rows > 1 {
        par_split(rows, &body);
    } else {
        body(0..rows);
    }
}

/// One thread's buffers: the gathered input rows, V and Y of one row of
/// tiles, and the output transform's positions of one filter block.
struct RowScratch {
    xs: Vec<f32>,
    v: Vec<f32>,
    y: Vec<f32>,
    ob: Vec<f32>,
}

impl RowScratch {
    fn new(p: &Plan) -> RowScratch {
        let wide = (TO * p.tw).div_ceil(L) * L;
        RowScratch {
            xs: crate::pool::stale(p.cb * TI * p.wp * L, 0.0),
            v: crate::pool::stale(XI * p.tw * p.cp(), 0.0),
            y: crate::pool::stale(XI * p.tw * p.mp(), 0.0),
            ob: crate::pool::stale(TO * wide * L, 0.0),
        }
    }
    fn give(self) {
        crate::pool::give(self.xs);
        crate::pool::give(self.v);
        crate::pool::give(self.y);
        crate::pool::give(self.ob);
    }
}

/// Runs `$e` with the const `$N` bound to `$tn` (1..=14).
macro_rules! with_tn {
    ($tn:expr, $N:ident => $e:expr) => {
        with_width!($tn, $N, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], 14 => $e)
    };
}

/// Row of tiles `r` (= image · th + tile row) through all four steps.
///
/// # Safety
/// AVX-512F is available; nothing else writes this row's outputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn row(
    p: &Plan,
    x: &[f32],
    u: &[f32],
    epi: &Epi<'_>,
    o: SharedMut<'_, f32>,
    r: usize,
    s: &mut RowScratch,
) {
    let (ni, ti) = (r / p.th, r % p.th);
    let (cp, mp, tw) = (p.cp(), p.mp(), p.tw);
    // 1. Six padded input rows, 16 channels innermost.
    for cbi in 0..p.cb {
        for rr in 0..TI {
            let yy = (TO * ti + rr) as isize - p.pt as isize;
            let dst = &mut s.xs[(cbi * TI + rr) * p.wp * L..][..p.wp * L];
            if yy < 0 || yy >= p.h as isize {
                dst.fill(0.0);
                continue;
            }
            let base = (ni * p.c + cbi * L) * p.h * p.w + yy as usize * p.w;
            for c0 in (0..p.wp).step_by(L) {
                let xx = c0 as isize - p.pl as isize;
                let m = inside16(xx, p.w);
                let mut t = [_mm512_setzero_ps(); L];
                for (l, t) in t.iter_mut().enumerate() {
                    let src = x
                        .as_ptr()
                        .wrapping_add(base + l * p.h * p.w)
                        .wrapping_offset(xx);
                    // SAFETY: the masked lanes are columns 0..w of row yy
                    // of channel cbi·16 + l (checked by the caller's
                    // shapes); masked-off lanes are not read.
                    *t = unsafe { _mm512_maskz_loadu_ps(m, src) };
                }
                transpose16(&mut t);
                for (k, t) in t.iter().enumerate().take(p.wp - c0) {
                    // SAFETY: column c0 + k < wp of the row.
                    unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add((c0 + k) * L), *t) };
                }
            }
        }
    }
    // 2. V[ξ][tile][C].
    for cbi in 0..p.cb {
        let block = &s.xs[cbi * TI * p.wp * L..][..TI * p.wp * L];
        for tj in 0..tw {
            let at = |rr: usize, c: usize| lanes(&block[(rr * p.wp + TO * tj + c) * L..]);
            input_tile(at, |xi, val| {
                let off = (xi * tw + tj) * cp + cbi * L;
                s.v[off..off + L].copy_from_slice(val);
            });
        }
    }
    // 3. Y[ξ] = V[ξ] · U[ξ].
    for xi in 0..XI {
        let ux = &u[xi * p.c * p.m..][..p.c * p.m];
        let vx = &s.v[xi * tw * cp..][..tw * cp];
        let yx = &mut s.y[xi * tw * mp..][..tw * mp];
        let mut t0 = 0;
        while t0 < tw {
            let tn = TN.min(tw - t0);
            for m0 in (0..p.m).step_by(2 * L) {
                // SAFETY: tiles t0..t0 + tn of V and Y, filters m0.. of U
                // (p.m is a multiple of 16: `fits`).
                unsafe { with_tn!(tn, N => product::<N>(p, vx, ux, yx, t0, m0)) };
            }
            t0 += tn;
        }
    }
    // 4. The output rows.
    let rows = TO.min(p.oh - TO * ti);
    let osz = p.oh * p.ow;
    let wide = (TO * tw).div_ceil(L) * L;
    let op = o.ptr_at(0);
    for mbi in 0..p.mb {
        let bias = epi.b.map(|b| lanes(&b[mbi * L..]));
        for tj in 0..tw {
            let at = |xi: usize| lanes(&s.y[(xi * tw + tj) * mp + mbi * L..]);
            output_tile(at, |i, j, mut val| {
                if let Some(b) = bias {
                    for (v, b) in val.iter_mut().zip(b) {
                        *v += b;
                    }
                }
                let at = (i * wide + TO * tj + j) * L;
                s.ob[at..at + L].copy_from_slice(&val);
            });
        }
        for i in 0..rows {
            let orow = TO * ti + i;
            for x0 in (0..p.ow).step_by(L) {
                let mut t = [_mm512_setzero_ps(); L];
                for (k, t) in t.iter_mut().enumerate() {
                    // SAFETY: position x0 + k < wide of row i of `ob`.
                    *t = unsafe { _mm512_loadu_ps(s.ob.as_ptr().add((i * wide + x0 + k) * L)) };
                }
                transpose16(&mut t);
                let m = inside16(0, p.ow - x0);
                for (l, t) in t.iter().enumerate() {
                    let off = (ni * p.m + mbi * L + l) * osz + orow * p.ow + x0;
                    let mut v = *t;
                    if let Some(res) = epi.res {
                        // SAFETY: the masked lanes are positions of this
                        // output row; the residual is laid out like it.
                        v = _mm512_add_ps(v, unsafe {
                            _mm512_maskz_loadu_ps(m, res.as_ptr().add(off))
                        });
                    }
                    v = super::act::lanes512(epi.act, v);
                    // SAFETY: as above, inside the output; this row is the
                    // caller's alone.
                    unsafe { _mm512_mask_storeu_ps(op.add(off), m, v) };
                }
            }
        }
    }
}

/// Tiles `t0..t0 + N` × filters `m0..m0 + 32` (or 16, the last block of
/// an odd count of 16s) of one ξ: `y[t][m] = Σ_c v[t][c] · u[c][m]`.
///
/// # Safety
/// AVX-512F is available; `vx` holds `tw × cp` values, `ux` `c × m`,
/// `yx` `tw × mp`, with `t0 + N <= tw` and `m0 + 16 <= m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn product<const N: usize>(
    p: &Plan,
    vx: &[f32],
    ux: &[f32],
    yx: &mut [f32],
    t0: usize,
    m0: usize,
) {
    let (cp, mp, m) = (p.cp(), p.mp(), p.m);
    let two = m0 + 2 * L <= m;
    let mut acc = [[_mm512_setzero_ps(); 2]; N];
    let (vp, up) = (
        vx.as_ptr().wrapping_add(t0 * cp),
        ux.as_ptr().wrapping_add(m0),
    );
    for k in 0..p.c {
        // SAFETY: row k < c of U, filters m0..m0 + 16 (+ 16 when `two`);
        // V's rows t0.. hold c values each.
        unsafe {
            let u0 = _mm512_loadu_ps(up.add(k * m));
            let u1 = if two {
                _mm512_loadu_ps(up.add(k * m + L))
            } else {
                _mm512_setzero_ps()
            };
            for (t, acc) in acc.iter_mut().enumerate() {
                let v = _mm512_set1_ps(*vp.add(t * cp + k));
                acc[0] = _mm512_fmadd_ps(v, u0, acc[0]);
                acc[1] = _mm512_fmadd_ps(v, u1, acc[1]);
            }
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        let at = (t0 + t) * mp + m0;
        // SAFETY: tile t0 + t < tw, filters m0.. inside the row of mp.
        unsafe {
            _mm512_storeu_ps(yx.as_mut_ptr().add(at), acc[0]);
            if two {
                _mm512_storeu_ps(yx.as_mut_ptr().add(at + L), acc[1]);
            }
        }
    }
}
