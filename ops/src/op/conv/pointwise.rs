//! Pointwise (1x1, stride 1, unpadded) f32 convs over large planes, with
//! AVX-512F: ResNet-50's 1x1 convs at 56x56 and 28x28.
//!
//! Such a conv is, per batch item, `Y[m × P] = W[m × c] · X[c × P]` with
//! the input planes `X` as they lie in NCHW: row `k` of `X` is channel
//! `k`'s plane, contiguous. The `gemm` crate packs both operands on every
//! call and leaves the bias, residual and activation to a pass over each
//! output block; the blocked product (`blocked.rs`) packs `X` into panels.
//! Here a pointwise conv copies nothing per call:
//!
//! - The filter is the blocked product's [`PackedFilter`] (blocks of
//!   [`MR`] = 8 filters stored `[c][8]`), packed once at session build.
//! - A tile is 8 filters × 48 positions, 24 accumulators: per channel,
//!   three loads of 16 positions straight from the input plane and eight
//!   broadcasts from the filter block feed 24 FMAs. It starts from the
//!   bias and ends with the residual, the activation and the store
//!   (masked at the right edge of a thread's columns): the output is
//!   written once.
//! - The positions are cut over the device's team in runs of 16, one
//!   piece per thread; in its piece a thread runs every filter block over
//!   a 48-position stripe of the input (up to 96 KiB, in L1/L2) before it
//!   moves to the next stripe.
//! - A 2-D strided 1x1 conv (ResNet-50's 56x56 → 28x28 projection) first
//!   gathers its input positions into rows (its im2col matrix), split
//!   over the team.
//!
//! The rule is [`fits`]; `HETFLOW_POINTWISE=0` turns the path off (for
//! comparisons). Measured against the `gemm` crate in docs/benchmarks.md.

use super::blocked::{lanes, PackedFilter, MR};
use super::geom::{im2col, Geom, Scratch};
use crate::error::Result;
use crate::kernels::util::{env_switch, isa, par_split, threads, Isa, SharedMut};
use crate::op::Activation;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Vectors of 16 positions per tile.
const NV: usize = 3;

/// Positions per tile.
const NT: usize = 16 * NV;

/// Output positions per plane from which a pointwise conv takes the path
/// (28x28 and larger; smaller planes go to the channel-vector product,
/// whose lanes hold filters).
const MIN_OSZ: usize = 256;

/// Multiply-adds from which the positions are split over the team.
const PAR_WORK: usize = 1 << 20;

/// `HETFLOW_POINTWISE=0` turns the path off (for comparisons).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    env_switch(&ON, "HETFLOW_POINTWISE")
}

/// Whether an f32 conv with `c` channels into `m` filters in `group`s,
/// with a 1x1 kernel and no padding (`one`), over `osz` positions per
/// plane, takes this path on this CPU. A strided one must also be 2-D
/// ([`fits`] checks that).
pub(crate) fn shape_fits(c: usize, m: usize, group: usize, one: bool, osz: usize) -> bool {
    isa() == Isa::Avx512 && enabled() && group == 1 && one && c > 0 && m >= MR && osz >= MIN_OSZ
}

/// Whether a checked conv has a 1x1 kernel and no padding: pointwise,
/// or 2-D and strided.
fn one_by_one(g: &Geom) -> bool {
    let win = &g.win;
    win.kernel.iter().all(|&k| k == 1)
        && win.pads_begin.iter().chain(&win.pads_end).all(|&p| p == 0)
        && (g.spatial.len() == 2 || g.pointwise())
}

/// Whether a checked conv takes the path: [`shape_fits`].
pub(super) fn fits(g: &Geom) -> bool {
    shape_fits(g.c, g.m, g.group, one_by_one(g), g.osz())
}

/// The conv of a [`fits`] geometry. `prepared` is the filter packed at
/// session build, when it was (else it is packed here).
pub(super) fn conv(
    g: &Geom,
    prepared: Option<&PackedFilter>,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Activation,
) -> Result<Vec<f32>> {
    let (p, m, c, isz) = (g.osz(), g.m, g.c, g.isz());
    let total = g.n * m * p;
    if !fits(g)
        || x.len() < g.n * c * isz
        || w.len() != m * c
        || b.is_some_and(|b| b.len() != m)
        || res.is_some_and(|r| r.len() != total)
    {
        crate::bail!("internal: pointwise conv on an unsupported conv, CPU or operands");
    }
    let mut own = None;
    let f = super::prepared_or(
        prepared,
        |f| f.is(m, c, 1),
        &mut own,
        || PackedFilter::pack(w, m, c, 1),
    )?;
    // Written once, by the tiles' stores: no zero fill first.
    let mut o: Vec<f32> = crate::pool::take(total);
    // SAFETY: `o` has room for `total` elements; the tiles write through
    // the handle's pointers only.
    let out = unsafe { SharedMut::from_raw(o.as_mut_ptr(), total) };
    let units = p.div_ceil(16);
    let par = threads() > 1 && m * c * p >= PAR_WORK;
    // A strided conv's input positions, gathered per batch item into
    // rows of `p` (its im2col matrix: a 1x1 kernel has one tap per
    // channel); a pointwise conv's planes are those rows already.
    let mut col = Scratch(crate::pool::stale(
        if g.pointwise() { 0 } else { c * p },
        0.0,
    ));
    for bn in 0..g.n {
        let mut xb = &x[bn * c * isz..(bn + 1) * c * isz];
        if !g.pointwise() {
            im2col(g, xb, &mut col.0, 0, p / g.win.output[1], par);
            xb = &col.0;
        }
        let run = Run {
            a: f.group(0),
            m,
            c,
            p,
            x: xb,
            off: bn * m * p,
            bias: b,
            res,
            act,
            out,
        };
        let body = |us: std::ops::Range<usize>| {
            let (j0, j1) = (us.start * 16, (us.end * 16).min(p));
            // SAFETY: AVX-512F (checked by `fits`); each piece writes the
            // columns of its own runs of 16 positions.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                run.cols(j0, j1)
            };
        };
        if par {
            par_split(units, &body);
        } else {
            body(0..units);
        }
    }
    // SAFETY: every filter below `m` of every position of every batch
    // item was stored.
    unsafe { o.set_len(total) };
    Ok(o)
}

