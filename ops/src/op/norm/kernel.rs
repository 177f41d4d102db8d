//! Normalisations: Softmax / LogSoftmax, BatchNormalization (inference),
//! LayerNormalization and LRN.

use crate::error::Result;
use crate::kernels::util::{
    expand_to, float_dispatch, input, opt_input, out, par_chunks, typed, Arith, Float,
};
use crate::shape::{norm_axis, numel};
use crate::tensor::Tensor;

/// Softmax (or log-softmax) along `axis`; `legacy` flattens to 2-D at `axis`.
pub(crate) fn softmax(
    axis: i64,
    legacy: bool,
    log: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let s = x.shape();
    let a = norm_axis(axis, s.len())?;
    let (len, inner) = if s.is_empty() {
        (1, 1)
    } else if legacy {
        (numel(&s[a..]), 1)
    } else {
        (s[a], numel(&s[a + 1..]))
    };
    if x.dtype() == crate::DType::F32 && inner == 1 && !log {
        let xv = typed::<f32>(x, "input 0")?;
        let mut o = crate::pool::take(xv.len());
        o.extend_from_slice(xv);
        par_chunks(&mut o, len.max(1), xv.len() * 4, |_, r| softmax_row_f32(r));
        return out(s.to_vec(), o);
    }
    float_dispatch!(x.dtype(), "Softmax", F => {
        let xv = typed::<F>(x, "input 0")?;
        let mut o = crate::pool::take(xv.len());
        o.extend_from_slice(xv);
        let block = len * inner;
        par_chunks(&mut o, block.max(1), xv.len() * 4, |_, blk| {
            if inner == 1 {
                softmax_row(blk, log);
            } else {
                softmax_strided(blk, inner, log);
            }
        });
        out(s.to_vec(), o)
    })
}

/// [`softmax_row`] for f32 with the vectorised exp (kernels/vmath.rs).
fn softmax_row_f32(r: &mut [f32]) {
    use crate::kernels::vmath::{map_inplace, ExpMinus};
    let m = r.iter().fold(f32::MIN, |m, &v| m.max(v));
    map_inplace(r, ExpMinus(m));
    let inv = 1.0 / lane_sum(r, |v| v);
    r.iter_mut().for_each(|v| *v *= inv);
}

fn softmax_row<F: Float>(r: &mut [F], log: bool) {
    let m = r.iter().fold(F::lowest(), |m, &v| m.max(v));
    let mut sum = F::ZERO;
    if log {
        for &v in r.iter() {
            sum += (v - m).exp();
        }
        let ls = sum.ln();
        for v in r.iter_mut() {
            *v = *v - m - ls;
        }
    } else {
        for v in r.iter_mut() {
            *v = (*v - m).exp();
            sum += *v;
        }
        let inv = F::ONE / sum;
        for v in r.iter_mut() {
            *v = *v * inv;
        }
    }
}

fn softmax_strided<F: Float>(b: &mut [F], inner: usize, log: bool) {
    let mut m = vec![F::lowest(); inner];
    for row in b.chunks(inner) {
        for (a, &v) in m.iter_mut().zip(row) {
            *a = a.max(v);
        }
    }
    let mut sum = crate::pool::filled(inner, F::ZERO);
    for row in b.chunks_mut(inner) {
        for ((v, s), &mx) in row.iter_mut().zip(sum.iter_mut()).zip(&m) {
            if log {
                let d = *v - mx;
                *s += d.exp();
                *v = d;
            } else {
                *v = (*v - mx).exp();
                *s += *v;
            }
        }
    }
    for row in b.chunks_mut(inner) {
        for (v, &s) in row.iter_mut().zip(&sum) {
            *v = if log { *v - s.ln() } else { *v / s };
        }
    }
}

fn per_channel<'a, F: Float>(
    inputs: &[Option<&'a Tensor>],
    i: usize,
    name: &str,
    c: usize,
) -> Result<&'a [F]> {
    let t = input(inputs, i, name)?;
    let v = typed::<F>(t, &format!("input {i} ({name})"))?;
    if v.len() != c {
        crate::bail!(
            "input {i} ({name}) has {} elements, expected {c} (channels)",
            v.len()
        );
    }
    Ok(v)
}

