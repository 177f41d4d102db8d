//! The products of the four-pass Winograd path (`winograd.rs`, pass 3) on
//! AVX-512F, for filter counts that are a multiple of 32 and filters up
//! to 128x128 channels: `Y[ξ] (tiles × M) = V[ξ] (tiles × C) · U[ξ] (C ×
//! M)`, one serial call per `ξ`.
//!
//! - A tile is 32 filters (two registers, loaded from `U[ξ]`'s rows,
//!   filters innermost) × up to [`NT`] = 8 tiles (broadcasts from
//!   `V[ξ]`), 16 accumulators, stored straight into `Y[ξ]`'s rows (tiles
//!   × filters: one register per tile and half). The `gemm` crate packs
//!   the tiles' columns on every call first.
//! - While a block of 32 filters runs over the tiles, the same block of
//!   `U[ξ + 1]` is prefetched into L2, one line per channel per group of
//!   tiles, so the next product finds its filter in cache.
//!
//! Where it runs: ResNet-50's 28x28 layers (128 channels, 49 tiles) at
//! two threads, where the rows of tiles do not split evenly for
//! `winofused.rs`: 0.30-0.36 → 0.26-0.32 ms in the model. On the 14x14
//! layers of 256 channels (16 tiles, a 256 KiB `U[ξ]` read from memory
//! once per run) it ran slower than the crate, 0.69 → 0.80 ms at one
//! thread even with the prefetch (1.10 without: its 128-byte pieces of
//! 1 KiB-apart rows defeat the hardware prefetcher), so those stay on
//! the crate ([`computes`]).

use super::winoplan::{Plan, XI};
use crate::kernels::util::SharedMut;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Filters per block (two registers).
const MB: usize = 32;

/// Tiles per register tile.
const NT: usize = 8;

/// `HETFLOW_WINOGRAD_PRODUCT=0` leaves the products to the `gemm` crate
/// (for comparisons).
pub(super) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    crate::kernels::util::env_switch(&ON, "HETFLOW_WINOGRAD_PRODUCT")
}

/// Filter sizes (channels × filters) up to which the products run here.
const MAX_FILTER: usize = 128 * 128;

/// Whether [`product512`] computes a plan's products: filters in whole
/// blocks of [`MB`], at most [`MAX_FILTER`].
pub(super) fn computes(p: &Plan) -> bool {
    p.m.is_multiple_of(MB) && p.c > 0 && p.c * p.m <= MAX_FILTER
}

/// Product `ξ` (see the module docs), the same block of `U[ξ + 1]`
/// prefetched as it goes.
///
/// # Safety
/// AVX-512F is available; [`computes`]`(p)`; `v`, `u` and `y` are the
/// pass's buffers; nothing else touches block `ξ` of `y` during the call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn product512(p: &Plan, xi: usize, v: &[f32], u: &[f32], y: SharedMut<'_, f32>) {
    let (c, m, cp, mp, tiles) = (p.c, p.m, p.cp(), p.mp(), p.tiles);
    let (uo, vo, yo) = (xi * c * m, xi * tiles * cp, xi * tiles * mp);
    // The furthest elements each operand is read or written at.
    assert!(computes(p) && uo + c * m <= u.len() && vo + (tiles - 1) * cp + c <= v.len());
    y.ptr_at(yo + (tiles - 1) * mp + m);
    let yp = y.ptr_at(yo);
    // The next product's filter, when there is one (the pass's U holds
    // all XI of them).
    let next = (xi + 1 < XI && uo + 2 * c * m <= u.len()).then_some(uo + c * m);
    let groups = tiles.div_ceil(NT);
    for m0 in (0..m).step_by(MB) {
        for gi in 0..groups {
            let t0 = gi * NT;
            let nt = NT.min(tiles - t0);
            // Group 0 prefetches the block's first line of each channel's
            // row of U[ξ + 1], group 1 the second (group 0 both when it is
            // the only one).
            let pf = match (next, gi) {
                (Some(nx), 0 | 1) => u.as_ptr().wrapping_add(nx + m0 + 16 * gi),
                _ => std::ptr::null(),
            };
            let b = Block {
                u: u.as_ptr().wrapping_add(uo + m0),
                ldu: m,
                v: v.as_ptr().wrapping_add(vo + t0 * cp),
                ldv: cp,
                c,
                y: yp.wrapping_add(t0 * mp + m0),
                ldy: mp,
                pf,
                pf2: groups == 1,
            };
            // SAFETY: rows 0..c of U[ξ] hold the block's 32 filters from
            // m0 (m0 + 32 <= m), the nt tiles from t0 have c values in V
            // and their rows of Y the 32 from m0 (asserted above);
            // prefetches do not fault.
            unsafe { with_width!(nt, T, [1, 2, 3, 4, 5, 6, 7], 8 => b.run::<T>()) };
        }
    }
}

/// One register tile's operands: row `k` of the filter block at
/// `u + k·ldu`, tile `t`'s channel `k` at `v + t·ldv + k`, its outputs at
/// `y + t·ldy`; `pf` (when not null) the line of the next filter to
/// prefetch per channel (`ldu` apart), two lines when `pf2`.
struct Block {
    u: *const f32,
    ldu: usize,
    v: *const f32,
    ldv: usize,
    c: usize,
    y: *mut f32,
    ldy: usize,
    pf: *const f32,
    pf2: bool,
}

impl Block {
    /// `T` tiles × 32 filters over all `c` channels.
    ///
    /// # Safety
    /// AVX-512F is available; the pointers reach what [`Block`] says.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn run<const T: usize>(&self) {
        let mut acc = [[_mm512_setzero_ps(); T]; 2];
        for k in 0..self.c {
            // SAFETY: the caller's guarantee (a prefetch does not fault).
            unsafe {
                if !self.pf.is_null() {
                    let line = self.pf.wrapping_add(k * self.ldu) as *const i8;
                    _mm_prefetch::<_MM_HINT_T1>(line);
                    if self.pf2 {
                        _mm_prefetch::<_MM_HINT_T1>(line.wrapping_add(64));
                    }
                }
                let row = self.u.add(k * self.ldu);
                let (w0, w1) = (_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16)));
                let [a0, a1] = &mut acc;
                for (t, (c0, c1)) in a0.iter_mut().zip(a1.iter_mut()).enumerate() {
                    let x = _mm512_set1_ps(*self.v.add(t * self.ldv + k));
                    *c0 = _mm512_fmadd_ps(w0, x, *c0);
                    *c1 = _mm512_fmadd_ps(w1, x, *c1);
                }
            }
        }
        let [a0, a1] = &acc;
        for (t, (c0, c1)) in a0.iter().zip(a1).enumerate() {
            // SAFETY: tile t's row of Y holds the block's 32 filters.
            unsafe {
                let o = self.y.add(t * self.ldy);
                _mm512_storeu_ps(o, *c0);
                _mm512_storeu_ps(o.add(16), *c1);
            }
        }
    }
}
