//! The channel-vector product (f32, AVX-512F): convs whose output planes
//! are small next to their filter (ResNet-50's late layers: 7x7 and
//! 14x14 outputs of 512-2048 filters over 256-4608 taps).
//!
//! The blocked product (`blocked.rs`) and the `gemm` crate hold the
//! output positions in the vector lanes. A 7x7 plane is 49 positions:
//! four 16-lane registers of which the last carries one, so a quarter of
//! every FMA is padding; and the `gemm` crate packs the filter (up to
//! 9 MiB for a 3x3 conv of 512 channels) again on every call. Here the
//! lanes hold filters instead:
//!
//! - The filter is packed once, at session build ([`ChanFilter`], made by
//!   `prepare_filter`), into blocks of [`MV`] = 32 filters laid out
//!   `[kdim][32]`: one tap of a block is two registers.
//! - The input columns (the input planes of a pointwise conv, im2col
//!   rows built one tap at a time on the stack otherwise, with no
//!   `kdim × osz` buffer between) are copied per call into panels of
//!   `nr` positions laid out `[kdim][nr]`, `nr` in 7..=14 chosen so the
//!   panels tile the plane with the least padding (7 for 7x7, 14 for
//!   14x14 and 28x28). A pointwise conv whose plane is whole panels of
//!   14 (14x14) skips the copy: its tiles read the planes in place.
//! - A tile is 32 filters × `nr` positions in `2·nr` accumulators: per tap,
//!   two filter loads and `nr` broadcasts of input values feed `2·nr`
//!   FMAs. It starts from the bias; at the end each 16×`nr` half is
//!   transposed in registers, so each filter's `nr` outputs are one
//!   masked row store, after the residual's row is added and the
//!   activation applied.
//! - A block of filters runs over every panel while it is in cache; the
//!   blocks are split over the device's team, one piece per thread. The
//!   next block is prefetched into L2 while the first panel runs (the
//!   filters of these layers come from memory once per run).
//!
//! - Padded or strided 2-D convs with more than one tap per channel
//!   ([`gather_fits`], up to 28x28 outputs) skip the panels: the input is
//!   copied once into zero-padded planes and each tile of one output
//!   row broadcasts its taps from there (`conv_gather`), tap `k` of
//!   position `j` at a precomputed offset plus `j` times the stride (a
//!   const 1 or 2, so the offsets fold into the loads). With a filter
//!   that fits L2 the output rows are the outer loop and every block
//!   runs over a row while its input rows are in L2. ResNet-50's 3x3
//!   stride-2 conv of 128 channels at 56x56, once im2col (3.6 MB) and
//!   the `gemm` crate: 1.53 → 1.03 ms in the model at one thread.
//!
//! [`shape_fits`] and [`gather_fits`] are the rules (measured against the
//! other paths, docs/benchmarks.md); `HETFLOW_CHANVEC=0` turns the path
//! off, `HETFLOW_CHANVEC_GATHER=0` the gathering form.

use super::blocked::{lanes, PAR_WORK};
use super::geom::{im2col, im2col_tap, Geom, Scratch};
use crate::error::Result;
use crate::kernels::util::{env_switch, isa, par_split, threads, Isa, SharedMut};
use crate::op::Activation;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Filters per block (two 16-lane registers).
pub(crate) const MV: usize = 32;

/// Output positions per output plane up to which a conv takes this path.
const MAX_OSZ: usize = 196;

/// Taps per filter from which a conv takes this path (below, packing the
/// input columns is a large share of the work).
const MIN_KDIM: usize = 128;

/// Whether an f32 conv of `c` channels into `m` filters in `group`s,
/// `kdim` taps per filter and `osz` output positions per plane, takes
/// the channel-vector product on this CPU.
pub(crate) fn shape_fits(m: usize, group: usize, kdim: usize, osz: usize) -> bool {
    isa() == Isa::Avx512
        && enabled()
        && group == 1
        && m >= MV
        && kdim >= MIN_KDIM
        && (1..=MAX_OSZ).contains(&osz)
}