/// Inference batch norm: inputs x `[N, C, ...]`, scale, B, mean, var `[C]`.
pub(crate) fn batch_norm(eps: f32, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let s = x.shape();
    if s.len() < 2 {
        crate::bail!("BatchNormalization needs rank >= 2, got {:?}", s);
    }
    let c = s[1];
    let sp = numel(&s[2..]);
    float_dispatch!(x.dtype(), "BatchNormalization", F => {
        let xv = typed::<F>(x, "input 0 (X)")?;
        let scale = per_channel::<F>(inputs, 1, "scale", c)?;
        let bias = per_channel::<F>(inputs, 2, "B", c)?;
        let mean = per_channel::<F>(inputs, 3, "input_mean", c)?;
        let var = per_channel::<F>(inputs, 4, "input_var", c)?;
        let e = F::c(eps as f64);
        let mul: Vec<F> = (0..c).map(|i| scale[i] / (var[i] + e).sqrt()).collect();
        let add: Vec<F> = (0..c).map(|i| bias[i] - mean[i] * mul[i]).collect();
        let mut o = crate::pool::stale(xv.len(), F::c(f64::NAN));
        par_chunks(&mut o, sp.max(1), xv.len(), |p, dst| {
            let ch = p % c;
            let (a, b) = (mul[ch], add[ch]);
            for (d, &v) in dst.iter_mut().zip(&xv[p * sp..(p + 1) * sp]) {
                *d = v * a + b;
            }
        });
        out(s.to_vec(), o)
    })
}

/// Layer norm over dims `axis..`; outputs Y and, when asked, Mean and
/// InvStdDev (shape `[d0..axis, 1, ...]`).
/// Mean and `1 / sqrt(variance + eps)` of `src` (two passes: the sum,
/// then squared deviations from the mean).
fn mean_inv_std<F: Float>(src: &[F], eps: F) -> (F, F) {
    let n = F::c(src.len() as f64);
    let mean = lane_sum(src, |v| v) / n;
    let var = lane_sum(src, |v| (v - mean) * (v - mean));
    (mean, F::ONE / (var / n + eps).sqrt())
}

/// The sum of `f(v)` over `src`, in 16 partial sums (independent adds the
/// compiler vectorises, where one running sum is a chain of dependent
/// adds: LayerNormalization over 64 rows of 256 took 53 µs that way).
fn lane_sum<F: Float>(src: &[F], f: impl Fn(F) -> F) -> F {
    let mut part = [F::ZERO; 16];
    let mut chunks = src.chunks_exact(16);
    for c in &mut chunks {
        for (p, &v) in part.iter_mut().zip(c) {
            *p += f(v);
        }
    }
    let mut sum = F::ZERO;
    for &v in chunks.remainder() {
        sum += f(v);
    }
    part.iter().fold(sum, |a, &p| a + p)
}

pub(crate) fn layer_norm(
    axis: i64,
    eps: f32,
    inputs: &[Option<&Tensor>],
    n_out: usize,
) -> Result<Vec<Tensor>> {
    let x = input(inputs, 0, "X")?;
    let s = x.shape();
    let a = norm_axis(axis, s.len())?;
    let (rows, inner) = (numel(&s[..a]), numel(&s[a..]));
    let scale = expand_to(input(inputs, 1, "Scale")?, &s[a..])?;
    let bias = opt_input(inputs, 2)
        .filter(|b| !b.is_empty())
        .map(|b| expand_to(b, &s[a..]))
        .transpose()?;
    let mut stat_shape = s[..a].to_vec();
    stat_shape.extend(std::iter::repeat_n(1, s.len() - a));
    float_dispatch!(x.dtype(), "LayerNormalization", F => {
        let xv = typed::<F>(x, "input 0 (X)")?;
        let sc = typed::<F>(&scale, "input 1 (Scale)")?;
        let bi = match &bias {
            Some(b) => Some(typed::<F>(b, "input 2 (B)")?),
            None => None,
        };
        let e = F::c(eps as f64);
        let mut o = crate::pool::stale(xv.len(), F::c(f64::NAN));
        let mut stats = vec![(F::ZERO, F::ZERO); rows];
        let row = |r: usize, dst: &mut [F]| -> (F, F) {
            let src = &xv[r * inner..(r + 1) * inner];
            let (mean, inv) = mean_inv_std(src, e);
            for (j, (d, &v)) in dst.iter_mut().zip(src).enumerate() {
                let y = (v - mean) * inv * sc[j];
                *d = match bi {
                    Some(b) => y + b[j],
                    None => y,
                };
            }
            (mean, inv)
        };
        if inner > 0 {
            let st = crate::kernels::util::SharedMut::new(&mut stats[..]);
            crate::kernels::util::par_chunks(&mut o, inner, xv.len(), |r, d| {
                // SAFETY: row `r` is written by this piece alone.
                unsafe { st.slice(r, 1)[0] = row(r, d) }
            });
        }
        let mut outs = vec![out(s.to_vec(), o)?];
        if n_out > 1 {
            outs.push(out(stat_shape.clone(), stats.iter().map(|p| p.0).collect::<Vec<F>>())?);
        }
        if n_out > 2 {
            outs.push(out(stat_shape, stats.iter().map(|p| p.1).collect::<Vec<F>>())?);
        }
        Ok(outs)
    })
}

