//! The sampling ops of the family: GridSample (nearest, linear and cubic
//! interpolation with zeros, border or reflection padding) and AffineGrid,
//! the grid an affine matrix gives. Host kernels, re-exported by
//! `kernel.rs`.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, out, typed};
use crate::op::{GridMode, GridPadding};
use crate::shape::{numel, strides};
use crate::tensor::Tensor;

/// Reflects `x` into `[lo, hi]` (repeatedly, as a mirror).
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let rng = hi - lo;
    if rng <= 0.0 {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / rng) as i64;
        let r = dx - n as f64 * rng;
        if n % 2 == 0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / rng) as i64;
        let r = dx - n as f64 * rng;
        if n % 2 == 0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

fn keys_cubic(t: f64) -> [f64; 4] {
    let a = -0.75;
    let c = |x: f64| {
        let x = x.abs();
        if x <= 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
        } else {
            0.0
        }
    };
    [c(t + 1.0), c(t), c(1.0 - t), c(2.0 - t)]
}

/// GridSample: samples X `[N, C, d..]` at the normalised coordinates of
/// grid `[N, o.., r]` (last entry first: x is the innermost dim).
pub(crate) fn grid_sample(
    mode: GridMode,
    padding: GridPadding,
    align_corners: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let g = input(inputs, 1, "grid")?;
    let xs = x.shape();
    let gs = g.shape();
    let r = xs.len().saturating_sub(2);
    if r == 0 || gs.len() != r + 2 || gs[0] != xs[0] || gs[r + 1] != r || !x.dtype().is_float() {
        crate::bail!(
            "GridSample: X {} {:?} and grid {:?} do not fit",
            x.dtype(),
            xs,
            gs
        );
    }
    let (n, c) = (xs[0], xs[1]);
    let dims = &xs[2..];
    let plane = numel(dims);
    let pts = numel(&gs[1..r + 1]);
    let xw = x.cast(DType::F64);
    let xv = typed::<f64>(&xw, "input 0 (X)")?;
    let gw = g.cast(DType::F64);
    let gv = typed::<f64>(&gw, "input 1 (grid)")?;
    let dst = strides(dims);
    let (lo, hi): (Vec<f64>, Vec<f64>) = dims
        .iter()
        .map(|&d| {
            if align_corners {
                (0.0, d as f64 - 1.0)
            } else {
                (-0.5, d as f64 - 0.5)
            }
        })
        .unzip();
    // An input index after padding: Some(in-range index) or None (zero).
    let fix = |i: i64, k: usize| -> Option<usize> {
        let d = dims[k] as i64;
        match padding {
            GridPadding::Zeros => (0..d).contains(&i).then_some(i as usize),
            GridPadding::Border => Some(i.clamp(0, d - 1) as usize),
            GridPadding::Reflection => {
                Some((reflect(i as f64, lo[k], hi[k]) as i64).clamp(0, d - 1) as usize)
            }
        }
    };
    let mut y = vec![0f64; n * c * pts];
    let mut taps: Vec<Vec<(Option<usize>, f64)>> = vec![Vec::new(); r];
    for b in 0..n {
        for p in 0..pts {
            let coords = &gv[(b * pts + p) * r..(b * pts + p + 1) * r];
            for k in 0..r {
                let d = dims[k] as f64;
                let gnorm = coords[r - 1 - k];
                let mut v = if align_corners {
                    (gnorm + 1.0) / 2.0 * (d - 1.0)
                } else {
                    ((gnorm + 1.0) * d - 1.0) / 2.0
                };
                // The reference denormalises in f32.
                v = v as f32 as f64;
                if mode == GridMode::Nearest {
                    v = v.round_ties_even();
                }
                if v < lo[k] || v > hi[k] {
                    match padding {
                        GridPadding::Border => v = v.clamp(0.0, d - 1.0),
                        GridPadding::Reflection => v = reflect(v, lo[k], hi[k]),
                        GridPadding::Zeros => {}
                    }
                }
                taps[k].clear();
                match mode {
                    GridMode::Nearest => taps[k].push((fix(v as i64, k), 1.0)),
                    GridMode::Linear => {
                        let f = v.floor();
                        let t = v - f;
                        taps[k].push((fix(f as i64, k), 1.0 - t));
                        taps[k].push((fix(f as i64 + 1, k), t));
                    }
                    GridMode::Cubic => {
                        let f = v.floor();
                        for (j, w) in keys_cubic(v - f).into_iter().enumerate() {
                            taps[k].push((fix(f as i64 - 1 + j as i64, k), w));
                        }
                    }
                }
            }
            // Every combination of one tap per dim.
            let total: usize = taps.iter().map(|t| t.len()).product();
            for combo in 0..total {
                let mut rest = combo;
                let mut w = 1.0;
                let mut off = Some(0usize);
                for k in (0..r).rev() {
                    let len = taps[k].len();
                    let (i, wk) = taps[k][rest % len];
                    rest /= len;
                    w *= wk;
                    off = match (off, i) {
                        (Some(o), Some(i)) => Some(o + i * dst[k]),
                        _ => None,
                    };
                }
                if let (Some(off), true) = (off, w != 0.0) {
                    for ch in 0..c {
                        y[(b * c + ch) * pts + p] += w * xv[(b * c + ch) * plane + off];
                    }
                }
            }
        }
    }
    let mut oshape = vec![n, c];
    oshape.extend(&gs[1..r + 1]);
    Ok(out(oshape, y)?.cast(x.dtype()))
}

