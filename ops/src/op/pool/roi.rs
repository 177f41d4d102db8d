//! RoiAlign: for each region of interest `[x1, y1, x2, y2]` (scaled by
//! `spatial_scale`) of image `batch_indices[r]`, each channel pooled to
//! `output_height x output_width` bins of bilinear samples, as the ONNX
//! definition (whose reference follows onnxruntime's kernel).

use super::RoiAlignAttrs;
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::input;
use crate::tensor::Tensor;

/// One bilinear sample: four flat positions in a plane and their weights
/// (all zero outside the image).
#[derive(Clone, Copy, Default)]
struct Sample {
    pos: [usize; 4],
    w: [f64; 4],
}

/// The bilinear sample of an `h x w` plane at (y, x), as the reference
/// (clamped to the last row and column; zero beyond one pixel outside).
fn sample(h: usize, w: usize, y: f64, x: f64) -> Sample {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
        return Sample::default();
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut y0, mut x0) = (y as usize, x as usize);
    let (y1, x1);
    if y0 + 1 >= h {
        y0 = h - 1;
        y1 = y0;
        y = y0 as f64;
    } else {
        y1 = y0 + 1;
    }
    if x0 + 1 >= w {
        x0 = w - 1;
        x1 = x0;
        x = x0 as f64;
    } else {
        x1 = x0 + 1;
    }
    let (ly, lx) = (y - y0 as f64, x - x0 as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    Sample {
        pos: [y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1],
        w: [hy * hx, hy * lx, ly * hx, ly * lx],
    }
}

/// RoiAlign: inputs X `[N, C, H, W]`, rois `[R, 4]`, batch_indices `[R]`
/// (i64); output `[R, C, out_h, out_w]` in X's dtype.
pub(crate) fn roi_align(a: &RoiAlignAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let rois = input(inputs, 1, "rois")?;
    let bi = input(inputs, 2, "batch_indices")?;
    if !x.dtype().is_float() || x.rank() != 4 {
        crate::bail!(
            "RoiAlign: X must be a 4-D float tensor, got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    let r = bi.len();
    if rois.shape() != [r, 4] {
        crate::bail!(
            "RoiAlign: rois must be [{r}, 4] (one per batch index), got {:?}",
            rois.shape()
        );
    }
    if !bi.dtype().is_int() {
        crate::bail!(
            "RoiAlign: batch_indices must be integers, got {}",
            bi.dtype()
        );
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let [ph, pw] = a.output;
    let xv = x.cast(DType::F64).into_vec::<f64>()?;
    let rv = rois.cast(DType::F64).into_vec::<f64>()?;
    let bv = bi.to_i64_vec();
    let mut out = vec![0f64; r * c * ph * pw];
    if h == 0 || w == 0 {
        return Ok(Tensor::from_vec(vec![r, c, ph, pw], out)?.cast(x.dtype()));
    }
    let scale = f64::from(a.spatial_scale);
    let off = if a.half_pixel { 0.5 } else { 0.0 };
    for ri in 0..r {
        let b = usize::try_from(bv[ri])
            .ok()
            .filter(|&b| b < n)
            .ok_or_else(|| {
                crate::Error::msg(format!(
                    "RoiAlign: batch index {} is not below N = {n}",
                    bv[ri]
                ))
            })?;
        let roi = &rv[ri * 4..ri * 4 + 4];
        let (x1, y1) = (roi[0] * scale - off, roi[1] * scale - off);
        let (mut rw, mut rh) = (roi[2] * scale - off - x1, roi[3] * scale - off - y1);
        if !a.half_pixel {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bh, bw) = (rh / ph as f64, rw / pw as f64);
        let grid = |size: f64, bins: usize| -> usize {
            if a.sampling_ratio > 0 {
                a.sampling_ratio
            } else {
                (size / bins as f64).ceil().max(0.0) as usize
            }
        };
        let (gh, gw) = (grid(rh, ph), grid(rw, pw));
        let count = (gh * gw).max(1) as f64;
        // The samples of every bin, shared by the channels.
        let mut samples = Vec::with_capacity(ph * pw * gh * gw);
        for py in 0..ph {
            for px in 0..pw {
                for iy in 0..gh {
                    let yy = y1 + py as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                    for ix in 0..gw {
                        let xx = x1 + px as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                        samples.push(sample(h, w, yy, xx));
                    }
                }
            }
        }
        let per_bin = gh * gw;
        for ch in 0..c {
            let plane = &xv[(b * c + ch) * h * w..][..h * w];
            let dst = &mut out[(ri * c + ch) * ph * pw..][..ph * pw];
            for (bin, o) in dst.iter_mut().enumerate() {
                let bin_samples = &samples[bin * per_bin..(bin + 1) * per_bin];
                *o = if a.max {
                    bin_samples
                        .iter()
                        .map(|s| {
                            (0..4)
                                .map(|k| s.w[k] * plane[s.pos[k]])
                                .fold(f64::NEG_INFINITY, f64::max)
                        })
                        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                        .unwrap_or(0.0)
                } else {
                    bin_samples
                        .iter()
                        .map(|s| (0..4).map(|k| s.w[k] * plane[s.pos[k]]).sum::<f64>())
                        .sum::<f64>()
                        / count
                };
            }
        }
    }
    Ok(Tensor::from_vec(vec![r, c, ph, pw], out)?.cast(x.dtype()))
}
