//! Shape and dtype inference of the sequence-model ops (from
//! [`crate::infer::infer_op`]).

use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{input, one, opt_input, other_family, same, with_dtype};
use crate::op::Op;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::LinearAttention {
            q_num_heads,
            kv_num_heads,
            ..
        } => {
            let q = input(inputs, 0)?;
            let v = input(inputs, 2)?;
            let (qs, vs) = (q.concrete_shape(), v.concrete_shape());
            let (y, st) = match (qs, vs) {
                (Some(qs), Some(vs)) if qs.len() == 3 && vs.len() == 3 && *kv_num_heads > 0 => {
                    let dv = vs[2] / kv_num_heads;
                    let dk = qs[2] / (*q_num_heads).max(1);
                    (
                        Some(vec![
                            Dim::Known(qs[0]),
                            Dim::Known(qs[1]),
                            Dim::Known(q_num_heads * dv),
                        ]),
                        Some(vec![
                            Dim::Known(qs[0]),
                            Dim::Known(*kv_num_heads),
                            Dim::Known(dk),
                            Dim::Known(dv),
                        ]),
                    )
                }
                _ => (None, None),
            };
            let sdt = opt_input(inputs, 3).and_then(|p| p.dtype).or(q.dtype);
            let mut v = vec![with_dtype(q.dtype, y)];
            if n_out > 1 {
                v.push(with_dtype(sdt, st));
            }
            Ok(v)
        }
        Op::CausalConvWithState { .. } => {
            let x = input(inputs, 0)?;
            let w = input(inputs, 1)?;
            let st = match (&x.shape, w.concrete_shape()) {
                (Some(s), Some(ws)) if s.len() == 3 && ws.len() == 3 && ws[2] > 0 => {
                    Some(vec![s[0].clone(), s[1].clone(), Dim::Known(ws[2] - 1)])
                }
                _ => None,
            };
            let mut v = vec![same(x)];
            if n_out > 1 {
                v.push(with_dtype(x.dtype, st));
            }
            Ok(v)
        }
        Op::TensorScatter { .. } | Op::SwiGlu { .. } => one(same(input(inputs, 0)?)),
        _ => Err(other_family(op, "seq")),
    }
}
