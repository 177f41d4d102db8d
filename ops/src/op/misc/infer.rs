//! Shape and dtype inference of the miscellaneous ops (from
//! [`crate::infer::infer_op`]).

use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{const_ints, input, one, other_family, same, with_dtype};
use crate::op::Op;
use crate::shape::dim_axis;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::Window { dtype, .. } => {
            let len = const_ints(Some(input(inputs, 0)?)).and_then(|v| v.first().copied());
            one(with_dtype(
                Some(*dtype),
                Some(vec![match len {
                    Some(n) if n >= 0 => Dim::Known(n as usize),
                    _ => Dim::Sym("window".into()),
                }]),
            ))
        }
        Op::ReverseSequence { .. } => one(same(input(inputs, 0)?)),
        Op::CenterCropPad { .. } => {
            let x = input(inputs, 0)?;
            one(with_dtype(
                x.dtype,
                x.rank()
                    .map(|r| (0..r).map(|i| Dim::Sym(format!("crop_{i}"))).collect()),
            ))
        }
        Op::GridSample { .. } => {
            let x = input(inputs, 0)?;
            let g = input(inputs, 1)?;
            let shape = match (&x.shape, &g.shape) {
                (Some(xs), Some(gs)) if xs.len() >= 3 && gs.len() == xs.len() => {
                    let mut o = xs[..2].to_vec();
                    o.extend(gs[1..gs.len() - 1].iter().cloned());
                    Some(o)
                }
                (Some(xs), Some(gs)) => crate::bail!(
                    "X {} and grid {} ranks do not fit",
                    crate::graph::fmt_shape(xs),
                    crate::graph::fmt_shape(gs)
                ),
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::TfIdfVectorizer(t) => {
            let x = input(inputs, 0)?;
            let out = Dim::Known(t.ngram_indexes.iter().max().map_or(0, |&m| m + 1));
            let shape = match x.rank() {
                Some(1) => Some(vec![out]),
                Some(2) => x.shape.as_ref().map(|s| vec![s[0].clone(), out]),
                Some(r) => crate::bail!("input must have rank 1 or 2, got {r}"),
                None => None,
            };
            one(with_dtype(Some(DType::F32), shape))
        }
        Op::AffineGrid { .. } => {
            let theta = input(inputs, 0)?;
            let size = const_ints(inputs.get(1).copied().flatten());
            let shape = match size {
                Some(s) if s.len() == 4 || s.len() == 5 => {
                    let r = s.len() - 2;
                    let mut o = vec![Dim::Known(s[0].max(0) as usize)];
                    o.extend(s[2..].iter().map(|&d| Dim::Known(d.max(0) as usize)));
                    o.push(Dim::Known(r));
                    Some(o)
                }
                Some(s) => crate::bail!("size {s:?} must have 4 or 5 entries"),
                None => None,
            };
            one(with_dtype(theta.dtype, shape))
        }
        Op::ConvTranspose(ct) => {
            let x = input(inputs, 0)?;
            let w = input(inputs, 1)?;
            let shape = match (&x.shape, w.concrete_shape()) {
                (Some(xs), Some(ws)) if xs.len() < 3 || ws.len() != xs.len() => crate::bail!(
                    "ConvTranspose input {} and weight {:?} ranks do not fit",
                    crate::graph::fmt_shape(xs),
                    ws
                ),
                (Some(xs), Some(ws)) => {
                    let r = xs.len() - 2;
                    let mut o = vec![xs[0].clone(), Dim::Known(ws[1] * ct.group.max(1))];
                    for i in 0..r {
                        let at = |v: &[usize], d: usize| v.get(i).copied().unwrap_or(d);
                        o.push(match (&ct.output_shape, &xs[i + 2]) {
                            (Some(os), _) => Dim::Known(at(os, 0)),
                            (None, Dim::Known(n)) => {
                                let s = at(&ct.strides, 1);
                                if matches!(
                                    ct.auto_pad,
                                    crate::op::AutoPad::SameUpper | crate::op::AutoPad::SameLower
                                ) && ct.pads.is_empty()
                                {
                                    Dim::Known(n * s)
                                } else {
                                    let full = s * n.saturating_sub(1)
                                        + at(&ct.output_padding, 0)
                                        + ws[i + 2].saturating_sub(1) * at(&ct.dilations, 1)
                                        + 1;
                                    Dim::Known(full.saturating_sub(
                                        at(&ct.pads, 0) + ct.pads.get(i + r).copied().unwrap_or(0),
                                    ))
                                }
                            }
                            _ => Dim::Sym(format!("convt_{i}")),
                        });
                    }
                    Some(o)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Det => {
            let x = input(inputs, 0)?;
            one(with_dtype(
                x.dtype,
                x.shape
                    .as_ref()
                    .map(|s| s[..s.len().saturating_sub(2)].to_vec()),
            ))
        }
        Op::ImageDecoder { format } => {
            let c = if *format == crate::op::PixelFormat::Grayscale {
                1
            } else {
                3
            };
            one(with_dtype(
                Some(DType::U8),
                Some(vec![
                    Dim::Sym("image_h".into()),
                    Dim::Sym("image_w".into()),
                    Dim::Known(c),
                ]),
            ))
        }
        Op::Unique { axis, .. } => {
            let x = input(inputs, 0)?;
            let y = match (axis, &x.shape) {
                (None, _) => Some(vec![Dim::Sym("unique".into())]),
                (Some(a), Some(s)) => {
                    let a = dim_axis(*a, s.len())?;
                    let mut o = s.clone();
                    o[a] = Dim::Sym("unique".into());
                    Some(o)
                }
                _ => None,
            };
            let mut v = vec![with_dtype(x.dtype, y)];
            for _ in 1..n_out {
                v.push(with_dtype(
                    Some(DType::I64),
                    Some(vec![Dim::Sym("unique_n".into())]),
                ));
            }
            Ok(v)
        }
        _ => Err(other_family(op, "misc")),
    }
}
