//! Smaller ops: the window functions (Hann, Hamming, Blackman),
//! ReverseSequence, CenterCropPad, Det, Unique, ConvTranspose and
//! TfIdfVectorizer; GridSample and AffineGrid are in `sampling.rs`.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input, out, typed};
use crate::op::{AutoPad, ConvTransposeAttrs, TfIdfAttrs, TfIdfMode, WindowKind};
use crate::shape::{norm_axis, numel, strides};
use crate::tensor::{Storable, Tensor};

pub(crate) use super::sampling::{affine_grid, grid_sample};

/// A window of the length in input 0, periodic (denominator N) or
/// symmetric (N - 1), in `dtype`.
pub(crate) fn window(
    kind: WindowKind,
    periodic: bool,
    dtype: DType,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let n_t = input(inputs, 0, "size")?;
    if !n_t.dtype().is_int() || n_t.len() != 1 {
        crate::bail!(
            "window size must be one integer, got {} {:?}",
            n_t.dtype(),
            n_t.shape()
        );
    }
    let n = n_t.to_i64_vec()[0];
    if !(0..=1 << 32).contains(&n) {
        crate::bail!("window size {n} is out of range");
    }
    let n = n as usize;
    let den = if periodic { n as f64 } else { n as f64 - 1.0 };
    let tau = 2.0 * std::f64::consts::PI;
    let v: Vec<f64> = (0..n)
        .map(|i| {
            let x = i as f64 / den;
            match kind {
                WindowKind::Hann => 0.5 - 0.5 * (tau * x).cos(),
                WindowKind::Hamming => 25.0 / 46.0 - (21.0 / 46.0) * (tau * x).cos(),
                WindowKind::Blackman => 0.42 - 0.5 * (tau * x).cos() + 0.08 * (2.0 * tau * x).cos(),
            }
        })
        .collect();
    Ok(out(vec![n], v)?.cast(dtype))
}

/// ReverseSequence: for each batch entry b, the first `lens[b]` steps
/// along `time_axis` reversed.
pub(crate) fn reverse_sequence(
    batch_axis: i64,
    time_axis: i64,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let s = x.shape();
    let (ba, ta) = (
        norm_axis(batch_axis, s.len())?,
        norm_axis(time_axis, s.len())?,
    );
    if ba == ta || s.len() < 2 {
        crate::bail!("ReverseSequence: batch_axis and time_axis must differ in a rank >= 2 input");
    }
    let lens_t = input(inputs, 1, "sequence_lens")?;
    if !lens_t.dtype().is_int() || lens_t.len() != s[ba] {
        crate::bail!(
            "ReverseSequence: sequence_lens must be {} integers, got {} {:?}",
            s[ba],
            lens_t.dtype(),
            lens_t.shape()
        );
    }
    let lens = lens_t.to_i64_vec();
    if let Some(&l) = lens.iter().find(|&&l| l < 0 || l as usize > s[ta]) {
        crate::bail!("ReverseSequence: length {l} outside 0..={}", s[ta]);
    }
    let st = strides(s);
    let n = x.len();
    // Source offset of each output offset.
    let src: Vec<usize> = (0..n)
        .map(|p| {
            let b = (p / st[ba]) % s[ba];
            let t = (p / st[ta]) % s[ta];
            let l = lens[b] as usize;
            if t < l {
                p - t * st[ta] + (l - 1 - t) * st[ta]
            } else {
                p
            }
        })
        .collect();
    let data = crate::dispatch_data!(x.data(), v, T => {
        <T as Storable>::wrap(src.iter().map(|&q| v[q]).collect())
    });
    Tensor::new(s.to_vec(), data)
}

