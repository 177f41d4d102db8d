//! Shape and dtype inference of the normalisation ops (from
//! [`crate::infer::infer_op`]).

use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{input, one, other_family, same, with_dtype};
use crate::op::Op;
use crate::shape::norm_axis;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::Lrn { .. }
        | Op::BatchNorm { .. }
        | Op::LayerNorm { .. }
        | Op::RmsNorm { .. }
        | Op::Hardmax { .. }
        | Op::RotaryEmbedding { .. }
        | Op::LpNorm { .. }
        | Op::MeanVarianceNorm { .. }
        | Op::InstanceNorm { .. }
        | Op::GroupNorm { .. } => {
            let x = input(inputs, 0)?;
            if let Some(d) = x.dtype {
                if !d.is_float() {
                    crate::bail!("input 0 must be a float tensor, got {d}");
                }
            }
            if let Op::LayerNorm { axis, .. } | Op::RmsNorm { axis, .. } = op {
                if let Some(r) = x.rank() {
                    norm_axis(*axis, r)?;
                }
            }
            if let (Op::LayerNorm { axis, .. }, true) = (op, n_out > 1) {
                // Mean and InvStdDev: the reduced dims kept as 1.
                let stat = match &x.shape {
                    Some(s) => {
                        let a = norm_axis(*axis, s.len())?;
                        let mut st = s[..a].to_vec();
                        st.extend(std::iter::repeat_n(Dim::Known(1), s.len() - a));
                        Some(st)
                    }
                    None => None,
                };
                let mut v = vec![same(x)];
                for _ in 1..n_out.min(3) {
                    v.push(with_dtype(x.dtype, stat.clone()));
                }
                return Ok(v);
            }
            one(same(x))
        }
        Op::SoftmaxGrad { .. }
        | Op::LayerNormGrad { .. }
        | Op::BatchNormTrain { .. }
        | Op::BatchNormGrad => super::grad::infer(op, inputs, n_out),
        _ => Err(other_family(op, "norm")),
    }
}