/// Whether a checked conv takes the path: [`shape_fits`], or
/// [`gather_fits`].
pub(super) fn fits(g: &Geom) -> bool {
    shape_fits(g.m, g.group, g.kdim(), g.osz()) || gather_fits(g)
}

/// Filter bytes up to which [`conv_gather`] runs output rows outside and
/// filter blocks inside (the filter then stays in L2 beside the input
/// rows under one output row); larger filters run blocks outside.
const GATHER_ROWS_FILTER: usize = 768 * 1024;

/// Output positions per plane up to which a strided or padded 2-D conv
/// takes the gathering form of the path ([`conv_gather`]): ResNet-50's
/// 3x3 and 1x1 stride-2 convs into 28x28.
const MAX_GATHER_OSZ: usize = 784;

/// Whether a checked conv runs as [`conv_gather`]: 2-D, one group, a
/// stride of 1 or 2 along the rows, more than one tap per channel, output
/// rows of at least 7 (the narrowest tile), at most [`MAX_GATHER_OSZ`]
/// positions, and the filter and tap counts of [`shape_fits`]. 1x1 convs
/// stay on the panels: a pointwise one reads its planes in place, and a
/// strided one (ResNet-50's projections) would copy four times the input
/// it reads into the padded planes (1.03 → 1.12 ms in the model).
pub(super) fn gather_fits(g: &Geom) -> bool {
    isa() == Isa::Avx512
        && enabled()
        && gather_enabled()
        && g.group == 1
        && g.spatial.len() == 2
        && (g.win.strides[1] == 1 || g.win.strides[1] == 2)
        && g.ksz() > 1
        && g.m >= MV
        && g.kdim() >= MIN_KDIM
        && g.win.output[1] >= 7
        && (1..=MAX_GATHER_OSZ).contains(&g.osz())
}

/// `HETFLOW_CHANVEC_GATHER=0` turns the gathering form off (for
/// comparisons): convs up to [`MAX_OSZ`] positions then pack their
/// im2col rows into panels.
fn gather_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    env_switch(&ON, "HETFLOW_CHANVEC_GATHER")
}

/// `HETFLOW_CHANVEC=0` turns the path off (for comparisons).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    env_switch(&ON, "HETFLOW_CHANVEC")
}

/// A filter `[M, kdim]` in blocks of [`MV`] filters laid out
/// `[kdim][MV]`, zero filters padding the last block.
pub(crate) struct ChanFilter {
    m: usize,
    kdim: usize,
    data: Vec<f32>,
}

impl std::fmt::Debug for ChanFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChanFilter({}x{})", self.m, self.kdim)
    }
}

impl ChanFilter {
    /// Packs `w`, `m` filters of `kdim` values.
    pub(crate) fn pack(w: &[f32], m: usize, kdim: usize) -> Result<ChanFilter> {
        if w.len() != m * kdim || kdim == 0 {
            crate::bail!("Conv: filter has {} values, expected {m}x{kdim}", w.len());
        }
        let mut data = vec![0f32; m.div_ceil(MV) * kdim * MV];
        for (rb, block) in data.chunks_exact_mut(kdim * MV).enumerate() {
            for r in 0..MV.min(m - rb * MV) {
                let row = &w[(rb * MV + r) * kdim..][..kdim];
                for (k, &v) in row.iter().enumerate() {
                    block[k * MV + r] = v;
                }
            }
        }
        Ok(ChanFilter { m, kdim, data })
    }

    /// Whether this is the packing of an `m × kdim` filter.
    fn is(&self, m: usize, kdim: usize) -> bool {
        self.m == m && self.kdim == kdim
    }
}

/// Positions per panel for a plane of `n`: the width in 7..=14 that
/// leaves the fewest padding columns, the widest of those.
fn panel_width(n: usize) -> usize {
    (7..=14)
        .rev()
        .min_by_key(|&nr| n.div_ceil(nr) * nr - n)
        .unwrap_or(14)
}

