//! N-d convolution: pointwise convs as one GEMM on NCHW, depthwise 2-D convs
//! as a direct loop, everything else as im2col + GEMM per (batch, group).

use crate::error::Result;
use crate::kernels::util::{
    float_dispatch, input, opt_input, out, typed, valid_range, Float, SharedMut,
};
use crate::op::matmul::kernel::{gemm_into, Mat};
use crate::op::{resolve_window, Activation, ConvAttrs, Window};
use crate::shape::{numel, strides};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Shapes of one convolution, all checked.
struct Geom {
    n: usize,
    c: usize,
    m: usize,
    group: usize,
    spatial: Vec<usize>,
    win: Window,
}

impl Geom {
    fn cg(&self) -> usize {
        self.c / self.group
    }
    fn mg(&self) -> usize {
        self.m / self.group
    }
    fn ksz(&self) -> usize {
        numel(&self.win.kernel)
    }
    fn isz(&self) -> usize {
        numel(&self.spatial)
    }
    fn osz(&self) -> usize {
        numel(&self.win.output)
    }
}

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

/// Applies a fused activation to an output block.
fn activate<F: Float>(act: Activation, v: &mut [F]) {
    match act {
        Activation::None => {}
        Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(F::ZERO)),
        Activation::Clip { lo, hi } => {
            let (lo, nhi) = (F::c(lo as f64), F::c(-(hi as f64)));
            // min(x, hi) = -max(-x, -hi)
            v.iter_mut().for_each(|x| *x = -((-x.max(lo)).max(nhi)));
        }
    }
}

fn conv_f<F: Float>(
    g: &Geom,
    x: &[F],
    w: &[F],
    b: Option<&[F]>,
    res: Option<&[F]>,
    act: Activation,
) -> Result<Vec<F>> {
    let (osz, mg) = (g.osz(), g.mg());
    let mut o = crate::pool::filled(g.n * g.m * osz, F::ZERO);
    if o.is_empty() {
        return Ok(o);
    }
    if g.group == g.c && g.m == g.c && g.spatial.len() == 2 {
        depthwise2d(g, x, w, b, &mut o);
        if let Some(r) = res {
            for (y, r) in o.iter_mut().zip(r) {
                *y += *r;
            }
        }
        activate(act, &mut o);
        return Ok(o);
    }
    let win = &g.win;
    let pointwise = win.kernel.iter().all(|&k| k == 1)
        && win.strides.iter().all(|&s| s == 1)
        && win.pads_begin.iter().chain(&win.pads_end).all(|&p| p == 0);
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
        // The GEMM accumulates onto what each output block starts with:
        // the residual and/or the bias (see `Epi`).
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
            (0..tiles).into_par_iter().try_for_each_init(
                || Scratch(crate::pool::take(col_len)),
                |col, t| run_tile(t, &mut col.0),
            )
        } else {
            (0..tiles).try_for_each(|t| run_tile(t, col))
        }
    };
    if small && units > 1 && threads > 1 {
        o.par_chunks_mut(mg * osz).enumerate().try_for_each_init(
            || Scratch(crate::pool::take(col_len)),
            |col, (u, dst)| unit(u, dst, &mut col.0, false),
        )?;
    } else {
        let mut col = Scratch(crate::pool::take(col_len));
        for (u, dst) in o.chunks_mut(mg * osz).enumerate() {
            unit(u, dst, &mut col.0, true)?;
        }
    }
    Ok(o)
}

/// Bytes of output a fused block aims at: small enough to stay in a
/// core's L2 from the residual/bias copy through the GEMM to the
/// activation, so the three touch memory once.
const BLOCK_BYTES: usize = 256 * 1024;

/// What is fused around one unit's GEMM: the product accumulates onto the
/// residual plus the bias (or either alone, or overwrites when neither),
/// then the activation runs. `n` is the output's row length.
struct Epi<'a, F> {
    res: Option<&'a [F]>,
    bias: Option<&'a [F]>,
    act: Activation,
    n: usize,
}

