//! Direct f32 2-D convolution for convs whose filters are small next to
//! their output: LeNet's 5x5 convs (1 → 6 and 6 → 16 channels), stems
//! with few input channels. There, im2col + GEMM spends most of its time
//! copying (the im2col matrix is `C·kh·kw` times the output, and the GEMM
//! then packs it again) for a product too short to amortise it.
//!
//! Each input channel is copied once into the zero-padded, phase-split
//! scratch plane of the depthwise kernel (`depthwise.rs`: every tap of an
//! output chunk is one contiguous 16-lane read). An output tile is
//! [`MB`] filters × [`G`] chunks of 16 outputs, held in registers over
//! all `C·kh·kw` taps: per tap, `G` loads and `MB` broadcasts feed
//! `MB·G` FMAs. The filter is packed once, at session build where it is
//! a constant ([`DirectFilter`]), into blocks of `MB` filters laid out
//! `[C][kh·kw][MB]`, so the broadcasts walk it in order. Bias, residual
//! and activation are applied before each chunk's one masked store.
//! Tiles (filter block × chunk group) are split over the device's team.
//!
//! AVX-512F only; [`fits`] is the rule (measured, docs/benchmarks.md),
//! and other CPUs keep im2col + GEMM.

use super::depthwise::{chunks, Plan};
use super::geom::{Geom, Scratch};
use crate::error::Result;
use crate::kernels::util::{isa, par_for, Isa, SharedMut, PAR_MIN};
use crate::op::{Activation, Window};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Filters per tile.
const MB: usize = 8;
/// Chunks of 16 outputs per tile.
const G: usize = 2;
/// Lanes per chunk.
const L: usize = 16;

/// Taps per filter (`C·kh·kw`) up to which a conv takes the direct path:
/// beyond it the product is long enough for the GEMM's packing to pay.
const MAX_KDIM: usize = 160;

/// Whether an f32 conv of `c` channels into `m` filters over `win` takes
/// the direct path on this CPU: 2-D, one group, not 1x1, and at most
/// [`MAX_KDIM`] taps per filter.
pub(crate) fn shape_fits(c: usize, m: usize, group: usize, win: &Window) -> bool {
    isa() == Isa::Avx512
        && enabled()
        && group == 1
        && win.kernel.len() == 2
        && win.kernel.iter().product::<usize>() > 1
        && c * win.kernel.iter().product::<usize>() <= MAX_KDIM
        && m > 0
        && !win.output.contains(&0)
}

/// [`shape_fits`] for a checked conv.
pub(super) fn fits(g: &Geom) -> bool {
    shape_fits(g.c, g.m, g.group, &g.win)
}

/// `HETFLOW_DIRECT_CONV=0` turns the path off (for comparisons).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    crate::kernels::util::env_switch(&ON, "HETFLOW_DIRECT_CONV")
}

/// A filter `[M, C, kh, kw]` in blocks of [`MB`] filters (the last block
/// narrower), each laid out `[C][kh·kw][mb]`.
pub(crate) struct DirectFilter {
    data: Vec<f32>,
    m: usize,
    kdim: usize,
}

impl DirectFilter {
    /// Packs `w` (`m` filters of `kdim` = `C·kh·kw` values each).
    pub(crate) fn pack(w: &[f32], m: usize, kdim: usize) -> Result<DirectFilter> {
        if w.len() != m * kdim {
            crate::bail!("Conv: filter has {} values, expected {m}x{kdim}", w.len());
        }
        let mut data = Vec::with_capacity(w.len());
        for m0 in (0..m).step_by(MB) {
            let mb = MB.min(m - m0);
            for k in 0..kdim {
                data.extend((0..mb).map(|j| w[(m0 + j) * kdim + k]));
            }
        }
        Ok(DirectFilter { data, m, kdim })
    }

    /// The block of filters `m0 .. m0 + mb`.
    fn block(&self, m0: usize) -> &[f32] {
        let mb = MB.min(self.m - m0);
        &self.data[m0 * self.kdim..(m0 + mb) * self.kdim]
    }
}

