//! Resize (and Upsample): nearest, linear and cubic interpolation, applied
//! one axis at a time (the filters are separable), computed in f64.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input};
use crate::op::{CoordMode, KeepAspect, NearestMode, ResizeAttrs, ResizeMode};
use crate::shape::numel;
use crate::tensor::Tensor;

/// Source coordinate of output index `y` along an axis.
fn source_coord(
    mode: CoordMode,
    y: f64,
    scale: f64,
    in_len: usize,
    out_len: usize,
    roi: (f64, f64),
) -> (f64, bool) {
    let n = in_len as f64;
    let out_f = scale * n;
    match mode {
        CoordMode::AlignCorners => {
            if out_f == 1.0 {
                (0.0, false)
            } else {
                (y * (n - 1.0) / (out_f - 1.0), false)
            }
        }
        CoordMode::Asymmetric => (y / scale, false),
        CoordMode::TfCropAndResize => {
            let x = if out_f == 1.0 {
                (roi.1 - roi.0) * (n - 1.0) / 2.0
            } else {
                y * (roi.1 - roi.0) * (n - 1.0) / (out_f - 1.0)
            } + roi.0 * (n - 1.0);
            (x, x < 0.0 || x > n - 1.0)
        }
        CoordMode::PytorchHalfPixel => {
            if out_f == 1.0 {
                (-0.5, false)
            } else {
                ((y + 0.5) / scale - 0.5, false)
            }
        }
        CoordMode::HalfPixel => ((y + 0.5) / scale - 0.5, false),
        CoordMode::HalfPixelSymmetric => {
            let adjustment = out_len as f64 / out_f;
            let offset = n / 2.0 * (1.0 - adjustment);
            (offset + (y + 0.5) / scale - 0.5, false)
        }
    }
}

fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// Filter weights for the taps around a coordinate with fractional part
/// `ratio` in (0, 1] (1 for integer coordinates), the first tap at offset
/// `1 - n / 2` from the floor (or `-n / 2` from an integer coordinate).
fn coeffs(a: &ResizeAttrs, ratio: f64, scale: f64) -> Vec<f64> {
    let norm = |v: Vec<f64>| {
        let s: f64 = v.iter().sum();
        v.into_iter().map(|c| c / s).collect()
    };
    match a.mode {
        ResizeMode::Nearest(m) => {
            let up = if ratio == 1.0 {
                true
            } else {
                match m {
                    NearestMode::RoundPreferFloor => ratio > 0.5,
                    NearestMode::RoundPreferCeil => ratio >= 0.5,
                    NearestMode::Floor => false,
                    NearestMode::Ceil => true,
                }
            };
            if up {
                vec![0.0, 1.0]
            } else {
                vec![1.0, 0.0]
            }
        }
        ResizeMode::Linear if a.antialias => {
            let s = scale.min(1.0);
            let start = (-1.0 / s).floor() as i64 + 1;
            norm(
                (start..2 - start)
                    .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                    .collect(),
            )
        }
        ResizeMode::Linear => vec![1.0 - ratio, ratio],
        ResizeMode::Cubic if a.antialias => {
            let s = scale.min(1.0);
            let start = (-2.0 / s).floor() as i64 + 1;
            let ca = a.cubic_coeff_a as f64;
            norm(
                (start..2 - start)
                    .map(|i| cubic(s * (i as f64 - ratio), ca))
                    .collect(),
            )
        }
        ResizeMode::Cubic => {
            let ca = a.cubic_coeff_a as f64;
            vec![
                cubic(ratio + 1.0, ca),
                cubic(ratio, ca),
                cubic(1.0 - ratio, ca),
                cubic(2.0 - ratio, ca),
            ]
        }
    }
}

