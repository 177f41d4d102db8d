//! N-d convolution: pointwise convs as one GEMM on NCHW, depthwise 2-D convs
//! as a direct loop (`depthwise.rs`; stride-1 "same"-width ones read in
//! place by `dwflat.rs`, its plan made at session build), everything else as im2col + GEMM per
//! (batch, group) through the `gemm` crate ([`conv_f`]). f32 pointwise
//! convs with many filter rows and a small filter take the blocked product
//! over a filter packed at session build instead ([`conv_blocked`],
//! `blocked.rs`; the rule is [`blocked_fits`]). f32 3x3 stride-1 convs
//! that `winograd.rs` takes run F(4x4, 3x3) (by rows of tiles in
//! `winofused.rs` where that fits); other 2-D convs with few
//! taps per filter run the direct kernel of `direct.rs` (its `fits`);
//! one-group f32 1x1 unpadded convs over 28x28 and larger output planes
//! (pointwise, or 2-D strided) run the pointwise product of
//! `pointwise.rs` (its `fits`); one-group f32 convs with small output
//! planes (ResNet-50's 7x7 and 14x14 layers, 1x1 or im2col) and padded
//! or strided ones up to 28x28 (taps gathered from padded planes) run
//! the channel-vector product of `chanvec.rs` (its `fits`), checked in
//! that order.

use super::blocked::{self, PackedFilter, Product};
use super::chanvec::{self, ChanFilter};
use super::depthwise;
use super::direct::{self, DirectFilter};
use super::dwflat::Flat;
use super::geom::{im2col, Geom, Scratch};
use super::pointwise;
use super::winograd::{self, WinoFilter};
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{
    float_dispatch, input, opt_input, out, par_try_for, typed, Float, SharedMut,
};
use crate::op::matmul::kernel::gemm_into;
use crate::op::matmul::packed::Mat;
use crate::op::{resolve_window, Activation, ConvAttrs};
use crate::tensor::Tensor;

