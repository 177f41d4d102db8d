//! Shape and dtype inference of the pooling ops (from
//! [`crate::infer::infer_op`]).

use super::kernel::unpool_dim;
use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{input, one, other_family, with_dtype};
use crate::op::conv::infer::resolve_window_dims;
use crate::op::Op;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::MaxUnpool {
            kernel_shape,
            strides,
            pads,
        } => {
            let x = input(inputs, 0)?;
            let given = inputs
                .get(2)
                .copied()
                .flatten()
                .and_then(|f| f.value.as_ref())
                .map(|t| t.to_i64_vec());
            let shape = match (given, &x.shape) {
                (Some(s), _) => Some(s.iter().map(|&d| Dim::Known(d.max(0) as usize)).collect()),
                (None, Some(xs)) if xs.len() == kernel_shape.len() + 2 => {
                    let mut o = xs[..2].to_vec();
                    for (i, d) in xs[2..].iter().enumerate() {
                        o.push(match d {
                            Dim::Known(n) => {
                                Dim::Known(unpool_dim(*n, i, kernel_shape, strides, pads))
                            }
                            Dim::Sym(s) => Dim::Sym(format!("{s}_unpooled")),
                        });
                    }
                    Some(o)
                }
                (None, Some(xs)) => crate::bail!(
                    "kernel {:?} does not fit input {}",
                    kernel_shape,
                    crate::graph::fmt_shape(xs)
                ),
                (None, None) => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::MaxPool(p)
        | Op::AveragePool(p)
        | Op::LpPool { pool: p, .. }
        | Op::MaxPoolIndices { pool: p, .. } => {
            let x = input(inputs, 0)?;
            let shape = match &x.shape {
                Some(xs) => {
                    if xs.len() != p.kernel_shape.len() + 2 {
                        crate::bail!(
                            "pool kernel {:?} does not fit input {}",
                            p.kernel_shape,
                            crate::graph::fmt_shape(xs)
                        );
                    }
                    let mut out = xs[..2].to_vec();
                    out.extend(resolve_window_dims(
                        &xs[2..],
                        &p.kernel_shape,
                        &p.strides,
                        &p.dilations,
                        &p.pads,
                        p.auto_pad,
                        p.ceil_mode,
                    )?);
                    Some(out)
                }
                None => None,
            };
            if matches!(op, Op::MaxPoolIndices { .. }) {
                return Ok(vec![
                    with_dtype(x.dtype, shape.clone()),
                    with_dtype(Some(crate::DType::I64), shape),
                ]);
            }
            one(with_dtype(x.dtype, shape))
        }
        Op::RoiAlign(a) => {
            let (x, rois) = (input(inputs, 0)?, input(inputs, 1)?);
            if let Some(r) = x.rank().filter(|&r| r != 4) {
                crate::bail!("RoiAlign: X must be 4-D [N, C, H, W], got rank {r}");
            }
            let shape = match (&x.shape, &rois.shape) {
                (Some(xs), Some(rs)) if !rs.is_empty() => Some(vec![
                    rs[0].clone(),
                    xs[1].clone(),
                    Dim::Known(a.output[0]),
                    Dim::Known(a.output[1]),
                ]),
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            let x = input(inputs, 0)?;
            let shape = x.shape.as_ref().map(|s| {
                s.iter()
                    .enumerate()
                    .map(|(i, d)| if i < 2 { d.clone() } else { Dim::Known(1) })
                    .collect()
            });
            one(with_dtype(x.dtype, shape))
        }
        Op::PoolGrad { .. } => super::grad::infer(inputs),
        _ => Err(other_family(op, "pool")),
    }
}
