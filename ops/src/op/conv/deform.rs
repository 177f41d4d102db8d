//! DeformConv (opset 19): a 2-D convolution whose kernel taps are moved
//! by learned per-position offsets (input 2, `[N, offset_group * kh * kw *
//! 2, oh, ow]`, each tap's (dy, dx)) and optionally scaled by a mask
//! (input 4, `[N, offset_group * kh * kw, oh, ow]`). A moved tap reads X
//! bilinearly, as zero outside the image.

use super::DeformConvAttrs;
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input};
use crate::tensor::Tensor;

/// The bilinear value of an `h x w` plane at (y, x); cells outside read 0.
fn bilinear(p: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    let (y0, x0) = (y.floor(), x.floor());
    let (ly, lx) = (y - y0, x - x0);
    let at = |yy: f64, xx: f64| -> f64 {
        if yy < 0.0 || xx < 0.0 || yy >= h as f64 || xx >= w as f64 {
            0.0
        } else {
            p[yy as usize * w + xx as usize]
        }
    };
    (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x0 + 1.0))
        + ly * ((1.0 - lx) * at(y0 + 1.0, x0) + lx * at(y0 + 1.0, x0 + 1.0))
}

/// DeformConv: inputs X `[N, C, H, W]`, W `[M, C / group, kh, kw]`,
/// offset, optional B `[M]`, optional mask; output `[N, M, oh, ow]`.
pub(crate) fn deform_conv(a: &DeformConvAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let wt = input(inputs, 1, "W")?;
    let off = input(inputs, 2, "offset")?;
    if !x.dtype().is_float() || x.rank() != 4 || wt.rank() != 4 || off.rank() != 4 {
        crate::bail!(
            "DeformConv: only 2-D float convolutions are supported (X {} {:?}, W {:?}, offset {:?})",
            x.dtype(),
            x.shape(),
            wt.shape(),
            off.shape()
        );
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (m, cg, kh, kw) = (wt.shape()[0], wt.shape()[1], wt.shape()[2], wt.shape()[3]);
    let cv = &a.conv;
    if let Some(k) = &cv.kernel_shape {
        if k.as_slice() != [kh, kw] {
            crate::bail!(
                "DeformConv: kernel_shape {k:?} differs from W's {:?}",
                [kh, kw]
            );
        }
    }
    let g = cv.group;
    let og = a.offset_group;
    if g == 0 || c != cg * g || m % g != 0 || og == 0 || c % og != 0 {
        crate::bail!(
            "DeformConv: X {:?} and W {:?} do not fit group {g} and offset_group {og}",
            x.shape(),
            wt.shape()
        );
    }
    let two = |v: &[usize], d: usize, what: &str| -> Result<[usize; 2]> {
        match v.len() {
            0 => Ok([d, d]),
            2 => Ok([v[0], v[1]]),
            _ => crate::bail!("DeformConv: {what} must have 2 entries, got {v:?}"),
        }
    };
    let [sh, sw] = two(&cv.strides, 1, "strides")?;
    let [dh, dw] = two(&cv.dilations, 1, "dilations")?;
    let pads = match cv.pads.len() {
        0 => [0; 4],
        4 => [cv.pads[0], cv.pads[1], cv.pads[2], cv.pads[3]],
        _ => crate::bail!("DeformConv: pads must have 4 entries, got {:?}", cv.pads),
    };
    if sh == 0 || sw == 0 || dh == 0 || dw == 0 {
        crate::bail!("DeformConv: strides and dilations must be positive");
    }
    let span = |k: usize, d: usize| (k.max(1) - 1) * d + 1;
    let out_dim = |i: usize, p0: usize, p1: usize, k: usize, s: usize| {
        (i + p0 + p1).checked_sub(k).map(|v| v / s + 1)
    };
    let (oh, ow) = match (
        out_dim(h, pads[0], pads[2], span(kh, dh), sh),
        out_dim(w, pads[1], pads[3], span(kw, dw), sw),
    ) {
        (Some(oh), Some(ow)) => (oh, ow),
        _ => crate::bail!("DeformConv: the kernel does not fit the padded input"),
    };
    let taps = kh * kw;
    if off.shape() != [n, og * taps * 2, oh, ow] {
        crate::bail!(
            "DeformConv: offset must be {:?}, got {:?}",
            [n, og * taps * 2, oh, ow],
            off.shape()
        );
    }
    let mask = opt_input(inputs, 4);
    if let Some(mk) = mask {
        if mk.shape() != [n, og * taps, oh, ow] {
            crate::bail!(
                "DeformConv: mask must be {:?}, got {:?}",
                [n, og * taps, oh, ow],
                mk.shape()
            );
        }
    }
    let bias = match opt_input(inputs, 3) {
        Some(b) if b.len() == m => b.cast(DType::F64).into_vec::<f64>()?,
        Some(b) => crate::bail!("DeformConv: B must have {m} elements, got {:?}", b.shape()),
        None => vec![0.0; m],
    };
    let f = |t: &Tensor| t.cast(DType::F64).into_vec::<f64>();
    let (xv, wv, ov) = (f(x)?, f(wt)?, f(off)?);
    let mv = mask.map(f).transpose()?;
    let (cpg, mpg, cpog) = (cg, m / g, c / og);
    let plane = oh * ow;
    // The moved taps' values, per (n, c, tap, position): the columns of
    // an im2col product.
    let mut cols = vec![0f64; c * taps * plane];
    let mut y = vec![0f64; n * m * plane];
    for b in 0..n {
        for ch in 0..c {
            let gi = ch / cpog;
            let xp = &xv[(b * c + ch) * h * w..][..h * w];
            for ki in 0..kh {
                for kj in 0..kw {
                    let tap = ki * kw + kj;
                    let obase = ((b * og + gi) * taps + tap) * 2;
                    for i in 0..oh {
                        for j in 0..ow {
                            let pos = i * ow + j;
                            let dy = ov[obase * plane + pos];
                            let dx = ov[(obase + 1) * plane + pos];
                            let yy = (i * sh + ki * dh) as f64 - pads[0] as f64 + dy;
                            let xx = (j * sw + kj * dw) as f64 - pads[1] as f64 + dx;
                            let mut v = bilinear(xp, h, w, yy, xx);
                            if let Some(mv) = &mv {
                                v *= mv[((b * og + gi) * taps + tap) * plane + pos];
                            }
                            cols[(ch * taps + tap) * plane + pos] = v;
                        }
                    }
                }
            }
        }
        for oc in 0..m {
            let grp = oc / mpg;
            let dst = &mut y[(b * m + oc) * plane..][..plane];
            dst.fill(bias[oc]);
            for ci in 0..cpg {
                let ch = grp * cpg + ci;
                for tap in 0..taps {
                    let wgt = wv[(oc * cpg + ci) * taps + tap];
                    let col = &cols[(ch * taps + tap) * plane..][..plane];
                    for (d, &v) in dst.iter_mut().zip(col) {
                        *d += wgt * v;
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(vec![n, m, oh, ow], y)?.cast(x.dtype()))
}
