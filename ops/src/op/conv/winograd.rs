//! Winograd F(4x4, 3x3) for f32 2-D convolutions with a 3x3 kernel,
//! stride 1, dilation 1 and one group (the 3x3 layers of ResNet, VGG,
//! DenseNet, SqueezeNet and Inception).
//!
//! Each 4x4 block of outputs ("tile") comes from a 6x6 block of the padded
//! input. For one tile, one input channel `c` and one filter `m`, the
//! outputs are `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2015; the matrices are
//! the usual ones for interpolation points 0, ±1, ±2, written out in
//! [`bt6`] and [`at6`]): 36 multiplies where the direct form does 144.
//! Summed over channels, the element-wise products become 36 independent
//! matrix products, one per position `ξ` of the 6x6 transform:
//! `Y[ξ] (tiles × M) = V[ξ] (tiles × C) · U[ξ] (C × M)`. The conv runs as
//! four passes, each split over the pool's threads:
//!
//! 1. the input is copied into a zero-padded layout with 16 channels
//!    innermost (`[n][C/16][Hp][Wp][16]`), so the transforms below work
//!    on 16 channels per vector;
//! 2. the input transform `V = Bᵀ d B` of every tile and channel block,
//!    stored `[ξ][tile][C]`;
//! 3. the 36 products, each a serial call of the `gemm` crate (see
//!    [`product`] for which way round; `winoprod.rs`'s kernel for
//!    filters of up to 128x128 channels on AVX-512F), split over
//!    threads by `ξ` (no hand-off inside a product);
//! 4. the output transform `Aᵀ Y A` of every tile and block of 16
//!    filters, with the bias, the fused residual and the activation, stored
//!    into NCHW.
//!
//! Where the whole map's V and Y would stream through memory (ResNet-50's
//! 56x56 and 28x28 layers), `winofused.rs` runs the same steps one row of
//! tiles at a time instead (its `fits` is the rule); the plan, the
//! epilogue and the transforms both use are in `winoplan.rs`.
//!
//! The filter transform `U = G g Gᵀ` (in f64, rounded once) is made when
//! the session is built ([`crate::kernels::prepare`] attaches a
//! [`WinoFilter`]); a conv whose filter was not prepared transforms it on
//! the fly. The transformed filter is 4x the size of the 3x3 one.
//!
//! The passes are written as loops over 16-float lane arrays, compiled
//! twice: once under `#[target_feature(enable = "avx512f")]`, where each
//! lane array is one register, and once portably. [`fits`] takes the path
//! only on AVX-512 CPUs and only for shapes where it measured faster than
//! im2col + GEMM (docs/benchmarks.md); the tests run both builds.
//!
//! Accuracy: the transforms scale values by up to 100 (input) and 1/24
//! (filter), so the sums lose more bits than the direct form: up to 3e-5
//! of 1 + |value| at 16 input channels, 1.3e-4 at 64 and 1.5e-4 at 256
//! (the error grows with the channels summed), where the direct
//! form is off by about 1e-6 (unit-scale random data; a NumPy emulation of
//! the algorithm in f32 gives the same; the tests bound it against an f64
//! reference). `HETFLOW_WINOGRAD=0` turns the path off.

use super::geom::Geom;
use super::winofused;
use super::winoplan::{at6, bt6, lanes, Epi, Plan, L, TI, TO, XI};
use super::winoprod;
use crate::error::Result;
use crate::kernels::util::{isa, par_for, threads, Isa, SharedMut};
use crate::op::Activation;

/// `G` of F(4x4, 3x3): the filter transform, 6x3.
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// A 3x3 filter `[M, C, 3, 3]` transformed for [`conv`]: 36 matrices
/// `C × M` (`U[ξ]`, filters innermost). Made once per weight by
/// [`crate::kernels::prepare`].
pub struct WinoFilter {
    m: usize,
    c: usize,
    data: Vec<f32>,
}

impl std::fmt::Debug for WinoFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WinoFilter({} filters x {} channels)", self.m, self.c)
    }
}

impl WinoFilter {
    /// Transforms `w`, `m` filters of `c` channels of 3x3 values.
    pub(crate) fn transform(w: &[f32], m: usize, c: usize) -> Result<WinoFilter> {
        let mut data = Vec::new();
        transform_into(w, m, c, &mut data)?;
        Ok(WinoFilter { m, c, data })
    }
}

