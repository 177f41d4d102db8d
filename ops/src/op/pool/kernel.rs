//! MaxPool / AveragePool (1-, 2- and 3-D spatial) and the global pools.
//! Parallel over the N*C planes. f32 2-D MaxPool runs the 2x2 / 2 kernel
//! of `pair.rs`, the two-pass kernel of `rows.rs` (column stride 1 or 2)
//! or the depthwise conv's padded-plane kernel (`op/conv/depthwise.rs`)
//! where they apply.

use crate::error::Result;
use crate::kernels::util::{
    float_dispatch, input, out, par_chunks, typed, valid_range, Arith, Float,
};
use crate::op::conv::depthwise::max_pool2d_f32;
use crate::op::{PoolAttrs, Window};
use crate::shape::numel;
use crate::tensor::Tensor;

/// A window resolved and lifted to 3 spatial dims (leading dims of size 1).
pub(super) struct Win3 {
    pub(super) input: [usize; 3],
    pub(super) output: [usize; 3],
    pub(super) kernel: [usize; 3],
    pub(super) strides: [usize; 3],
    pub(super) dil: [usize; 3],
    pub(super) pb: [usize; 3],
    pub(super) pe: [usize; 3],
}

impl Win3 {
    pub(super) fn lift(spatial: &[usize], w: &Window) -> Win3 {
        let off = 3 - spatial.len();
        let f = |v: &[usize], fill: usize| -> [usize; 3] {
            std::array::from_fn(|i| if i < off { fill } else { v[i - off] })
        };
        Win3 {
            input: f(spatial, 1),
            output: f(&w.output, 1),
            kernel: f(&w.kernel, 1),
            strides: f(&w.strides, 1),
            dil: f(&w.dilations, 1),
            pb: f(&w.pads_begin, 0),
            pe: f(&w.pads_end, 0),
        }
    }

    /// Kernel indices of dim `d` in the input for output index `o`, and how
    /// many kernel cells fall inside the padded input.
    pub(super) fn range(&self, d: usize, o: usize) -> ((usize, usize), usize) {
        let base = (o * self.strides[d]) as isize - self.pb[d] as isize;
        let inside = valid_range(base, self.dil[d], self.kernel[d], 0, self.input[d] as isize);
        let padded = valid_range(
            base,
            self.dil[d],
            self.kernel[d],
            -(self.pb[d] as isize),
            (self.input[d] + self.pe[d]) as isize,
        );
        (inside, padded.1 - padded.0)
    }
}

/// MaxPool (`is_max`) or AveragePool.
pub(crate) fn pool(p: &PoolAttrs, is_max: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    pool_impl(p, is_max, false, inputs)
}

/// LpPool: `(sum over the window of |x|^p)^(1/p)`; padding adds nothing.
pub(crate) fn lp_pool(p: &PoolAttrs, pn: f32, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    if pn.is_nan() || pn <= 0.0 {
        crate::bail!("LpPool: p must be positive, got {pn}");
    }
    float_dispatch!(x.dtype(), "LpPool", F => {
        let e = F::c(pn as f64);
        let powed: Vec<F> = typed::<F>(x, "input 0 (X)")?.iter().map(|&v| v.abs().powf(e)).collect();
        let t = out(x.shape().to_vec(), powed)?;
        let sums = pool_impl(p, false, true, &[Some(&t)])?;
        let inv = F::ONE / e;
        let v: Vec<F> = typed::<F>(&sums, "sums")?.iter().map(|&s| s.powf(inv)).collect();
        out(sums.shape().to_vec(), v)
    })
}