/// RMS normalisation over dims `axis..`:
/// `y = x / sqrt(mean(x^2) + eps) * scale` (scale broadcast to those dims).
pub(crate) fn rms_norm(axis: i64, eps: f32, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let s = x.shape();
    let a = norm_axis(axis, s.len())?;
    let inner = numel(&s[a..]);
    let scale = expand_to(input(inputs, 1, "scale")?, &s[a..])?;
    float_dispatch!(x.dtype(), "RMSNormalization", F => {
        let xv = typed::<F>(x, "input 0 (X)")?;
        let sc = typed::<F>(&scale, "input 1 (scale)")?;
        let (e, n) = (F::c(eps as f64), F::c(inner as f64));
        let mut o = crate::pool::stale(xv.len(), F::c(f64::NAN));
        par_chunks(&mut o, inner.max(1), xv.len() * 3, |r, dst| {
            let src = &xv[r * inner..(r + 1) * inner];
            let mut sq = F::ZERO;
            for &v in src {
                sq += v * v;
            }
            let inv = F::ONE / (sq / n + e).sqrt();
            for ((d, &v), &g) in dst.iter_mut().zip(src).zip(sc) {
                *d = v * inv * g;
            }
        });
        out(s.to_vec(), o)
    })
}

/// Hardmax: 1 at the first maximum along `axis` (or, `legacy`, over the
/// flattened dims `axis..`), 0 elsewhere.
pub(crate) fn hardmax(axis: i64, legacy: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let s = x.shape();
    let a = norm_axis(axis, s.len())?;
    let (len, inner) = if s.is_empty() {
        (1, 1)
    } else if legacy {
        (numel(&s[a..]), 1)
    } else {
        (s[a], numel(&s[a + 1..]))
    };
    float_dispatch!(x.dtype(), "Hardmax", F => {
        let xv = typed::<F>(x, "input 0")?;
        let mut o = crate::pool::filled(xv.len(), F::ZERO);
        let block = len * inner;
        par_chunks(&mut o, block.max(1), xv.len(), |b, dst| {
            let src = &xv[b * block..(b + 1) * block];
            for ii in 0..inner {
                let mut best = 0;
                for k in 1..len {
                    if src[k * inner + ii] > src[best * inner + ii] {
                        best = k;
                    }
                }
                if len > 0 {
                    dst[best * inner + ii] = F::ONE;
                }
            }
        });
        out(s.to_vec(), o)
    })
}