fn transform_into(w: &[f32], m: usize, c: usize, data: &mut Vec<f32>) -> Result<()> {
    if w.len() != m * c * 9 {
        crate::bail!(
            "internal: Winograd filter of {} values, expected {m}x{c}x3x3",
            w.len()
        );
    }
    data.clear();
    data.resize(XI * c * m, 0.0);
    for mi in 0..m {
        for ci in 0..c {
            let g = &w[(mi * c + ci) * 9..][..9];
            // t = G g (6x3), then U = t Gᵀ (6x6).
            let mut t = [[0.0f64; 3]; TI];
            for (r, row) in t.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|k| G[r][k] * g[k * 3 + j] as f64).sum();
                }
            }
            for (r, row) in t.iter().enumerate() {
                for s in 0..TI {
                    let u: f64 = (0..3).map(|j| row[j] * G[s][j]).sum();
                    data[((r * TI + s) * c + ci) * m + mi] = u as f32;
                }
            }
        }
    }
    Ok(())
}

/// Output sides from which a conv takes the path, by its filter count:
/// below these, the 36 products are too small for the GEMM crate's tiles
/// and im2col + GEMM measured faster (docs/benchmarks.md).
const MIN_OUT_SIDE: usize = 8;

/// Whether an f32 conv of this geometry runs here: 2-D, 3x3, stride 1,
/// dilation 1, one group, enough channels and filters to fill the
/// products, an output of at least [`MIN_OUT_SIDE`] on each side, on a CPU
/// with AVX-512F.
pub(super) fn fits(g: &Geom) -> bool {
    shape_fits(g.c, g.m, g.group, &g.win) && isa() == Isa::Avx512 && enabled()
}

/// The shape rule of [`fits`], on the attributes a session knows when it
/// prepares the filter.
pub(super) fn shape_fits(c: usize, m: usize, group: usize, win: &crate::op::Window) -> bool {
    computes(group, win)
        && m >= 16
        && win.output.iter().all(|&o| o >= MIN_OUT_SIDE)
        && c >= MIN_CHANNELS
        && tile_waste(&win.output) <= MAX_WASTE
}

/// The geometries the kernel computes at all (which of them it is
/// chosen for is [`shape_fits`]).
fn computes(group: usize, win: &crate::op::Window) -> bool {
    win.kernel == [3, 3] && win.strides == [1, 1] && win.dilations == [1, 1] && group == 1
}

/// Input channels from which the path is taken: SqueezeNet's 3x3 expands
/// on 16 channels (55x55, 64 filters) ran in 1.16-1.37 ms here against
/// 0.75 ms in the direct kernel (`direct.rs`, which takes up to 17
/// channels of a 3x3), 2026-12-03.
const MIN_CHANNELS: usize = 32;

/// The most output area the 4x4 tiles may cover per output cell: a 13x13
/// map takes 16x16 of tiles (1.51), and SqueezeNet's 13x13 expands (64
/// channels, 256 filters) ran in 0.86-0.96 ms here against 0.65-0.69 in
/// im2col + GEMM (2026-12-03). 14x14 and 7x7 (ResNet's) cover 1.31.
const MAX_WASTE: f64 = 1.4;

/// Tiled area over output area.
fn tile_waste(out: &[usize]) -> f64 {
    let tiled: usize = out.iter().map(|&o| o.div_ceil(TO) * TO).product();
    let area: usize = out.iter().product();
    tiled as f64 / area.max(1) as f64
}

