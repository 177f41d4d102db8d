//! Shape arithmetic shared by inference, kernels and device backends:
//! axis normalisation, numpy broadcasting (of concrete and of symbolic
//! shapes), row-major strides and broadcast strides, and the views ONNX
//! Slice and Transpose take. Pure functions of shapes; nothing here looks at
//! element data.
//!
//! Errors name what is wrong without the op's name (the caller adds the
//! node). Window arithmetic (padding and output sizes of Conv and pooling)
//! lives with those ops, in [`crate::op::conv`].

use crate::error::{Error, Result};
use crate::graph::{fmt_shape, Dim};

/// Normalises a possibly negative axis against `rank` (ONNX convention).
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        crate::bail!("axis {} out of range for rank {}", axis, rank);
    }
    Ok(a as usize)
}

/// [`norm_axis`] for an axis that indexes a dim of the shape. A scalar
/// (rank 0) has no dim to index, though `norm_axis` lets axis 0 through
/// for ops that take scalars.
pub fn dim_axis(axis: i64, rank: usize) -> Result<usize> {
    if rank == 0 {
        crate::bail!("axis {axis} out of range for a scalar (rank 0)");
    }
    norm_axis(axis, rank)
}

/// Numpy broadcast of two concrete shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            crate::bail!("shapes {:?} and {:?} do not broadcast", a, b);
        };
    }
    Ok(out)
}

/// Numpy broadcast of several shapes.
pub fn broadcast_all(shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let mut o: Vec<usize> = Vec::new();
    for s in shapes {
        o = broadcast_shapes(&o, s)?;
    }
    Ok(o)
}

/// Broadcast of symbolic shapes.
pub fn broadcast_dims(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>> {
    let n = a.len().max(b.len());
    let one = Dim::Known(1);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            &a[i + a.len() - n]
        } else {
            &one
        };
        let db = if i + b.len() >= n {
            &b[i + b.len() - n]
        } else {
            &one
        };
        out.push(match (da, db) {
            (x, y) if x == y => x.clone(),
            (Dim::Known(1), y) => y.clone(),
            (x, Dim::Known(1)) => x.clone(),
            (Dim::Known(x), Dim::Known(y)) => {
                return Err(Error::msg(format!(
                    "dims {x} and {y} do not broadcast (shapes {} and {})",
                    fmt_shape(a),
                    fmt_shape(b)
                )))
            }
            (Dim::Known(x), Dim::Sym(_)) | (Dim::Sym(_), Dim::Known(x)) => Dim::Known(*x),
            (x, _) => x.clone(),
        });
    }
    Ok(out)
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Strides of a tensor of shape `shape` read as the (right-aligned) broadcast
/// shape `to`: 0 on broadcast dims.
pub fn bcast_strides(shape: &[usize], to: &[usize]) -> Vec<isize> {
    let st = strides(shape);
    let off = to.len() - shape.len();
    (0..to.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                st[i - off] as isize
            }
        })
        .collect()
}

/// Product of dims.
pub fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

pub fn prod_dims(ds: &[Dim]) -> Dim {
    let mut p = 1usize;
    for d in ds {
        match d {
            // A product past usize is no size at all: leave it unknown.
            Dim::Known(n) => match p.checked_mul(*n) {
                Some(v) => p = v,
                None => return Dim::Sym(format!("prod({})", fmt_shape(ds))),
            },
            Dim::Sym(s) => {
                return if ds.len() == 1 {
                    Dim::Sym(s.clone())
                } else {
                    Dim::Sym(format!("prod({})", fmt_shape(ds)))
                }
            }
        }
    }
    Dim::Known(p)
}

/// ONNX Slice bound clamping for one axis of size `dim`: returns the
/// effective `(start, end)` (end exclusive in the step's direction; `-1`
/// means "before index 0" for negative steps).
pub fn slice_range(start: i64, end: i64, step: i64, dim: usize) -> (i64, i64) {
    let d = dim as i64;
    if d == 0 {
        // Nothing to select: an empty range in either direction.
        return if step > 0 { (0, 0) } else { (-1, -1) };
    }
    let fix = |v: i64| if v < 0 { v + d } else { v };
    let (s, e) = (fix(start), fix(end));
    if step > 0 {
        (s.clamp(0, d), e.clamp(0, d))
    } else {
        (s.clamp(0, d - 1), e.clamp(-1, d - 1))
    }
}