/// Resizes `data` (shape `shape`) along `axis` to `out_len`.
#[allow(clippy::too_many_arguments)]
fn resize_axis(
    a: &ResizeAttrs,
    data: &[f64],
    shape: &[usize],
    axis: usize,
    scale: f64,
    out_len: usize,
    roi: (f64, f64),
) -> Vec<f64> {
    let in_len = shape[axis];
    let (outer, inner) = (numel(&shape[..axis]), numel(&shape[axis + 1..]));
    // Taps (input index, weight) per output index; None = extrapolated.
    let taps: Vec<Option<Vec<(usize, f64)>>> = (0..out_len)
        .map(|y| {
            let (x, extrapolated) = source_coord(a.coord, y as f64, scale, in_len, out_len, roi);
            if extrapolated {
                return None;
            }
            let fl = x.floor();
            let ratio = if x == fl { 1.0 } else { x - fl };
            let mut w = coeffs(a, ratio, scale);
            let n = w.len() as i64;
            let first = if x == fl {
                fl as i64 - n / 2
            } else {
                fl as i64 - n / 2 + 1
            };
            let idx: Vec<i64> = (0..n).map(|k| first + k).collect();
            if a.exclude_outside {
                for (c, &i) in w.iter_mut().zip(&idx) {
                    if i < 0 || i >= in_len as i64 {
                        *c = 0.0;
                    }
                }
                let s: f64 = w.iter().sum();
                if s != 0.0 {
                    w.iter_mut().for_each(|c| *c /= s);
                }
            }
            let hi = in_len.saturating_sub(1) as i64;
            Some(
                idx.iter()
                    .zip(&w)
                    .filter(|(_, &c)| c != 0.0)
                    .map(|(&i, &c)| (i.clamp(0, hi) as usize, c))
                    .collect(),
            )
        })
        .collect();
    let ext = a.extrapolation_value as f64;
    let mut o = vec![0f64; outer * out_len * inner];
    for oi in 0..outer {
        for (y, t) in taps.iter().enumerate() {
            let dst = &mut o[(oi * out_len + y) * inner..][..inner];
            match t {
                None => dst.iter_mut().for_each(|d| *d = ext),
                Some(t) => {
                    for &(i, c) in t {
                        let src = &data[(oi * in_len + i) * inner..][..inner];
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d += c * s;
                        }
                    }
                }
            }
        }
    }
    o
}

/// A float input read as f64s; absent or empty -> None.
fn floats(inputs: &[Option<&Tensor>], i: usize, name: &str) -> Result<Option<Vec<f64>>> {
    match opt_input(inputs, i) {
        Some(t) if !t.is_empty() => {
            if !t.dtype().is_float() {
                crate::bail!(
                    "Resize: input {i} ({name}) must be float, got {}",
                    t.dtype()
                );
            }
            Ok(Some(t.cast(DType::F64).as_slice::<f64>()?.to_vec()))
        }
        _ => Ok(None),
    }
}