impl<F: Float> Epi<'_, F> {
    /// Rows `r0..r0 + rows`, columns `c0..c0 + cols` of the output (`lhs`
    /// is the whole weight matrix, `rhs` starts at the block's column):
    /// prologue, `rows × k` by `k × cols` GEMM, activation. Only the GEMM
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
        let read = self.res.is_some() || self.bias.is_some();
        if read {
            for r in r0..r0 + rows {
                // SAFETY: the caller's block.
                let row = unsafe { out.slice(r * n + c0, cols) };
                match (self.res, self.bias) {
                    (Some(res), Some(b)) => {
                        let src = &res[r * n + c0..r * n + c0 + cols];
                        for (y, s) in row.iter_mut().zip(src) {
                            *y = *s + b[r];
                        }
                    }
                    (Some(res), None) => row.copy_from_slice(&res[r * n + c0..r * n + c0 + cols]),
                    (None, Some(b)) => row.fill(b[r]),
                    (None, None) => {}
                }
            }
        }
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
                read,
                lhs,
                rhs,
                F::ONE,
                par,
            )?
        };
        if self.act != Activation::None {
            for r in r0..r0 + rows {
                // SAFETY: the caller's block.
                activate(self.act, unsafe { out.slice(r * n + c0, cols) });
            }
        }
        Ok(())
    }
}

/// Splits `len` into `parts` nearly equal pieces, multiples of 16 (the
/// GEMM microkernels' sizes) except the last.
fn split16(len: usize, parts: usize) -> usize {
    len.div_ceil(parts.max(1)).div_ceil(16).max(1) * 16
}

/// `dst[m × n] = act(res + bias + lhs × rhs)` for one conv unit.
///
/// An output that fits [`BLOCK_BYTES`] is one GEMM (split over the threads
/// inside [`gemm`]) with the prologue and activation around it. A larger
/// one is cut into blocks that each run all three steps while the block is
/// in cache, the blocks spread over the threads: the expanding 1×1 convs
/// of a bottleneck block (a 3 MB output with K = 64) are bound by memory,
/// and three passes over the output kept them from scaling past one core.
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
    if m * n * esz <= BLOCK_BYTES {
        // SAFETY: the whole output, borrowed exclusively.
        unsafe { epi.block(out, 0, m, 0, n, lhs, rhs, k, par)? };
        return Ok(());
    }
    // A multiple of the thread count, so no thread runs one block more.
    let nblocks = (m * n * esz)
        .div_ceil(BLOCK_BYTES)
        .max(2 * threads)
        .div_ceil(threads)
        * threads;
    // Wide outputs (large images) are cut into column blocks, narrow ones
    // (late layers, many channels) into row blocks.
    let (rb, cb) = if n >= 512 {
        let cb = split16(n, nblocks.min(n / 128).max(1));
        let col_blocks = n.div_ceil(cb);
        (split16(m, nblocks.div_ceil(col_blocks)), cb)
    } else {
        (split16(m, nblocks.min(m / 16).max(1)), n)
    };
    let blocks: Vec<(usize, usize)> = (0..m)
        .step_by(rb)
        .flat_map(|r0| (0..n).step_by(cb).map(move |c0| (r0, c0)))
        .collect();
    let run = |&(r0, c0): &(usize, usize)| -> Result<()> {
        let (rows, cols) = (rb.min(m - r0), cb.min(n - c0));
        let rhs = Mat {
            off: rhs.off + c0 * rhs.cs,
            ..rhs
        };
        // SAFETY: the blocks tile the output without overlap.
        unsafe { epi.block(out, r0, rows, c0, cols, lhs, rhs, k, false) }
    };
    if threads > 1 && m * n * k > 64 * 64 * 64 {
        blocks.par_iter().try_for_each(run)
    } else {
        blocks.iter().try_for_each(run)
    }
}

/// An im2col buffer that goes back to the pool when dropped.
struct Scratch<F: Float>(Vec<F>);