/// MaxPool, AveragePool, or with `sum_only` the window sums.
fn pool_impl(
    p: &PoolAttrs,
    is_max: bool,
    sum_only: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let name = if is_max { "MaxPool" } else { "AveragePool" };
    let x = input(inputs, 0, "X")?;
    let xs = x.shape();
    let w = p
        .window(xs)
        .map_err(|e| crate::Error::Msg(format!("{name}: {e}")))?;
    let spatial = &xs[2..];
    let w3 = Win3::lift(spatial, &w);
    let mut oshape = xs[..2].to_vec();
    oshape.extend(&w.output);
    let include_pad = p.count_include_pad;
    // f32 MaxPool: 2x2 / 2 takes `pair.rs`, other windows with a column
    // stride of 1 or 2 and no dilation `rows.rs` (both AVX-512F), the
    // rest the padded, phase-split planes of the depthwise kernel, except
    // windows that tile the input (kernel <= stride, no padding), which
    // the separable loop below runs faster than those planes (16x8x8 ->
    // 4x4: 8 -> 4 µs; 64x112x112: 690 -> 600 µs).
    if is_max && !sum_only && x.dtype() == crate::DType::F32 {
        let tiles = w.kernel.iter().zip(&w.strides).all(|(k, s)| k <= s)
            && w.dilations.iter().all(|&d| d == 1)
            && w.pads_begin.iter().chain(&w.pads_end).all(|&p| p == 0);
        let xv = typed::<f32>(x, "input 0 (X)")?;
        let planes = xs[0] * xs[1];
        let o = if super::pair::fits(spatial, &w) {
            super::pair::max_pool(planes, spatial, &w, xv)
        } else if super::rows::fits(spatial, &w) {
            super::rows::max_pool(planes, spatial, &w, xv)
        } else if !tiles {
            max_pool2d_f32(xs[0], xs[1], spatial, &w, xv)
        } else {
            None
        };
        if let Some(o) = o {
            return out(oshape, o);
        }
    }
    // A window that is the whole unpadded input is the global average
    // (ResNet-50's last pool, 7x7 over 2048 planes of 7x7: 113 -> 28 µs).
    if !is_max
        && !sum_only
        && w.kernel == spatial
        && w.output.iter().all(|&o| o == 1)
        && w.dilations.iter().all(|&d| d == 1)
        && w.pads_begin.iter().chain(&w.pads_end).all(|&p| p == 0)
    {
        return global_pool(false, &inputs[..1]);
    }
    // f32 AveragePool: the same two passes as `rows.rs`'s max, with sums.
    if !is_max && !sum_only && x.dtype() == crate::DType::F32 && super::rows::fits(spatial, &w) {
        let xv = typed::<f32>(x, "input 0 (X)")?;
        let inv = reciprocals::<f32>(&dim_tables(&w3), include_pad);
        if let Some(o) = super::rows::avg_pool(xs[0] * xs[1], spatial, &w, xv, &inv) {
            return out(oshape, o);
        }
    }
    float_dispatch!(x.dtype(), name, F => {
        let xv = typed::<F>(x, "input 0 (X)")?;
        let (isz, osz) = (numel(spatial), numel(&w.output));
        let mut o = crate::pool::stale(numel(&oshape), F::c(f64::NAN));
        let work = o.len() * numel(&p.kernel_shape);
        let tables = dim_tables(&w3);
        let cols = col_table(&w3);
        let inv: Option<Vec<F>> = (!is_max && !sum_only).then(|| reciprocals(&tables, include_pad));
        par_chunks(&mut o, osz, work, |plane, dst| {
            pool_plane(&w3, &tables, &cols, &xv[plane * isz..(plane + 1) * isz], dst, is_max, inv.as_deref())
        });
        out(oshape, o)
    })
}

/// Per output index of one dim: valid kernel range, padded-cell count and
/// the input position of kernel index 0.
type DimTable = Vec<((usize, usize), usize, isize)>;

fn dim_tables(w: &Win3) -> [DimTable; 3] {
    std::array::from_fn(|d| {
        (0..w.output[d])
            .map(|o| {
                let (r, n) = w.range(d, o);
                (r, n, (o * w.strides[d]) as isize - w.pb[d] as isize)
            })
            .collect()
    })
}

/// Per kernel column: the valid output columns `lo..hi` and the input
/// column read for output column `lo`.
fn col_table(w: &Win3) -> Vec<(usize, usize, usize)> {
    (0..w.kernel[2])
        .map(|kx| {
            let koff = (kx * w.dil[2]) as isize - w.pb[2] as isize;
            let (lo, hi) = valid_range(koff, w.strides[2], w.output[2], 0, w.input[2] as isize);
            (
                lo,
                hi,
                (koff + (lo * w.strides[2]) as isize).max(0) as usize,
            )
        })
        .collect()
}