/// The conv: the gathering form ([`conv_gather`]) where [`gather_fits`],
/// else the panels ([`conv_panels`]). `prepared` is the filter packed at
/// session build, when it was (else it is packed here).
pub(super) fn conv(
    g: &Geom,
    prepared: Option<&ChanFilter>,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Activation,
) -> Result<Vec<f32>> {
    let (osz, m, kdim) = (g.osz(), g.m, g.kdim());
    let total = g.n * m * osz;
    let gather = gather_fits(g);
    if isa() != Isa::Avx512 || g.group != 1 || kdim == 0 || !(osz <= MAX_OSZ || gather) {
        crate::bail!("internal: channel-vector conv on an unsupported conv or CPU");
    }
    // Written once, by the tiles' row stores: no zero fill first.
    let mut o: Vec<f32> = crate::pool::take(total);
    if total == 0 {
        return Ok(o);
    }
    let mut own = None;
    let f = super::prepared_or(
        prepared,
        |f| f.is(m, kdim),
        &mut own,
        || ChanFilter::pack(w, m, kdim),
    )?;
    // SAFETY: `o` has room for `total` elements; the tiles write through
    // the handle's pointers only.
    let out = unsafe { SharedMut::from_raw(o.as_mut_ptr(), total) };
    // Batch item 0's product; the others differ in `off` only.
    let item = Run {
        f,
        n: osz,
        off: 0,
        bias: b,
        res,
        act,
        out,
    };
    // The blocked product's bar for splitting over the team.
    let par = threads() > 1 && m * kdim * osz >= PAR_WORK;
    if gather {
        conv_gather(g, item, x, par);
    } else {
        conv_panels(g, item, x, par);
    }
    // SAFETY: every filter row below `m` of every position was stored,
    // for every batch item.
    unsafe { o.set_len(total) };
    Ok(o)
}

/// The conv of a [`shape_fits`] geometry: per batch item, the input
/// columns packed into panels, then every block of filters over every
/// panel.
fn conv_panels(g: &Geom, item: Run<'_>, x: &[f32], par: bool) {
    let (osz, isz, m, kdim) = (g.osz(), g.isz(), g.m, item.f.kdim);
    let nr = panel_width(osz);
    let np = osz.div_ceil(nr);
    // Planes of whole 14-wide panels are read in place: no copy, and
    // ResNet-50's 14x14 1x1 convs of 1024 channels ran 11% faster at one
    // thread (0.455 → 0.405 ms in the model; 7x7 planes, 7-wide panels,
    // ran slower: 0.50 → 0.55). A strided or padded 1x1 conv's im2col
    // matrix (`kdim × osz`, the panels' size) is read in place likewise.
    let in_place = g.ksz() == 1 && nr == 14 && osz % nr == 0;
    let planes = in_place && g.pointwise();
    let packed = if planes { 0 } else { np * kdim * nr };
    let mut pk = Scratch(crate::pool::stale(packed, f32::NAN));
    let blocks = m.div_ceil(MV);
    for bn in 0..g.n {
        let xb = &x[bn * g.c * isz..(bn + 1) * g.c * isz];
        let run = Run {
            off: bn * m * osz,
            ..item
        };
        if !in_place {
            with_nr!(nr, NR => pack_panels::<NR>(g, xb, &mut pk.0, par));
        } else if !planes {
            im2col(
                g,
                xb,
                &mut pk.0,
                0,
                osz / g.win.output[g.win.output.len() - 1],
                par,
            );
        }
        let src = if planes { xb } else { &pk.0[..] };
        let body = |rbs: std::ops::Range<usize>| with_nr!(nr, NR => run.blocks::<NR>(rbs, src, np, in_place));
        if par && blocks > 1 {
            par_split(blocks, &body);
        } else {
            body(0..blocks);
        }
    }
}