impl<F: Float> Drop for Scratch<F> {
    fn drop(&mut self) {
        crate::pool::give(std::mem::take(&mut self.0));
    }
}

/// Fills `col` (`[cg * ksz, nseg * ol]`) from one group's input channels
/// `x`, for output segments `seg0 .. seg0 + nseg` (a segment is one run of
/// the last output dim).
fn im2col<F: Float>(g: &Geom, x: &[F], col: &mut [F], seg0: usize, nseg: usize, par: bool) {
    let (ksz, isz) = (g.ksz(), g.isz());
    let rl = nseg * *g.win.output.last().unwrap_or(&1);
    let two_d = g.spatial.len() == 2;
    let fill = |r: usize, row: &mut [F]| {
        let (ci, kflat) = (r / ksz, r % ksz);
        let plane = &x[ci * isz..(ci + 1) * isz];
        if two_d {
            im2col_row_2d(g, plane, kflat, seg0, row);
        } else {
            im2col_row(g, plane, kflat, seg0, row);
        }
    };
    if par && col.len() >= crate::kernels::util::PAR_MIN && crate::kernels::util::threads() > 1 {
        col.par_chunks_mut(rl)
            .enumerate()
            .for_each(|(r, row)| fill(r, row));
    } else {
        col.chunks_mut(rl)
            .enumerate()
            .for_each(|(r, row)| fill(r, row));
    }
}

/// [`im2col_row`] for 2-D convolutions: segments are output rows.
fn im2col_row_2d<F: Float>(g: &Geom, plane: &[F], kflat: usize, y0: usize, row: &mut [F]) {
    let win = &g.win;
    let (ih, iw) = (g.spatial[0] as isize, g.spatial[1]);
    let (kw, ow) = (win.kernel[1], win.output[1]);
    let (ki, kj) = (kflat / kw, kflat % kw);
    let (sh, sw) = (win.strides[0], win.strides[1]);
    let koff_y = (ki * win.dilations[0]) as isize - win.pads_begin[0] as isize;
    let koff_x = (kj * win.dilations[1]) as isize - win.pads_begin[1] as isize;
    let (lo, hi) = valid_range(koff_x, sw, ow, 0, iw as isize);
    for (i, seg) in row.chunks_exact_mut(ow).enumerate() {
        let iy = ((y0 + i) * sh) as isize + koff_y;
        if iy < 0 || iy >= ih || lo >= hi {
            seg.fill(F::ZERO);
            continue;
        }
        seg[..lo].fill(F::ZERO);
        seg[hi..].fill(F::ZERO);
        let start = iy as usize * iw + (koff_x + (lo * sw) as isize) as usize;
        let dst = &mut seg[lo..hi];
        match sw {
            1 => dst.copy_from_slice(&plane[start..start + dst.len()]),
            _ => {
                let src = &plane[start..start + (dst.len() - 1) * sw + 1];
                // Zipped iterators, no index arithmetic: no bounds checks
                // and, for stride 2, a loop the compiler vectorises.
                if sw == 2 {
                    for (v, pair) in dst.iter_mut().zip(src.chunks(2)) {
                        *v = pair[0];
                    }
                } else {
                    for (v, &x) in dst.iter_mut().zip(src.iter().step_by(sw)) {
                        *v = x;
                    }
                }
            }
        }
    }
}