#[cfg(test)]
thread_local! {
    /// Turns the path off on this thread, so tests reach the im2col paths
    /// with the shapes Winograd would take.
    pub(super) static OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `HETFLOW_WINOGRAD=0` turns the path off (to compare against im2col +
/// GEMM on one binary).
pub(super) fn enabled() -> bool {
    #[cfg(test)]
    if OFF.with(|o| o.get()) {
        return false;
    }
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    crate::kernels::util::env_switch(&ON, "HETFLOW_WINOGRAD")
}

/// The conv of `g` (which [`shape_fits`]) on the instruction set the CPU
/// runs best.
pub(super) fn conv(
    g: &Geom,
    prepared: Option<&WinoFilter>,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Activation,
) -> Result<Vec<f32>> {
    let fused = winofused::fits(&Plan::new(g));
    conv_with(isa(), fused, g, prepared, x, w, b, res, act)
}

/// Runs `f(i)` for `i` in `0..n`, split over the pool's threads when
/// `par`.
fn each(n: usize, par: bool, f: &(dyn Fn(usize) + Sync)) {
    if par && n > 1 {
        par_for(n, 1, &|r| r.for_each(f));
    } else {
        (0..n).for_each(f);
    }
}

/// [`conv`] on a given instruction set (the tests run each), one row of
/// tiles at a time (`winofused.rs`) when `fused`, the CPU has AVX-512F and
/// the plan is one that path computes, else in four passes.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_with(
    isa: Isa,
    fused: bool,
    g: &Geom,
    prepared: Option<&WinoFilter>,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Activation,
) -> Result<Vec<f32>> {
    if !computes(g.group, &g.win) || g.spatial.len() != 2 {
        crate::bail!("internal: Winograd conv on a conv it does not fit");
    }
    let p = Plan::new(g);
    let (cp, mp, tiles) = (p.cp(), p.mp(), p.tiles);
    if x.len() != p.n * p.c * p.h * p.w
        || b.is_some_and(|b| b.len() != p.m)
        || res.is_some_and(|r| r.len() != p.n * p.m * p.oh * p.ow)
    {
        crate::bail!("internal: Winograd conv operands do not fit their shapes");
    }
    let mut own = crate::pool::take::<f32>(0);
    let u: &[f32] = match prepared.filter(|f| f.m == p.m && f.c == p.c) {
        Some(f) => &f.data,
        None => {
            transform_into(w, p.m, p.c, &mut own)?;
            &own
        }
    };
    let par = threads() > 1;
    let avx512 = isa == Isa::Avx512;
    let olen = p.n * p.m * p.oh * p.ow;
    if fused && avx512 && winofused::computes(&p) {
        let mut o = crate::pool::take::<f32>(olen);
        // SAFETY: room for `olen`; every row of tiles writes all its
        // output rows for every filter.
        let os = unsafe { SharedMut::from_raw(o.as_mut_ptr(), olen) };
        winofused::conv(&p, x, u, &Epi { b, res, act }, os);
        // SAFETY: written in full above.
        unsafe { o.set_len(olen) };
        crate::pool::give(own);
        return Ok(o);
    }

    // 1. The padded, channel-blocked input.
    let mut xt = crate::pool::take::<f32>(0);
    xt.resize(p.n * p.cb * p.hp * p.wp * L, 0.0);
    {
        let xs = SharedMut::new(&mut xt);
        each(p.n * p.cb, par, &|nb| {
            // SAFETY: block `nb` of the copy is this task's alone.
            let dst = unsafe { xs.slice(nb * p.hp * p.wp * L, p.hp * p.wp * L) };
            pad_block(&p, x, nb, dst);
        });
    }

    // 2. V[ξ][tile][C].
    let vlen = XI * tiles * cp;
    let mut v = crate::pool::take::<f32>(vlen);
    {
        // SAFETY: the buffer has room for `vlen` (pool::take's contract);
        // every element is written below before it is read (each tile and
        // channel block stores all 36 positions of its 16 lanes).
        let vs = unsafe { SharedMut::from_raw(v.as_mut_ptr(), vlen) };
        let xt = &xt[..];
        each(p.n * p.cb * p.th, par, &|row| {
            // SAFETY: each (image, channel block, tile row) writes its own
            // tiles' lanes of V.
            unsafe {
                if avx512 {
                    #[cfg(target_arch = "x86_64")]
                    input_row_avx512(&p, xt, row, vs);
                } else {
                    input_row(&p, xt, row, vs);
                }
            }
        });
        // SAFETY: written in full above.
        unsafe { v.set_len(vlen) };
    }
    crate::pool::give(xt);

    // 3. Y[ξ] = V[ξ] · U[ξ], tiles × M each, rows padded to `mp`.
    let ylen = XI * tiles * mp;
    let mut y = crate::pool::take::<f32>(ylen);
    if !p.m.is_multiple_of(L) {
        // The padding lanes are read (and dropped) by the output transform.
        y.resize(ylen, 0.0);
    }
    {
        // SAFETY: room for `ylen`; the products write every row's first
        // `m` values, the rest were zeroed above when there are any.
        let ys = unsafe { SharedMut::from_raw(y.as_mut_ptr(), ylen) };
        let (v, u) = (&v[..], u);
        let own_product = avx512 && winoprod::computes(&p) && winoprod::enabled();
        each(XI, par, &|xi| {
            // SAFETY: product ξ writes block ξ of Y alone; AVX-512F where
            // `own_product`.
            unsafe {
                #[cfg(target_arch = "x86_64")]
                if own_product {
                    return winoprod::product512(&p, xi, v, u, ys);
                }
                product(&p, xi, v, u, ys)
            }
        });
        // SAFETY: written in full (or zeroed) above.
        unsafe { y.set_len(ylen) };
    }
    crate::pool::give(v);
    crate::pool::give(own);

    // 4. The output.
    let mut o = crate::pool::take::<f32>(olen);
    {
        // SAFETY: room for `olen`; the tiles cover every output position
        // and every filter.
        let os = unsafe { SharedMut::from_raw(o.as_mut_ptr(), olen) };
        let y = &y[..];
        let epi = Epi { b, res, act };
        // By rows of tiles (and blocks of filters): a row of tiles writes
        // whole output rows, so two threads never write one cache line
        // (adjacent tiles of a row share lines; split by tiles, two threads
        // did, and the pass ran slower on two than on one).
        each(p.n * p.th * p.mb, par, &|row| {
            // SAFETY: (image, tile row, filter block) `row` writes its own
            // output rows of its own planes.
            unsafe {
                if avx512 {
                    #[cfg(target_arch = "x86_64")]
                    output_row_avx512(&p, y, row, &epi, os);
                } else {
                    output_row(&p, y, row, &epi, os);
                }
            }
        });
        // SAFETY: every element written above.
        unsafe { o.set_len(olen) };
    }
    crate::pool::give(y);
    Ok(o)
}

/// Product `ξ`: `Y[ξ]ᵀ (M × tiles) = U[ξ]ᵀ (M × C) · V[ξ]ᵀ (C × tiles)`,
/// one serial call of the `gemm` crate. Written this way round, the
/// filter (the large operand when tiles are few) is the left operand,
/// read in place (column-major, filters innermost), and the crate packs
/// only the tiles' columns; the other way round it packed the whole
/// transformed filter on every call (a 14x14 map: 16 tiles against 256
/// filters).
///
/// # Safety
/// Nothing else touches block `ξ` of `y` during the call.
unsafe fn product(p: &Plan, xi: usize, v: &[f32], u: &[f32], y: SharedMut<'_, f32>) {
    let (cp, mp, tiles) = (p.cp(), p.mp(), p.tiles);
    let (uo, vo, yo) = (xi * p.c * p.m, xi * tiles * cp, xi * tiles * mp);
    // The furthest elements each operand is read or written at.
    assert!(uo + p.c * p.m <= u.len() && vo + (tiles - 1) * cp + p.c <= v.len());
    y.ptr_at(yo + (tiles - 1) * mp + p.m);
    // SAFETY: f32 is supported by `gemm`; every offset the strides reach
    // is inside its buffer (asserted above); Y does not alias U or V (a
    // distinct buffer), and block ξ is this call's alone (the caller's
    // guarantee).
    unsafe {
        gemm::gemm(
            p.m,
            tiles,
            p.c,
            y.ptr_at(yo),
            mp as isize,
            1,
            false,
            u.as_ptr().add(uo),
            p.m as isize,
            1,
            v.as_ptr().add(vo),
            cp as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Copies image/channel block `nb` of `x` into `dst` (`[Hp][Wp][16]`,
/// zeroed), the input at (pt, pl).
fn pad_block(p: &Plan, x: &[f32], nb: usize, dst: &mut [f32]) {
    let (ni, cbi) = (nb / p.cb, nb % p.cb);
    for l in 0..L.min(p.c - cbi * L) {
        let plane = &x[(ni * p.c + cbi * L + l) * p.h * p.w..][..p.h * p.w];
        for (yy, row) in plane.chunks_exact(p.w).enumerate() {
            let base = ((yy + p.pt) * p.wp + p.pl) * L + l;
            for (xx, &val) in row.iter().enumerate() {
                dst[base + xx * L] = val;
            }
        }
    }
}

/// The input transform of every tile in one row of tiles of one image and
/// channel block (`row` = (image, channel block, tile row)).
///
/// # Safety
/// Nothing else writes this row's tiles' lanes of `v`.
#[inline(always)]
unsafe fn input_row_body(p: &Plan, xt: &[f32], row: usize, v: SharedMut<'_, f32>) {
    let (nb, ti) = (row / p.th, row % p.th);
    let (ni, cbi) = (nb / p.cb, nb % p.cb);
    let block = &xt[nb * p.hp * p.wp * L..][..p.hp * p.wp * L];
    let cp = p.cp();
    for tj in 0..p.tw {
        let tile = (ni * p.th + ti) * p.tw + tj;
        let at = |r: usize, c: usize| lanes(&block[((TO * ti + r) * p.wp + TO * tj + c) * L..]);
        // Columns first (Bᵀ d), then rows ((Bᵀ d) B). The math of
        // `winoplan::input_tile`, written out: through that helper (and
        // `output_tile` below) this path ran 4-10% slower (a 3x3 128 at
        // 28x28, two threads: 0.238 -> 0.262 ms), the row path as fast.
        let mut t = [[0.0; L]; XI];
        for c in 0..TI {
            let o = bt6([at(0, c), at(1, c), at(2, c), at(3, c), at(4, c), at(5, c)]);
            for r in 0..TI {
                t[r * TI + c] = o[r];
            }
        }
        for r in 0..TI {
            let q = &t[r * TI..(r + 1) * TI];
            let o = bt6([&q[0], &q[1], &q[2], &q[3], &q[4], &q[5]]);
            for (c, val) in o.iter().enumerate() {
                let off = ((r * TI + c) * p.tiles + tile) * cp + cbi * L;
                // SAFETY: the caller's guarantee; `ptr_at` checks that the
                // lanes lie in V (the buffer may be uninitialised: no view).
                unsafe {
                    v.ptr_at(off + L);
                    std::ptr::copy_nonoverlapping(val.as_ptr(), v.ptr_at(off), L)
                };
            }
        }
    }
}

unsafe fn input_row(p: &Plan, xt: &[f32], row: usize, v: SharedMut<'_, f32>) {
    // SAFETY: passes on the caller's guarantee.
    unsafe { input_row_body(p, xt, row, v) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_row_avx512(p: &Plan, xt: &[f32], row: usize, v: SharedMut<'_, f32>) {
    // SAFETY: passes on the caller's guarantee; the caller checked the CPU.
    unsafe { input_row_body(p, xt, row, v) }
}

/// The output transform of one row of tiles for one block of filters
/// (`row` = (image, tile row, filter block)), with the epilogue, into NCHW
/// `o`.
///
/// # Safety
/// Nothing else writes these outputs.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `l` picks a lane of 16 arrays
unsafe fn output_row_body(p: &Plan, y: &[f32], row: usize, epi: &Epi<'_>, o: SharedMut<'_, f32>) {
    let mp = p.mp();
    let (nt, mbi) = (row / p.mb, row % p.mb);
    let (ni, ti) = (nt / p.th, nt % p.th);
    let rows = TO.min(p.oh - TO * ti);
    let osz = p.oh * p.ow;
    for tj in 0..p.tw {
        let t = (ni * p.th + ti) * p.tw + tj;
        let cols = TO.min(p.ow - TO * tj);
        let at = |xi: usize| lanes(&y[(xi * p.tiles + t) * mp + mbi * L..]);
        // Rows of the 6x6 first (Aᵀ Y: 4x6), then columns (4x4): the math
        // of `winoplan::output_tile`, written out (see the input pass).
        let mut q = [[0.0; L]; TO * TI];
        for c in 0..TI {
            let s = at6([
                at(c),
                at(TI + c),
                at(2 * TI + c),
                at(3 * TI + c),
                at(4 * TI + c),
                at(5 * TI + c),
            ]);
            for i in 0..TO {
                q[i * TI + c] = s[i];
            }
        }
        let mut out = [[0.0; L]; TO * TO];
        for i in 0..TO {
            let r = &q[i * TI..(i + 1) * TI];
            let s = at6([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]);
            for j in 0..TO {
                let mut val = s[j];
                if let Some(b) = epi.b {
                    let nb = L.min(p.m - mbi * L);
                    for (l, v) in val.iter_mut().enumerate().take(nb) {
                        *v += b[mbi * L + l];
                    }
                }
                out[i * TO + j] = val;
            }
        }
        for l in 0..L.min(p.m - mbi * L) {
            let plane = (ni * p.m + mbi * L + l) * osz;
            for i in 0..rows {
                let off = plane + (TO * ti + i) * p.ow + TO * tj;
                // Bound check of the whole run (panics past the output).
                o.ptr_at(off + cols);
                for j in 0..cols {
                    let mut val = out[i * TO + j][l];
                    if let Some(r) = epi.res {
                        val += r[off + j];
                    }
                    let val = super::act::scalar(epi.act, val);
                    // SAFETY: the caller's guarantee; `ptr_at` checks the
                    // bound (the output is not initialised yet: no view).
                    unsafe { o.ptr_at(off + j).write(val) };
                }
            }
        }
    }
}

unsafe fn output_row(p: &Plan, y: &[f32], row: usize, epi: &Epi<'_>, o: SharedMut<'_, f32>) {
    // SAFETY: passes on the caller's guarantee.
    unsafe { output_row_body(p, y, row, epi, o) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_row_avx512(p: &Plan, y: &[f32], row: usize, epi: &Epi<'_>, o: SharedMut<'_, f32>) {
    // SAFETY: passes on the caller's guarantee; the caller checked the CPU.
    unsafe { output_row_body(p, y, row, epi, o) }
}