/// Convolution: inputs X `[N, C, d...]`, W `[M, C/group, k...]`, optional
/// bias `[M]`.
pub(crate) fn conv(a: &ConvAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let w = input(inputs, 1, "W")?;
    let b = opt_input(inputs, 2).filter(|b| !b.is_empty());
    // A residual fused in by the optimizer (input 3): added before the
    // activation.
    let r = if a.residual {
        Some(input(inputs, 3, "residual")?)
    } else {
        None
    };
    let (xs, ws) = (x.shape(), w.shape());
    if xs.len() < 3 || ws.len() != xs.len() {
        crate::bail!(
            "Conv needs X of rank >= 3 and W of the same rank, got {:?} and {:?}",
            xs,
            ws
        );
    }
    if x.dtype() != w.dtype() {
        crate::bail!("Conv: X is {}, W is {}", x.dtype(), w.dtype());
    }
    let group = a.group.max(1);
    let (n, c, m) = (xs[0], xs[1], ws[0]);
    if c != ws[1] * group || m % group != 0 {
        crate::bail!("Conv: X {:?} and W {:?} do not fit group {}", xs, ws, group);
    }
    let kernel = ws[2..].to_vec();
    if let Some(ks) = &a.kernel_shape {
        if *ks != kernel {
            crate::bail!("Conv: kernel_shape {:?} differs from W's {:?}", ks, kernel);
        }
    }
    if kernel.contains(&0) || xs[2..].contains(&0) {
        crate::bail!("Conv: empty kernel {:?} or input {:?}", kernel, xs);
    }
    let win = resolve_window(
        &xs[2..],
        &kernel,
        &a.strides,
        &a.dilations,
        &a.pads,
        a.auto_pad,
        false,
    )?;
    if let Some(b) = b {
        if b.len() != m {
            crate::bail!("Conv: bias has {} elements, expected {}", b.len(), m);
        }
        if b.dtype() != x.dtype() {
            crate::bail!("Conv: bias is {}, X is {}", b.dtype(), x.dtype());
        }
    }
    let g = Geom {
        n,
        c,
        m,
        group,
        spatial: xs[2..].to_vec(),
        win,
    };
    let mut oshape = vec![n, m];
    oshape.extend(&g.win.output);
    if let Some(r) = r {
        if r.shape() != oshape.as_slice() || r.dtype() != x.dtype() {
            crate::bail!(
                "Conv: residual is {} {:?}, the output {} {:?}",
                r.dtype(),
                r.shape(),
                x.dtype(),
                oshape
            );
        }
    }
    if x.dtype() == DType::F32 {
        let xv = typed::<f32>(x, "input 0 (X)")?;
        let wv = typed::<f32>(w, "input 1 (W)")?;
        let bv = b.map(|b| typed::<f32>(b, "input 2 (B)")).transpose()?;
        let rv = r
            .map(|r| typed::<f32>(r, "input 3 (residual)"))
            .transpose()?;
        if g.depthwise2d() {
            let flat = w.prepared::<Flat>();
            let o = depthwise::depthwise2d_f32(&g, flat, xv, wv, bv, rv, a.activation);
            return out(oshape, o);
        }
        if winograd::fits(&g) {
            let o = winograd::conv(&g, w.prepared::<WinoFilter>(), xv, wv, bv, rv, a.activation)?;
            return out(oshape, o);
        }
        if direct::fits(&g) {
            let o = direct::conv(
                &g,
                w.prepared::<DirectFilter>(),
                xv,
                wv,
                bv,
                rv,
                a.activation,
            )?;
            return out(oshape, o);
        }
        if pointwise::fits(&g) {
            let o = pointwise::conv(
                &g,
                w.prepared::<PackedFilter>(),
                xv,
                wv,
                bv,
                rv,
                a.activation,
            )?;
            return out(oshape, o);
        }
        if chanvec::fits(&g) {
            let o = chanvec::conv(&g, w.prepared::<ChanFilter>(), xv, wv, bv, rv, a.activation)?;
            return out(oshape, o);
        }
        if blocked::available() && g.pointwise() && blocked_fits(g.mg(), g.kdim()) {
            let o = conv_blocked(
                &g,
                w.prepared::<PackedFilter>(),
                xv,
                wv,
                bv,
                rv,
                a.activation,
            )?;
            return out(oshape, o);
        }
    }
    float_dispatch!(x.dtype(), "Conv", F => {
        let xv = typed::<F>(x, "input 0 (X)")?;
        let wv = typed::<F>(w, "input 1 (W)")?;
        let bv = match b {
            Some(b) => Some(typed::<F>(b, "input 2 (B)")?),
            None => None,
        };
        let rv = match r {
            Some(r) => Some(typed::<F>(r, "input 3 (residual)")?),
            None => None,
        };
        out(oshape, conv_f(&g, xv, wv, bv, rv, a.activation)?)
    })
}

/// Filter values per group up to which a pointwise conv takes the
/// blocked product (48 KiB: in L1/L2 beside the panels of B).
const BLOCKED_MAX_FILTER: usize = 12 * 1024;

/// Whether a pointwise f32 conv with `mg` filter rows of `kdim` values per
/// group takes the blocked product. Measured against the `gemm` crate
/// (docs/benchmarks.md, light zoo, one thread): faster where many filter
/// rows share each packed panel of B and the filter stays in cache
/// (MobileNetV2's expanding 1x1, 192 rows of 32: 328 → 211 µs;
/// SqueezeNet's 64-row expands), slower with few rows (16: packing B is
/// then half the work), with large filters (ResNet-50's 512-2048-row 1x1
/// convs at 7x7: the filter re-read from L3 for every panel) and on
/// im2col convs (3x3, the 7x7 stems), where the crate's own blocking won;
/// those stay on the crate. One-group convs over 256 positions or more
/// take `pointwise.rs` before this rule is asked (it reads the planes in
/// place; against this path and the crate, light-zoo models alternated
/// with `HETFLOW_POINTWISE=0`: SqueezeNet 4.35 → 4.20 ms at one thread,
/// 3.85 → 3.56 at two; none slower).
fn blocked_fits(mg: usize, kdim: usize) -> bool {
    mg >= 64 && mg * kdim <= BLOCKED_MAX_FILTER
}