/// CenterCropPad: each listed axis cropped or zero-padded to its target
/// size around the centre (the extra cell of an odd difference at the end).
pub(crate) fn center_crop_pad(axes: Option<&[i64]>, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "input_data")?;
    let s = x.shape();
    let r = s.len();
    let target = input(inputs, 1, "shape")?;
    if !target.dtype().is_int() {
        crate::bail!(
            "CenterCropPad: shape must be integers, got {}",
            target.dtype()
        );
    }
    let target = target.to_i64_vec();
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&v| norm_axis(v, r)).collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    if target.len() != axes.len() {
        crate::bail!(
            "CenterCropPad: shape has {} entries for {} axes",
            target.len(),
            axes.len()
        );
    }
    let mut oshape = s.to_vec();
    // Per axis: output index o reads input index o + shift (if in range).
    let mut shift = vec![0i64; r];
    for (&a, &t) in axes.iter().zip(&target) {
        if t < 0 {
            crate::bail!("CenterCropPad: negative size {t}");
        }
        let d = s[a] as i64;
        oshape[a] = t as usize;
        shift[a] = if t < d { (d - t) / 2 } else { -((t - d) / 2) };
    }
    let ist = strides(s);
    let total = numel(&oshape);
    let mut mi = vec![0usize; r];
    let mut src: Vec<Option<usize>> = Vec::with_capacity(total);
    for _ in 0..total {
        let mut off = Some(0usize);
        for d in 0..r {
            let i = mi[d] as i64 + shift[d];
            off = match off {
                Some(acc) if i >= 0 && (i as usize) < s[d] => Some(acc + i as usize * ist[d]),
                _ => None,
            };
        }
        src.push(off);
        for d in (0..r).rev() {
            mi[d] += 1;
            if mi[d] < oshape[d] {
                break;
            }
            mi[d] = 0;
        }
    }
    let data = crate::dispatch_data!(x.data(), v, T => {
        <T as Storable>::wrap(src.iter().map(|q| q.map_or(T::default(), |q| v[q])).collect())
    });
    Tensor::new(oshape, data)
}

/// Determinant of each trailing square matrix, by LU with partial pivoting
/// in f64.
pub(crate) fn det(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let s = x.shape();
    if s.len() < 2 || s[s.len() - 1] != s[s.len() - 2] || !x.dtype().is_float() {
        crate::bail!("Det needs float [*, M, M] input, got {} {:?}", x.dtype(), s);
    }
    let m = s[s.len() - 1];
    let batch = numel(&s[..s.len() - 2]);
    let w = x.cast(DType::F64);
    let v = typed::<f64>(&w, "input 0")?;
    let mut o = Vec::with_capacity(batch);
    for b in 0..batch {
        let mut a = v[b * m * m..(b + 1) * m * m].to_vec();
        let mut d = 1.0;
        for c in 0..m {
            let piv = (c..m)
                .max_by(|&i, &j| a[i * m + c].abs().total_cmp(&a[j * m + c].abs()))
                .unwrap_or(c);
            if a[piv * m + c] == 0.0 {
                d = 0.0;
                break;
            }
            if piv != c {
                for k in 0..m {
                    a.swap(piv * m + k, c * m + k);
                }
                d = -d;
            }
            let p = a[c * m + c];
            d *= p;
            for i in c + 1..m {
                let f = a[i * m + c] / p;
                for k in c..m {
                    a[i * m + k] -= f * a[c * m + k];
                }
            }
        }
        o.push(d);
    }
    Ok(out(s[..s.len() - 2].to_vec(), o)?.cast(x.dtype()))
}

