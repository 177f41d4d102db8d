//! Gradient of SoftmaxCrossEntropyLoss (from [`crate::autodiff`]) and its
//! backward op [`Op::SoftmaxCrossEntropyGrad`] (inference and host
//! kernel): `dScores = dLoss * w[label] * (softmax(scores) - onehot(label))`
//! per position, scaled by the reduction (`mean` divides by the summed
//! weights of the positions not ignored, as the forward pass does).

use crate::autodiff::{gy0, input, no_rule, Grad, Grads};
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Fact, Node, ValueId};
use crate::kernels::util::{input as tin, opt_input};
use crate::op::common::{input as fin, one, same};
use crate::op::{LossReduction, Op};
use crate::shape::numel;
use crate::tensor::Tensor;

/// The scores' gradient of a loss node.
pub(crate) fn grad(
    cx: &mut Grads,
    node: &Node,
    gys: &[Option<ValueId>],
    want: &[bool],
) -> Result<Grad> {
    let Op::SoftmaxCrossEntropy {
        reduction,
        ignore_index,
    } = &node.op
    else {
        return Err(no_rule(&node.op));
    };
    if gys.get(1).copied().flatten().is_some() {
        crate::bail!("the log-probability output of SoftmaxCrossEntropyLoss has no gradient rule");
    }
    if want.get(2).copied().unwrap_or(false) {
        crate::bail!("class weights of SoftmaxCrossEntropyLoss are not trainable");
    }
    let gl = gy0(gys)?;
    let op = Op::SoftmaxCrossEntropyGrad {
        reduction: *reduction,
        ignore_index: *ignore_index,
    };
    let ins = [
        Some(input(node, 0)?),
        Some(input(node, 1)?),
        node.inputs.get(2).copied().flatten(),
        Some(gl),
    ];
    Ok(vec![Some(cx.node("d_softmax_ce", op, &ins, 1)?[0])])
}

/// Facts of [`Op::SoftmaxCrossEntropyGrad`]: the scores'.
pub(crate) fn infer(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>> {
    one(same(fin(inputs, 0)?))
}

/// Host kernel of [`Op::SoftmaxCrossEntropyGrad`]: inputs scores
/// `[N, C, d..]`, labels `[N, d..]`, optional weights `[C]`, dLoss.
pub(crate) fn softmax_ce_grad(
    reduction: LossReduction,
    ignore: Option<i64>,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = tin(inputs, 0, "scores")?;
    let labels = tin(inputs, 1, "labels")?;
    let gl = tin(inputs, 3, "dLoss")?;
    if !x.dtype().is_float() || !gl.dtype().is_float() {
        crate::bail!("scores and dLoss must be float tensors");
    }
    let s = x.shape();
    if s.len() < 2 {
        crate::bail!("scores must be [N, C, ...], got {s:?}");
    }
    let (n, c, inner) = (s[0], s[1], numel(&s[2..]));
    let mut ls = vec![n];
    ls.extend(&s[2..]);
    if labels.shape() != ls.as_slice() || !matches!(labels.dtype(), DType::I32 | DType::I64) {
        crate::bail!(
            "labels must be i32/i64 of shape {ls:?}, got {} {:?}",
            labels.dtype(),
            labels.shape()
        );
    }
    let t = labels.to_i64_vec();
    let w: Option<Vec<f64>> = match opt_input(inputs, 2) {
        Some(w) if w.len() != c => {
            crate::bail!("weights have {} elements for {c} classes", w.len())
        }
        Some(w) => Some(w.cast(DType::F64).into_vec::<f64>()?),
        None => None,
    };
    let g = gl.cast(DType::F64).into_vec::<f64>()?;
    let per_position = reduction == LossReduction::None;
    if per_position && g.len() != n * inner || !per_position && g.len() != 1 {
        crate::bail!(
            "dLoss has {} elements, the loss {}",
            g.len(),
            if per_position { n * inner } else { 1 }
        );
    }
    let xv = x.cast(DType::F64).into_vec::<f64>()?;
    let mut gx = vec![0.0; xv.len()];
    let mut wsum = 0.0;
    for b in 0..n {
        for i in 0..inner {
            let p = b * inner + i;
            let tc = t[p];
            if Some(tc) == ignore {
                continue;
            }
            if tc < 0 || tc as usize >= c {
                crate::bail!("label {tc} out of range for {c} classes");
            }
            let tc = tc as usize;
            let wt = w.as_ref().map_or(1.0, |w| w[tc]);
            wsum += wt;
            let at = |k: usize| (b * c + k) * inner + i;
            let m = (0..c).map(|k| xv[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = (0..c).map(|k| (xv[at(k)] - m).exp()).sum();
            let coef = wt * if per_position { g[p] } else { g[0] };
            for k in 0..c {
                let pk = (xv[at(k)] - m).exp() / z;
                gx[at(k)] = coef * (pk - if k == tc { 1.0 } else { 0.0 });
            }
        }
    }
    if reduction == LossReduction::Mean && wsum != 0.0 {
        gx.iter_mut().for_each(|v| *v /= wsum);
    }
    Ok(Tensor::from_vec(s.to_vec(), gx)?.cast(x.dtype()))
}

#[cfg(test)]
mod tests {
    use crate::autodiff::check::{check, diff, Arg};
    use crate::op::{LossReduction, Op};
    use crate::Tensor;

    #[test]
    fn softmax_cross_entropy_gradient_for_each_reduction_weights_and_ignore() {
        let labels = Tensor::from_vec(vec![4], vec![0i64, 2, 1, 2]).unwrap();
        for reduction in [LossReduction::Mean, LossReduction::Sum, LossReduction::None] {
            for ignore_index in [None, Some(1)] {
                let op = Op::SoftmaxCrossEntropy {
                    reduction,
                    ignore_index,
                };
                check(
                    op.clone(),
                    vec![diff(&[4, 3], 1), Arg::Const(labels.clone())],
                    1,
                );
                let w = Tensor::from_vec(vec![3], vec![0.5f32, 2.0, 1.0]).unwrap();
                let args = vec![diff(&[4, 3], 2), Arg::Const(labels.clone()), Arg::Const(w)];
                check(op, args, 1);
            }
        }
        // Spatial labels: scores [N, C, d].
        let labels = Tensor::from_vec(vec![2, 3], vec![0i64, 1, 1, 0, 1, 0]).unwrap();
        let op = Op::SoftmaxCrossEntropy {
            reduction: LossReduction::Mean,
            ignore_index: None,
        };
        check(op, vec![diff(&[2, 2, 3], 3), Arg::Const(labels)], 1);
    }
}