/// One batch item's product: the packed filter `a`, its input rows `x`
/// (`c` rows of `p` positions: the input planes of a pointwise conv, the
/// im2col matrix of a strided one) and where its output and residual
/// start (`off`).
#[derive(Clone, Copy)]
struct Run<'a> {
    a: &'a [f32],
    m: usize,
    c: usize,
    p: usize,
    x: &'a [f32],
    off: usize,
    bias: Option<&'a [f32]>,
    res: Option<&'a [f32]>,
    act: Activation,
    out: SharedMut<'a, f32>,
}

impl Run<'_> {
    /// Positions `j0..j1`: every filter block over each stripe of [`NT`].
    ///
    /// # Safety
    /// AVX-512F is available; nothing else writes these columns.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn cols(&self, j0: usize, j1: usize) {
        let mut j = j0;
        while j < j1 {
            let w = NT.min(j1 - j);
            for r0 in (0..self.m).step_by(MR) {
                // SAFETY: the caller's guarantee; `tile` stays inside
                // rows r0..r0+8 (below m) and columns j..j+w.
                unsafe {
                    match w.div_ceil(16) {
                        1 => self.tile::<1>(r0, j, w),
                        2 => self.tile::<2>(r0, j, w),
                        _ => self.tile::<NV>(r0, j, w),
                    }
                }
            }
            j += w;
        }
    }

    /// Filters `r0..r0 + 8` (those below `m`) at positions `j0..j0 + w`
    /// (`w <= 16·V`): bias, the channel loop, residual, activation, store.
    ///
    /// # Safety
    /// As for [`Run::cols`]; `j0 + w <= p`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const V: usize>(&self, r0: usize, j0: usize, w: usize) {
        let rows = MR.min(self.m - r0);
        let mut mask = [0u16; V];
        for (v, mk) in mask.iter_mut().enumerate() {
            *mk = lanes(w.saturating_sub(16 * v));
        }
        // Every loop over the rows runs all MR of them (rows past `m`
        // compute on zero filters and are not stored): with a run-time
        // trip count the accumulators lived on the stack, stored after
        // every FMA.
        let mut acc = [[_mm512_setzero_ps(); V]; MR];
        if let Some(b) = self.bias {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                *acc_r = [_mm512_set1_ps(b.get(r0 + r).copied().unwrap_or(0.0)); V];
            }
        }
        let a = self.a[r0 * self.c..][..self.c * MR].as_ptr();
        let xp = self.x[..(self.c - 1) * self.p + j0 + w]
            .as_ptr()
            .wrapping_add(j0);
        for k in 0..self.c {
            // SAFETY: row k's masked lanes lie inside `x` (sliced above),
            // and `a` holds c·8 values.
            unsafe {
                let row = xp.add(k * self.p);
                let mut xv = [_mm512_setzero_ps(); V];
                for (v, xv) in xv.iter_mut().enumerate() {
                    *xv = if v + 1 < V {
                        _mm512_loadu_ps(row.add(16 * v))
                    } else {
                        _mm512_maskz_loadu_ps(mask[v], row.add(16 * v))
                    };
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let s = _mm512_set1_ps(*a.add(k * MR + r));
                    for v in 0..V {
                        acc_r[v] = _mm512_fmadd_ps(s, xv[v], acc_r[v]);
                    }
                }
            }
        }
        let op = self.out.ptr_at(0);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            if r >= rows {
                break;
            }
            let at = self.off + (r0 + r) * self.p + j0;
            for (v, y) in acc_r.iter_mut().enumerate() {
                // SAFETY: the masked lanes are inside row r0 + r's columns
                // j0..j0 + w, of the output and of the residual.
                unsafe {
                    if let Some(res) = self.res {
                        let rv = _mm512_maskz_loadu_ps(mask[v], res.as_ptr().add(at + 16 * v));
                        *y = _mm512_add_ps(*y, rv);
                    }
                    *y = super::act::lanes512(self.act, *y);
                    _mm512_mask_storeu_ps(op.add(at + 16 * v), mask[v], *y);
                }
            }
        }
    }
}
