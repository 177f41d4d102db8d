//! Conv filters packed once, and the blocked product that reads them
//! (f32 with AVX-512F).
//!
//! A conv is, per (batch, group), the product `W · B` of the group's
//! filter (`mg × kdim`, kdim = C/group · kernel size) and its input
//! columns: the input planes themselves for a pointwise conv (1x1, stride
//! 1, no padding), an im2col buffer otherwise. The `gemm` crate packs both
//! operands on every call and leaves the bias, residual and activation to
//! separate passes over the output. Here:
//!
//! - The filter is packed once, when the session is built
//!   ([`crate::kernels::prepare`] attaches a [`PackedFilter`] to the
//!   weight tensor; a conv whose filter was not prepared packs it on the
//!   fly into a pooled buffer): blocks of [`MR`] = 8 rows stored `[kdim][8]`,
//!   zero rows padding the last block, so the kernel broadcasts a block's
//!   8 values of one `k` from one cache line.
//! - B is copied [`NB`] panels at a time (panels of [`NC`] = 32 columns,
//!   the last one zero-padded, up to [`KC`] rows at a time: rows of 256
//!   columns, read as runs the prefetcher follows) into `[k][32]` panels
//!   that stay in L1/L2 while every row block of the filter runs over
//!   them.
//! - The 8×32 tile (16 AVX-512 accumulators) starts from the bias, runs
//!   the K loop, adds the residual, applies the activation and stores
//!   (masked at the right edge): the output is written once.
//!
//! Threads: a product's panels are split over the pool's threads when it
//! is large enough ([`PAR_WORK`]); the caller (`kernel.rs`) splits
//! units or im2col tiles instead where those are the better grain.

use crate::error::Result;
use crate::kernels::util::{par_split, threads, SharedMut};
use crate::op::Activation;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Filter rows per block.
pub(crate) const MR: usize = 8;

/// Columns per panel of B.
pub(crate) const NC: usize = 32;

/// Rows of B per panel pass (a 64 KiB panel).
const KC: usize = 512;

/// Panels packed together (256 columns).
const NB: usize = 8;

/// Multiply-adds from which one product splits its panels over threads.
pub(super) const PAR_WORK: usize = 1 << 20;

/// A conv filter `[M, C/group, k...]` as `group` matrices `mg × kdim`,
/// each cut into blocks of [`MR`] rows stored `[kdim][MR]` (see the module
/// docs). Made once per weight by [`crate::kernels::prepare`].
pub struct PackedFilter {
    m: usize,
    kdim: usize,
    group: usize,
    data: Vec<f32>,
}

impl std::fmt::Debug for PackedFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PackedFilter({}x{}, group {})",
            self.m, self.kdim, self.group
        )
    }
}

impl PackedFilter {
    /// Packs `w`, `m` rows of `kdim` values, as `group` groups of rows.
    pub(crate) fn pack(w: &[f32], m: usize, kdim: usize, group: usize) -> Result<PackedFilter> {
        let mut data = Vec::new();
        pack_into(w, m, kdim, group, &mut data)?;
        Ok(PackedFilter {
            m,
            kdim,
            group,
            data,
        })
    }

    /// Whether this is the packing of an `m × kdim` filter in `group`s.
    pub(crate) fn is(&self, m: usize, kdim: usize, group: usize) -> bool {
        self.m == m && self.kdim == kdim && self.group == group
    }

    /// Group `gi`'s blocks.
    pub(super) fn group(&self, gi: usize) -> &[f32] {
        let per = blocks_len(self.m / self.group, self.kdim);
        &self.data[gi * per..(gi + 1) * per]
    }
}

/// Elements of one group's blocks.
fn blocks_len(mg: usize, kdim: usize) -> usize {
    mg.div_ceil(MR) * MR * kdim
}

/// Packs `w` (see [`PackedFilter::pack`]) into `data`, replacing its
/// contents.
pub(super) fn pack_into(
    w: &[f32],
    m: usize,
    kdim: usize,
    group: usize,
    data: &mut Vec<f32>,
) -> Result<()> {
    if w.len() != m * kdim || group == 0 || !m.is_multiple_of(group) {
        crate::bail!(
            "internal: packing a {m}x{kdim} filter in {group} groups from {} values",
            w.len()
        );
    }
    let mg = m / group;
    let per = blocks_len(mg, kdim);
    data.clear();
    data.resize(group * per, 0.0);
    for gi in 0..group {
        let dst = &mut data[gi * per..(gi + 1) * per];
        for (rb, block) in dst.chunks_exact_mut((kdim * MR).max(1)).enumerate() {
            for r in 0..MR.min(mg - rb * MR) {
                let row = &w[(gi * mg + rb * MR + r) * kdim..][..kdim];
                for (kk, &v) in row.iter().enumerate() {
                    block[kk * MR + r] = v;
                }
            }
        }
    }
    Ok(())
}