/// The conv of a 2-D [`gather_fits`] geometry: per batch item, the input
/// copied once into zero-padded planes (`hp × wp`, every tap of every
/// output position inside), then every block of filters over every tile
/// of `nr` positions of one output row, the tile reading its taps where
/// they lie in those planes (tap `k = (c, ky, kx)` of position `j` at
/// `offs[k] + j·sx` from the tile's corner): no im2col buffer or packed
/// panel between. A 3x3 stride-2 conv of 128 channels at 56x56 packed a
/// 3.6 MB im2col matrix before; the broadcasts of the product read single
/// values, so they read them from the input as well as from a copy.
fn conv_gather(g: &Geom, item: Run<'_>, x: &[f32], par: bool) {
    let f = item.f;
    let win = &g.win;
    let (h, w) = (g.spatial[0], g.spatial[1]);
    let (oh, ow) = (win.output[0], win.output[1]);
    let (kh, kw) = (win.kernel[0], win.kernel[1]);
    let (sy, sx) = (win.strides[0], win.strides[1]);
    let (dy, dx) = (win.dilations[0], win.dilations[1]);
    let (pt, pl) = (win.pads_begin[0], win.pads_begin[1]);
    let (m, osz, kdim) = (g.m, g.osz(), g.kdim());
    let nr = panel_width(ow);
    let per_row = ow.div_ceil(nr);
    let hp = (h + pt).max((oh - 1) * sy + (kh - 1) * dy + 1);
    let wp = (w + pl).max((ow - 1) * sx + (kw - 1) * dx + 1);
    let plane = hp * wp;
    // The last tile of a row reads up to nr - 1 positions past the row's
    // end: into the next row, and past the last plane into this slack.
    let len = g.c * plane + nr * sx + 1;
    let offs_v: Vec<usize> = (0..kdim)
        .map(|k| {
            let (ci, t) = (k / (kh * kw), k % (kh * kw));
            ci * plane + (t / kw) * dy * wp + (t % kw) * dx
        })
        .collect();
    let offs = &offs_v[..];
    let mut xp = Scratch(crate::pool::stale(len, 0.0));
    let blocks = m.div_ceil(MV);
    for bn in 0..g.n {
        let xb = &x[bn * g.c * h * w..(bn + 1) * g.c * h * w];
        {
            let dst = SharedMut::new(&mut xp.0[..]);
            let fill = |cs: std::ops::Range<usize>| {
                for ci in cs {
                    // SAFETY: plane ci is this piece's alone.
                    let d = unsafe { dst.slice(ci * plane, plane) };
                    for (yy, row) in d.chunks_exact_mut(wp).enumerate() {
                        match yy.checked_sub(pt).filter(|&iy| iy < h) {
                            Some(iy) => {
                                row[..pl].fill(0.0);
                                row[pl..pl + w].copy_from_slice(&xb[(ci * h + iy) * w..][..w]);
                                row[pl + w..].fill(0.0);
                            }
                            None => row.fill(0.0),
                        }
                    }
                }
            };
            if par {
                par_split(g.c, &fill);
            } else {
                fill(0..g.c);
            }
        }
        xp.0[g.c * plane..].fill(0.0);
        let run = Run {
            off: bn * m * osz,
            ..item
        };
        let xp = &xp.0[..];
        // Tiles `ts` of output row `oy` for filter block `rb`.
        let tiles = |rb: usize, oy: usize, ts: std::ops::Range<usize>, pf: Option<&[f32]>| {
            let a = &f.data[rb * kdim * MV..][..kdim * MV];
            for t in ts {
                let ox0 = t * nr;
                let base = oy * sy * wp + ox0 * sx;
                let cols = nr.min(ow - ox0);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX-512F (checked by `conv`); the furthest tap
                // read, base + offs[kdim-1] + (nr-1)·sx, lies inside the
                // planes and their slack (hp, wp and the slack were sized
                // for it); the tile writes rows of block rb, positions of
                // its own output row.
                unsafe {
                    let pf = pf.filter(|_| t == 0);
                    let j0 = oy * ow + ox0;
                    // SAFETY (of the reads): `tile` asks for k < kdim,
                    // and the table holds kdim offsets.
                    let off = |k: usize| *offs.get_unchecked(k);
                    if sx == 1 {
                        with_nr!(nr, NR => run.tile::<NR, 1>(a, xp, base, off, rb * MV, j0, cols, pf))
                    } else {
                        with_nr!(nr, NR => run.tile::<NR, 2>(a, xp, base, off, rb * MV, j0, cols, pf))
                    }
                };
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (a, base, cols, pf);
            }
        };
        if m * kdim * 4 <= GATHER_ROWS_FILTER {
            // Rows outside: the whole filter and the input rows under one
            // output row stay in L2 while every block runs over the row.
            let body = |oys: std::ops::Range<usize>| {
                for oy in oys {
                    for rb in 0..blocks {
                        tiles(rb, oy, 0..per_row, None);
                    }
                }
            };
            if par && oh > 1 {
                par_split(oh, &body);
            } else {
                body(0..oh);
            }
        } else {
            // Blocks outside: each block of a large filter is read from
            // memory once (the next one prefetched while the first tile
            // runs) and then serves every tile.
            let body = |rbs: std::ops::Range<usize>| {
                let end = rbs.end;
                for rb in rbs {
                    let next = (rb + 1 < end).then(|| &f.data[(rb + 1) * kdim * MV..][..kdim * MV]);
                    for oy in 0..oh {
                        tiles(rb, oy, 0..per_row, next.filter(|_| oy == 0));
                    }
                }
            };
            if par && blocks > 1 {
                par_split(blocks, &body);
            } else {
                body(0..blocks);
            }
        }
    }
}

