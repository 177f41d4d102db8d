//! Shape and dtype inference of the recurrent ops (from
//! [`crate::infer::infer_op`]).

use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{input, other_family, with_dtype};
use crate::op::Op;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::Rnn(ra) => {
            let x = input(inputs, 0)?;
            let dirs = if ra.direction == 2 { 2 } else { 1 };
            let h = Dim::Known(ra.hidden);
            let (y, st) = match &x.shape {
                Some(s) if s.len() == 3 => {
                    let (seq, batch) = if ra.batch_major {
                        (s[1].clone(), s[0].clone())
                    } else {
                        (s[0].clone(), s[1].clone())
                    };
                    let d = Dim::Known(dirs);
                    if ra.batch_major {
                        (
                            Some(vec![batch.clone(), seq, d.clone(), h.clone()]),
                            Some(vec![batch, d, h]),
                        )
                    } else {
                        (
                            Some(vec![seq, d.clone(), batch.clone(), h.clone()]),
                            Some(vec![d, batch, h]),
                        )
                    }
                }
                Some(s) => crate::bail!("X must be 3-D, got {}", crate::graph::fmt_shape(s)),
                None => (None, None),
            };
            let mut v = vec![with_dtype(x.dtype, y)];
            for _ in 1..n_out {
                v.push(with_dtype(x.dtype, st.clone()));
            }
            Ok(v)
        }
        _ => Err(other_family(op, "rnn")),
    }
}
