//! Shape and dtype inference of the shape and data-movement ops (from
//! [`crate::infer::infer_op`]).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Dim, Fact};
use crate::op::common::{
    check_same_dtype, const_ints, input, one, opt_input, other_family, same, with_dtype,
};
use crate::op::Op;
use crate::shape::{broadcast_dims, dim_axis, norm_axis, prod_dims};

/// The largest rank inference spells out as symbolic dims when only the
/// rank is known.
const MAX_SYMBOLIC_RANK: usize = 64;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::Identity => one(same(input(inputs, 0)?)),
        Op::OptionalHasElement => one(Fact::known(crate::DType::Bool, &[])),
        Op::DropoutSeeded { .. } => {
            let x = input(inputs, 0)?;
            let mut v = vec![same(x)];
            if n_out > 1 {
                v.push(with_dtype(Some(crate::DType::Bool), x.shape.clone()));
            }
            Ok(v)
        }
        Op::Dropout => {
            if let Some(Some(t)) = inputs.get(2).map(|f| f.and_then(|f| f.value.as_deref())) {
                // A ratio known only at run time is checked then.
                match opt_input(inputs, 1) {
                    Some(r) => {
                        if let Some(rv) = r.value.as_deref() {
                            super::kernel::refuse_dropout_training(t, Some(rv))?;
                        }
                    }
                    None => super::kernel::refuse_dropout_training(t, None)?,
                }
            }
            let x = input(inputs, 0)?;
            let mut v = vec![same(x)];
            if n_out > 1 {
                v.push(with_dtype(Some(DType::Bool), x.shape.clone()));
            }
            Ok(v)
        }
        Op::Range => {
            // Constant bounds are folded before this; otherwise the length
            // is known only at run time.
            let start = input(inputs, 0)?;
            one(with_dtype(
                start.dtype,
                Some(vec![Dim::Sym("range_len".into())]),
            ))
        }
        Op::Size => {
            input(inputs, 0)?;
            one(with_dtype(Some(DType::I64), Some(vec![])))
        }
        Op::Reshape { allowzero, shape } => {
            let x = input(inputs, 0)?;
            let target = match shape {
                Some(s) => Some(s.clone()),
                None => const_ints(Some(input(inputs, 1)?)),
            };
            let out = match target {
                Some(t) => Some(reshape_dims(x.shape.as_deref(), &t, *allowzero)?),
                // The rank is the shape input's length, which a declared
                // shape can set to anything: past MAX_SYMBOLIC_RANK it stays
                // unknown rather than becoming that many symbolic dims.
                None => input(inputs, 1)?.concrete_shape().and_then(|s| {
                    s.first()
                        .filter(|&&r| r <= MAX_SYMBOLIC_RANK)
                        .map(|&r| (0..r).map(|i| Dim::Sym(format!("reshape_{i}"))).collect())
                }),
            };
            one(with_dtype(x.dtype, out))
        }
        Op::Flatten { axis } => {
            let x = input(inputs, 0)?;
            let shape = match &x.shape {
                Some(s) => {
                    let r = s.len() as i64;
                    let a = if *axis < 0 { axis + r } else { *axis };
                    if a < 0 || a > r {
                        crate::bail!("Flatten axis {axis} out of range for rank {r}");
                    }
                    let a = a as usize;
                    Some(vec![prod_dims(&s[..a]), prod_dims(&s[a..])])
                }
                None => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Transpose { perm } => {
            let x = input(inputs, 0)?;
            let shape = match &x.shape {
                Some(s) => {
                    let perm = crate::shape::transpose_perm(perm.as_deref(), s.len())?;
                    Some(perm.iter().map(|&p| s[p].clone()).collect())
                }
                None => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Squeeze { axes } => {
            let x = input(inputs, 0)?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => match opt_input(inputs, 1) {
                    None => None,
                    f => const_ints(f).map(Some).unwrap_or(Some(vec![i64::MIN])),
                },
            };
            let shape = match (&x.shape, axes) {
                (Some(s), None) => {
                    if s.iter().any(|d| matches!(d, Dim::Sym(_))) {
                        None
                    } else {
                        Some(s.iter().filter(|d| **d != Dim::Known(1)).cloned().collect())
                    }
                }
                (Some(_), Some(a)) if a == [i64::MIN] => None,
                (Some(s), Some(a)) => {
                    let mut drop = vec![false; s.len()];
                    for ax in a {
                        let i = dim_axis(ax, s.len())?;
                        if let Dim::Known(d) = s[i] {
                            if d != 1 {
                                crate::bail!("cannot squeeze axis {ax} of size {d}");
                            }
                        }
                        drop[i] = true;
                    }
                    Some(
                        s.iter()
                            .zip(drop)
                            .filter(|(_, d)| !d)
                            .map(|(s, _)| s.clone())
                            .collect(),
                    )
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Unsqueeze { axes } => {
            let x = input(inputs, 0)?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => const_ints(Some(input(inputs, 1)?)),
            };
            let shape = match (&x.shape, axes) {
                (Some(s), Some(a)) => {
                    let r = s.len() + a.len();
                    let mut ins = vec![false; r];
                    for ax in a {
                        let i = norm_axis(ax, r)?;
                        if ins[i] {
                            crate::bail!("axis {ax} repeated");
                        }
                        ins[i] = true;
                    }
                    let mut it = s.iter();
                    Some(
                        ins.iter()
                            .map(|&b| {
                                if b {
                                    Dim::Known(1)
                                } else {
                                    it.next().cloned().unwrap_or(Dim::Known(1))
                                }
                            })
                            .collect(),
                    )
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Concat { axis } => {
            let fs: Vec<&Fact> = inputs.iter().flatten().copied().collect();
            if fs.is_empty() {
                crate::bail!("Concat needs at least one input");
            }
            let dt = check_same_dtype(&fs, "Concat")?;
            let shapes: Option<Vec<&Vec<Dim>>> = fs.iter().map(|f| f.shape.as_ref()).collect();
            let shape = match shapes {
                Some(ss) => {
                    let r = ss[0].len();
                    let a = dim_axis(*axis, r)?;
                    let mut out = ss[0].clone();
                    let mut total: Option<usize> = Some(0);
                    for s in &ss {
                        if s.len() != r {
                            crate::bail!("Concat inputs have ranks {} and {}", r, s.len());
                        }
                        total = match (total, &s[a]) {
                            (Some(t), Dim::Known(d)) => Some(t + d),
                            _ => None,
                        };
                    }
                    out[a] = match total {
                        Some(t) => Dim::Known(t),
                        None => Dim::Sym(format!("concat_{a}")),
                    };
                    Some(out)
                }
                None => None,
            };
            one(with_dtype(dt, shape))
        }
        Op::Split { axis, split } => {
            let x = input(inputs, 0)?;
            let split = match split {
                Some(s) => Some(s.clone()),
                None => opt_input(inputs, 1).and_then(|f| const_ints(Some(f))),
            };
            let mut outs = Vec::with_capacity(n_out);
            for i in 0..n_out {
                let shape = match &x.shape {
                    Some(s) => {
                        let a = dim_axis(*axis, s.len())?;
                        let mut o = s.clone();
                        o[a] = match (&split, &s[a]) {
                            (Some(sp), _) => {
                                Dim::Known(*sp.get(i).ok_or_else(|| {
                                    Error::msg("split has fewer entries than outputs")
                                })? as usize)
                            }
                            (None, Dim::Known(d)) => {
                                let chunk = d.div_ceil(n_out);
                                Dim::Known(chunk.min(d.saturating_sub(chunk * i)))
                            }
                            (None, Dim::Sym(_)) => Dim::Sym(format!("split_{i}")),
                        };
                        Some(o)
                    }
                    None => None,
                };
                outs.push(with_dtype(x.dtype, shape));
            }
            Ok(outs)
        }
        Op::Shape { start, end } => {
            let x = input(inputs, 0)?;
            let len = x.rank().map(|r| {
                let clamp =
                    |v: i64| (if v < 0 { v + r as i64 } else { v }).clamp(0, r as i64) as usize;
                let s = clamp(*start);
                let e = clamp(end.unwrap_or(r as i64));
                e.saturating_sub(s)
            });
            one(with_dtype(
                Some(DType::I64),
                len.map(|l| vec![Dim::Known(l)]),
            ))
        }
        Op::Gather { axis } => {
            let x = input(inputs, 0)?;
            let idx = input(inputs, 1)?;
            if let Some(d) = idx.dtype {
                if d != DType::I64 && d != DType::I32 {
                    crate::bail!("indices must be i32 or i64, got {d}");
                }
            }
            let shape = match (&x.shape, &idx.shape) {
                (Some(s), Some(i)) => {
                    let a = dim_axis(*axis, s.len())?;
                    let mut o = s[..a].to_vec();
                    o.extend(i.iter().cloned());
                    o.extend(s[a + 1..].iter().cloned());
                    Some(o)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Expand => {
            let x = input(inputs, 0)?;
            let shape = match (const_ints(Some(input(inputs, 1)?)), &x.shape) {
                (Some(t), Some(s)) => {
                    let t: Vec<Dim> = t.iter().map(|&d| Dim::Known(d.max(0) as usize)).collect();
                    Some(broadcast_dims(s, &t)?)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::ConstantOfShape { value } => {
            let shape = const_ints(Some(input(inputs, 0)?))
                .map(|s| s.iter().map(|&d| Dim::Known(d.max(0) as usize)).collect())
                .or_else(|| {
                    input(inputs, 0).ok()?.concrete_shape().and_then(|s| {
                        s.first()
                            .map(|&r| (0..r).map(|i| Dim::Sym(format!("cos_{i}"))).collect())
                    })
                });
            one(with_dtype(Some(value.dtype()), shape))
        }
        Op::Slice { .. } => {
            // The output extent depends on the bound values; when they are
            // constants the shape is exact, else rank only.
            let x = input(inputs, 0)?;
            let shape = x.shape.as_ref().map(|s| {
                s.iter()
                    .enumerate()
                    .map(|(i, _)| Dim::Sym(format!("slice_{i}")))
                    .collect::<Vec<_>>()
            });
            let exact = slice_shape(op, inputs, x)?;
            one(with_dtype(x.dtype, exact.or(shape)))
        }
        Op::GatherGrad { .. } | Op::DropoutTrain { .. } => super::grad::infer(op, inputs),
        _ => Err(other_family(op, "movement")),
    }
}

fn slice_shape(op: &Op, inputs: &[Option<&Fact>], x: &Fact) -> Result<Option<Vec<Dim>>> {
    let Op::Slice { starts, ends, axes } = op else {
        return Ok(None);
    };
    let Some(s) = &x.shape else { return Ok(None) };
    let (starts, ends, axes, steps) = if starts.is_some() {
        (starts.clone(), ends.clone(), axes.clone(), None)
    } else {
        (
            const_ints(opt_input(inputs, 1)),
            const_ints(opt_input(inputs, 2)),
            const_ints(opt_input(inputs, 3)),
            const_ints(opt_input(inputs, 4)),
        )
    };
    let (Some(starts), Some(ends)) = (starts, ends) else {
        return Ok(None);
    };
    if opt_input(inputs, 3).is_some() && axes.is_none()
        || opt_input(inputs, 4).is_some() && steps.is_none()
    {
        return Ok(None);
    }
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        crate::bail!("Slice starts/ends/axes/steps lengths differ");
    }
    let mut out = s.clone();
    for i in 0..starts.len() {
        let a = dim_axis(axes[i], s.len())?;
        let Dim::Known(d) = s[a] else {
            out[a] = Dim::Sym(format!("slice_{a}"));
            continue;
        };
        let step = steps[i];
        if step == 0 {
            crate::bail!("Slice step cannot be 0");
        }
        let (lo, hi) = crate::shape::slice_range(starts[i], ends[i], step, d);
        out[a] = Dim::Known(crate::shape::slice_len(lo, hi, step));
    }
    Ok(Some(out))
}

/// The element count of Reshape's known output dims (`None` when one is
/// symbolic); a count past usize is an error naming the target shape.
fn known_product(target: &[i64], dims: &[Option<Dim>]) -> Result<Option<usize>> {
    let mut p = 1usize;
    for d in dims.iter().flatten() {
        let Some(n) = d.known() else {
            return Ok(None);
        };
        p = p.checked_mul(n).ok_or_else(|| {
            Error::msg(format!(
                "shape {target:?} has more elements than fit in usize"
            ))
        })?;
    }
    Ok(Some(p))
}

fn reshape_dims(x: Option<&[Dim]>, target: &[i64], allowzero: bool) -> Result<Vec<Dim>> {
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 => {
                if infer_at.replace(i).is_some() {
                    crate::bail!("shape {:?} has more than one -1", target);
                }
                out.push(None);
            }
            0 if !allowzero => {
                let d = x.and_then(|x| x.get(i)).cloned();
                match d {
                    Some(d) => out.push(Some(d)),
                    None if x.is_some() => {
                        crate::bail!("shape {:?} copies dim {i} which the input lacks", target)
                    }
                    None => out.push(Some(Dim::Sym(format!("reshape_{i}")))),
                }
            }
            t if t < 0 => crate::bail!("shape {:?} has invalid entry {t}", target),
            t => out.push(Some(Dim::Known(t as usize))),
        }
    }
    if let Some(i) = infer_at {
        let total = x.and_then(|x| prod_dims(x).known());
        let rest = known_product(target, &out)?;
        out[i] = Some(match (total, rest) {
            (Some(t), Some(r)) if r > 0 => {
                if t % r != 0 {
                    crate::bail!("cannot reshape {} elements to {:?}", t, target);
                }
                Dim::Known(t / r)
            }
            _ => Dim::Sym(format!("reshape_{i}")),
        });
    } else if let Some(x) = x {
        let total = prod_dims(x).known();
        let new = known_product(target, &out)?;
        if let (Some(t), Some(n)) = (total, new) {
            if t != n {
                crate::bail!(
                    "cannot reshape {} ({} elements) to {:?}",
                    crate::graph::fmt_shape(x),
                    t,
                    target
                );
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}