/// One product of a conv unit: rows `0..mg` of the output block at `out`
/// (element `(r, j)` at `off + r * ldo + j`) become
/// `act(res + bias + filter · B)` for columns `0..ncols`, where B is
/// `kdim × ncols` in `b` with row stride `ldb`, and the residual is laid
/// out like the output (`res[off + r * ldo + j]`).
pub(super) struct Product<'a> {
    pub a: &'a [f32],
    pub mg: usize,
    pub kdim: usize,
    pub b: &'a [f32],
    pub ldb: usize,
    pub ncols: usize,
    pub off: usize,
    pub ldo: usize,
    pub bias: Option<&'a [f32]>,
    pub res: Option<&'a [f32]>,
    pub act: Activation,
}

/// Whether the blocked kernel runs on this CPU.
pub(super) fn available() -> bool {
    crate::kernels::util::isa() == crate::kernels::util::Isa::Avx512
}

impl Product<'_> {
    /// Runs the product, its panels split over the pool's threads when
    /// `par` and the product is large enough.
    ///
    /// # Safety
    /// Nothing else touches the output block during the call.
    pub(super) unsafe fn run(&self, out: SharedMut<'_, f32>, par: bool) -> Result<()> {
        let (mg, kdim, ncols) = (self.mg, self.kdim, self.ncols);
        if mg == 0 || ncols == 0 {
            return Ok(());
        }
        let last = self.off + (mg - 1) * self.ldo + ncols;
        if !available()
            || self.a.len() < blocks_len(mg, kdim)
            || (kdim > 0 && self.b.len() < (kdim - 1) * self.ldb + ncols)
            || last > out.len()
            || self.res.is_some_and(|r| last > r.len())
            || self.bias.is_some_and(|b| b.len() < mg)
        {
            crate::bail!("internal: blocked conv product operands too small");
        }
        let np = ncols.div_ceil(NC);
        let t = threads();
        if par && t > 1 && np > 1 && mg * kdim * ncols >= PAR_WORK {
            // One piece per thread (SqueezeNet's 55x55 expands, 95
            // panels, once ran as one piece: slower on two threads than
            // on one).
            // SAFETY: each piece writes the columns of its own panels.
            par_split(np, &|ps| unsafe { self.panels(out, ps) });
        } else {
            // SAFETY: the caller's guarantee.
            unsafe { self.panels(out, 0..np) };
        }
        Ok(())
    }

    /// Panels `ps` for every row block, [`NB`] panels packed at a time
    /// (each row of B is then read as one run of up to 256 columns,
    /// which the prefetcher follows; one panel at a time read 128 bytes
    /// from each of K rows, a cache miss each).
    ///
    /// # Safety
    /// AVX-512F is available, the operand lengths were checked by `run`,
    /// and nothing else touches these panels' columns of the output.
    unsafe fn panels(&self, out: SharedMut<'_, f32>, ps: std::ops::Range<usize>) {
        let kc_max = self.kdim.clamp(1, KC);
        let mut pk = crate::pool::filled(kc_max * NC * NB, 0f32);
        let mut p0 = ps.start;
        while p0 < ps.end {
            let pn = NB.min(ps.end - p0);
            let j0 = p0 * NC;
            let width = (pn * NC).min(self.ncols - j0);
            let mut k0 = 0;
            loop {
                let kc = KC.min(self.kdim - k0);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX-512F (the caller's guarantee); rows k0..k0+kc
                // of B hold `width` columns from j0 (checked by `run`),
                // and `pk` holds NB·kc·NC values.
                unsafe {
                    pack512(
                        self.b.as_ptr().wrapping_add(k0 * self.ldb + j0),
                        self.ldb,
                        kc,
                        width,
                        pk.as_mut_ptr(),
                    )
                };
                let (first, last) = (k0 == 0, k0 + kc >= self.kdim);
                for q in 0..pn {
                    let jq = j0 + q * NC;
                    if jq >= self.ncols {
                        break;
                    }
                    let w = NC.min(self.ncols - jq);
                    let panel = &pk[q * kc * NC..(q + 1) * kc * NC];
                    for r0 in (0..self.mg).step_by(MR) {
                        let a = &self.a[r0 * self.kdim + k0 * MR..];
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: the caller's guarantee; `a` holds kc·MR
                        // values from here and `panel` kc·NC.
                        unsafe {
                            self.tile(out, a, panel, kc, r0, jq, w, first, last)
                        };
                        #[cfg(not(target_arch = "x86_64"))]
                        let _ = (a, r0, first, last, &out, panel);
                    }
                }
                k0 += kc;
                if k0 >= self.kdim {
                    break;
                }
            }
            p0 += pn;
        }
        crate::pool::give(pk);
    }

    /// Rows `r0 .. r0 + MR` (those below `mg`), columns `j0 .. j0 + w` of
    /// the output for the `kc` rows of B in `pk`: starting from the bias
    /// (`first`) or the partial sums in the output, ending with the
    /// residual, the activation and the store (`last`) or a plain store.
    ///
    /// # Safety
    /// As for [`Product::panels`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        &self,
        out: SharedMut<'_, f32>,
        a: &[f32],
        pk: &[f32],
        kc: usize,
        r0: usize,
        j0: usize,
        w: usize,
        first: bool,
        last: bool,
    ) {
        let rows = MR.min(self.mg - r0);
        let (m0, m1) = (lanes(w), lanes(w.saturating_sub(16)));
        let at = |r: usize| self.off + (r0 + r) * self.ldo + j0;
        let op = out.ptr_at(0);
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
            if first {
                let b = self.bias.map_or(0.0, |b| b[r0 + r]);
                *acc_r = [_mm512_set1_ps(b); 2];
            } else {
                // SAFETY: row r's masked lanes are inside the block.
                unsafe {
                    acc_r[0] = _mm512_maskz_loadu_ps(m0, op.add(at(r)));
                    acc_r[1] = _mm512_maskz_loadu_ps(m1, op.add(at(r) + 16));
                }
            }
        }
        let (ap, bp) = (a.as_ptr(), pk.as_ptr());
        for kk in 0..kc {
            // SAFETY: kk < kc; `pk` holds kc·NC values and `a` kc·MR.
            unsafe {
                let b0 = _mm512_loadu_ps(bp.add(kk * NC));
                let b1 = _mm512_loadu_ps(bp.add(kk * NC + 16));
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*ap.add(kk * MR + r));
                    acc_r[0] = _mm512_fmadd_ps(x, b0, acc_r[0]);
                    acc_r[1] = _mm512_fmadd_ps(x, b1, acc_r[1]);
                }
            }
        }
        for (r, acc_r) in acc.iter_mut().enumerate().take(rows) {
            let o = at(r);
            for (h, (v, m)) in acc_r.iter_mut().zip([m0, m1]).enumerate() {
                if last {
                    if let Some(res) = self.res {
                        // SAFETY: the masked lanes are inside the residual.
                        *v = _mm512_add_ps(*v, unsafe {
                            _mm512_maskz_loadu_ps(m, res.as_ptr().add(o + 16 * h))
                        });
                    }
                    *v = super::act::lanes512(self.act, *v);
                }
                // SAFETY: the masked lanes are inside this task's block.
                unsafe { _mm512_mask_storeu_ps(op.add(o + 16 * h), m, *v) };
            }
        }
    }
}

