//! Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss, on f32
//! and f64 (f16 / bf16 widened by the dispatcher), computed in f64.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input, out};
use crate::op::LossReduction;
use crate::shape::numel;
use crate::tensor::Tensor;

/// `-logp[n, t, d] * w[t]` for every target position, reduced. `logp` is
/// `[N, C, d..]` flattened, `targets` `[N, d..]`.
fn nll(
    name: &str,
    logp: &[f64],
    shape: &[usize],
    targets: &Tensor,
    weight: Option<&Tensor>,
    reduction: LossReduction,
    ignore: Option<i64>,
) -> Result<(Vec<usize>, Vec<f64>)> {
    if shape.len() < 2 {
        crate::bail!("{name}: input must be [N, C, ...], got {:?}", shape);
    }
    let (n, c) = (shape[0], shape[1]);
    let inner = numel(&shape[2..]);
    let mut tshape = vec![n];
    tshape.extend(&shape[2..]);
    if targets.shape() != tshape.as_slice() {
        crate::bail!(
            "{name}: target shape {:?}, expected {:?}",
            targets.shape(),
            tshape
        );
    }
    if !matches!(targets.dtype(), DType::I32 | DType::I64) {
        crate::bail!("{name}: target must be i32 or i64, got {}", targets.dtype());
    }
    let t = targets.to_i64_vec();
    let w: Option<Vec<f64>> = match weight {
        Some(w) => {
            if w.len() != c {
                crate::bail!("{name}: weight has {} elements for {c} classes", w.len());
            }
            let w = w.cast(DType::F64);
            Some(w.as_slice::<f64>()?.to_vec())
        }
        None => None,
    };
    let mut loss = vec![0f64; n * inner];
    let mut wsum = 0f64;
    for b in 0..n {
        for i in 0..inner {
            let p = b * inner + i;
            let tc = t[p];
            if Some(tc) == ignore {
                continue;
            }
            if tc < 0 || tc as usize >= c {
                crate::bail!("{name}: target {tc} out of range for {c} classes");
            }
            let tc = tc as usize;
            let wt = w.as_ref().map_or(1.0, |w| w[tc]);
            loss[p] = -logp[(b * c + tc) * inner + i] * wt;
            wsum += wt;
        }
    }
    Ok(match reduction {
        LossReduction::None => (tshape, loss),
        LossReduction::Sum => (vec![], vec![loss.iter().sum()]),
        LossReduction::Mean => (vec![], vec![loss.iter().sum::<f64>() / wsum]),
    })
}

fn float_input<'a>(inputs: &[Option<&'a Tensor>], name: &str) -> Result<(&'a Tensor, Tensor)> {
    let x = input(inputs, 0, "input")?;
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        crate::bail!("{name} needs a float tensor, got {}", x.dtype());
    }
    Ok((x, x.cast(DType::F64)))
}

/// NegativeLogLikelihoodLoss: inputs log-probabilities, targets, optional
/// class weights.
pub(crate) fn nll_loss(
    reduction: LossReduction,
    ignore: Option<i64>,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let name = "NegativeLogLikelihoodLoss";
    let (x, wide) = float_input(inputs, name)?;
    let (shape, loss) = nll(
        name,
        wide.as_slice::<f64>()?,
        x.shape(),
        input(inputs, 1, "target")?,
        opt_input(inputs, 2),
        reduction,
        ignore,
    )?;
    Ok(out(shape, loss)?.cast(x.dtype()))
}

/// SoftmaxCrossEntropyLoss: log-softmax over dim 1 of the scores, then the
/// NLL of the labels; the second output, when asked, is the log-softmax.
pub(crate) fn softmax_cross_entropy(
    reduction: LossReduction,
    ignore: Option<i64>,
    inputs: &[Option<&Tensor>],
    n_out: usize,
) -> Result<Vec<Tensor>> {
    let name = "SoftmaxCrossEntropyLoss";
    let (x, wide) = float_input(inputs, name)?;
    let s = x.shape();
    if s.len() < 2 {
        crate::bail!("{name}: scores must be [N, C, ...], got {:?}", s);
    }
    let (n, c, inner) = (s[0], s[1], numel(&s[2..]));
    let mut lp = wide.as_slice::<f64>()?.to_vec();
    for b in 0..n {
        for i in 0..inner {
            let at = |k: usize| (b * c + k) * inner + i;
            let m = (0..c).map(|k| lp[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..c).map(|k| (lp[at(k)] - m).exp()).sum();
            let ls = m + sum.ln();
            for k in 0..c {
                lp[at(k)] -= ls;
            }
        }
    }
    let (shape, loss) = nll(
        name,
        &lp,
        s,
        input(inputs, 1, "labels")?,
        opt_input(inputs, 2),
        reduction,
        ignore,
    )?;
    let mut outs = vec![out(shape, loss)?.cast(x.dtype())];
    if n_out > 1 {
        outs.push(out(s.to_vec(), lp)?.cast(x.dtype()));
    }
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::t;
    use crate::op::{LossReduction, Op};

    #[test]
    fn softmax_cross_entropy_matches_f64_reference() {
        // 2 samples, 3 classes, second label ignored: mean over one sample.
        let x = vec![1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0];
        let scores = t(&[2, 3], x.clone());
        let labels = t(&[2], vec![1i64, 2]);
        let op = Op::SoftmaxCrossEntropy {
            reduction: LossReduction::Mean,
            ignore_index: Some(2),
        };
        let o = eval(&op, &[Some(&scores), Some(&labels)], 2).unwrap();
        let row: Vec<f64> = x[..3].iter().map(|&v| v as f64).collect();
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        let want = -(row[1] - lse);
        let got = o[0].as_slice::<f32>().unwrap()[0] as f64;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert_eq!(o[1].shape(), &[2, 3]);
        // NLL with weights, sum reduction.
        let logp = t(&[2, 3], vec![-1.0f64, -2.0, -3.0, -0.5, -1.5, -2.5]);
        let w = t(&[3], vec![0.5f64, 2.0, 1.0]);
        let tg = t(&[2], vec![2i64, 0]);
        let op = Op::NllLoss {
            reduction: LossReduction::Sum,
            ignore_index: None,
        };
        let o = eval(&op, &[Some(&logp), Some(&tg), Some(&w)], 1).unwrap();
        assert_eq!(o[0].as_slice::<f64>().unwrap(), &[3.0 * 1.0 + 0.5 * 0.5]);
        let bad = t(&[2], vec![3i64, 0]);
        assert!(eval(&op, &[Some(&logp), Some(&bad), Some(&w)], 1).is_err());
    }
}
