//! Shape and dtype inference of the `ai.onnx.ml` ops (from
//! [`crate::infer::infer_op`]).

use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{input, one, other_family, same, with_dtype};
use crate::op::Op;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::Binarizer { .. } => {
            let x = input(inputs, 0)?;
            if let Some(d) = x
                .dtype
                .filter(|d| d.is_narrow_float() || *d == crate::DType::Bool)
            {
                crate::bail!("X must be a float or integer tensor, got {d}");
            }
            one(same(x))
        }
        Op::ArrayFeatureExtractor => {
            let (x, y) = (input(inputs, 0)?, input(inputs, 1)?);
            if let Some(d) = y.dtype.filter(|&d| d != crate::DType::I64) {
                crate::bail!("Y (the indices) must be i64, got {d}");
            }
            let count = y.concrete_shape().map(|s| s.iter().product::<usize>());
            let shape = match (&x.shape, count) {
                (Some(xs), Some(c)) if xs.len() <= 1 => Some(vec![Dim::Known(1), Dim::Known(c)]),
                (Some(xs), Some(c)) => {
                    let mut s = xs[..xs.len() - 1].to_vec();
                    s.push(Dim::Known(c));
                    Some(s)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::TreeEnsemble(t) => {
            let x = input(inputs, 0)?;
            if let Some(d) = x.dtype.filter(|d| !d.is_float()) {
                crate::bail!("X must be a float tensor, got {d}");
            }
            if let Some(r) = x.rank().filter(|&r| r != 2) {
                crate::bail!("X must be 2-D [N, features], got rank {r}");
            }
            let shape = x
                .shape
                .as_ref()
                .map(|s| vec![s[0].clone(), Dim::Known(t.n_targets)]);
            one(with_dtype(x.dtype, shape))
        }
        _ => Err(other_family(op, "ml")),
    }
}