/// Local response normalisation across channels:
/// `y = x / (bias + alpha/size * sum_{window} x^2)^beta`.
pub(crate) fn lrn(
    alpha: f32,
    beta: f32,
    bias: f32,
    size: usize,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let s = x.shape();
    if s.len() < 2 {
        crate::bail!("LRN needs rank >= 2, got {:?}", s);
    }
    if size == 0 {
        crate::bail!("LRN size must be positive");
    }
    let (c, sp) = (s[1], numel(&s[2..]));
    let (before, after) = ((size - 1) / 2, (size - 1).div_ceil(2));
    float_dispatch!(x.dtype(), "LRN", F => {
        let xv = typed::<F>(x, "input 0 (X)")?;
        let (al, be, bi) = (F::c(alpha as f64 / size as f64), F::c(beta as f64), F::c(bias as f64));
        let mut o = crate::pool::stale(xv.len(), F::c(f64::NAN));
        par_chunks(&mut o, sp.max(1), xv.len() * size, |p, dst| {
            let (n, ch) = (p / c, p % c);
            let lo = ch.saturating_sub(before);
            let hi = (ch + after).min(c - 1);
            let mut sq = crate::pool::filled(sp, F::ZERO);
            for cc in lo..=hi {
                let src = &xv[(n * c + cc) * sp..(n * c + cc + 1) * sp];
                for (q, &v) in sq.iter_mut().zip(src) {
                    *q += v * v;
                }
            }
            let src = &xv[p * sp..(p + 1) * sp];
            for ((d, &v), &q) in dst.iter_mut().zip(src).zip(&sq) {
                *d = v / (bi + al * q).powf(be);
            }
        });
        out(s.to_vec(), o)
    })
}

/// Rotary position embedding on `[B, H, S, D]` or `[B, S, H * D]` input:
/// the first `rotary_dim` (default D) features of each head are rotated in
/// pairs (halves, or adjacent elements when `interleaved`) by the angles
/// whose cos / sin are `cache[position_ids[b, s]]` (or `cache[b, s]`).
pub(crate) fn rotary(
    interleaved: bool,
    num_heads: Option<usize>,
    rotary_dim: usize,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let s = x.shape();
    let (b, sq, h, d, four) = match s.len() {
        4 => (s[0], s[2], s[1], s[3], true),
        3 => {
            let h = num_heads
                .ok_or_else(|| crate::Error::msg("RotaryEmbedding: 3-D input needs num_heads"))?;
            if s[2] % h != 0 {
                crate::bail!(
                    "RotaryEmbedding: hidden size {} is not divisible by {h} heads",
                    s[2]
                );
            }
            (s[0], s[1], h, s[2] / h, false)
        }
        _ => crate::bail!("RotaryEmbedding: input must be 3-D or 4-D, got {:?}", s),
    };
    let rd = if rotary_dim == 0 { d } else { rotary_dim };
    if rd > d || rd % 2 != 0 {
        crate::bail!("RotaryEmbedding: rotary dim {rd} must be even and at most {d}");
    }
    let half = rd / 2;
    let cos_t = input(inputs, 1, "cos_cache")?;
    let sin_t = input(inputs, 2, "sin_cache")?;
    if cos_t.shape() != sin_t.shape() || cos_t.shape().last() != Some(&half) {
        crate::bail!(
            "RotaryEmbedding: caches {:?} and {:?} must match and end in {half}",
            cos_t.shape(),
            sin_t.shape()
        );
    }
    // Row of the caches for (batch, position).
    let rows = cos_t.len() / half.max(1);
    let pos: Option<Vec<i64>> = match opt_input(inputs, 3) {
        Some(p) => {
            if p.len() != b * sq || !p.dtype().is_int() {
                crate::bail!("RotaryEmbedding: position_ids must be [{b}, {sq}] integers");
            }
            Some(p.to_i64_vec())
        }
        None => {
            if rows != b * sq {
                crate::bail!(
                    "RotaryEmbedding: without position_ids the caches must be [{b}, {sq}, {half}], got {:?}",
                    cos_t.shape()
                );
            }
            None
        }
    };
    float_dispatch!(x.dtype(), "RotaryEmbedding", F => {
        let xv = typed::<F>(x, "input 0 (X)")?;
        let cw = cos_t.cast(<F as crate::dtype::Element>::DTYPE);
        let sw = sin_t.cast(<F as crate::dtype::Element>::DTYPE);
        let (cv, sv) = (typed::<F>(&cw, "cos_cache")?, typed::<F>(&sw, "sin_cache")?);
        let mut o = xv.to_vec();
        for bi in 0..b {
            for si in 0..sq {
                let row = match &pos {
                    Some(p) => {
                        let r = p[bi * sq + si];
                        if r < 0 || r as usize >= rows {
                            crate::bail!("RotaryEmbedding: position {r} outside the {rows}-row cache");
                        }
                        r as usize
                    }
                    None => bi * sq + si,
                };
                let (c, sn) = (&cv[row * half..(row + 1) * half], &sv[row * half..(row + 1) * half]);
                for hi in 0..h {
                    let base = if four {
                        ((bi * h + hi) * sq + si) * d
                    } else {
                        (bi * sq + si) * h * d + hi * d
                    };
                    for i in 0..half {
                        let (p1, p2) = if interleaved {
                            (base + 2 * i, base + 2 * i + 1)
                        } else {
                            (base + i, base + half + i)
                        };
                        let (x1, x2) = (xv[p1], xv[p2]);
                        o[p1] = c[i] * x1 - sn[i] * x2;
                        o[p2] = sn[i] * x1 + c[i] * x2;
                    }
                }
            }
        }
        out(s.to_vec(), o)
    })
}

