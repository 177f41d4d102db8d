//! Shape and dtype inference of the quantisation ops (from
//! [`crate::infer::infer_op`]).

use crate::dtype::DType;
use crate::error::Result;
use crate::graph::Fact;
use crate::op::common::{input, one, opt_input, other_family, with_dtype};
use crate::op::Op;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::QuantizeLinear { dtype, .. } => {
            let x = input(inputs, 0)?;
            let dt = opt_input(inputs, 2)
                .and_then(|z| z.dtype)
                .or(*dtype)
                .or(Some(DType::U8));
            one(with_dtype(dt, x.shape.clone()))
        }
        Op::DequantizeLinear { dtype, .. } => {
            let x = input(inputs, 0)?;
            let scale = input(inputs, 1)?;
            one(with_dtype(dtype.or(scale.dtype), x.shape.clone()))
        }
        Op::DynamicQuantizeLinear => {
            let x = input(inputs, 0)?;
            Ok(vec![
                with_dtype(Some(DType::U8), x.shape.clone()),
                with_dtype(Some(DType::F32), Some(vec![])),
                with_dtype(Some(DType::U8), Some(vec![])),
            ])
        }
        Op::BitCast { to } => {
            let x = input(inputs, 0)?;
            if let Some(d) = x.dtype {
                if d.size() != to.size() {
                    crate::bail!("BitCast from {d} to {to}: element sizes differ");
                }
            }
            one(with_dtype(Some(*to), x.shape.clone()))
        }
        _ => Err(other_family(op, "quant")),
    }
}