/// Elements a slice from `lo` towards `hi` by `step` (non-zero) takes, with
/// `lo`/`hi` from [`slice_range`]. Counted in i128: a step near `i64::MAX`
/// or `i64::MIN` overflows i64.
pub fn slice_len(lo: i64, hi: i64, step: i64) -> usize {
    let (lo, hi, step) = (lo as i128, hi as i128, step as i128);
    let n = if step > 0 && hi > lo {
        (hi - lo + step - 1) / step
    } else if step < 0 && lo > hi {
        (lo - hi - step - 1) / -step
    } else {
        0
    };
    n as usize
}

/// Transpose's permutation for a rank-`rank` input: `perm`, or the
/// reversed axes when absent; an error when it is not a permutation.
pub fn transpose_perm(perm: Option<&[usize]>, rank: usize) -> Result<Vec<usize>> {
    let perm: Vec<usize> = perm.map_or_else(|| (0..rank).rev().collect(), <[usize]>::to_vec);
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        crate::bail!("perm {perm:?} is not a permutation of rank {rank}");
    }
    Ok(perm)
}

/// The strided view ONNX Slice takes of a row-major tensor of `shape`:
/// the output shape, the element strides (negative for negative steps)
/// and the element offset of the output's first element. `starts`,
/// `ends`, `axes` and `steps` are parallel lists (ONNX clamping applies).
/// Errors name what is wrong without the op's name.
pub fn slice_view(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
) -> Result<(Vec<usize>, Vec<isize>, isize)> {
    let k = starts.len();
    if ends.len() != k || axes.len() != k || steps.len() != k {
        crate::bail!("starts, ends, axes and steps have different lengths");
    }
    let row = strides(shape);
    let mut out = shape.to_vec();
    let mut st: Vec<isize> = row.iter().map(|&v| v as isize).collect();
    let mut base = 0isize;
    let mut seen = vec![false; shape.len()];
    for i in 0..k {
        let a = norm_axis(axes[i], shape.len())?;
        if std::mem::replace(&mut seen[a], true) {
            crate::bail!("axis {a} repeated");
        }
        let step = steps[i];
        if step == 0 {
            crate::bail!("step cannot be 0");
        }
        // slice_range needs a non-empty dim for negative steps.
        let (lo, hi) = if shape[a] == 0 {
            (0, 0)
        } else {
            slice_range(starts[i], ends[i], step, shape[a])
        };
        let n = slice_len(lo, hi, step);
        out[a] = n;
        if n > 0 {
            base += lo as isize * row[a] as isize;
        }
        // Saturating: a step past the dim takes at most one element, so
        // its stride is never walked.
        st[a] = (step as isize).saturating_mul(row[a] as isize);
    }
    Ok((out, st, base))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `scripts/fuzz.sh` (target `onnx_load`): `hi - lo + step - 1`
    /// overflowed i64 for a step near `i64::MAX`.
    #[test]
    fn slice_len_with_extreme_steps() {
        assert_eq!(slice_len(0, 5, i64::MAX), 1);
        assert_eq!(slice_len(4, -1, i64::MIN), 1);
        assert_eq!(slice_len(0, 5, 2), 3);
        assert_eq!(slice_len(4, -1, -2), 3);
        assert_eq!(slice_len(5, 0, 1), 0);
    }

    #[test]
    fn slice_range_on_empty_dims_is_empty_both_ways() {
        assert_eq!(slice_range(0, 10, 1, 0), (0, 0));
        assert_eq!(slice_range(-1, i64::MIN, -1, 0), (-1, -1));
        // Non-empty dims: negative step clamps to [d-1, -1].
        assert_eq!(slice_range(100, -100, -1, 4), (3, -1));
    }
}