/// Attaches the prepared form of an f32 conv filter (`[M, C/group, k...]`)
/// when the conv takes a path that reads one: the Winograd transform for a
/// 3x3 conv that [`winograd::shape_fits`] (this needs `x_shape`, the
/// input's shape, for the output size), the packed blocks of the blocked
/// product for a pointwise conv that [`blocked_fits`], on a CPU that runs
/// the path. Returns whether `w` carries a prepared form afterwards.
pub(crate) fn prepare_filter(w: &Tensor, a: &ConvAttrs, x_shape: Option<&[usize]>) -> Result<bool> {
    let ws = w.shape();
    let group = a.group.max(1);
    if w.dtype() != DType::F32 || ws.len() < 3 || !blocked::available() {
        return Ok(false);
    }
    if let Some(xs) = x_shape.filter(|xs| xs.len() == 4 && ws.len() == 4 && xs[1] == ws[1] * group)
    {
        let win = resolve_window(
            &xs[2..],
            &ws[2..],
            &a.strides,
            &a.dilations,
            &a.pads,
            a.auto_pad,
            false,
        );
        if let Ok(win) = win {
            let g = Geom {
                n: xs[0],
                c: xs[1],
                m: ws[0],
                group,
                spatial: xs[2..].to_vec(),
                win: win.clone(),
            };
            if g.depthwise2d() {
                return match Flat::new(&g) {
                    Some(f) => w.prepare_with(|| Ok(f)),
                    None => Ok(false),
                };
            }
            if winograd::shape_fits(xs[1], ws[0], group, &win) && winograd::enabled() {
                let wv = typed::<f32>(w, "filter")?;
                return w.prepare_with(|| WinoFilter::transform(wv, ws[0], ws[1]));
            }
            if direct::shape_fits(xs[1], ws[0], group, &win) {
                let wv = typed::<f32>(w, "filter")?;
                let kdim = wv.len() / ws[0].max(1);
                return w.prepare_with(|| DirectFilter::pack(wv, ws[0], kdim));
            }
            let kdim = ws[1..].iter().product::<usize>();
            if pointwise::fits(&g) {
                let wv = typed::<f32>(w, "filter")?;
                return w.prepare_with(|| PackedFilter::pack(wv, ws[0], kdim, 1));
            }
            if chanvec::fits(&g) {
                let wv = typed::<f32>(w, "filter")?;
                return w.prepare_with(|| ChanFilter::pack(wv, ws[0], kdim));
            }
        }
    }
    let pointwise = ws[2..].iter().all(|&k| k == 1)
        && a.strides.iter().all(|&s| s == 1)
        && a.pads.iter().all(|&p| p == 0);
    let (m, kdim) = (ws[0], ws[1..].iter().product::<usize>());
    if !pointwise || m % group != 0 || !blocked_fits(m / group, kdim) {
        return Ok(false);
    }
    w.prepare_with(|| PackedFilter::pack(typed::<f32>(w, "filter")?, m, kdim, group))
}

/// ConvInteger: `conv(x - x_zero_point, w - w_zero_point)` in i32. The
/// zero point of w is per tensor or one per output channel. Computed in
/// f64 through [`conv`] (exact while sums stay below 2^53), then rounded.
pub(crate) fn conv_integer(a: &ConvAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "x")?;
    let w = input(inputs, 1, "w")?;
    let int8 = |d: crate::DType| matches!(d, crate::DType::U8 | crate::DType::I8);
    if !int8(x.dtype()) || !int8(w.dtype()) {
        crate::bail!(
            "ConvInteger needs u8/i8 x and w, got {} and {}",
            x.dtype(),
            w.dtype()
        );
    }
    let zero = |i: usize| {
        opt_input(inputs, i)
            .map(|z| z.to_f32_vec())
            .unwrap_or_default()
    };
    let (xz, wz) = (zero(2), zero(3));
    if xz.len() > 1 {
        crate::bail!(
            "ConvInteger: x_zero_point must be one value, got {}",
            xz.len()
        );
    }
    let m = w.shape().first().copied().unwrap_or(0);
    if wz.len() > 1 && wz.len() != m {
        crate::bail!(
            "ConvInteger: w_zero_point has {} values, expected 1 or {m} (one per output channel)",
            wz.len()
        );
    }
    let xw = x.cast(crate::DType::F64);
    let xv: Vec<f64> = typed::<f64>(&xw, "input 0 (x)")?
        .iter()
        .map(|&v| v - xz.first().copied().unwrap_or(0.0) as f64)
        .collect();
    let per = w.len() / m.max(1);
    let ww = w.cast(crate::DType::F64);
    let wv: Vec<f64> = typed::<f64>(&ww, "input 1 (w)")?
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let z = match wz.len() {
                0 => 0.0,
                1 => wz[0],
                _ => wz[i / per.max(1)],
            };
            v - z as f64
        })
        .collect();
    let xf = out(x.shape().to_vec(), xv)?;
    let wf = out(w.shape().to_vec(), wv)?;
    let y = conv(a, &[Some(&xf), Some(&wf)])?;
    let yv: Vec<i32> = typed::<f64>(&y, "ConvInteger output")?
        .iter()
        .map(|&v| v.round() as i32)
        .collect();
    out(y.shape().to_vec(), yv)
}