/// Unique elements (or slices along `axis`), sorted ascending or in order
/// of first occurrence; outputs Y, first indices, inverse indices, counts.
pub(crate) fn unique(
    axis: Option<i64>,
    sorted: bool,
    inputs: &[Option<&Tensor>],
    n_out: usize,
) -> Result<Vec<Tensor>> {
    let x = input(inputs, 0, "X")?;
    let (s, a) = match axis {
        Some(ax) => (x.shape().to_vec(), norm_axis(ax, x.rank())?),
        None => (vec![x.len()], 0),
    };
    let (outer, n, inner) = (numel(&s[..a]), s[a], numel(&s[a + 1..]));
    let result = crate::dispatch_data!(x.data(), v, T => {
        // Slice k: elements (o, k, i) for all o, i.
        let slice = |k: usize| -> Vec<T> {
            let mut e = Vec::with_capacity(outer * inner);
            for o in 0..outer {
                e.extend_from_slice(&v[(o * n + k) * inner..(o * n + k + 1) * inner]);
            }
            e
        };
        let slices: Vec<Vec<T>> = (0..n).map(slice).collect();
        let cmp = |p: &Vec<T>, q: &Vec<T>| -> std::cmp::Ordering {
            for (x, y) in p.iter().zip(q) {
                #[allow(clippy::eq_op)]
                let c = x.partial_cmp(y).unwrap_or_else(|| (x != x).cmp(&(y != y)));
                if c != std::cmp::Ordering::Equal {
                    return c;
                }
            }
            std::cmp::Ordering::Equal
        };
        // Distinct slices in first-occurrence order.
        let mut firsts: Vec<usize> = Vec::new();
        let mut inverse = vec![0usize; n];
        let mut counts: Vec<i64> = Vec::new();
        for k in 0..n {
            match firsts.iter().position(|&f| cmp(&slices[f], &slices[k]).is_eq()) {
                Some(u) => {
                    inverse[k] = u;
                    counts[u] += 1;
                }
                None => {
                    inverse[k] = firsts.len();
                    firsts.push(k);
                    counts.push(1);
                }
            }
        }
        let mut order: Vec<usize> = (0..firsts.len()).collect();
        if sorted {
            order.sort_by(|&p, &q| cmp(&slices[firsts[p]], &slices[firsts[q]]));
        }
        let mut rank = vec![0usize; order.len()];
        for (r, &u) in order.iter().enumerate() {
            rank[u] = r;
        }
        let m = order.len();
        let mut y: Vec<T> = vec![T::default(); outer * m * inner];
        for (r, &u) in order.iter().enumerate() {
            let sl = &slices[firsts[u]];
            for o in 0..outer {
                y[(o * m + r) * inner..(o * m + r + 1) * inner]
                    .copy_from_slice(&sl[o * inner..(o + 1) * inner]);
            }
        }
        let mut yshape = s.clone();
        yshape[a] = m;
        (
            Tensor::new(yshape, <T as Storable>::wrap(y))?,
            order.iter().map(|&u| firsts[u] as i64).collect::<Vec<i64>>(),
            inverse.iter().map(|&u| rank[u] as i64).collect::<Vec<i64>>(),
            order.iter().map(|&u| counts[u]).collect::<Vec<i64>>(),
        )
    });
    let (y, idx, inv, cnt) = result;
    let m = idx.len();
    let mut outs = vec![y];
    if n_out > 1 {
        outs.push(out(vec![m], idx)?);
    }
    if n_out > 2 {
        outs.push(out(vec![inv.len()], inv)?);
    }
    if n_out > 3 {
        outs.push(out(vec![m], cnt)?);
    }
    Ok(outs)
}