/// Resize. Inputs X, roi, scales, sizes (Resize-10 and Upsample: X,
/// scales, as `a.scales_input == 1`).
pub(crate) fn resize(a: &ResizeAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let s = x.shape().to_vec();
    let r = s.len();
    if x.dtype() == DType::Bool {
        crate::bail!("Resize does not support bool tensors");
    }
    let axes: Vec<usize> = match &a.axes {
        Some(ax) => {
            let v: Vec<usize> = ax
                .iter()
                .map(|&v| crate::shape::norm_axis(v, r))
                .collect::<Result<_>>()?;
            let mut seen = vec![false; r];
            for &d in &v {
                if std::mem::replace(&mut seen[d], true) {
                    crate::bail!("Resize: axis {d} repeated");
                }
            }
            v
        }
        None => (0..r).collect(),
    };
    let k = axes.len();
    let (roi_in, scales_in, sizes_in) = if a.scales_input == 1 {
        (None, floats(inputs, 1, "scales")?, None)
    } else {
        let sizes = match opt_input(inputs, 3) {
            Some(t) if !t.is_empty() => {
                if t.dtype() != DType::I64 {
                    crate::bail!("Resize: sizes must be i64, got {}", t.dtype());
                }
                Some(t.to_i64_vec())
            }
            _ => None,
        };
        (
            floats(inputs, 1, "roi")?,
            floats(inputs, 2, "scales")?,
            sizes,
        )
    };
    let mut scale = vec![1f64; r];
    let mut out_len = s.clone();
    match (sizes_in, scales_in) {
        (Some(sz), None) => {
            if sz.len() != k {
                crate::bail!("Resize: sizes has {} entries for {k} axes", sz.len());
            }
            for (i, &d) in axes.iter().enumerate() {
                if sz[i] < 0 {
                    crate::bail!("Resize: negative size {}", sz[i]);
                }
                out_len[d] = sz[i] as usize;
                scale[d] = sz[i] as f64 / s[d] as f64;
            }
            if a.keep_aspect != KeepAspect::Stretch {
                let sel = axes.iter().map(|&d| scale[d]);
                let sc = if a.keep_aspect == KeepAspect::NotLarger {
                    sel.fold(f64::INFINITY, f64::min)
                } else {
                    sel.fold(f64::NEG_INFINITY, f64::max)
                };
                for &d in &axes {
                    scale[d] = sc;
                    out_len[d] = (sc * s[d] as f64 + 0.5) as usize;
                }
            }
        }
        (None, Some(sc)) => {
            if sc.len() != k {
                crate::bail!("Resize: scales has {} entries for {k} axes", sc.len());
            }
            for (i, &d) in axes.iter().enumerate() {
                if sc[i].is_nan() || sc[i] <= 0.0 || sc[i].is_infinite() {
                    crate::bail!("Resize: scales must be positive, got {}", sc[i]);
                }
                scale[d] = sc[i];
                let n = sc[i] * s[d] as f64;
                if n > (1u64 << 40) as f64 {
                    crate::bail!("Resize: output dim {n} is too large");
                }
                out_len[d] = n as usize;
            }
        }
        _ => crate::bail!("Resize needs exactly one of scales and sizes"),
    }
    let mut roi = vec![(0f64, 1f64); r];
    if let Some(rv) = roi_in {
        if rv.len() != 2 * k {
            crate::bail!("Resize: roi has {} entries for {k} axes", rv.len());
        }
        for (i, &d) in axes.iter().enumerate() {
            roi[d] = (rv[i], rv[i + k]);
        }
    } else if a.coord == CoordMode::TfCropAndResize {
        crate::bail!("Resize: tf_crop_and_resize needs roi");
    }
    let mut shape = s.clone();
    let mut data = x.cast(DType::F64).as_slice::<f64>()?.to_vec();
    for &d in &axes {
        let identity = (scale[d] - 1.0).abs() < 1e-9
            && out_len[d] == shape[d]
            && roi[d].0.abs() < 1e-9
            && (roi[d].1 - 1.0).abs() < 1e-9;
        if identity {
            continue;
        }
        if shape[d] == 0 && out_len[d] > 0 {
            crate::bail!("Resize: cannot resize an empty axis {d} to {}", out_len[d]);
        }
        data = resize_axis(a, &data, &shape, d, scale[d], out_len[d], roi[d]);
        shape[d] = out_len[d];
    }
    let t = Tensor::from_vec(shape, data)?;
    if x.dtype().is_float() {
        return Ok(t.cast(x.dtype()));
    }
    // Integers: round half to even, then saturate.
    let rounded: Vec<f64> = t
        .as_slice::<f64>()?
        .iter()
        .map(|v| v.round_ties_even())
        .collect();
    Ok(Tensor::from_vec(t.shape().to_vec(), rounded)?.cast(x.dtype()))
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::t;
    use crate::op::{CoordMode, NearestMode, Op, ResizeAttrs, ResizeMode};
    use crate::tensor::Tensor;

    #[test]
    fn linear_half_pixel_and_nearest_asymmetric() {
        // 1-D [1, 2, 3, 4] upsampled x2 along the last axis of [1, 4].
        let x = t(&[1, 4], vec![1f32, 2.0, 3.0, 4.0]);
        let sc = t(&[2], vec![1f32, 2.0]);
        let none = Tensor::from_vec::<f32>(vec![0], vec![]).unwrap();
        let lin = ResizeAttrs {
            mode: ResizeMode::Linear,
            ..Default::default()
        };
        let y = eval(&Op::Resize(lin), &[Some(&x), Some(&none), Some(&sc)], 1).unwrap();
        // half_pixel: src = (i + 0.5) / 2 - 0.5, edge-clamped linear.
        let want: Vec<f64> = (0..8)
            .map(|i| {
                let src = ((i as f64 + 0.5) / 2.0 - 0.5).clamp(0.0, 3.0);
                1.0 + src
            })
            .collect();
        let got = y[0].as_slice::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        let near = ResizeAttrs {
            mode: ResizeMode::Nearest(NearestMode::Floor),
            coord: CoordMode::Asymmetric,
            ..Default::default()
        };
        let y = eval(&Op::Resize(near), &[Some(&x), Some(&none), Some(&sc)], 1).unwrap();
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
        );
    }
}