/// The direct conv with fused bias, residual (the output's shape) and
/// activation: the output `[N, M, oh, ow]`. `pre` is the filter packed at
/// session build, if it was.
pub(super) fn conv(
    g: &Geom,
    pre: Option<&DirectFilter>,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Activation,
) -> Result<Vec<f32>> {
    if !fits(g) {
        crate::bail!("Conv: the direct kernel does not take this shape");
    }
    let kdim = g.kdim();
    let mut own = None;
    let f = super::prepared_or(
        pre,
        |p| p.m == g.m && p.kdim == kdim,
        &mut own,
        || DirectFilter::pack(w, g.m, kdim),
    )?;
    let plan = Plan::new(g);
    let (isz, osz, slen) = (g.isz(), plan.oh * plan.ow, plan.scratch_len());
    if x.len() != g.n * g.c * isz
        || b.is_some_and(|b| b.len() != g.m)
        || res.is_some_and(|r| r.len() != g.n * g.m * osz)
    {
        crate::bail!("Conv: direct kernel buffers do not fit the shapes");
    }
    let total = g.n * g.m * osz;
    let mut o: Vec<f32> = crate::pool::take(total);
    let mut s = Scratch(crate::pool::take(g.c * slen));
    s.0.resize(g.c * slen, 0.0);
    let items = plan.oh * plan.chunks;
    let groups = items.div_ceil(G);
    let blocks = g.m.div_ceil(MB);
    // Tiles per piece: enough multiply-adds to be worth a thread.
    let tile_work = MB * G * L * kdim;
    let min_tiles = PAR_MIN.div_ceil(tile_work);
    {
        let out = SharedMut::new(&mut o.spare_capacity_mut()[..total]);
        for bn in 0..g.n {
            for (ci, plane) in s.0.chunks_exact_mut(slen).enumerate() {
                plan.fill(&x[(bn * g.c + ci) * isz..][..isz], plane);
            }
            let s = &s.0[..];
            if (g.c - 1) * slen + plan.reach() > s.len() {
                // Unreachable by construction (`Plan` sizes the scratch).
                crate::bail!("internal: direct conv scratch mis-sized");
            }
            let base = bn * g.m * osz;
            par_for(blocks * groups, min_tiles, &|r| {
                for u in r {
                    let (bi, gi) = (u / groups, u % groups);
                    let m0 = bi * MB;
                    let t = Tile {
                        plan: &plan,
                        s,
                        slen,
                        c: g.c,
                        w: f.block(m0),
                        bias: b.map(|b| &b[m0..]),
                        res: res.map(|r| &r[base + m0 * osz..]),
                        act,
                        osz,
                    };
                    // Tiles write disjoint lanes of the block's planes
                    // (their own chunks), so they share the pointer.
                    let dst = out.ptr_at(base + m0 * osz) as *mut f32;
                    let it = gi * G;
                    // SAFETY: AVX-512F (`fits`); the scratch reaches every
                    // tap of every chunk (checked above), the residual
                    // and output cover the block's planes (the output is
                    // `total` long, the block's planes end by it).
                    unsafe { t.run(dst, it, G.min(items - it)) };
                }
            });
        }
    }
    // SAFETY: every tile stored all of its chunks' lanes inside the rows
    // (the last chunk of a row masked): together every output element.
    unsafe { o.set_len(total) };
    Ok(o)
}

/// One tile's inputs: a block of filters over the filled scratch.
struct Tile<'a> {
    plan: &'a Plan,
    /// The scratch planes of all channels, `slen` apart.
    s: &'a [f32],
    slen: usize,
    c: usize,
    /// The block's packed filter (`[C][taps][mb]`).
    w: &'a [f32],
    /// Biases from the block's first filter on.
    bias: Option<&'a [f32]>,
    /// The residual from the block's first filter plane on.
    res: Option<&'a [f32]>,
    act: Activation,
    osz: usize,
}

