//! Evaluation: the model in inference form (BatchNorm with the running
//! statistics, Dropout as identity) with the trainer's current weights,
//! and the host-side loss and accuracy of a prediction.

use super::batch::{check_batch, count_correct, rows};
use super::{err, sample_shape, Loss, Metrics, Trainer};
use crate::{Error, SessionBuilder};
use hetflow_ops::{DType, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

impl Trainer {
    /// Loss and accuracy of the current weights on `x`, `y` (inference
    /// form, in batches of at most `batch` samples).
    pub fn evaluate(&self, x: &Tensor, y: &Tensor, batch: usize) -> Result<Metrics, Error> {
        let n = check_batch(x, y)?;
        let model = self.model()?;
        let mut metrics = Metrics::default();
        let mut correct = 0usize;
        let mut sessions: HashMap<usize, crate::Session> = HashMap::new();
        let mut at = 0;
        while at < n {
            let b = batch.max(1).min(n - at);
            let shape = sample_shape(&self.model, b)?;
            let s = match sessions.entry(b) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let mut sb = SessionBuilder::new(&model).input_shapes(vec![shape.clone()]);
                    if let Some(d) = &self.opts.devices {
                        sb = sb.devices(d);
                    }
                    if let Some(t) = self.opts.threads {
                        sb = sb.threads(t);
                    }
                    e.insert(sb.build()?)
                }
            };
            let xi = rows(x, at, b, &shape)?;
            let pred = s
                .run(vec![Arc::new(xi)])?
                .into_iter()
                .next()
                .ok_or_else(|| err("no output"))?;
            let yi = rows(y, at, b, &[b]).or_else(|_| rows(y, at, b, pred.shape()))?;
            let (l, c) = host_loss(self.opts.loss, &pred, &yi, self.looks_through_softmax())?;
            metrics.loss += l;
            correct += c;
            at += b;
        }
        metrics.loss /= n as f64;
        metrics.samples = n;
        metrics.accuracy = match self.opts.loss {
            Loss::CrossEntropy => correct as f64 / n as f64,
            Loss::Mse => f64::NAN,
        };
        Ok(metrics)
    }

    /// Whether the model's first output is a Softmax (probabilities) or a
    /// LogSoftmax, which the training loss looks through.
    fn looks_through_softmax(&self) -> Option<bool> {
        let out = *self.model.outputs.first()?;
        let p = self.model.producers()[out.0]?;
        match self.model.nodes[p.0].op {
            hetflow_ops::Op::Softmax { .. } => Some(false),
            hetflow_ops::Op::LogSoftmax { .. } => Some(true),
            _ => None,
        }
    }
}

/// Summed loss and correct count of a batch on the host, from the
/// model's prediction (`through`: Some(false) when it is a softmax's
/// probabilities, Some(true) a log-softmax, None logits).
fn host_loss(
    kind: Loss,
    pred: &Tensor,
    y: &Tensor,
    through: Option<bool>,
) -> Result<(f64, usize), Error> {
    let n = pred.shape().first().copied().unwrap_or(0);
    let v: Vec<f64> = pred.to_f32_vec().into_iter().map(f64::from).collect();
    match kind {
        Loss::CrossEntropy => {
            // The loss kernels, summed over the batch.
            use hetflow_ops::op::{LossReduction, Op};
            let sum = |op: Op, scores: &Tensor| -> Result<f64, Error> {
                let l = hetflow_ops::kernels::eval(&op, &[Some(scores), Some(y)], 1)?;
                Ok(l[0].cast(DType::F64).as_slice::<f64>()?[0])
            };
            let nll = Op::NllLoss {
                reduction: LossReduction::Sum,
                ignore_index: None,
            };
            let total = match through {
                None => {
                    let op = Op::SoftmaxCrossEntropy {
                        reduction: LossReduction::Sum,
                        ignore_index: None,
                    };
                    sum(op, pred)?
                }
                Some(true) => sum(nll, pred)?,
                Some(false) => {
                    let logp: Vec<f64> = v.iter().map(|p| p.max(1e-30).ln()).collect();
                    sum(nll, &Tensor::from_vec(pred.shape().to_vec(), logp)?)?
                }
            };
            Ok((total, count_correct(pred, y)?))
        }
        Loss::Mse => {
            let t: Vec<f64> = y.to_f32_vec().into_iter().map(f64::from).collect();
            if t.len() != v.len() {
                return Err(err("targets and predictions differ in size"));
            }
            let per = v.len().checked_div(n).unwrap_or(1);
            let s: f64 = v.iter().zip(&t).map(|(a, b)| (a - b) * (a - b)).sum();
            Ok((s / per as f64, 0))
        }
    }
}