/// Bytes of im2col buffer one GEMM call works on: small enough to stay in
/// L2 while the GEMM packs it, large enough to keep the GEMM efficient.
const COL_TILE_BYTES: usize = 512 * 1024;

fn conv_f<F: Float>(
    g: &Geom,
    x: &[F],
    w: &[F],
    b: Option<&[F]>,
    res: Option<&[F]>,
    act: Activation,
) -> Result<Vec<F>> {
    let (osz, mg) = (g.osz(), g.mg());
    // Every element is written below (the depthwise loop accumulates, so
    // its output starts from zeros); NaN marks any that would not be.
    let mut o = if g.depthwise2d() {
        crate::pool::filled(g.n * g.m * osz, F::ZERO)
    } else {
        crate::pool::stale(g.n * g.m * osz, F::c(f64::NAN))
    };
    if o.is_empty() {
        return Ok(o);
    }
    if g.depthwise2d() {
        depthwise::depthwise2d(g, x, w, b, &mut o);
        if let Some(r) = res {
            for (y, r) in o.iter_mut().zip(r) {
                *y += *r;
            }
        }
        super::act::apply(act, &mut o);
        return Ok(o);
    }
    let win = &g.win;
    let pointwise = g.pointwise();
    let kdim = g.cg() * g.ksz();
    let units = g.n * g.group;
    let small = mg * osz * kdim <= 64 * 64 * 64;
    let threads = crate::kernels::util::threads();
    // im2col tiles: whole output rows (segments of the last spatial dim).
    // Tiling pays when the full im2col buffer would spill out of L2 and
    // the weights (re-packed by every GEMM call) are small next to it.
    let ol = *win.output.last().unwrap_or(&1);
    let segs = osz / ol.max(1);
    let seg_bytes = kdim * ol * std::mem::size_of::<F>();
    let col_bytes = seg_bytes * segs;
    let w_bytes = mg * kdim * std::mem::size_of::<F>();
    let tile_segs = if !pointwise && col_bytes > 2 * COL_TILE_BYTES && w_bytes * 8 <= col_bytes {
        (COL_TILE_BYTES / seg_bytes.max(1)).clamp(1, segs)
    } else {
        segs
    };
    let tiles = segs.div_ceil(tile_segs);
    let col_len = if pointwise { 0 } else { kdim * tile_segs * ol };
    // One (batch, group) unit writes its own contiguous block of the output.
    let unit = |u: usize, dst: &mut [F], col: &mut Vec<F>, par: bool| -> Result<()> {
        let (bn, gi) = (u / g.group, u % g.group);
        // The residual and/or the bias are added after the GEMM (`Epi`).
        let epi = Epi {
            res: res.map(|r| &r[u * mg * osz..(u + 1) * mg * osz]),
            bias: b.map(|b| &b[gi * mg..(gi + 1) * mg]),
            act,
            n: osz,
        };
        let xoff = (bn * g.c + gi * g.cg()) * g.isz();
        let lhs = Mat::new(w, gi * mg * kdim, kdim, 1);
        let xg = &x[xoff..xoff + g.cg() * g.isz()];
        if pointwise {
            let rhs = Mat::new(x, xoff, g.isz(), 1);
            return fused_gemm(mg, osz, kdim, dst, lhs, rhs, &epi, par);
        }
        if tiles == 1 {
            col.resize(kdim * osz, F::ZERO);
            im2col(g, xg, col, 0, segs, par);
            return fused_gemm(mg, osz, kdim, dst, lhs, Mat::new(col, 0, osz, 1), &epi, par);
        }
        // Tiled: each tile writes columns [c0, c0 + tn) of every output row.
        // Tiles are independent, so with threads they run side by side,
        // each with its own buffer.
        let out = SharedMut::new(dst);
        let run_tile = |t: usize, col: &mut Vec<F>| -> Result<()> {
            let s0 = t * tile_segs;
            let ns = tile_segs.min(segs - s0);
            let (c0, tn) = (s0 * ol, ns * ol);
            col.resize(kdim * tn, F::ZERO);
            im2col(g, xg, col, s0, ns, false);
            // SAFETY: tiles write disjoint column ranges [c0, c0 + tn) of
            // the mg output rows.
            unsafe {
                epi.block(
                    out,
                    0,
                    mg,
                    c0,
                    tn,
                    lhs,
                    Mat::new(col, 0, tn, 1),
                    kdim,
                    false,
                )
            }
        };
        if par && threads > 1 {
            par_try_for(tiles, 1, &|ts| {
                let mut col = Scratch(crate::pool::stale(col_len, F::c(f64::NAN)));
                ts.into_iter().try_for_each(|t| run_tile(t, &mut col.0))
            })
        } else {
            (0..tiles).try_for_each(|t| run_tile(t, col))
        }
    };
    if small && units > 1 && threads > 1 {
        let per = mg * osz;
        let shared = SharedMut::new(&mut o);
        par_try_for(units, 1, &|us| {
            let mut col = Scratch(crate::pool::stale(col_len, F::c(f64::NAN)));
            us.into_iter().try_for_each(|u| {
                // SAFETY: unit `u` owns its block of the output.
                let dst = unsafe { shared.slice(u * per, per) };
                unit(u, dst, &mut col.0, false)
            })
        })?;
    } else {
        let mut col = Scratch(crate::pool::stale(col_len, F::c(f64::NAN)));
        for (u, dst) in o.chunks_mut(mg * osz).enumerate() {
            unit(u, dst, &mut col.0, true)?;
        }
    }
    Ok(o)
}

