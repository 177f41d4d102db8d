//! DFT, NonMaxSuppression, Col2Im and the quantised matrix products
//! (QLinearMatMul, MatMulInteger), computed in f64.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input, out};
use crate::shape::{norm_axis, numel};
use crate::tensor::Tensor;

fn f64s(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.cast(DType::F64).as_slice::<f64>()?.to_vec())
}

/// An optional scalar input as i64.
fn scalar_i64(inputs: &[Option<&Tensor>], i: usize, what: &str) -> Result<Option<i64>> {
    match opt_input(inputs, i) {
        Some(t) if t.is_empty() => Ok(None),
        Some(t) if t.len() == 1 && t.dtype().is_int() => Ok(Some(t.to_i64_vec()[0])),
        Some(t) => crate::bail!(
            "{what} must be one integer, got {} {:?}",
            t.dtype(),
            t.shape()
        ),
        None => Ok(None),
    }
}

/// DFT along `axis` of `[.., n, .., 1 | 2]` (real or complex last dim):
/// forward (optionally one-sided) or inverse (one-sided: a real output
/// from a Hermitian half spectrum), with the signal cut or zero-padded to
/// `dft_length` (input 1). `axis` is the attribute (opset 17) or, when
/// `None`, input 2 (default -2).
pub(crate) fn dft(
    axis_attr: Option<i64>,
    inverse: bool,
    onesided: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let s = x.shape();
    let r = s.len();
    let c = *s.last().unwrap_or(&0);
    if r < 2 || !(c == 1 || c == 2) || !x.dtype().is_float() {
        crate::bail!(
            "DFT: input must be float [.., n, 1 or 2], got {} {:?}",
            x.dtype(),
            s
        );
    }
    let axis = match axis_attr {
        Some(a) => a,
        None => scalar_i64(inputs, 2, "DFT axis")?.unwrap_or(-2),
    };
    let a = norm_axis(axis, r)?;
    if a == r - 1 {
        crate::bail!("DFT: axis {axis} is the real/imaginary dim");
    }
    let n = s[a];
    let len = match scalar_i64(inputs, 1, "DFT dft_length")? {
        Some(l) if l > 0 => l as usize,
        Some(l) => crate::bail!("DFT: dft_length must be positive, got {l}"),
        None if inverse && onesided => 2 * n.saturating_sub(1),
        None => n,
    };
    if len == 0 {
        crate::bail!("DFT: empty transform");
    }
    let (outer, inner) = (numel(&s[..a]), numel(&s[a + 1..r - 1]));
    let xv = f64s(x)?;
    let at = |o: usize, j: usize, i: usize| -> (f64, f64) {
        let p = ((o * n + j) * inner + i) * c;
        (xv[p], if c == 2 { xv[p + 1] } else { 0.0 })
    };
    let (out_len, out_c) = match (inverse, onesided) {
        (false, true) => (len / 2 + 1, 2),
        (true, true) => (len, 1),
        _ => (len, 2),
    };
    let tau = 2.0 * std::f64::consts::PI;
    let mut y = vec![0f64; outer * out_len * inner * out_c];
    for o in 0..outer {
        for i in 0..inner {
            for k in 0..out_len {
                let (mut re, mut im) = (0.0, 0.0);
                if inverse && onesided {
                    // Real output from the half spectrum X_0..X_{len/2}.
                    let half = len / 2;
                    for f in 0..len {
                        let (src, conj) = if f <= half {
                            (f, false)
                        } else {
                            (len - f, true)
                        };
                        if src >= n {
                            continue;
                        }
                        let (xr, xi) = at(o, src, i);
                        let xi = if conj { -xi } else { xi };
                        let ang = tau * (f * k % len) as f64 / len as f64;
                        // Re(X e^{i ang}); X_0 and X_{len/2} count by their real part.
                        re += if f == 0 || (len % 2 == 0 && f == half) {
                            xr * ang.cos()
                        } else {
                            xr * ang.cos() - xi * ang.sin()
                        };
                    }
                    re /= len as f64;
                } else {
                    let sign = if inverse { 1.0 } else { -1.0 };
                    for j in 0..n.min(len) {
                        let (xr, xi) = at(o, j, i);
                        let ang = sign * tau * (j * k % len) as f64 / len as f64;
                        let (cs, sn) = (ang.cos(), ang.sin());
                        re += xr * cs - xi * sn;
                        im += xr * sn + xi * cs;
                    }
                    if inverse {
                        re /= len as f64;
                        im /= len as f64;
                    }
                }
                let p = ((o * out_len + k) * inner + i) * out_c;
                y[p] = re;
                if out_c == 2 {
                    y[p + 1] = im;
                }
            }
        }
    }
    let mut oshape = s.to_vec();
    oshape[a] = out_len;
    oshape[r - 1] = out_c;
    Ok(out(oshape, y)?.cast(x.dtype()))
}