/// Per output position of a plane (row-major), one over the number of
/// cells its average divides by (0 where it has none): computed once per
/// op, so each plane's average is a multiply. Dividing each output by
/// its count, with the count rebuilt per element, was most of an
/// AveragePool (Inception-v2's 3x3 pools, 256x28x28: 0.6 ms, onnxruntime
/// 0.06 ms).
fn reciprocals<F: Float>(t: &[DimTable; 3], include_pad: bool) -> Vec<F> {
    let count = |&((a, b), n, _): &((usize, usize), usize, isize)| {
        if include_pad {
            n
        } else {
            b - a
        }
    };
    let mut inv = Vec::with_capacity(t[0].len() * t[1].len() * t[2].len());
    for z in &t[0] {
        for y in &t[1] {
            for x in &t[2] {
                let cnt = count(z) * count(y) * count(x);
                inv.push(if cnt > 0 {
                    F::c(1.0 / cnt as f64)
                } else {
                    F::ZERO
                });
            }
        }
    }
    inv
}

/// Pools one plane an output row at a time. The window is separable: the
/// valid input rows of an output row are first reduced into one line
/// (contiguous, vectorisable), then every kernel column updates the valid
/// output columns from that line, so the strided reads number `kw` per
/// output rather than `kd · kh · kw`.
#[allow(clippy::too_many_arguments)]
fn pool_plane<F: Float>(
    w: &Win3,
    t: &[DimTable; 3],
    cols: &[(usize, usize, usize)],
    src: &[F],
    dst: &mut [F],
    is_max: bool,
    inv: Option<&[F]>,
) {
    let [_, ih, iw] = w.input;
    let [dd, dh, _] = w.dil;
    let (ow, sx) = (w.output[2], w.strides[2]);
    let mut rows = dst.chunks_mut(ow.max(1));
    let mut invs = inv.map(|v| v.chunks(ow.max(1)));
    let mut line = vec![F::ZERO; iw];
    for &((z0, z1), _, zb) in &t[0] {
        for &((y0, y1), _, yb) in &t[1] {
            let Some(acc) = rows.next() else { return };
            acc.fill(if is_max { F::lowest() } else { F::ZERO });
            let mut taken = 0;
            for kz in z0..z1 {
                let pz = (zb + (kz * dd) as isize) as usize;
                for ky in y0..y1 {
                    let py = (yb + (ky * dh) as isize) as usize;
                    let row = &src[(pz * ih + py) * iw..(pz * ih + py + 1) * iw];
                    if taken == 0 {
                        line.copy_from_slice(row);
                    } else {
                        fold(is_max, &mut line, row.iter());
                    }
                    taken += 1;
                }
            }
            if taken > 0 {
                for &(lo, hi, start) in cols {
                    if lo >= hi {
                        continue;
                    }
                    let acc = &mut acc[lo..hi];
                    let cells = &line[start..start + (acc.len() - 1) * sx + 1];
                    if sx == 1 {
                        fold(is_max, acc, cells.iter());
                    } else {
                        fold(is_max, acc, cells.iter().step_by(sx));
                    }
                }
            }
            if let Some(inv) = invs.as_mut().and_then(|i| i.next()) {
                for (a, &r) in acc.iter_mut().zip(inv) {
                    *a = *a * r;
                }
            }
        }
    }
}

/// `acc[i] = max(acc[i], v[i])` (or `+=`) over `acc` and the values. The
/// max is branch-free (selects, no compare-and-branch: post-ReLU data
/// would mispredict half the time) and NaN wins, as in onnxruntime.
fn fold<'a, F: Float>(is_max: bool, acc: &mut [F], v: impl Iterator<Item = &'a F>) {
    if is_max {
        acc.iter_mut()
            .zip(v)
            .for_each(|(a, &v)| *a = nan_max(*a, v));
    } else {
        acc.iter_mut().zip(v).for_each(|(a, &v)| *a += v);
    }
}

/// The larger of `a` and `b`, or NaN when either is NaN (`a + b` is then
/// NaN); `F::max` alone would drop the NaN.
#[inline(always)]
#[allow(clippy::eq_op)]
fn nan_max<F: Float>(a: F, b: F) -> F {
    let m = a.max(b);
    if a != a || b != b {
        a + b
    } else {
        m
    }
}