/// Bytes of im2col buffer one tile of [`conv_blocked`] fills: the
/// product's panels copy from it while it is in L2.
const BLOCKED_TILE_BYTES: usize = 256 * 1024;

/// f32 conv through the blocked product (`blocked.rs`): per (batch,
/// group) unit, the packed filter times the input planes (pointwise) or
/// times im2col tiles of whole output rows, bias, residual and activation
/// fused into the product's stores. `prepared` is the filter packed at
/// session build, when it was (else it is packed here).
///
/// Threads: units side by side when each is small (grouped convs), else
/// im2col tiles side by side when there are enough, else each product's
/// column panels.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_blocked(
    g: &Geom,
    prepared: Option<&PackedFilter>,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Activation,
) -> Result<Vec<f32>> {
    let (osz, isz, mg, cg, kdim) = (g.osz(), g.isz(), g.mg(), g.cg(), g.kdim());
    let total = g.n * g.m * osz;
    // Written once, by the products' stores: no zero fill first.
    let mut o: Vec<f32> = crate::pool::take(total);
    if total == 0 {
        return Ok(o);
    }
    let mut own = None;
    let f = super::prepared_or(
        prepared,
        |f| f.is(g.m, kdim, g.group),
        &mut own,
        || PackedFilter::pack(w, g.m, kdim, g.group),
    )?;
    let pointwise = g.pointwise();
    let ol = (*g.win.output.last().unwrap_or(&1)).max(1);
    let segs = osz / ol;
    // Tiles of whole output rows, a whole number of panels where the row
    // length allows.
    let per_panel = blocked::NC / gcd(ol, blocked::NC);
    let tile_segs = (BLOCKED_TILE_BYTES / (kdim * ol * 4).max(1))
        .max(1)
        .div_ceil(per_panel)
        * per_panel;
    let tile_segs = tile_segs.min(segs).max(1);
    let tiles = if pointwise {
        1
    } else {
        segs.div_ceil(tile_segs)
    };
    let col_len = if pointwise { 0 } else { kdim * tile_segs * ol };
    let units = g.n * g.group;
    let threads = crate::kernels::util::threads();
    // SAFETY: `o` has room for `total` elements; the products write
    // through the handle's pointers only, never through references to
    // the unwritten elements.
    let out = unsafe { SharedMut::from_raw(o.as_mut_ptr(), total) };
    let product = |u: usize, src: &[f32], ldb: usize, c0: usize, ncols: usize, par: bool| {
        let gi = u % g.group;
        let p = Product {
            a: f.group(gi),
            mg,
            kdim,
            b: src,
            ldb,
            ncols,
            off: u * mg * osz + c0,
            ldo: osz,
            bias: b.map(|b| &b[gi * mg..(gi + 1) * mg]),
            res,
            act,
        };
        // SAFETY: unit u's rows, columns c0..c0 + ncols: each call of
        // `product` writes a block no other call writes.
        unsafe { p.run(out, par) }
    };
    let tile = |u: usize, t: usize, col: &mut Vec<f32>, par: bool| -> Result<()> {
        let (bn, gi) = (u / g.group, u % g.group);
        let xoff = (bn * g.c + gi * cg) * isz;
        let xg = &x[xoff..xoff + cg * isz];
        if pointwise {
            return product(u, xg, isz, 0, osz, par);
        }
        let s0 = t * tile_segs;
        let ns = tile_segs.min(segs - s0);
        let tn = ns * ol;
        col.resize(kdim * tn, 0.0);
        im2col(g, xg, col, s0, ns, par);
        product(u, col, tn, s0 * ol, tn, par)
    };
    let unit_work = mg * osz * kdim;
    if units > 1 && threads > 1 && unit_work < blocked::PAR_WORK {
        par_try_for(units, 1, &|us| {
            let mut col = Scratch(crate::pool::stale(col_len, f32::NAN));
            us.into_iter()
                .try_for_each(|u| (0..tiles).try_for_each(|t| tile(u, t, &mut col.0, false)))
        })?;
    } else {
        for u in 0..units {
            if tiles >= threads && threads > 1 {
                par_try_for(tiles, 1, &|ts| {
                    let mut col = Scratch(crate::pool::stale(col_len, f32::NAN));
                    ts.into_iter()
                        .try_for_each(|t| tile(u, t, &mut col.0, false))
                })?;
            } else {
                let mut col = Scratch(crate::pool::stale(col_len, f32::NAN));
                for t in 0..tiles {
                    tile(u, t, &mut col.0, true)?;
                }
            }
        }
    }
    // SAFETY: every unit's rows were written for every column: pointwise
    // products cover all `osz` columns, im2col tiles cover them together,
    // and each product stores every row below `mg` of each panel (masked
    // to the last column).
    unsafe { o.set_len(total) };
    Ok(o)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Bytes of output a fused block aims at: small enough to stay in a
/// core's L2 from the GEMM's stores to the epilogue's pass, so the two
/// touch memory once.
const BLOCK_BYTES: usize = 256 * 1024;

/// [`BLOCK_BYTES`] for outputs with rows of at least [`WIDE_ROWS`]:
/// fewer, wider blocks, each repacking the weights once. ResNet-50's
/// 1x1 64 -> 256 convs at 56x56 with a residual, in the model at one
/// thread: 0.58-0.64 -> 0.50-0.52 ms each; at 28x28 (784-long rows) the
/// larger blocks were slower at two threads, where 256 KiB gives each
/// thread two blocks.
const WIDE_BLOCK_BYTES: usize = 512 * 1024;

/// Row length from which [`WIDE_BLOCK_BYTES`] applies.
const WIDE_ROWS: usize = 2048;

/// What is fused around one unit's GEMM: the product is written, then one
/// pass per row adds the residual and the bias (either, both or neither)
/// and applies the activation while the row is in L1
/// ([`super::act::finish_row`]). Before, the residual and bias were copied
/// into the block first for the GEMM to accumulate onto, and the
/// activation was a pass of its own: two passes at SSE width instead of
/// one at AVX-512's. `n` is the output's row length.
struct Epi<'a, F> {
    res: Option<&'a [F]>,
    bias: Option<&'a [F]>,
    act: Activation,
    n: usize,
}

