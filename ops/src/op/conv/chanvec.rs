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
//!   14x14 and 28x28).
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
//! [`shape_fits`] is the rule (measured against the other paths,
//! docs/benchmarks.md); `HETFLOW_CHANVEC=0` turns the path off.

use super::blocked::{lanes, PAR_WORK};
use super::geom::{im2col_tap, Geom, Scratch};
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

/// [`shape_fits`] for a checked conv.
pub(super) fn fits(g: &Geom) -> bool {
    shape_fits(g.m, g.group, g.kdim(), g.osz())
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

/// The conv: per batch item, the input columns packed into panels, then
/// every block of filters over every panel. `prepared` is the filter
/// packed at session build, when it was (else it is packed here).
pub(super) fn conv(
    g: &Geom,
    prepared: Option<&ChanFilter>,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Activation,
) -> Result<Vec<f32>> {
    let (osz, isz, m, kdim) = (g.osz(), g.isz(), g.m, g.kdim());
    let total = g.n * m * osz;
    if isa() != Isa::Avx512 || g.group != 1 || kdim == 0 || osz > MAX_OSZ {
        crate::bail!("internal: channel-vector conv on an unsupported conv or CPU");
    }
    // Written once, by the tiles' row stores: no zero fill first.
    let mut o: Vec<f32> = crate::pool::take(total);
    if total == 0 {
        return Ok(o);
    }
    let packed;
    let f = match prepared.filter(|f| f.is(m, kdim)) {
        Some(f) => f,
        None => {
            packed = ChanFilter::pack(w, m, kdim)?;
            &packed
        }
    };
    let nr = panel_width(osz);
    let np = osz.div_ceil(nr);
    let mut pk = Scratch(crate::pool::stale(np * kdim * nr, f32::NAN));
    // SAFETY: `o` has room for `total` elements; the tiles write through
    // the handle's pointers only.
    let out = unsafe { SharedMut::from_raw(o.as_mut_ptr(), total) };
    let blocks = m.div_ceil(MV);
    // The blocked product's bar for splitting over the team.
    let par = threads() > 1 && m * kdim * osz >= PAR_WORK;
    for bn in 0..g.n {
        let xb = &x[bn * g.c * isz..(bn + 1) * g.c * isz];
        let run = Run {
            f,
            n: osz,
            off: bn * m * osz,
            bias: b,
            res,
            act,
            out,
        };
        with_nr!(nr, NR => pack_panels::<NR>(g, xb, &mut pk.0, par));
        let body = |rbs: std::ops::Range<usize>| with_nr!(nr, NR => run.blocks::<NR>(rbs, &pk.0));
        if par && blocks > 1 {
            par_split(blocks, &body);
        } else {
            body(0..blocks);
        }
    }
    // SAFETY: every filter row below `m` of every panel's positions was
    // stored, for every batch item.
    unsafe { o.set_len(total) };
    Ok(o)
}

/// Runs `$e` with the const `$NR` bound to the panel width `$nr` (7..=14).
macro_rules! with_nr {
    ($nr:expr, $NR:ident => $e:expr) => {
        match $nr {
            7 => {
                const $NR: usize = 7;
                $e
            }
            8 => {
                const $NR: usize = 8;
                $e
            }
            9 => {
                const $NR: usize = 9;
                $e
            }
            10 => {
                const $NR: usize = 10;
                $e
            }
            11 => {
                const $NR: usize = 11;
                $e
            }
            12 => {
                const $NR: usize = 12;
                $e
            }
            13 => {
                const $NR: usize = 13;
                $e
            }
            _ => {
                const $NR: usize = 14;
                $e
            }
        }
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
    /// Filter blocks `rbs` over every panel packed in `pk` (`NR` is
    /// their width).
    fn blocks<const NR: usize>(&self, rbs: std::ops::Range<usize>, pk: &[f32]) {
        let kdim = self.f.kdim;
        let end = rbs.end;
        for rb in rbs {
            let a = &self.f.data[rb * kdim * MV..][..kdim * MV];
            // The next block's filter, fetched into L2 while the first
            // panel runs: the filters of the late layers are read once
            // per run, from memory (ResNet-50's 97 MB of weights do not
            // stay in L3), and the block then serves every panel.
            let next = (rb + 1 < end).then(|| &self.f.data[(rb + 1) * kdim * MV..][..kdim * MV]);
            for (p, panel) in pk.chunks_exact(kdim * NR).enumerate() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX-512F (checked by `conv`); `a` holds the
                // block's kdim·MV values and `panel` kdim·NR; the tile
                // writes rows of block rb, columns of panel p, which no
                // other piece writes.
                unsafe {
                    self.tile::<NR>(a, panel, rb * MV, p * NR, next.filter(|_| p == 0))
                };
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (a, panel);
            }
        }
    }

    /// Filters `r0 .. r0 + MV` (those below `m`) at positions
    /// `j0 .. j0 + NR` (those below `n`); prefetches `pf` (a block like
    /// `a`) into L2 as it goes.
    ///
    /// # Safety
    /// AVX-512F is available; `a` and `pf` hold `kdim·MV` values and `pk`
    /// `kdim·NR`; nothing else writes this tile's outputs.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const NR: usize>(
        &self,
        a: &[f32],
        pk: &[f32],
        r0: usize,
        j0: usize,
        pf: Option<&[f32]>,
    ) {
        let kdim = self.f.kdim;
        let rows = MV.min(self.f.m - r0);
        let cols = NR.min(self.n - j0);
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
        let (ap, bp) = (a.as_ptr(), pk.as_ptr());
        let pfp = pf.map_or(std::ptr::null(), |f| f.as_ptr());
        for k in 0..kdim {
            // SAFETY: k < kdim; `a` and `pf` hold kdim·MV values and `pk`
            // kdim·NR (a prefetch does not fault in any case).
            unsafe {
                if !pfp.is_null() {
                    _mm_prefetch::<_MM_HINT_T1>(pfp.add(k * MV) as *const i8);
                    _mm_prefetch::<_MM_HINT_T1>(pfp.add(k * MV + 16) as *const i8);
                }
                let w0 = _mm512_loadu_ps(ap.add(k * MV));
                let w1 = _mm512_loadu_ps(ap.add(k * MV + 16));
                let [a0, a1] = &mut acc;
                for (j, (c0, c1)) in a0.iter_mut().zip(a1.iter_mut()).enumerate() {
                    let x = _mm512_set1_ps(*bp.add(k * NR + j));
                    *c0 = _mm512_fmadd_ps(w0, x, *c0);
                    *c1 = _mm512_fmadd_ps(w1, x, *c1);
                }
            }
        }
        // Transposed, register i of half h is filter r0 + 16h + i at
        // positions j0.. in its lanes: one masked row store each.
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