/// The lanes of a 16-lane register below `n` (all when `n >= 16`).
pub(super) fn lanes(n: usize) -> u16 {
    if n >= 16 {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// Copies `kc` rows of `width` (at most NB·NC) columns from `src` (row
/// stride `ldb`) into panels of NC columns at `pk` (panel q at `q·kc·NC`,
/// its row kk at `+ kk·NC`); the masked loads zero the last panel's
/// missing columns. Inline moves: a `memcpy` call per 128-byte piece took
/// a tenth of a MobileNet block's time.
///
/// # Safety
/// AVX-512F is available; `src` is readable for `width` values at each of
/// the `kc` row starts; `pk` is writable for `ceil(width / NC)·kc·NC`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack512(src: *const f32, ldb: usize, kc: usize, width: usize, pk: *mut f32) {
    let panels = width.div_ceil(NC);
    for kk in 0..kc {
        for q in 0..panels {
            let w = (width - q * NC).min(NC);
            // SAFETY: the caller's guarantee; masked-off lanes are not
            // read.
            unsafe {
                let s = src.add(kk * ldb + q * NC);
                let d = pk.add((q * kc + kk) * NC);
                _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(lanes(w), s));
                _mm512_storeu_ps(
                    d.add(16),
                    _mm512_maskz_loadu_ps(lanes(w.saturating_sub(16)), s.add(16)),
                );
            }
        }
    }
}