impl<F: Float> Epi<'_, F> {
    /// Rows `r0..r0 + rows`, columns `c0..c0 + cols` of the output (`lhs`
    /// is the whole weight matrix, `rhs` starts at the block's column):
    /// `rows × k` by `k × cols` GEMM, then the epilogue. Only the GEMM
    /// may use the rayon pool, and only when `par`.
    ///
    /// # Safety
    /// Nothing else touches that block of `out` during the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        out: SharedMut<'_, F>,
        r0: usize,
        rows: usize,
        c0: usize,
        cols: usize,
        lhs: Mat<'_, F>,
        rhs: Mat<'_, F>,
        k: usize,
        par: bool,
    ) -> Result<()> {
        let n = self.n;
        let lhs = Mat {
            off: lhs.off + r0 * lhs.rs,
            ..lhs
        };
        // SAFETY: the caller's block.
        unsafe {
            gemm_into(
                rows,
                cols,
                k,
                out,
                r0 * n + c0,
                n,
                false,
                lhs,
                rhs,
                F::ONE,
                par,
            )?
        };
        if self.res.is_some() || self.bias.is_some() || self.act != Activation::None {
            for r in r0..r0 + rows {
                let res = self.res.map(|res| &res[r * n + c0..r * n + c0 + cols]);
                // SAFETY: the caller's block.
                let row = unsafe { out.slice(r * n + c0, cols) };
                super::act::finish_row(self.act, row, res, self.bias.map(|b| b[r]));
            }
        }
        Ok(())
    }
}

