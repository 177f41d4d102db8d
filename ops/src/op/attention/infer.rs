//! Shape and dtype inference of the attention ops (from
//! [`crate::infer::infer_op`]).

use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{check_same_dtype, input, one, other_family, with_dtype};
use crate::op::Op;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::Attention(at) => {
            let q = input(inputs, 0)?;
            let v = input(inputs, 2)?;
            if let Some(d) = q.dtype {
                if !d.is_float() {
                    crate::bail!("Q must be a float tensor, got {d}");
                }
            }
            let known = |f: &Fact| f.concrete_shape();
            let y = match (known(q), known(v)) {
                (Some(qs), Some(vs)) if qs.len() == 4 && vs.len() == 4 => Some(vec![
                    Dim::Known(qs[0]),
                    Dim::Known(qs[1]),
                    Dim::Known(qs[2]),
                    Dim::Known(vs[3]),
                ]),
                (Some(qs), Some(vs)) if qs.len() == 3 && vs.len() == 3 => {
                    match (at.q_num_heads, at.kv_num_heads) {
                        (Some(qh), Some(kvh)) if vs[2] % kvh == 0 => Some(vec![
                            Dim::Known(qs[0]),
                            Dim::Known(qs[1]),
                            Dim::Known(qh * (vs[2] / kvh)),
                        ]),
                        _ => None,
                    }
                }
                _ => None,
            };
            // present_key / present_value: the past and this K / V along
            // the sequence, `[B, Hkv, P + S, D]`; qk_matmul_output `[B, Hq,
            // L, P + S]`. Known when the shapes (and 3-D heads) are.
            let k = input(inputs, 1)?;
            let heads4 = |f: &Fact, heads: Option<usize>| -> Option<[usize; 4]> {
                let s = f.concrete_shape()?;
                match (s.len(), heads) {
                    (4, _) => Some([s[0], s[1], s[2], s[3]]),
                    (3, Some(h)) if h > 0 && s[2] % h == 0 => Some([s[0], h, s[1], s[2] / h]),
                    _ => None,
                }
            };
            let past = |i: usize| match crate::op::common::opt_input(inputs, i) {
                None => Some(0),
                Some(p) => p.concrete_shape().filter(|s| s.len() == 4).map(|s| s[2]),
            };
            let kv = |f: &Fact, past_slot: usize| -> Option<Vec<Dim>> {
                let [b, h, s, d] = heads4(f, at.kv_num_heads)?;
                Some([b, h, past(past_slot)? + s, d].map(Dim::Known).to_vec())
            };
            let qk = match (heads4(q, at.q_num_heads), kv(k, 4)) {
                (Some([b, h, l, _]), Some(ks)) => Some(vec![
                    Dim::Known(b),
                    Dim::Known(h),
                    Dim::Known(l),
                    ks[2].clone(),
                ]),
                _ => None,
            };
            let mut outs = vec![with_dtype(q.dtype, y)];
            for i in 1..n_out {
                let shape = match i {
                    1 => kv(k, 4),
                    2 => kv(v, 5),
                    _ => qk.clone(),
                };
                outs.push(with_dtype(q.dtype, shape));
            }
            Ok(outs)
        }
        Op::FlexAttention(_) => {
            let (q, k, v) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
            let dt = check_same_dtype(&[q, k, v], "Q, K and V")?;
            if let Some(d) = dt.filter(|d| !d.is_float()) {
                crate::bail!("Q, K and V must be float tensors, got {d}");
            }
            for (f, what) in [(q, "Q"), (k, "K"), (v, "V")] {
                if let Some(r) = f.rank().filter(|&r| r != 4) {
                    crate::bail!("{what} must be 4-D [B, H, L, E], got rank {r}");
                }
            }
            let y = match (&q.shape, &v.shape) {
                (Some(qs), Some(vs)) => Some(vec![
                    qs[0].clone(),
                    qs[1].clone(),
                    qs[2].clone(),
                    vs[3].clone(),
                ]),
                _ => None,
            };
            one(with_dtype(dt, y))
        }
        _ => Err(other_family(op, "attention")),
    }
}