/// MeanVarianceNormalization: `(x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9)`
/// with the means over `axes` (the ONNX function's formula), in f64.
pub(crate) fn mean_variance_norm(axes: &[i64], inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    if !x.dtype().is_float() {
        crate::bail!(
            "MeanVarianceNormalization needs a float tensor, got {}",
            x.dtype()
        );
    }
    let s = x.shape();
    let mut reduced = vec![false; s.len()];
    for &a in axes {
        reduced[norm_axis(a, s.len())?] = true;
    }
    // Each element's group: its index with the reduced coordinates dropped.
    let st = crate::shape::strides(s);
    let kept: Vec<usize> = (0..s.len()).filter(|&d| !reduced[d]).collect();
    let kept_dims: Vec<usize> = kept.iter().map(|&d| s[d]).collect();
    let kst = crate::shape::strides(&kept_dims);
    let group = |i: usize| -> usize {
        kept.iter()
            .zip(&kst)
            .map(|(&d, &ks)| (i / st[d]) % s[d] * ks)
            .sum()
    };
    let n_groups = numel(&kept_dims);
    let per = (numel(s) / n_groups.max(1)).max(1) as f64;
    let xw = x.cast(crate::DType::F64);
    let xv = typed::<f64>(&xw, "input 0 (X)")?;
    let (mut sum, mut sq) = (vec![0f64; n_groups], vec![0f64; n_groups]);
    let groups: Vec<usize> = (0..xv.len()).map(group).collect();
    for (&v, &g) in xv.iter().zip(&groups) {
        sum[g] += v;
        sq[g] += v * v;
    }
    let y: Vec<f64> = xv
        .iter()
        .zip(&groups)
        .map(|(&v, &g)| {
            let mean = sum[g] / per;
            let std = (sq[g] / per - mean * mean).max(0.0).sqrt();
            (v - mean) / (std + 1e-9)
        })
        .collect();
    Ok(out(s.to_vec(), y)?.cast(x.dtype()))
}

/// `x / ||x||_p` along `axis` (0 where the norm is 0).
pub(crate) fn lp_norm(axis: i64, p: u8, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let s = x.shape();
    let a = norm_axis(axis, s.len())?;
    let (outer, n, inner) = (numel(&s[..a]), s[a], numel(&s[a + 1..]));
    float_dispatch!(x.dtype(), "LpNormalization", F => {
        let xv = typed::<F>(x, "input 0")?;
        let mut o = xv.to_vec();
        for oi in 0..outer {
            for ii in 0..inner {
                let at = |k: usize| (oi * n + k) * inner + ii;
                let mut acc = F::ZERO;
                for k in 0..n {
                    let v = xv[at(k)];
                    acc += if p == 1 { v.abs() } else { v * v };
                }
                let norm = if p == 1 { acc } else { acc.sqrt() };
                for k in 0..n {
                    o[at(k)] = if norm == F::ZERO { F::ZERO } else { xv[at(k)] / norm };
                }
            }
        }
        out(s.to_vec(), o)
    })
}