/// Cuts `0..len` into at most `parts` ranges `(start, len)` whose sizes
/// are multiples of 16 (the GEMM microkernels' sizes) except the last,
/// spread evenly: 784 columns in 4 are 192, 192, 192 and 208. (Rounding
/// every piece up to 16 instead gave 208, 208, 208 and 160, and the thread
/// with the first two blocks ran 6% longer than the other.)
pub(super) fn cuts16(len: usize, parts: usize) -> Vec<(usize, usize)> {
    let units = len.div_ceil(16).max(1);
    let parts = parts.clamp(1, units);
    (0..parts)
        .map(|i| {
            let (a, b) = (
                i * units / parts * 16,
                ((i + 1) * units / parts * 16).min(len),
            );
            (a, b - a)
        })
        .collect()
}

/// `dst[m × n] = act(res + bias + lhs × rhs)` for one conv unit.
///
/// An output that fits [`BLOCK_BYTES`] ([`WIDE_BLOCK_BYTES`] for long
/// rows) is one GEMM (split over the threads
/// inside [`gemm`]) and its epilogue ([`Epi`]). A larger one is cut into
/// blocks ([`cuts16`]) that each run both while the block is in cache, the
/// blocks spread over the threads: the expanding 1×1 convs of a
/// bottleneck block (a 3 MB output with K = 64) are bound by memory, and
/// passes over the whole output kept them from scaling past one core.
#[allow(clippy::too_many_arguments)]
fn fused_gemm<F: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [F],
    lhs: Mat<'_, F>,
    rhs: Mat<'_, F>,
    epi: &Epi<'_, F>,
    par: bool,
) -> Result<()> {
    let esz = std::mem::size_of::<F>();
    let threads = if par {
        crate::kernels::util::threads()
    } else {
        1
    };
    let out = SharedMut::new(dst);
    let block_bytes = if n >= WIDE_ROWS {
        WIDE_BLOCK_BYTES
    } else {
        BLOCK_BYTES
    };
    if m * n * esz <= block_bytes {
        // SAFETY: the whole output, borrowed exclusively.
        unsafe { epi.block(out, 0, m, 0, n, lhs, rhs, k, par)? };
        return Ok(());
    }
    // A multiple of the thread count, so no thread runs one block more.
    let nblocks = (m * n * esz)
        .div_ceil(block_bytes)
        .max(2 * threads)
        .div_ceil(threads)
        * threads;
    // Wide outputs (large images) are cut into column blocks, narrow ones
    // (late layers, many channels) into row blocks.
    let (rcuts, ccuts) = if n >= 512 {
        let ccuts = cuts16(n, nblocks.min(n / 128).max(1));
        (cuts16(m, nblocks.div_ceil(ccuts.len())), ccuts)
    } else {
        (cuts16(m, nblocks.min(m / 16).max(1)), vec![(0, n)])
    };
    let blocks: Vec<((usize, usize), (usize, usize))> = rcuts
        .iter()
        .flat_map(|&r| ccuts.iter().map(move |&c| (r, c)))
        .collect();
    let run = |&((r0, rows), (c0, cols)): &((usize, usize), (usize, usize))| -> Result<()> {
        let rhs = Mat {
            off: rhs.off + c0 * rhs.cs,
            ..rhs
        };
        // SAFETY: the blocks tile the output without overlap.
        unsafe { epi.block(out, r0, rows, c0, cols, lhs, rhs, k, false) }
    };
    if threads > 1 && m * n * k > 64 * 64 * 64 {
        par_try_for(blocks.len(), 1, &|r| blocks[r].iter().try_for_each(run))
    } else {
        blocks.iter().try_for_each(run)
    }
}
