//! Shape and dtype inference of the loss ops (from [`crate::infer::infer_op`]).

use crate::dtype::DType;
use crate::error::Result;
use crate::graph::Fact;
use crate::op::common::{input, other_family, same, with_dtype};
use crate::op::Op;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::NllLoss { reduction, .. } | Op::SoftmaxCrossEntropy { reduction, .. } => {
            let x = input(inputs, 0)?;
            let t = input(inputs, 1)?;
            if let Some(d) = x.dtype {
                if !d.is_float() {
                    crate::bail!("input 0 must be a float tensor, got {d}");
                }
            }
            if let Some(d) = t.dtype {
                if d != DType::I64 && d != DType::I32 {
                    crate::bail!("target must be i32 or i64, got {d}");
                }
            }
            let loss_shape = match reduction {
                crate::op::LossReduction::None => t.shape.clone(),
                _ => Some(vec![]),
            };
            let mut v = vec![with_dtype(x.dtype, loss_shape)];
            if n_out > 1 {
                v.push(same(x));
            }
            Ok(v)
        }
        Op::SoftmaxCrossEntropyGrad { .. } => super::grad::infer(inputs),
        _ => Err(other_family(op, "loss")),
    }
}