/// Group normalisation of `[N, C, ..]` over groups of `C / groups`
/// channels and the spatial dims (InstanceNormalization: one group per
/// channel); scale and bias per channel (`by_channel`) or per group.
pub(crate) fn group_norm(
    eps: f32,
    groups: Option<usize>,
    by_channel: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let s = x.shape();
    if s.len() < 2 {
        crate::bail!("normalisation needs an [N, C, ...] input, got {:?}", s);
    }
    let (c, sp) = (s[1], numel(&s[2..]));
    let g = groups.unwrap_or(c);
    if g == 0 || c % g != 0 {
        crate::bail!("{c} channels do not split into {g} groups");
    }
    let cpg = c / g;
    let per = if by_channel { c } else { g };
    float_dispatch!(x.dtype(), "normalisation", F => {
        let xv = typed::<F>(x, "input 0 (X)")?;
        let scale = per_channel::<F>(inputs, 1, "scale", per)?;
        let bias = per_channel::<F>(inputs, 2, "bias", per)?;
        let e = F::c(eps as f64);
        let block = cpg * sp;
        let mut o = crate::pool::stale(xv.len(), F::c(f64::NAN));
        par_chunks(&mut o, block.max(1), xv.len() * 4, |blk, dst| {
            let gi = blk % g;
            let src = &xv[blk * block..(blk + 1) * block];
            let (mean, inv) = mean_inv_std(src, e);
            for (k, (d, &v)) in dst.iter_mut().zip(src).enumerate() {
                let ch = gi * cpg + k / sp.max(1);
                let p = if by_channel { ch } else { gi };
                *d = (v - mean) * inv * scale[p] + bias[p];
            }
        });
        out(s.to_vec(), o)
    })
}