/// Whether boxes `p` and `q` overlap by more than `thr` (IoU).
fn suppress(p: &[f64], q: &[f64], center: bool, thr: f64) -> bool {
    let corners = |b: &[f64]| -> (f64, f64, f64, f64) {
        if center {
            (
                b[0] - b[2] / 2.0,
                b[0] + b[2] / 2.0,
                b[1] - b[3] / 2.0,
                b[1] + b[3] / 2.0,
            )
        } else {
            (
                b[1].min(b[3]),
                b[1].max(b[3]),
                b[0].min(b[2]),
                b[0].max(b[2]),
            )
        }
    };
    let (px0, px1, py0, py1) = corners(p);
    let (qx0, qx1, qy0, qy1) = corners(q);
    let (ix0, ix1) = (px0.max(qx0), px1.min(qx1));
    let (iy0, iy1) = (py0.max(qy0), py1.min(qy1));
    if ix1 <= ix0 || iy1 <= iy0 {
        return false;
    }
    let inter = (ix1 - ix0) * (iy1 - iy0);
    let (ap, aq) = ((px1 - px0) * (py1 - py0), (qx1 - qx0) * (qy1 - qy0));
    let union = ap + aq - inter;
    if inter <= 0.0 || ap <= 0.0 || aq <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > thr
}

/// NonMaxSuppression: per batch and class, greedily keep the best-scoring
/// boxes (above the score threshold) that overlap no kept box by more than
/// the IoU threshold; `[k, 3]` rows of (batch, class, box).
pub(crate) fn nms(center: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let boxes = input(inputs, 0, "boxes")?;
    let scores = input(inputs, 1, "scores")?;
    let (bs, ss) = (boxes.shape(), scores.shape());
    if bs.len() != 3 || bs[2] != 4 || ss.len() != 3 || ss[0] != bs[0] || ss[2] != bs[1] {
        crate::bail!(
            "NonMaxSuppression: boxes {:?} and scores {:?} do not fit",
            bs,
            ss
        );
    }
    let (nb, nc, n) = (ss[0], ss[1], ss[2]);
    let max_out = scalar_i64(inputs, 2, "max_output_boxes_per_class")?
        .unwrap_or(0)
        .max(0) as usize;
    let float_scalar = |i: usize, what: &str| -> Result<Option<f64>> {
        match opt_input(inputs, i) {
            Some(t) if t.is_empty() => Ok(None),
            Some(t) if t.len() == 1 && t.dtype().is_float() => Ok(Some(f64s(t)?[0])),
            Some(t) => crate::bail!(
                "{what} must be one float, got {} {:?}",
                t.dtype(),
                t.shape()
            ),
            None => Ok(None),
        }
    };
    let iou = float_scalar(3, "iou_threshold")?.unwrap_or(0.0);
    let score_thr = float_scalar(4, "score_threshold")?;
    let (bv, sv) = (f64s(boxes)?, f64s(scores)?);
    let mut rows: Vec<i64> = Vec::new();
    for b in 0..nb {
        for cl in 0..nc {
            let sc = &sv[(b * nc + cl) * n..(b * nc + cl + 1) * n];
            let mut cand: Vec<usize> = (0..n)
                .filter(|&i| score_thr.is_none_or(|t| sc[i] > t))
                .collect();
            // Best score first; equal scores by lower index.
            cand.sort_by(|&p, &q| sc[q].total_cmp(&sc[p]).then(p.cmp(&q)));
            let mut kept: Vec<usize> = Vec::new();
            for &i in &cand {
                if kept.len() >= max_out {
                    break;
                }
                let bi = &bv[(b * n + i) * 4..(b * n + i + 1) * 4];
                if kept
                    .iter()
                    .all(|&k| !suppress(bi, &bv[(b * n + k) * 4..(b * n + k + 1) * 4], center, iou))
                {
                    kept.push(i);
                    rows.extend([b as i64, cl as i64, i as i64]);
                }
            }
        }
    }
    out(vec![rows.len() / 3, 3], rows)
}