/// Runs `$e` with the const `$NR` bound to the panel width `$nr` (7..=14).
macro_rules! with_nr {
    ($nr:expr, $NR:ident => $e:expr) => {
        with_width!($nr, $NR, [7, 8, 9, 10, 11, 12, 13], 14 => $e)
    };
}
use with_nr;

/// Copies one batch item's input columns into panels of `NR` columns
/// (panel p's row k at `(p·kdim + k)·NR`, zeros past the last column):
/// the input planes of a pointwise conv, the im2col rows otherwise, each
/// built in a row on the stack and dealt out to the panels from there
/// (an im2col buffer between was another pass over up to 0.9 MiB, and
/// copying runs of 7-14 values as slices a `memmove` call each: a tenth
/// of a 3x3 conv at 7x7). The taps are split over the team when `par`
/// and there are enough.
fn pack_panels<const NR: usize>(g: &Geom, xb: &[f32], pk: &mut [f32], par: bool) {
    let (kdim, n) = (g.kdim(), g.osz());
    let np = n.div_ceil(NR);
    let pointwise = g.pointwise();
    let dst = SharedMut::new(pk);
    let taps = |ks: std::ops::Range<usize>| {
        let mut row = [0f32; MAX_OSZ];
        for k in ks {
            // A pointwise conv's rows are read where they are.
            let src: &[f32] = if pointwise {
                &xb[k * n..(k + 1) * n]
            } else {
                im2col_tap(g, xb, k, 0, &mut row[..n]);
                &row[..n]
            };
            for p in 0..np {
                // SAFETY: row k of panel p is written by this piece only.
                let d = unsafe { dst.slice((p * kdim + k) * NR, NR) };
                let j0 = p * NR;
                if j0 + NR <= n {
                    d.copy_from_slice(&src[j0..j0 + NR]);
                } else {
                    d[..n - j0].copy_from_slice(&src[j0..]);
                    d[n - j0..].fill(0.0);
                }
            }
        }
    };
    if par && kdim * n >= 16 * 1024 {
        par_split(kdim, &taps);
    } else {
        taps(0..kdim);
    }
}

/// One batch item's product, into the output block at `off` (`m` rows of
/// `n`).
#[derive(Clone, Copy)]
struct Run<'a> {
    f: &'a ChanFilter,
    n: usize,
    off: usize,
    bias: Option<&'a [f32]>,
    res: Option<&'a [f32]>,
    act: Activation,
    out: SharedMut<'a, f32>,
}