/// AffineGrid: for theta `[N, r, r + 1]` (r = 2 or 3) and size `[N, C,
/// d..]`, the point `theta[n] * (x, y, (z,) 1)` for every output position,
/// where x runs over the last spatial dim: `-1 + (2i + 1) / L` per index
/// i of a dim of length L, or `-1 + 2i / (L - 1)` with `align_corners`.
/// Computed in f64, returned in theta's dtype.
pub(crate) fn affine_grid(align_corners: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let theta = input(inputs, 0, "theta")?;
    let size = input(inputs, 1, "size")?.to_i64_vec();
    let ts = theta.shape();
    let r = size.len().saturating_sub(2);
    if !(r == 2 || r == 3)
        || ts.len() != 3
        || ts[1] != r
        || ts[2] != r + 1
        || size[0] < 0
        || ts[0] != size[0] as usize
        || !theta.dtype().is_float()
    {
        crate::bail!(
            "AffineGrid: theta {} {:?} and size {:?} do not fit ([N, 2, 3] with [N, C, H, W], or [N, 3, 4] with [N, C, D, H, W])",
            theta.dtype(),
            ts,
            size
        );
    }
    let dims: Vec<usize> = size[2..]
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| crate::Error::msg(format!("AffineGrid: negative size {size:?}")))?;
    let coord = |i: usize, len: usize| -> f64 {
        if align_corners {
            if len > 1 {
                -1.0 + 2.0 * i as f64 / (len - 1) as f64
            } else {
                -1.0
            }
        } else {
            -1.0 + (2 * i + 1) as f64 / len as f64
        }
    };
    let n = ts[0];
    let pts = numel(&dims);
    let tw = theta.cast(DType::F64);
    let tv = typed::<f64>(&tw, "input 0 (theta)")?;
    let st = strides(&dims);
    let mut y = Vec::with_capacity(n * pts * r);
    let mut p = vec![1.0f64; r + 1];
    for b in 0..n {
        let th = &tv[b * r * (r + 1)..(b + 1) * r * (r + 1)];
        for q in 0..pts {
            // p = (x, y, (z,) 1): x from the last spatial dim.
            for (k, pk) in p.iter_mut().take(r).enumerate() {
                let dim = r - 1 - k;
                *pk = coord((q / st[dim]) % dims[dim], dims[dim]);
            }
            for row in th.chunks(r + 1) {
                y.push(row.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>());
            }
        }
    }
    let mut shape = vec![n];
    shape.extend(&dims);
    shape.push(r);
    Ok(out(shape, y)?.cast(theta.dtype()))
}