/// Batched matrix product of f64 operands (rank >= 2, batch dims
/// broadcast).
fn matmul_f64(
    a: &[f64],
    ash: &[usize],
    b: &[f64],
    bsh: &[usize],
) -> Result<(Vec<usize>, Vec<f64>)> {
    if ash.len() < 2 || bsh.len() < 2 {
        crate::bail!(
            "matrix product needs rank >= 2 operands, got {:?} and {:?}",
            ash,
            bsh
        );
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        crate::bail!("matrix product inner dims differ: {:?} x {:?}", ash, bsh);
    }
    let (ab, bb) = (&ash[..ash.len() - 2], &bsh[..bsh.len() - 2]);
    let batch = crate::shape::broadcast_shapes(ab, bb)?;
    let nbatch = numel(&batch);
    let (ast, bst) = (
        crate::shape::bcast_strides(ab, &batch),
        crate::shape::bcast_strides(bb, &batch),
    );
    let bstr = crate::shape::strides(&batch);
    let mut y = vec![0f64; nbatch * m * n];
    for p in 0..nbatch {
        let (mut ao, mut bo) = (0isize, 0isize);
        for d in 0..batch.len() {
            let i = ((p / bstr[d]) % batch[d]) as isize;
            ao += i * ast[d];
            bo += i * bst[d];
        }
        let (ao, bo) = (ao as usize * m * k, bo as usize * k * n);
        for i in 0..m {
            for kk in 0..k {
                let av = a[ao + i * k + kk];
                let dst = &mut y[(p * m + i) * n..(p * m + i + 1) * n];
                for (j, d) in dst.iter_mut().enumerate() {
                    *d += av * b[bo + kk * n + j];
                }
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    Ok((shape, y))
}

/// A per-tensor quantisation parameter (one element) as f64.
fn one_param(inputs: &[Option<&Tensor>], i: usize, what: &str) -> Result<f64> {
    match opt_input(inputs, i) {
        None => Ok(0.0),
        Some(t) if t.len() == 1 => Ok(f64s(t)?[0]),
        Some(t) => crate::bail!(
            "{what}: only per-tensor (one element) parameters are supported, got {:?}",
            t.shape()
        ),
    }
}

/// QLinearMatMul: dequantise a and b, multiply, requantise to y's zero
/// point type (per-tensor parameters).
pub(crate) fn qlinear_matmul(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let a = input(inputs, 0, "a")?;
    let b = input(inputs, 3, "b")?;
    let yzp = input(inputs, 7, "y_zero_point")?;
    let (lo, hi) = match yzp.dtype() {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        d => crate::bail!("QLinearMatMul: y_zero_point must be u8 or i8, got {d}"),
    };
    if !a.dtype().is_int() || !b.dtype().is_int() {
        crate::bail!("QLinearMatMul: a and b must be integer tensors");
    }
    let (a_s, a_z) = (
        one_param(inputs, 1, "a_scale")?,
        one_param(inputs, 2, "a_zero_point")?,
    );
    let (b_s, b_z) = (
        one_param(inputs, 4, "b_scale")?,
        one_param(inputs, 5, "b_zero_point")?,
    );
    let (y_s, y_z) = (
        one_param(inputs, 6, "y_scale")?,
        one_param(inputs, 7, "y_zero_point")?,
    );
    let av: Vec<f64> = f64s(a)?.iter().map(|&v| v - a_z).collect();
    let bv: Vec<f64> = f64s(b)?.iter().map(|&v| v - b_z).collect();
    let (shape, acc) = matmul_f64(&av, a.shape(), &bv, b.shape())?;
    let f = a_s * b_s / y_s;
    let y: Vec<f64> = acc
        .iter()
        .map(|&v| ((v * f).round_ties_even() + y_z).clamp(lo, hi))
        .collect();
    Ok(out(shape, y)?.cast(yzp.dtype()))
}

/// MatMulInteger: `(a - a_zero_point) @ (b - b_zero_point)` in i32.
pub(crate) fn matmul_integer(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let a = input(inputs, 0, "A")?;
    let b = input(inputs, 1, "B")?;
    if !a.dtype().is_int() || !b.dtype().is_int() {
        crate::bail!("MatMulInteger: A and B must be integer tensors");
    }
    let a_z = one_param(inputs, 2, "a_zero_point")?;
    let b_z = one_param(inputs, 3, "b_zero_point")?;
    let av: Vec<f64> = f64s(a)?.iter().map(|&v| v - a_z).collect();
    let bv: Vec<f64> = f64s(b)?.iter().map(|&v| v - b_z).collect();
    let (shape, y) = matmul_f64(&av, a.shape(), &bv, b.shape())?;
    Ok(out(shape, y)?.cast(DType::I32))
}

/// Col2Im: sums the columns `[N, C * prod(block), L]` back into images
/// `[N, C, image..]` (the adjoint of extracting sliding blocks).
pub(crate) fn col2im(
    dilations: &[usize],
    pads: &[usize],
    strides_attr: &[usize],
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let img_t = input(inputs, 1, "image_shape")?;
    let blk_t = input(inputs, 2, "block_shape")?;
    if !img_t.dtype().is_int() || !blk_t.dtype().is_int() {
        crate::bail!("Col2Im: image_shape and block_shape must be integers");
    }
    let to_dims = |v: Vec<i64>, what: &str| -> Result<Vec<usize>> {
        v.into_iter()
            .map(|d| crate::kernels::util::to_dim(d, what))
            .collect()
    };
    let img = to_dims(img_t.to_i64_vec(), "Col2Im image_shape")?;
    let blk = to_dims(blk_t.to_i64_vec(), "Col2Im block_shape")?;
    let r = img.len();
    let xs = x.shape();
    if blk.len() != r || xs.len() != 3 || blk.contains(&0) || !x.dtype().is_float() {
        crate::bail!(
            "Col2Im: input {:?}, image {:?} and block {:?} do not fit",
            xs,
            img,
            blk
        );
    }
    let per = |v: &[usize], d: usize, len: usize, what: &str| -> Result<Vec<usize>> {
        match v.len() {
            0 => Ok(vec![d; len]),
            l if l == len => Ok(v.to_vec()),
            l => crate::bail!("Col2Im: {what} has {l} entries, expected {len}"),
        }
    };
    let dil = per(dilations, 1, r, "dilations")?;
    let st = per(strides_attr, 1, r, "strides")?;
    let pd = per(pads, 0, 2 * r, "pads")?;
    if dil.contains(&0) || st.contains(&0) {
        crate::bail!("Col2Im: dilations and strides must be positive");
    }
    let mut nblocks = Vec::with_capacity(r);
    for d in 0..r {
        let span = dil[d] * (blk[d] - 1) + 1;
        let padded = img[d] + pd[d] + pd[d + r];
        if padded < span {
            crate::bail!("Col2Im: block larger than the padded image on dim {d}");
        }
        nblocks.push((padded - span) / st[d] + 1);
    }
    let (kn, ln) = (numel(&blk), numel(&nblocks));
    let (n, ck) = (xs[0], xs[1]);
    if (ck / kn) * kn != ck || xs[2] != ln {
        crate::bail!(
            "Col2Im: input {:?} does not fit {kn} kernel cells and {ln} blocks",
            xs
        );
    }
    let c = ck / kn;
    let (kst, lst, ist) = (
        crate::shape::strides(&blk),
        crate::shape::strides(&nblocks),
        crate::shape::strides(&img),
    );
    let isz = numel(&img);
    let xv = f64s(x)?;
    let mut y = vec![0f64; n * c * isz];
    for k in 0..kn {
        for l in 0..ln {
            let mut off = Some(0usize);
            for d in 0..r {
                let (kd, ld) = ((k / kst[d]) % blk[d], (l / lst[d]) % nblocks[d]);
                let p = (ld * st[d] + kd * dil[d]) as i64 - pd[d] as i64;
                off = match off {
                    Some(acc) if p >= 0 && (p as usize) < img[d] => Some(acc + p as usize * ist[d]),
                    _ => None,
                };
            }
            let Some(off) = off else { continue };
            for b in 0..n {
                for ch in 0..c {
                    y[(b * c + ch) * isz + off] += xv[(b * ck + ch * kn + k) * ln + l];
                }
            }
        }
    }
    let mut oshape = vec![n, c];
    oshape.extend(&img);
    Ok(out(oshape, y)?.cast(x.dtype()))
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::t;
    use crate::op::Op;
    use crate::tensor::Tensor;

    #[test]
    fn dft_round_trip_and_nms_keeps_best_disjoint_boxes() {
        // Forward DFT of a real signal against the defining sum, then back.
        let x: Vec<f64> = vec![1.0, 2.0, -1.0, 0.5];
        let xt = t(&[1, 4, 1], x.clone());
        let fwd = Op::Dft {
            axis: Some(1),
            inverse: false,
            onesided: false,
        };
        let f = eval(&fwd, &[Some(&xt)], 1).unwrap().remove(0);
        let fv = f.as_slice::<f64>().unwrap();
        for k in 0..4 {
            let (mut re, mut im) = (0.0, 0.0);
            for (j, &v) in x.iter().enumerate() {
                let ang = -2.0 * std::f64::consts::PI * (j * k) as f64 / 4.0;
                re += v * ang.cos();
                im += v * ang.sin();
            }
            assert!((fv[2 * k] - re).abs() < 1e-12 && (fv[2 * k + 1] - im).abs() < 1e-12);
        }
        let inv = Op::Dft {
            axis: Some(1),
            inverse: true,
            onesided: false,
        };
        let back = eval(&inv, &[Some(&f)], 1).unwrap().remove(0);
        let bv = back.as_slice::<f64>().unwrap();
        for (j, &v) in x.iter().enumerate() {
            assert!((bv[2 * j] - v).abs() < 1e-12 && bv[2 * j + 1].abs() < 1e-12);
        }
        // Boxes 0 and 1 overlap (IoU 0.81), box 2 is apart.
        let boxes = t(
            &[1, 3, 4],
            vec![0f32, 0.0, 1.0, 1.0, 0.0, 0.1, 1.0, 1.1, 0.0, 5.0, 1.0, 6.0],
        );
        let scores = t(&[1, 1, 3], vec![0.8f32, 0.9, 0.3]);
        let max = Tensor::from_vec(vec![1], vec![3i64]).unwrap();
        let thr = Tensor::from_vec(vec![1], vec![0.5f32]).unwrap();
        let op = Op::NonMaxSuppression {
            center_point_box: false,
        };
        let r = eval(
            &op,
            &[Some(&boxes), Some(&scores), Some(&max), Some(&thr)],
            1,
        )
        .unwrap()
        .remove(0);
        assert_eq!(r.as_slice::<i64>().unwrap(), &[0, 0, 1, 0, 0, 2]);
    }
}
