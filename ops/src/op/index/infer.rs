//! Shape and dtype inference of the indexing ops (from
//! [`crate::infer::infer_op`]).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Dim, Fact};
use crate::op::common::{
    check_index_dtype, const_ints, input, one, opt_input, other_family, same, with_dtype,
};
use crate::op::Op;
use crate::shape::{dim_axis, norm_axis};

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::Trilu { .. }
        | Op::Cumulative { .. }
        | Op::ScatterElements { .. }
        | Op::ScatterNd { .. } => one(same(input(inputs, 0)?)),
        Op::GatherElements { axis } => {
            let x = input(inputs, 0)?;
            let idx = input(inputs, 1)?;
            check_index_dtype(idx)?;
            if let (Some(r), Some(ri)) = (x.rank(), idx.rank()) {
                if r != ri {
                    crate::bail!("data has rank {r}, indices rank {ri}");
                }
                norm_axis(*axis, r)?;
            }
            one(with_dtype(x.dtype, idx.shape.clone()))
        }
        Op::GatherNd { batch_dims } => {
            let x = input(inputs, 0)?;
            let idx = input(inputs, 1)?;
            if let Some(d) = idx.dtype {
                if d != DType::I64 {
                    crate::bail!("indices must be i64, got {d}");
                }
            }
            let shape = match (&x.shape, &idx.shape) {
                (Some(s), Some(i)) => match i.last() {
                    Some(Dim::Known(k)) => {
                        if batch_dims + k > s.len() || *batch_dims >= i.len() {
                            crate::bail!(
                                "indices {} with batch_dims {batch_dims} do not fit data {}",
                                crate::graph::fmt_shape(i),
                                crate::graph::fmt_shape(s)
                            );
                        }
                        let mut o = i[..i.len() - 1].to_vec();
                        o.extend(s[batch_dims + k..].iter().cloned());
                        Some(o)
                    }
                    _ => None,
                },
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::TopK { axis, k, .. } => {
            let x = input(inputs, 0)?;
            let k = match k {
                Some(k) => Some(*k),
                None => const_ints(Some(input(inputs, 1)?)).and_then(|v| v.first().copied()),
            };
            let shape = match &x.shape {
                Some(s) => {
                    let a = dim_axis(*axis, s.len())?;
                    let mut o = s.clone();
                    o[a] = match k {
                        Some(k) if k >= 0 => Dim::Known(k as usize),
                        Some(k) => crate::bail!("k must be >= 0, got {k}"),
                        None => Dim::Sym("topk_k".into()),
                    };
                    Some(o)
                }
                None => None,
            };
            Ok(vec![
                with_dtype(x.dtype, shape.clone()),
                with_dtype(Some(DType::I64), shape),
            ])
        }
        Op::OneHot { axis } => {
            let idx = input(inputs, 0)?;
            let depth = const_ints(Some(input(inputs, 1)?)).and_then(|v| v.first().copied());
            let values = input(inputs, 2)?;
            let shape = match &idx.shape {
                Some(s) => {
                    let r = s.len() + 1;
                    let a = norm_axis(*axis, r)?;
                    let mut o = s.clone();
                    o.insert(
                        a,
                        match depth {
                            Some(d) if d >= 0 => Dim::Known(d as usize),
                            _ => Dim::Sym("onehot_depth".into()),
                        },
                    );
                    Some(o)
                }
                None => None,
            };
            one(with_dtype(values.dtype, shape))
        }
        Op::NonZero => {
            let x = input(inputs, 0)?;
            one(with_dtype(
                Some(DType::I64),
                x.rank()
                    .map(|r| vec![Dim::Known(r), Dim::Sym("nonzero_n".into())]),
            ))
        }
        Op::Compress { axis } => {
            let x = input(inputs, 0)?;
            let c = input(inputs, 1)?;
            if let Some(d) = c.dtype {
                if d != DType::Bool {
                    crate::bail!("condition must be bool, got {d}");
                }
            }
            let shape = match (axis, &x.shape) {
                (None, _) => Some(vec![Dim::Sym("compress_n".into())]),
                (Some(a), Some(s)) => {
                    let a = dim_axis(*a, s.len())?;
                    let mut o = s.clone();
                    o[a] = Dim::Sym("compress_n".into());
                    Some(o)
                }
                (Some(_), None) => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Tile => {
            let x = input(inputs, 0)?;
            let reps = const_ints(Some(input(inputs, 1)?));
            let shape = match (&x.shape, reps) {
                (Some(s), Some(r)) => {
                    if r.len() != s.len() {
                        crate::bail!("repeats has {} entries for rank {}", r.len(), s.len());
                    }
                    let mut o = Vec::with_capacity(s.len());
                    for (d, &n) in s.iter().zip(&r) {
                        if n < 0 {
                            crate::bail!("repeats must be >= 0, got {n}");
                        }
                        o.push(match d {
                            Dim::Known(d) => Dim::Known(d * n as usize),
                            Dim::Sym(_) if n == 1 => d.clone(),
                            Dim::Sym(_) => Dim::Sym("tile".into()),
                        });
                    }
                    Some(o)
                }
                (Some(s), None) => Some(
                    (0..s.len())
                        .map(|i| Dim::Sym(format!("tile_{i}")))
                        .collect(),
                ),
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::DepthToSpace { blocksize, .. } | Op::SpaceToDepth { blocksize, .. } => {
            let x = input(inputs, 0)?;
            let b = *blocksize;
            let shape = match &x.shape {
                Some(s) => {
                    if s.len() != 4 {
                        crate::bail!("input must be 4-D, got {}", crate::graph::fmt_shape(s));
                    }
                    let d2s = matches!(op, Op::DepthToSpace { .. });
                    let f = |d: &Dim, mul: bool| match d {
                        Dim::Known(n) if mul => Ok(Dim::Known(n * b)),
                        Dim::Known(n) if n % b == 0 => Ok(Dim::Known(n / b)),
                        Dim::Known(n) => Err(Error::msg(format!(
                            "dim {n} is not divisible by blocksize {b}"
                        ))),
                        Dim::Sym(_) => Ok(Dim::Sym("blocks".into())),
                    };
                    let c = match &s[1] {
                        Dim::Known(c) if d2s && c % (b * b) != 0 => crate::bail!(
                            "channels {c} are not divisible by blocksize^2 = {}",
                            b * b
                        ),
                        Dim::Known(c) if d2s => Dim::Known(c / (b * b)),
                        Dim::Known(c) => Dim::Known(c * b * b),
                        Dim::Sym(_) => Dim::Sym("blocks_c".into()),
                    };
                    Some(vec![s[0].clone(), c, f(&s[2], d2s)?, f(&s[3], d2s)?])
                }
                None => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::EyeLike { dtype, .. } => {
            let x = input(inputs, 0)?;
            if let Some(r) = x.rank() {
                if r != 2 {
                    crate::bail!("EyeLike input must be 2-D, got rank {r}");
                }
            }
            one(with_dtype(dtype.or(x.dtype), x.shape.clone()))
        }
        Op::Pad { pads, .. } => {
            let x = input(inputs, 0)?;
            let pads = match pads {
                Some(p) => Some(p.clone()),
                None => const_ints(Some(input(inputs, 1)?)),
            };
            let axes_known = opt_input(inputs, 3).is_none_or(|f| f.value.is_some());
            let shape = match (&x.shape, pads, axes_known) {
                (Some(s), Some(p), true) => {
                    let r = s.len();
                    let axes: Vec<usize> = match const_ints(opt_input(inputs, 3)) {
                        Some(a) => a.iter().map(|&a| dim_axis(a, r)).collect::<Result<_>>()?,
                        None => (0..r).collect(),
                    };
                    if p.len() != 2 * axes.len() {
                        crate::bail!("pads has {} entries for {} axes", p.len(), axes.len());
                    }
                    let mut o = s.clone();
                    for (i, &a) in axes.iter().enumerate() {
                        if let Dim::Known(d) = s[a] {
                            let n = d as i64 + p[i] + p[i + axes.len()];
                            if n < 0 {
                                crate::bail!("pads {:?} make axis {a} negative", p);
                            }
                            o[a] = Dim::Known(n as usize);
                        }
                    }
                    Some(o)
                }
                (Some(s), _, _) => {
                    Some((0..s.len()).map(|i| Dim::Sym(format!("pad_{i}"))).collect())
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        _ => Err(other_family(op, "index")),
    }
}