/// One im2col row: kernel offset `kflat` over one input plane, for the
/// output segments starting at `seg0` (as many as `row` holds).
fn im2col_row<F: Float>(g: &Geom, plane: &[F], kflat: usize, seg0: usize, row: &mut [F]) {
    let win = &g.win;
    let nd = g.spatial.len();
    let ist = strides(&g.spatial);
    let kst = strides(&win.kernel);
    let kidx: Vec<usize> = (0..nd).map(|d| (kflat / kst[d]) % win.kernel[d]).collect();
    // Last dim: input position = ow * s + koff.
    let l = nd - 1;
    let (ol, il, s) = (win.output[l], g.spatial[l], win.strides[l]);
    let koff = (kidx[l] * win.dilations[l]) as isize - win.pads_begin[l] as isize;
    let (lo, hi) = valid_range(koff, s, ol, 0, il as isize);
    let outer = &win.output[..l];
    // Unravel seg0 over the outer output dims.
    let mut oidx = vec![0usize; l];
    let mut rest = seg0;
    for d in (0..l).rev() {
        oidx[d] = rest % outer[d];
        rest /= outer[d];
    }
    for seg in row.chunks_mut(ol) {
        let mut base = 0isize;
        let mut inside = true;
        for d in 0..l {
            let p = (oidx[d] * win.strides[d] + kidx[d] * win.dilations[d]) as isize
                - win.pads_begin[d] as isize;
            if p < 0 || p >= g.spatial[d] as isize {
                inside = false;
                break;
            }
            base += p * ist[d] as isize;
        }
        if !inside || lo >= hi {
            seg.fill(F::ZERO);
        } else {
            seg[..lo].fill(F::ZERO);
            seg[hi..].fill(F::ZERO);
            let start = (base + koff + (lo * s) as isize) as usize;
            if s == 1 {
                seg[lo..hi].copy_from_slice(&plane[start..start + (hi - lo)]);
            } else {
                for (v, &p) in seg[lo..hi].iter_mut().zip(plane[start..].iter().step_by(s)) {
                    *v = p;
                }
            }
        }
        // Next outer output position.
        for d in (0..l).rev() {
            oidx[d] += 1;
            if oidx[d] < outer[d] {
                break;
            }
            oidx[d] = 0;
        }
    }
}

/// Depthwise 2-D convolution (group == C == M), parallel over planes.
fn depthwise2d<F: Float>(g: &Geom, x: &[F], w: &[F], b: Option<&[F]>, o: &mut [F]) {
    let win = &g.win;
    let (ih, iw) = (g.spatial[0], g.spatial[1]);
    let (oh, ow) = (win.output[0], win.output[1]);
    let (kh, kw) = (win.kernel[0], win.kernel[1]);
    let (sh, sw) = (win.strides[0], win.strides[1]);
    let (dh, dw) = (win.dilations[0], win.dilations[1]);
    let (ph, pw) = (win.pads_begin[0] as isize, win.pads_begin[1] as isize);
    let work = g.n * g.c * oh * ow * kh * kw;
    // Valid output columns and first input column for each kernel column.
    let cols: Vec<(usize, usize, usize)> = (0..kw)
        .map(|kj| {
            let koff = (kj * dw) as isize - pw;
            let (lo, hi) = valid_range(koff, sw, ow, 0, iw as isize);
            (lo, hi, (koff + (lo * sw) as isize).max(0) as usize)
        })
        .collect();
    crate::kernels::util::par_chunks(o, oh * ow, work, |plane_i, dst| {
        let ch = plane_i % g.c;
        let src = &x[plane_i * ih * iw..(plane_i + 1) * ih * iw];
        let kern = &w[ch * kh * kw..(ch + 1) * kh * kw];
        dst.fill(b.map_or(F::ZERO, |b| b[ch]));
        for y in 0..oh {
            let orow = &mut dst[y * ow..(y + 1) * ow];
            for ki in 0..kh {
                let iy = (y * sh + ki * dh) as isize - ph;
                if iy < 0 || iy >= ih as isize {
                    continue;
                }
                let irow = &src[iy as usize * iw..(iy as usize + 1) * iw];
                for (kj, &(lo, hi, start)) in cols.iter().enumerate() {
                    let wv = kern[ki * kw + kj];
                    if lo >= hi {
                        continue;
                    }
                    if sw == 1 {
                        for (v, &xv) in orow[lo..hi].iter_mut().zip(&irow[start..start + hi - lo]) {
                            *v += wv * xv;
                        }
                    } else {
                        for (v, &xv) in orow[lo..hi]
                            .iter_mut()
                            .zip(irow[start..].iter().step_by(sw))
                        {
                            *v += wv * xv;
                        }
                    }
                }
            }
        }
    });
}