/// Global mean (or max) over all spatial dims, kept as size 1.
pub(crate) fn global_pool(is_max: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let name = if is_max {
        "GlobalMaxPool"
    } else {
        "GlobalAveragePool"
    };
    let x = input(inputs, 0, "X")?;
    let xs = x.shape();
    if xs.len() < 2 {
        crate::bail!("{name} needs rank >= 2, got {:?}", xs);
    }
    let mut oshape = xs[..2].to_vec();
    oshape.extend(std::iter::repeat_n(1, xs.len() - 2));
    let sp = numel(&xs[2..]);
    float_dispatch!(x.dtype(), name, F => {
        let xv = typed::<F>(x, "input 0 (X)")?;
        let planes = xs[0] * xs[1];
        let mut o = crate::pool::stale(planes, F::c(f64::NAN));
        let per = (crate::kernels::util::PAR_MIN / sp.max(1)).max(1);
        par_chunks(&mut o, per, planes * sp, |ci, dst| {
            for (j, d) in dst.iter_mut().enumerate() {
                let p = ci * per + j;
                let s = &xv[p * sp..(p + 1) * sp];
                *d = if is_max {
                    s.iter().fold(F::lowest(), |m, &v| nan_max(m, v))
                } else {
                    let mut acc = F::ZERO;
                    for &v in s {
                        acc += v;
                    }
                    if sp > 0 { acc / F::c(sp as f64) } else { F::ZERO }
                };
            }
        });
        out(oshape, o)
    })
}

/// MaxUnpool: zeros of the output shape (input 2, else
/// `(n - 1) * stride - pads + kernel` per spatial dim) with `y[I[k]] =
/// X[k]`, I holding flat indices into the whole output as MaxPool gives.
pub(crate) fn max_unpool(
    kernel: &[usize],
    strides: &[usize],
    pads: &[usize],
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let idx = input(inputs, 1, "I")?;
    let xs = x.shape();
    if xs.len() != kernel.len() + 2 || idx.shape() != xs {
        crate::bail!(
            "MaxUnpool: X {:?}, I {:?} and kernel {:?} do not fit",
            xs,
            idx.shape(),
            kernel
        );
    }
    let mut shape = xs[..2].to_vec();
    for (i, &n) in xs[2..].iter().enumerate() {
        shape.push(unpool_dim(n, i, kernel, strides, pads));
    }
    // An explicit output shape holds the unpooled values at its start
    // along every dim (zeros after them), as the reference does.
    let given: Option<Vec<usize>> = match crate::kernels::util::opt_input(inputs, 2) {
        Some(s) => Some(
            s.to_i64_vec()
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| crate::Error::msg("MaxUnpool: negative output_shape"))?,
        ),
        None => None,
    };
    if let Some(g) = &given {
        if g.len() != shape.len() || g.iter().zip(&shape).any(|(a, b)| a < b) {
            crate::bail!("MaxUnpool: output_shape {g:?} is smaller than the unpooled {shape:?}");
        }
    }
    let total = numel(&shape);
    let at = idx.to_i64_vec();
    if let Some(&bad) = at.iter().find(|&&i| i < 0 || i as usize >= total) {
        crate::bail!("MaxUnpool: index {bad} is outside the output of {total} elements {shape:?}");
    }
    let src = crate::shape::strides(&shape);
    let data = crate::dispatch_data!(x.data(), v, T => {
        let mut y = vec![T::default(); total];
        for (&val, &i) in v.iter().zip(&at) {
            y[i as usize] = val;
        }
        if let Some(g) = &given {
            let dst = crate::shape::strides(g);
            let mut big = vec![T::default(); numel(g)];
            for (k, &val) in y.iter().enumerate() {
                let to: usize = src
                    .iter()
                    .zip(&dst)
                    .zip(&shape)
                    .map(|((s, d), n)| (k / s) % n * d)
                    .sum();
                big[to] = val;
            }
            y = big;
        }
        <T as crate::tensor::Storable>::wrap(y)
    });
    Tensor::new(given.unwrap_or(shape), data)
}