/// Calls `$f::<mb, g>` with `mb` in 1..=MB and `g` in 1..=G as constants.
macro_rules! by_width {
    ($f:ident, $mb:expr, $g:expr, ($($arg:expr),*)) => {
        match ($mb, $g) {
            (8, 2) => $f::<8, 2>($($arg),*),
            (8, _) => $f::<8, 1>($($arg),*),
            (7, 2) => $f::<7, 2>($($arg),*),
            (7, _) => $f::<7, 1>($($arg),*),
            (6, 2) => $f::<6, 2>($($arg),*),
            (6, _) => $f::<6, 1>($($arg),*),
            (5, 2) => $f::<5, 2>($($arg),*),
            (5, _) => $f::<5, 1>($($arg),*),
            (4, 2) => $f::<4, 2>($($arg),*),
            (4, _) => $f::<4, 1>($($arg),*),
            (3, 2) => $f::<3, 2>($($arg),*),
            (3, _) => $f::<3, 1>($($arg),*),
            (2, 2) => $f::<2, 2>($($arg),*),
            (2, _) => $f::<2, 1>($($arg),*),
            (_, 2) => $f::<1, 2>($($arg),*),
            _ => $f::<1, 1>($($arg),*),
        }
    };
}

impl Tile<'_> {
    /// Chunks `it .. it + n` (`n` <= [`G`]) of the block's filters.
    ///
    /// # Safety
    /// AVX-512F is available; the scratch reaches every tap of those
    /// chunks in all `c` planes; `dst` (and the residual) hold the
    /// block's `mb` output planes from `dst` on, and nothing else writes
    /// those chunks' lanes meanwhile.
    unsafe fn run(&self, dst: *mut f32, it: usize, n: usize) {
        let mb = self.w.len() / (self.c * self.plan.taps.len()).max(1);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's guarantee.
        unsafe {
            by_width!(tile512, mb, n, (self, dst, it))
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (mb, dst, it, n);
    }
}

/// `MBW` filters × `GW` chunks from chunk `it`.
///
/// # Safety
/// As for [`Tile::run`], with `MBW` the block's width.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile512<const MBW: usize, const GW: usize>(t: &Tile<'_>, dp: *mut f32, it: usize) {
    // SAFETY: the caller's guarantee.
    let (src, out) = unsafe { chunks::<GW>(t.plan, t.s, it) };
    let mut acc = [[_mm512_setzero_ps(); GW]; MBW];
    if let Some(b) = t.bias {
        for (a, &bv) in acc.iter_mut().zip(b) {
            *a = [_mm512_set1_ps(bv); GW];
        }
    }
    let mut wp = t.w.as_ptr();
    for ci in 0..t.c {
        let po = ci * t.slen;
        for &off in &t.plan.taps {
            let mut v = [_mm512_setzero_ps(); GW];
            for (v, &sp) in v.iter_mut().zip(&src) {
                // SAFETY: plane ci's chunk start + off + L is within the
                // scratch (the caller's guarantee).
                *v = unsafe { _mm512_loadu_ps(sp.add(po + off)) };
            }
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: the block holds c·taps·MBW values, read in order.
                let wv = _mm512_set1_ps(unsafe { *wp.add(j) });
                for (a, &v) in a.iter_mut().zip(&v) {
                    *a = _mm512_fmadd_ps(wv, v, *a);
                }
            }
            // SAFETY: as above (one past the end at the last tap).
            wp = unsafe { wp.add(MBW) };
        }
    }
    for (j, a) in acc.iter().enumerate() {
        for (&a, &(o, mask)) in a.iter().zip(&out) {
            let mut v = a;
            if let Some(r) = t.res {
                // SAFETY: the masked lanes are inside plane j's residual.
                v = _mm512_add_ps(v, unsafe {
                    _mm512_maskz_loadu_ps(mask, r.as_ptr().add(j * t.osz + o))
                });
            }
            let v = super::act::lanes512(t.act, v);
            // SAFETY: the masked lanes are inside plane j's output.
            unsafe { _mm512_mask_storeu_ps(dp.add(j * t.osz + o), mask, v) };
        }
    }
}