impl Run<'_> {
    /// Filter blocks `rbs` over the `np` panels of `NR` positions in
    /// `src`: packed (`[np][kdim][NR]`), or `in_place`, the input planes
    /// themselves (`[kdim][n]`, `n` a multiple of `NR`).
    fn blocks<const NR: usize>(
        &self,
        rbs: std::ops::Range<usize>,
        src: &[f32],
        np: usize,
        in_place: bool,
    ) {
        let kdim = self.f.kdim;
        let end = rbs.end;
        assert!(src.len() >= np * kdim * NR && (!in_place || np * NR == self.n));
        for rb in rbs {
            let a = &self.f.data[rb * kdim * MV..][..kdim * MV];
            // The next block's filter, fetched into L2 while the first
            // panel runs: the filters of the late layers are read once
            // per run, from memory (ResNet-50's 97 MB of weights do not
            // stay in L3), and the block then serves every panel.
            let next = (rb + 1 < end).then(|| &self.f.data[(rb + 1) * kdim * MV..][..kdim * MV]);
            for p in 0..np {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX-512F (checked by `conv`); `a` holds the
                // block's kdim·MV values, and `src` every value a panel's
                // taps reach (asserted above: kdim·NR values from panel
                // p's start, or n·kdim with n = np·NR in place); the tile
                // writes rows of block rb, columns of panel p, which no
                // other piece writes.
                unsafe {
                    let pf = next.filter(|_| p == 0);
                    let cols = NR.min(self.n - p * NR);
                    let (r0, j0) = (rb * MV, p * NR);
                    if in_place {
                        self.tile::<NR, 1>(a, src, j0, |k| k * self.n, r0, j0, cols, pf)
                    } else {
                        let base = p * kdim * NR;
                        self.tile::<NR, 1>(a, src, base, |k| k * NR, r0, j0, cols, pf)
                    }
                };
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (a, src, in_place);
            }
        }
    }

    /// Filters `r0 .. r0 + MV` (those below `m`) at the `cols` output
    /// positions from `j0`: tap `k` of position `j` is `src[base + off(k)
    /// + j·SX]`. A packed panel (`[kdim][NR]`) is `off(k) = k·NR` with
    /// `SX` = 1; the gathering form reads the padded input, `off` its
    /// table of tap offsets and `SX` the stride along the row (see
    /// [`conv_gather`]). Prefetches `pf` into L2 as it goes.
    ///
    /// # Safety
    /// AVX-512F is available; `a` and `pf` hold `kdim·MV` values; every
    /// `base + off(k) + j·SX` for `k < kdim`, `j < NR` is inside `src`;
    /// nothing else writes this tile's outputs.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const NR: usize, const SX: usize>(
        &self,
        a: &[f32],
        src: &[f32],
        base: usize,
        off: impl Fn(usize) -> usize,
        r0: usize,
        j0: usize,
        cols: usize,
        pf: Option<&[f32]>,
    ) {
        let rows = MV.min(self.f.m - r0);
        let masks = [lanes(rows), lanes(rows.saturating_sub(16))];
        let mut acc = [[_mm512_setzero_ps(); NR]; 2];
        if let Some(b) = self.bias {
            for (h, acc_h) in acc.iter_mut().enumerate() {
                // SAFETY: the masked lanes are rows below `m`, inside the
                // bias.
                let v = unsafe { _mm512_maskz_loadu_ps(masks[h], b.as_ptr().add(r0 + 16 * h)) };
                *acc_h = [v; NR];
            }
        }
        let (ap, xb) = (a.as_ptr(), src.as_ptr().wrapping_add(base));
        let pfp = pf.map_or(std::ptr::null(), |f| f.as_ptr());
        for k in 0..self.f.kdim {
            // SAFETY: k < kdim; `a` and `pf` hold kdim·MV values; the
            // caller's guarantee for the input (a prefetch does not fault
            // in any case).
            unsafe {
                if !pfp.is_null() {
                    _mm_prefetch::<_MM_HINT_T1>(pfp.add(k * MV) as *const i8);
                    _mm_prefetch::<_MM_HINT_T1>(pfp.add(k * MV + 16) as *const i8);
                }
                let w0 = _mm512_loadu_ps(ap.add(k * MV));
                let w1 = _mm512_loadu_ps(ap.add(k * MV + 16));
                let xk = xb.add(off(k));
                let [a0, a1] = &mut acc;
                for (j, (c0, c1)) in a0.iter_mut().zip(a1.iter_mut()).enumerate() {
                    let x = _mm512_set1_ps(*xk.add(j * SX));
                    *c0 = _mm512_fmadd_ps(w0, x, *c0);
                    *c1 = _mm512_fmadd_ps(w1, x, *c1);
                }
            }
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.store::<NR>(&acc, r0, j0, cols) };
    }

    /// Stores a tile's sums (filters `r0..`, positions `j0 .. j0 + cols`)
    /// after the residual and the activation. Transposed, register i of
    /// half h is filter r0 + 16h + i at the positions in its lanes: one
    /// masked row store each.
    ///
    /// # Safety
    /// AVX-512F is available; nothing else writes these outputs.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn store<const NR: usize>(
        &self,
        acc: &[[__m512; NR]; 2],
        r0: usize,
        j0: usize,
        cols: usize,
    ) {
        let rows = MV.min(self.f.m - r0);
        let op = self.out.ptr_at(0);
        let cm = lanes(cols);
        for (h, acc_h) in acc.iter().enumerate() {
            let mut t = [_mm512_setzero_ps(); 16];
            t[..NR].copy_from_slice(acc_h);
            transpose16(&mut t);
            for (i, &v) in t
                .iter()
                .enumerate()
                .take(rows.saturating_sub(16 * h).min(16))
            {
                let at = self.off + (r0 + 16 * h + i) * self.n + j0;
                let mut v = v;
                if let Some(r) = self.res {
                    // SAFETY: the masked lanes are outputs of this tile,
                    // and the residual is laid out like the output.
                    v = _mm512_add_ps(v, unsafe { _mm512_maskz_loadu_ps(cm, r.as_ptr().add(at)) });
                }
                v = super::act::lanes512(self.act, v);
                // SAFETY: the masked lanes are this tile's outputs.
                unsafe { _mm512_mask_storeu_ps(op.add(at), cm, v) };
            }
        }
    }
}