/// MaxUnpool's default output size of spatial dim `i` of size `n`:
/// `(n - 1) * stride - pad_begin - pad_end + kernel`.
pub(crate) fn unpool_dim(
    n: usize,
    i: usize,
    kernel: &[usize],
    strides: &[usize],
    pads: &[usize],
) -> usize {
    let r = kernel.len();
    let s = strides.get(i).copied().unwrap_or(1);
    let p = pads.get(i).copied().unwrap_or(0) + pads.get(i + r).copied().unwrap_or(0);
    (n.saturating_sub(1) * s + kernel[i]).saturating_sub(p)
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::{close, rnd, t};
    use crate::op::{AutoPad, Op, PoolAttrs};
    use crate::tensor::Tensor;

    fn run(op: Op, x: &Tensor) -> Tensor {
        eval(&op, &[Some(x)], 1).expect("pool").remove(0)
    }

    /// f32 2-D MaxPool (the padded-plane kernel where AVX-512F runs)
    /// against a naive f64 reference: ceil mode, asymmetric pads, strides,
    /// dilation, rows wider than one 16-lane chunk, batch > 1, and NaN
    /// propagating; the same in a pool; windows that cover no input cell
    /// (padding wider than the kernel) give -inf.
    #[test]
    fn maxpool_2d_f32_matches_reference() {
        // (x shape, kernel, strides, dilations, pads [t, l, b, r], ceil)
        type Case = (
            [usize; 4],
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [usize; 4],
            bool,
        );
        let cases: [Case; 16] = [
            // With AVX-512F, 2x2 / 2 takes `pair.rs`: one partial chunk a
            // row, one whole, one and a partial, odd sizes (the last row
            // and column unread), planes enough for two pieces.
            ([1, 6, 24, 24], [2, 2], [2, 2], [1, 1], [0, 0, 0, 0], false),
            ([2, 3, 32, 32], [2, 2], [2, 2], [1, 1], [0, 0, 0, 0], false),
            ([1, 2, 9, 35], [2, 2], [2, 2], [1, 1], [0, 0, 0, 0], false),
            ([1, 40, 64, 66], [2, 2], [2, 2], [1, 1], [0, 0, 0, 0], false),
            // Column stride 1 or 2 without dilation takes `rows.rs`: ceil
            // mode (partial windows at the right and bottom), pads (ResNet's
            // 3x3 / 2 pad 1), rows of several chunks, a row stride of 3,
            // windows with no input cell (-inf), two pieces.
            ([1, 2, 9, 35], [2, 2], [2, 2], [1, 1], [0, 0, 0, 0], true),
            ([1, 3, 9, 10], [3, 2], [3, 2], [1, 1], [0, 0, 0, 0], true),
            ([1, 3, 111, 111], [3, 3], [2, 2], [1, 1], [0, 0, 0, 0], true),
            ([2, 2, 9, 35], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], false),
            ([1, 4, 20, 70], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], false),
            ([1, 1, 5, 5], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2], false),
            ([1, 1, 4, 4], [1, 1], [1, 1], [1, 1], [2, 2, 2, 2], false),
            ([1, 64, 57, 57], [3, 3], [2, 2], [1, 1], [0, 1, 1, 0], true),
            // Dilation and column stride 3 take the padded planes of
            // `conv/depthwise.rs`; windows that tile the input without
            // AVX-512F, the separable loop.
            ([1, 2, 14, 40], [2, 3], [2, 3], [1, 2], [0, 2, 1, 0], true),
            ([1, 2, 7, 17], [3, 1], [1, 2], [2, 1], [2, 0, 2, 0], false),
            ([1, 3, 12, 12], [3, 3], [3, 3], [1, 1], [0, 0, 0, 0], false),
            ([2, 2, 10, 19], [3, 2], [1, 3], [1, 1], [1, 0, 1, 0], false),
        ];
        for (xs, k, st, dl, pads, ceil) in cases {
            let mut x = rnd(xs.iter().product(), 3);
            x[7] = f32::NAN;
            // A NaN in an odd column of an odd row, in a second chunk.
            let at = xs[3] + 33;
            if at < x.len() {
                x[at] = f32::NAN;
            }
            let p = PoolAttrs {
                kernel_shape: k.to_vec(),
                strides: st.to_vec(),
                dilations: dl.to_vec(),
                pads: pads.to_vec(),
                ceil_mode: ceil,
                ..Default::default()
            };
            let w = p.window(&xs).expect("window");
            let (oh, ow) = (w.output[0], w.output[1]);
            let mut want = vec![0f64; xs[0] * xs[1] * oh * ow];
            for (plane, o) in want.chunks_mut(oh * ow).enumerate() {
                let src = &x[plane * xs[2] * xs[3]..(plane + 1) * xs[2] * xs[3]];
                for y in 0..oh {
                    for xo in 0..ow {
                        let mut m = f64::NEG_INFINITY;
                        for ki in 0..k[0] {
                            for kj in 0..k[1] {
                                let iy = (y * st[0] + ki * dl[0]) as isize - pads[0] as isize;
                                let ix = (xo * st[1] + kj * dl[1]) as isize - pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= xs[2] as isize || ix >= xs[3] as isize
                                {
                                    continue;
                                }
                                let v = src[iy as usize * xs[3] + ix as usize] as f64;
                                m = if v.is_nan() || m.is_nan() {
                                    f64::NAN
                                } else {
                                    m.max(v)
                                };
                            }
                        }
                        o[y * ow + xo] = m;
                    }
                }
            }
            let xt = t(&xs, x);
            for got in [
                run(Op::MaxPool(p.clone()), &xt),
                crate::kernels::util::testutil::in_pool(|| run(Op::MaxPool(p.clone()), &xt)),
                crate::kernels::util::testutil::in_team(|| run(Op::MaxPool(p.clone()), &xt)),
            ] {
                let got = got.as_slice::<f32>().unwrap();
                assert_eq!(got.len(), want.len());
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g.is_nan() && w.is_nan()) || g as f64 == w,
                        "{xs:?} k{k:?} s{st:?} at {i}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn maxpool_2d_spec_example_pads() {
        // ONNX maxpool_2d_pads: 5x5 input 1..25, k=5, pads 2 -> 5x5 output.
        let x: Vec<f32> = (1..=25).map(|v| v as f32).collect();
        let p = PoolAttrs {
            kernel_shape: vec![5, 5],
            pads: vec![2, 2, 2, 2],
            ..Default::default()
        };
        let r = run(Op::MaxPool(p), &t(&[1, 1, 5, 5], x));
        let want = [
            13., 14., 15., 15., 15., 18., 19., 20., 20., 20., 23., 24., 25., 25., 25., 23., 24.,
            25., 25., 25., 23., 24., 25., 25., 25.,
        ];
        assert_eq!(r.as_slice::<f32>().unwrap(), &want);
    }

    #[test]
    fn maxpool_ceil_mode_spec_example() {
        // ONNX maxpool_2d_ceil: 4x4 input 1..16, k=3, s=2, ceil -> 2x2 [11,12,15,16].
        let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let p = PoolAttrs {
            kernel_shape: vec![3, 3],
            strides: vec![2, 2],
            ceil_mode: true,
            ..Default::default()
        };
        let r = run(Op::MaxPool(p), &t(&[1, 1, 4, 4], x));
        assert_eq!(r.shape(), &[1, 1, 2, 2]);
        assert_eq!(r.as_slice::<f32>().unwrap(), &[11., 12., 15., 16.]);
    }

    #[test]
    fn maxpool_dilations_spec_example() {
        // ONNX maxpool_2d_dilations: 4x4 1..16, k=2, dilation 2 -> [11,12,15,16].
        let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let p = PoolAttrs {
            kernel_shape: vec![2, 2],
            dilations: vec![2, 2],
            ..Default::default()
        };
        let r = run(Op::MaxPool(p), &t(&[1, 1, 4, 4], x));
        assert_eq!(r.as_slice::<f32>().unwrap(), &[11., 12., 15., 16.]);
    }

    #[test]
    fn avgpool_count_include_pad() {
        // ONNX averagepool_2d_pads_count_include_pad: 5x5 1..25, k=3, pads 2.
        let x: Vec<f32> = (1..=25).map(|v| v as f32).collect();
        let xs = t(&[1, 1, 5, 5], x.clone());
        let p = PoolAttrs {
            kernel_shape: vec![3, 3],
            pads: vec![2, 2, 2, 2],
            count_include_pad: true,
            ..Default::default()
        };
        let r = run(Op::AveragePool(p.clone()), &xs);
        assert_eq!(r.shape(), &[1, 1, 7, 7]);
        // f64 reference: sum over in-bounds cells / 9, or / valid count.
        let refs = |include: bool| {
            let mut o = vec![];
            for y in 0..7i64 {
                for xx in 0..7i64 {
                    let (mut s, mut n) = (0.0, 0.0);
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (y - 2 + ky, xx - 2 + kx);
                            if (0..5).contains(&iy) && (0..5).contains(&ix) {
                                s += x[(iy * 5 + ix) as usize] as f64;
                                n += 1.0;
                            }
                        }
                    }
                    o.push(if include { s / 9.0 } else { s / n });
                }
            }
            o
        };
        close(r.as_slice::<f32>().unwrap(), &refs(true), 1e-6);
        let r = run(
            Op::AveragePool(PoolAttrs {
                count_include_pad: false,
                ..p
            }),
            &xs,
        );
        close(r.as_slice::<f32>().unwrap(), &refs(false), 1e-6);
    }

    /// A window over the whole unpadded plane (ResNet-50's last pool)
    /// takes the global average; one column short of it does not. Both
    /// against the f64 mean of each window.
    #[test]
    fn avgpool_over_the_whole_plane() {
        for (h, w) in [(7usize, 7usize), (7, 8)] {
            let x = rnd(2 * 3 * h * w, 21);
            let p = PoolAttrs {
                kernel_shape: vec![7, 7],
                ..Default::default()
            };
            let r = run(Op::AveragePool(p), &t(&[2, 3, h, w], x.clone()));
            let mut want = Vec::new();
            for plane in x.chunks(h * w) {
                for c0 in 0..=w - 7 {
                    let s: f64 = (0..7)
                        .flat_map(|y| (c0..c0 + 7).map(move |c| (y, c)))
                        .map(|(y, c)| plane[y * w + c] as f64)
                        .sum();
                    want.push(s / 49.0);
                }
            }
            assert_eq!(r.shape(), &[2, 3, 1, w - 6]);
            close(r.as_slice::<f32>().unwrap(), &want, 1e-6);
        }
    }

    #[test]
    fn avgpool_ceil_mode_excludes_overhang() {
        // 1-D: [1,2,3,4,5], k=2, s=2, ceil -> windows [1,2],[3,4],[5] -> 1.5,3.5,5.
        let x = t(&[1, 1, 5], vec![1f64, 2., 3., 4., 5.]);
        let p = PoolAttrs {
            kernel_shape: vec![2],
            strides: vec![2],
            ceil_mode: true,
            count_include_pad: true,
            ..Default::default()
        };
        let r = run(Op::AveragePool(p), &x);
        assert_eq!(r.as_slice::<f64>().unwrap(), &[1.5, 3.5, 5.0]);
    }

    #[test]
    fn pool_same_upper_and_3d() {
        // SAME_UPPER, 1-D: [1..5], k=2, s=1: pad end 1 -> max [2,3,4,5,5].
        let x = t(&[1, 1, 5], vec![1f32, 2., 3., 4., 5.]);
        let p = PoolAttrs {
            kernel_shape: vec![2],
            auto_pad: AutoPad::SameUpper,
            ..Default::default()
        };
        assert_eq!(
            run(Op::MaxPool(p), &x).as_slice::<f32>().unwrap(),
            &[2., 3., 4., 5., 5.]
        );
        // 3-D average over a 2x2x2 cube.
        let v = rnd(8, 3);
        let p = PoolAttrs {
            kernel_shape: vec![2, 2, 2],
            ..Default::default()
        };
        let r = run(Op::AveragePool(p), &t(&[1, 1, 2, 2, 2], v.clone()));
        close(
            r.as_slice::<f32>().unwrap(),
            &[v.iter().map(|&a| a as f64).sum::<f64>() / 8.0],
            1e-6,
        );
    }

    #[test]
    fn global_pools() {
        let x = t(&[1, 2, 2, 2], vec![1f32, 2., 3., 4., -1., -2., -3., -4.]);
        let r = run(Op::GlobalAveragePool, &x);
        assert_eq!(r.shape(), &[1, 2, 1, 1]);
        assert_eq!(r.as_slice::<f32>().unwrap(), &[2.5, -2.5]);
        let r = run(Op::GlobalMaxPool, &x);
        assert_eq!(r.as_slice::<f32>().unwrap(), &[4., -1.]);
    }
}