/// ConvTranspose: every input cell scatters `x * w` over its kernel window
/// in the output (`o = i * stride + k * dilation - pad_begin`), per group;
/// then the bias. Pads from the attribute, from `auto_pad` SAME_* (against
/// the output shape, default `in * stride`), else 0; the output shape from
/// the attribute or the usual formula.
pub(crate) fn conv_transpose(a: &ConvTransposeAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let w = input(inputs, 1, "W")?;
    let xs = x.shape();
    let ws = w.shape();
    let r = xs.len().saturating_sub(2);
    if r == 0 || ws.len() != r + 2 || !x.dtype().is_float() || w.dtype() != x.dtype() {
        crate::bail!(
            "ConvTranspose: X {} {:?} and W {} {:?} do not fit",
            x.dtype(),
            xs,
            w.dtype(),
            ws
        );
    }
    let (n, c) = (xs[0], xs[1]);
    let g = a.group.max(1);
    if c % g != 0 || ws[0] != c {
        crate::bail!(
            "ConvTranspose: {c} input channels, W {:?} and group {g} do not fit",
            ws
        );
    }
    let (cg, mg) = (c / g, ws[1]);
    let m = mg * g;
    let kernel = &ws[2..];
    if let Some(k) = &a.kernel_shape {
        if k.as_slice() != kernel {
            crate::bail!(
                "ConvTranspose: kernel_shape {:?} differs from W {:?}",
                k,
                ws
            );
        }
    }
    let per = |v: &[usize], d: usize, what: &str| -> Result<Vec<usize>> {
        match v.len() {
            0 => Ok(vec![d; r]),
            l if l == r => Ok(v.to_vec()),
            l => crate::bail!("ConvTranspose: {what} has {l} entries for {r} spatial dims"),
        }
    };
    let stride = per(&a.strides, 1, "strides")?;
    let dil = per(&a.dilations, 1, "dilations")?;
    let opad = per(&a.output_padding, 0, "output_padding")?;
    if stride.contains(&0) || dil.contains(&0) {
        crate::bail!("ConvTranspose: strides and dilations must be positive");
    }
    let inp = &xs[2..];
    let full: Vec<usize> = (0..r)
        .map(|i| {
            stride[i] * inp[i].saturating_sub(1)
                + opad[i]
                + (kernel[i].saturating_sub(1)) * dil[i]
                + 1
        })
        .collect();
    let same = matches!(a.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
    let (pb, out_dims): (Vec<usize>, Vec<usize>) = if !a.pads.is_empty() {
        if a.pads.len() != 2 * r {
            crate::bail!(
                "ConvTranspose: pads has {} entries for {r} spatial dims",
                a.pads.len()
            );
        }
        let od = match &a.output_shape {
            Some(o) => o.clone(),
            None => (0..r)
                .map(|i| full[i].saturating_sub(a.pads[i] + a.pads[i + r]))
                .collect(),
        };
        (a.pads[..r].to_vec(), od)
    } else if same {
        let od = match &a.output_shape {
            Some(o) => o.clone(),
            None => (0..r).map(|i| inp[i] * stride[i]).collect(),
        };
        let pb = (0..r)
            .map(|i| {
                let total = full[i] as i64 - od[i] as i64;
                let half = total.div_euclid(2);
                let b = if a.auto_pad == AutoPad::SameUpper {
                    half
                } else {
                    total - half
                };
                b.max(0) as usize
            })
            .collect();
        (pb, od)
    } else {
        (
            vec![0; r],
            a.output_shape.clone().unwrap_or_else(|| full.clone()),
        )
    };
    if out_dims.len() != r {
        crate::bail!(
            "ConvTranspose: output_shape has {} entries for {r} spatial dims",
            out_dims.len()
        );
    }
    let xw = x.cast(DType::F64);
    let xv = typed::<f64>(&xw, "input 0 (X)")?;
    let ww = w.cast(DType::F64);
    let wv = typed::<f64>(&ww, "input 1 (W)")?;
    let bias: Option<Vec<f64>> = match opt_input(inputs, 2) {
        Some(b) => {
            if b.len() != m {
                crate::bail!(
                    "ConvTranspose: bias has {} elements for {m} output channels",
                    b.len()
                );
            }
            Some(b.cast(DType::F64).as_slice::<f64>()?.to_vec())
        }
        None => None,
    };
    let (isz, ksz, osz) = (numel(inp), numel(kernel), numel(&out_dims));
    let (ist, kst, ost) = (strides(inp), strides(kernel), strides(&out_dims));
    // Per (input cell, kernel cell): the output cell, if inside.
    let mut target = vec![None; isz * ksz];
    for i in 0..isz {
        for k in 0..ksz {
            let mut off = Some(0usize);
            for d in 0..r {
                let (id, kd) = ((i / ist[d]) % inp[d], (k / kst[d]) % kernel[d]);
                let o = (id * stride[d] + kd * dil[d]) as i64 - pb[d] as i64;
                off = match off {
                    Some(acc) if o >= 0 && (o as usize) < out_dims[d] => {
                        Some(acc + o as usize * ost[d])
                    }
                    _ => None,
                };
            }
            target[i * ksz + k] = off;
        }
    }
    let mut y = vec![0f64; n * m * osz];
    for b in 0..n {
        for gi in 0..g {
            for ic in 0..cg {
                let ch = gi * cg + ic;
                let src = &xv[(b * c + ch) * isz..][..isz];
                for oc in 0..mg {
                    let wk = &wv[(ch * mg + oc) * ksz..][..ksz];
                    let dst = &mut y[(b * m + gi * mg + oc) * osz..][..osz];
                    for (i, &xi) in src.iter().enumerate() {
                        for (k, &wkv) in wk.iter().enumerate() {
                            if let Some(o) = target[i * ksz + k] {
                                dst[o] += xi * wkv;
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(bv) = &bias {
        for (p, v) in y.chunks_mut(osz.max(1)).enumerate() {
            let bb = bv[p % m];
            v.iter_mut().for_each(|e| *e += bb);
        }
    }
    let mut oshape = vec![n, m];
    oshape.extend(&out_dims);
    Ok(out(oshape, y)?.cast(x.dtype()))
}

/// TfIdfVectorizer over integer tokens. Every n-gram of the pool with
/// `min_gram_length <= n <= max_gram_length` is counted where it occurs
/// in a row with its tokens `d` apart, for `d` in `1..=max_skip_count + 1`;
/// 1-grams count only at `d = 1` (as the reference's walk does). Pool
/// n-grams are numbered in pool order (all lengths, counted or not) and
/// `ngram_indexes` gives each one's output column.
pub(crate) fn tfidf_vectorizer(t: &TfIdfAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    use std::collections::HashMap;
    let x = input(inputs, 0, "X")?;
    if !matches!(x.dtype(), DType::I32 | DType::I64) || x.rank() == 0 || x.rank() > 2 {
        crate::bail!(
            "TfIdfVectorizer needs an int32 or int64 tensor of rank 1 or 2, got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    // The pool's n-grams: segment i (from ngram_counts[i]) holds (i+1)-grams.
    let mut grams: HashMap<&[i64], usize> = HashMap::new();
    let mut id = 0usize;
    for (i, &start) in t.ngram_counts.iter().enumerate() {
        let n = i + 1;
        let end = t.ngram_counts.get(i + 1).copied().unwrap_or(t.pool.len());
        if start > end || end > t.pool.len() {
            crate::bail!(
                "TfIdfVectorizer: ngram_counts {:?} do not fit the pool of {}",
                t.ngram_counts,
                t.pool.len()
            );
        }
        for g in t.pool[start..end].chunks_exact(n) {
            if (t.min_gram_length..=t.max_gram_length).contains(&n) {
                grams.insert(g, id);
            }
            id += 1;
        }
    }
    let width = t.ngram_indexes.iter().max().map_or(0, |&m| m + 1);
    let column = |id: usize| -> Result<usize> {
        t.ngram_indexes.get(id).copied().ok_or_else(|| {
            crate::Error::msg(format!(
                "TfIdfVectorizer: ngram_indexes has {} entries, the pool {} n-grams",
                t.ngram_indexes.len(),
                id + 1
            ))
        })
    };
    let tokens = x.to_i64_vec();
    let (rows, len) = match x.shape() {
        [c] => (1, *c),
        s => (s[0], s[1]),
    };
    let mut counts = vec![0f32; rows * width];
    let mut gram = Vec::with_capacity(t.max_gram_length);
    for r in 0..rows {
        let row = &tokens[r * len..(r + 1) * len];
        for d in 1..=t.max_skip_count + 1 {
            let min_n = if d == 1 {
                t.min_gram_length
            } else {
                t.min_gram_length.max(2)
            };
            for s in 0..len {
                for n in min_n..=t.max_gram_length {
                    let last = s + (n - 1) * d;
                    if last >= len {
                        break;
                    }
                    gram.clear();
                    gram.extend((0..n).map(|k| row[s + k * d]));
                    if let Some(&id) = grams.get(gram.as_slice()) {
                        counts[r * width + column(id)?] += 1.0;
                    }
                }
            }
        }
    }
    let w = &t.weights;
    let weight = |i: usize| w.get(i % width.max(1)).copied();
    let y: Vec<f32> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| match t.mode {
            TfIdfMode::Tf => c,
            TfIdfMode::Idf => {
                if c > 0.0 {
                    weight(i).unwrap_or(1.0)
                } else {
                    0.0
                }
            }
            TfIdfMode::TfIdf => weight(i).map_or(c, |w| w * c),
        })
        .collect();
    let shape = if x.rank() == 1 {
        vec![width]
    } else {
        vec![rows, width]
    };
    out(shape, y)
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::t;
    use crate::op::Op;
    use crate::tensor::Tensor;

    #[test]
    fn det_and_unique_match_hand_results() {
        // det [[2, 1], [1, 3]] = 5; det of a 3x3 with a row swap.
        let x = t(&[2, 2, 2], vec![2f64, 1.0, 1.0, 3.0, 0.0, 1.0, 1.0, 0.0]);
        let d = eval(&Op::Det, &[Some(&x)], 1).unwrap().remove(0);
        let dv = d.as_slice::<f64>().unwrap();
        assert!((dv[0] - 5.0).abs() < 1e-12 && (dv[1] + 1.0).abs() < 1e-12);
        let x = t(&[6], vec![2i64, 1, 1, 3, 4, 3]);
        let op = Op::Unique {
            axis: None,
            sorted: true,
        };
        let o = eval(&op, &[Some(&x)], 4).unwrap();
        assert_eq!(o[0].as_slice::<i64>().unwrap(), &[1, 2, 3, 4]);
        assert_eq!(o[1].as_slice::<i64>().unwrap(), &[1, 0, 3, 4]);
        assert_eq!(o[2].as_slice::<i64>().unwrap(), &[1, 0, 0, 2, 3, 2]);
        assert_eq!(o[3].as_slice::<i64>().unwrap(), &[2, 1, 2, 1]);
        let r = eval(
            &Op::ReverseSequence {
                batch_axis: 1,
                time_axis: 0,
            },
            &[
                Some(&t(&[3, 2], vec![1f32, 10.0, 2.0, 20.0, 3.0, 30.0])),
                Some(&Tensor::from_vec(vec![2], vec![3i64, 2]).unwrap()),
            ],
            1,
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            r.as_slice::<f32>().unwrap(),
            &[3.0, 20.0, 2.0, 10.0, 1.0, 30.0]
        );
    }
}