/// Transposes the 16x16 matrix whose rows are `r`'s registers: lane l of
/// register i moves to lane i of register l. Four rounds of 16 shuffles:
/// pairs of rows (unpack of floats), pairs of pairs (unpack of doubles),
/// then 128-bit blocks twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose16(r: &mut [__m512; 16]) {
    let mut a = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // Register 4i + c now holds, in block q, rows 4i..4i+3 of column
    // 4q + c.
    let pd = _mm512_castps_pd;
    let ps = _mm512_castpd_ps;
    let mut b = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        let (x0, x1, y0, y1) = (
            pd(a[4 * i]),
            pd(a[4 * i + 1]),
            pd(a[4 * i + 2]),
            pd(a[4 * i + 3]),
        );
        b[4 * i] = ps(_mm512_unpacklo_pd(x0, y0));
        b[4 * i + 1] = ps(_mm512_unpackhi_pd(x0, y0));
        b[4 * i + 2] = ps(_mm512_unpacklo_pd(x1, y1));
        b[4 * i + 3] = ps(_mm512_unpackhi_pd(x1, y1));
    }
    for c in 0..4 {
        let e0 = _mm512_shuffle_f32x4::<0x44>(b[c], b[4 + c]);
        let e1 = _mm512_shuffle_f32x4::<0xEE>(b[c], b[4 + c]);
        let f0 = _mm512_shuffle_f32x4::<0x44>(b[8 + c], b[12 + c]);
        let f1 = _mm512_shuffle_f32x4::<0xEE>(b[8 + c], b[12 + c]);
        r[c] = _mm512_shuffle_f32x4::<0x88>(e0, f0);
        r[4 + c] = _mm512_shuffle_f32x4::<0xDD>(e0, f0);
        r[8 + c] = _mm512_shuffle_f32x4::<0x88>(e1, f1);
        r[12 + c] = _mm512_shuffle_f32x4::<0xDD>(e1, f1);
    }
}

/// [`transpose16`] on plain arrays, for the tests.
#[cfg(all(test, target_arch = "x86_64"))]
pub(super) fn transpose_for_test(m: [[f32; 16]; 16]) -> [[f32; 16]; 16] {
    let mut out = [[0f32; 16]; 16];
    // SAFETY: the caller checked AVX-512F; each row is 16 values.
    unsafe {
        let mut r = [_mm512_setzero_ps(); 16];
        for (reg, row) in r.iter_mut().zip(&m) {
            *reg = _mm512_loadu_ps(row.as_ptr());
        }
        transpose16(&mut r);
        for (reg, row) in r.iter().zip(out.iter_mut()) {
            _mm512_storeu_ps(row.as_mut_ptr(), *reg);
        }
    }
    out
}