#[cfg(test)]
mod group_norm_tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::{close, rnd, t};
    use crate::op::Op;

    #[test]
    fn group_norm_matches_f64_per_group_statistics() {
        // N=2, C=4, 3 spatial, 2 groups; scale and bias per channel.
        let x = rnd(2 * 4 * 3, 7);
        let scale = vec![1.0f32, 2.0, -1.0, 0.5];
        let bias = vec![0.0f32, 1.0, 0.5, -2.0];
        let op = Op::GroupNorm {
            epsilon: 1e-5,
            groups: 2,
            per_channel: true,
        };
        let y = eval(
            &op,
            &[
                Some(&t(&[2, 4, 3], x.clone())),
                Some(&t(&[4], scale.clone())),
                Some(&t(&[4], bias.clone())),
            ],
            1,
        )
        .unwrap()
        .remove(0);
        let mut want = vec![0f64; x.len()];
        for n in 0..2 {
            for g in 0..2 {
                let idx: Vec<usize> = (0..6).map(|k| (n * 4 + g * 2) * 3 + k).collect();
                let mean = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / 6.0;
                let var = idx
                    .iter()
                    .map(|&i| (x[i] as f64 - mean).powi(2))
                    .sum::<f64>()
                    / 6.0;
                for &i in &idx {
                    let c = (i / 3) % 4;
                    want[i] = (x[i] as f64 - mean) / (var + 1e-5).sqrt() * scale[c] as f64
                        + bias[c] as f64;
                }
            }
        }
        close(y.as_slice::<f32>().unwrap(), &want, 1e-5);
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::{close, rnd, t};
    use crate::op::Op;
    use crate::tensor::Tensor;

    fn softmax_ref(x: &[f32], log: bool) -> Vec<f64> {
        let m = x.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
        let s: f64 = x.iter().map(|&v| (v as f64 - m).exp()).sum();
        x.iter()
            .map(|&v| {
                if log {
                    v as f64 - m - s.ln()
                } else {
                    (v as f64 - m).exp() / s
                }
            })
            .collect()
    }

    #[test]
    fn softmax_axes_and_legacy() {
        let x = rnd(2 * 3 * 4, 7);
        let xt = t(&[2, 3, 4], x.clone());
        // Last axis: rows of 4.
        let r = eval(
            &Op::Softmax {
                axis: -1,
                legacy: false,
            },
            &[Some(&xt)],
            1,
        )
        .unwrap();
        let want: Vec<f64> = x.chunks(4).flat_map(|c| softmax_ref(c, false)).collect();
        close(r[0].as_slice::<f32>().unwrap(), &want, 1e-6);
        // Legacy axis 1: rows of 12.
        let r = eval(
            &Op::LogSoftmax {
                axis: 1,
                legacy: true,
            },
            &[Some(&xt)],
            1,
        )
        .unwrap();
        let want: Vec<f64> = x.chunks(12).flat_map(|c| softmax_ref(c, true)).collect();
        close(r[0].as_slice::<f32>().unwrap(), &want, 1e-6);
        // Axis 1 (strided), opset 13.
        for log in [false, true] {
            let op = if log {
                Op::LogSoftmax {
                    axis: 1,
                    legacy: false,
                }
            } else {
                Op::Softmax {
                    axis: 1,
                    legacy: false,
                }
            };
            let r = eval(&op, &[Some(&xt)], 1).unwrap();
            let mut want = vec![0.0; 24];
            for n in 0..2 {
                for k in 0..4 {
                    let col: Vec<f32> = (0..3).map(|c| x[n * 12 + c * 4 + k]).collect();
                    for (c, v) in softmax_ref(&col, log).into_iter().enumerate() {
                        want[n * 12 + c * 4 + k] = v;
                    }
                }
            }
            close(r[0].as_slice::<f32>().unwrap(), &want, 1e-6);
        }
    }

    #[test]
    fn batch_norm_matches_formula() {
        let x = rnd(2 * 3 * 4, 1);
        let (sc, b, m) = (
            vec![1f32, 2., 0.5],
            vec![0.1f32, -0.2, 0.3],
            vec![0.0f32, 0.5, -0.5],
        );
        let v = vec![1f32, 0.25, 4.0];
        let ts = [
            t(&[2, 3, 2, 2], x.clone()),
            t(&[3], sc.clone()),
            t(&[3], b.clone()),
            t(&[3], m.clone()),
            t(&[3], v.clone()),
        ];
        let ins: Vec<Option<&Tensor>> = ts.iter().map(Some).collect();
        let r = eval(&Op::BatchNorm { epsilon: 1e-5 }, &ins, 1).unwrap();
        let want: Vec<f64> = (0..24)
            .map(|i| {
                let c = (i / 4) % 3;
                (x[i] as f64 - m[c] as f64) / (v[c] as f64 + 1e-5).sqrt() * sc[c] as f64
                    + b[c] as f64
            })
            .collect();
        close(r[0].as_slice::<f32>().unwrap(), &want, 1e-6);
        assert_eq!(
            eval(&Op::BatchNorm { epsilon: 1e-5 }, &ins[..3], 1)
                .unwrap_err()
                .to_string(),
            "input 3 (input_mean) is missing"
        );
    }

    #[test]
    fn layer_norm_with_stats() {
        let x = rnd(2 * 6, 2);
        let sc = rnd(6, 3);
        let b = rnd(6, 4);
        let ts = [
            t(&[2, 2, 3], x.clone()),
            t(&[2, 3], sc.clone()),
            t(&[2, 3], b.clone()),
        ];
        let ins: Vec<Option<&Tensor>> = ts.iter().map(Some).collect();
        let r = eval(
            &Op::LayerNorm {
                axis: 1,
                epsilon: 1e-5,
            },
            &ins,
            3,
        )
        .unwrap();
        let mut want = vec![];
        let mut means = vec![];
        for row in x.chunks(6) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / 6.0;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 6.0;
            for j in 0..6 {
                want.push(
                    (row[j] as f64 - mean) / (var + 1e-5).sqrt() * sc[j] as f64 + b[j] as f64,
                );
            }
            means.push(mean);
        }
        close(r[0].as_slice::<f32>().unwrap(), &want, 1e-5);
        assert_eq!(r[1].shape(), &[2, 1, 1]);
        close(r[1].as_slice::<f32>().unwrap(), &means, 1e-6);
    }

    #[test]
    fn lrn_matches_formula() {
        let x = rnd(5 * 2, 9);
        let (alpha, beta, bias, size) = (1e-2f32, 0.75f32, 1.0f32, 3usize);
        let r = eval(
            &Op::Lrn {
                alpha,
                beta,
                bias,
                size,
            },
            &[Some(&t(&[1, 5, 2, 1], x.clone()))],
            1,
        )
        .unwrap();
        let mut want = vec![];
        for c in 0..5usize {
            for p in 0..2 {
                let mut sq = 0.0;
                for cc in c.saturating_sub(1)..=(c + 1).min(4) {
                    sq += (x[cc * 2 + p] as f64).powi(2);
                }
                want.push(
                    x[c * 2 + p] as f64
                        / (bias as f64 + alpha as f64 / size as f64 * sq).powf(beta as f64),
                );
            }
        }
        close(r[0].as_slice::<f32>().unwrap(), &want, 1e-6);
    }
}
