//! Training: [`Trainer`] runs the backward pass that
//! [`hetflow_ops::autodiff`] builds, on the same sessions, devices and
//! scheduler as inference, and updates the weights with an [`optim`]
//! optimizer.
//!
//! Design (recorded here because DESIGN.md predates training):
//! - One step is one run of the training graph ([`graph`]): forward, loss
//!   and backward are ordinary nodes, so a device spec or a plan places
//!   them like any other graph. The weights are inputs of that graph; the
//!   trainer holds the f32 master copy, feeds it each step, receives the
//!   gradients as outputs and applies the optimizer on the host.
//! - A session is built once per batch shape. An epoch's last partial
//!   batch is dropped (the samples are reshuffled every epoch, so none is
//!   left out for long).
//! - Evaluation runs the model in inference form (BatchNorm with the
//!   running statistics, Dropout as identity) with the current weights.
//! - `accumulate(m)` splits a batch into m micro-batches, runs them
//!   through the session as one stream (pipelined over the plan's stages)
//!   and averages their gradients before the optimizer step, which is
//!   the gradient of the whole batch for a mean loss.
//! - Checkpoints are safetensors files: the weights, running statistics
//!   and optimizer moments, with the step count in the metadata.

pub mod checkpoint;
pub mod data;
pub mod graph;
pub mod optim;

pub use graph::Loss;

use crate::{Error, Model, SessionBuilder};
use hetflow_ops::graph::Graph;
use hetflow_ops::{DType, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// What a step or an evaluation measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Mean loss over the samples.
    pub loss: f64,
    /// Share of samples whose arg-max prediction is the label
    /// (cross-entropy only; NaN for MSE).
    pub accuracy: f64,
    /// Samples counted.
    pub samples: usize,
}

/// Settings of a [`Trainer`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The loss.
    pub loss: Loss,
    /// The optimizer.
    pub optimizer: optim::Config,
    /// Device list (`hetflow run --device` syntax); None: the CPU.
    pub devices: Option<String>,
    /// Threads per CPU device.
    pub threads: Option<usize>,
    /// Micro-batches per step (gradients averaged over them).
    pub microbatches: usize,
    /// Seed of dropout masks (shuffling has its own, in [`data`]).
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            loss: Loss::CrossEntropy,
            optimizer: optim::Config::sgd(0.01, 0.9),
            devices: None,
            threads: None,
            microbatches: 1,
            seed: 0,
        }
    }
}

/// A compiled training step for one batch shape.
struct Step {
    shape: Vec<usize>,
    session: crate::Session,
    tg: graph::TrainGraph,
}

/// Trains a model's weights (module docs).
pub struct Trainer {
    model: Graph,
    opts: TrainOptions,
    names: Vec<String>,
    weights: Vec<Vec<f32>>,
    shapes: Vec<Vec<usize>>,
    stats: HashMap<String, Tensor>,
    optimizer: optim::Optimizer,
    step: Option<Step>,
}

fn err(m: impl Into<String>) -> Error {
    Error::Setting(m.into())
}

impl Trainer {
    /// A trainer for `model` (load it with
    /// [`Model::load_unoptimized`]: the load-time rewrites fold
    /// BatchNorm into Conv, which training must not).
    pub fn new(model: &Model, opts: TrainOptions) -> Result<Trainer, Error> {
        if opts.microbatches == 0 {
            return Err(err("microbatches must be at least 1"));
        }
        let g = (**model.graph()).clone();
        // The trainable weights: build a graph for batch 1 to find them.
        let probe = graph::build(&g, &sample_shape(&g, 1)?, opts.loss)?;
        let mut weights = Vec::new();
        let mut shapes = Vec::new();
        for name in &probe.params {
            let t = constant(&g, name)?;
            if t.dtype() != DType::F32 {
                return Err(err(format!(
                    "weight '{name}' is {}; training keeps f32 master weights",
                    t.dtype()
                )));
            }
            shapes.push(t.shape().to_vec());
            weights.push(t.to_f32_vec());
        }
        let mut stats = HashMap::new();
        for name in &probe.state {
            stats.insert(name.clone(), constant(&g, name)?);
        }
        let sizes: Vec<usize> = weights.iter().map(|w| w.len()).collect();
        Ok(Trainer {
            optimizer: optim::Optimizer::new(opts.optimizer, &sizes),
            names: probe.params,
            weights,
            shapes,
            stats,
            model: g,
            opts,
            step: None,
        })
    }

    /// Names of the trained weights, in a fixed order.
    pub fn param_names(&self) -> &[String] {
        &self.names
    }

    /// The current value of every trained weight and running statistic.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>, Error> {
        let mut v = Vec::new();
        for ((n, w), s) in self.names.iter().zip(&self.weights).zip(&self.shapes) {
            v.push((n.clone(), Tensor::from_vec(s.clone(), w.clone())?));
        }
        let mut st: Vec<_> = self
            .stats
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        st.sort_by(|a, b| a.0.cmp(&b.0));
        v.extend(st);
        Ok(v)
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.optimizer.step
    }

    /// The optimizer (settings, step count and moments).
    pub fn optimizer_mut(&mut self) -> &mut optim::Optimizer {
        &mut self.optimizer
    }

    fn session(&mut self, batch: usize) -> Result<&mut Step, Error> {
        let mb = batch / self.opts.microbatches;
        if mb == 0 || !batch.is_multiple_of(self.opts.microbatches) {
            return Err(err(format!(
                "a batch of {batch} does not split into {} equal micro-batches",
                self.opts.microbatches
            )));
        }
        let shape = sample_shape(&self.model, mb)?;
        if self.step.as_ref().is_none_or(|s| s.shape != shape) {
            let tg = graph::build(&self.model, &shape, self.opts.loss)?;
            if tg.params != self.names {
                return Err(err("the trained weights differ between batch sizes"));
            }
            let model = Model::from_graph(tg.graph.clone());
            let mut b = SessionBuilder::new(&model);
            if let Some(d) = &self.opts.devices {
                b = b.devices(d);
            }
            if let Some(t) = self.opts.threads {
                b = b.threads(t);
            }
            let session = b.build()?;
            self.step = Some(Step { shape, session, tg });
        }
        Ok(self.step.as_mut().expect("built above"))
    }

    /// One optimizer step on a batch: `x` holds the samples along axis 0,
    /// `y` the labels (i64, cross-entropy) or targets (MSE). Returns the
    /// batch's loss and accuracy before the update.
    pub fn step(&mut self, x: &Tensor, y: &Tensor) -> Result<Metrics, Error> {
        let n = check_batch(x, y)?;
        let m = self.opts.microbatches;
        let seed =
            (self.opts.seed ^ self.optimizer.step.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as i64;
        let weights: Vec<Arc<Tensor>> = self
            .weights
            .iter()
            .zip(&self.shapes)
            .map(|(w, s)| Tensor::from_vec(s.clone(), w.clone()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let loss_kind = self.opts.loss;
        let stats_now = self.stats.clone();
        let step = self.session(n)?;
        let tg = &step.tg;
        let stats: Vec<Arc<Tensor>> = tg
            .state
            .iter()
            .map(|k| {
                stats_now
                    .get(k)
                    .cloned()
                    .map(Arc::new)
                    .ok_or_else(|| err(format!("no running statistic '{k}'")))
            })
            .collect::<Result<_, _>>()?;
        let mb = n / m;
        let mut feeds = Vec::with_capacity(m);
        for i in 0..m {
            let xi = rows(x, i * mb, mb, &step.shape)?;
            let yi = rows(y, i * mb, mb, &tg.target_shape)?;
            if yi.dtype() != tg.target_dtype {
                return Err(err(format!(
                    "the targets are {}, the {:?} loss needs {}",
                    yi.dtype(),
                    loss_kind,
                    tg.target_dtype
                )));
            }
            let mut f = vec![Arc::new(xi), Arc::new(yi)];
            if tg.seeded {
                f.push(Arc::new(Tensor::scalar(seed.wrapping_add(i as i64))));
            }
            f.extend(stats.iter().cloned());
            f.extend(weights.iter().cloned());
            feeds.push(f);
        }
        let n_params = tg.params.len();
        let state_names = tg.state.clone();
        let outs = step.session.run_stream(feeds)?;
        // Average over the micro-batches.
        let mut grads: Vec<Vec<f32>> = self.weights.iter().map(|w| vec![0.0; w.len()]).collect();
        let mut new_stats: Vec<Vec<f64>> = Vec::new();
        let mut metrics = Metrics::default();
        for o in &outs {
            metrics.loss += o[0].cast(DType::F64).to_f32_vec()[0] as f64 / m as f64;
            for (g, t) in grads.iter_mut().zip(&o[2..2 + n_params]) {
                let v = t.to_f32_vec();
                if v.len() != g.len() {
                    return Err(err("a gradient's size differs from its weight's"));
                }
                for (a, b) in g.iter_mut().zip(v) {
                    *a += b / m as f32;
                }
            }
            for (k, t) in o[2 + n_params..].iter().enumerate() {
                let v: Vec<f64> = t.to_f32_vec().into_iter().map(f64::from).collect();
                if new_stats.len() <= k {
                    new_stats.push(vec![0.0; v.len()]);
                }
                for (a, b) in new_stats[k].iter_mut().zip(v) {
                    *a += b / m as f64;
                }
            }
        }
        metrics.samples = n;
        metrics.accuracy = match loss_kind {
            Loss::CrossEntropy => {
                let mut correct = 0;
                for (i, o) in outs.iter().enumerate() {
                    correct += count_correct(&o[1], &rows(y, i * mb, mb, &[mb])?)?;
                }
                correct as f64 / n as f64
            }
            Loss::Mse => f64::NAN,
        };
        for (name, v) in state_names.iter().zip(new_stats) {
            let shape = stats_now[name].shape().to_vec();
            let t = Tensor::from_vec(shape, v.into_iter().map(|x| x as f32).collect::<Vec<f32>>())?;
            self.stats.insert(name.clone(), t);
        }
        self.optimizer.update(&mut self.weights, &grads);
        Ok(metrics)
    }

    /// One epoch over `data` in batches of `batch` samples, shuffled by
    /// `seed + epoch` (the last partial batch is dropped); `progress` is
    /// called after each step. Returns the epoch's mean loss and accuracy
    /// (each measured before its step's update).
    pub fn epoch(
        &mut self,
        data: &data::Dataset,
        batch: usize,
        epoch: usize,
        seed: u64,
        mut progress: impl FnMut(usize, &Metrics),
    ) -> Result<Metrics, Error> {
        if batch == 0 || data.len() < batch {
            return Err(err(format!(
                "{} samples make no batch of {batch}",
                data.len()
            )));
        }
        let order = data::shuffle(data.len(), seed.wrapping_add(epoch as u64));
        let d = data.take(&order)?;
        let shape = |t: &Tensor| {
            let mut s = t.shape().to_vec();
            s[0] = batch;
            s
        };
        let mut sum = Metrics::default();
        for b in 0..data.len() / batch {
            let x = rows(&d.x, b * batch, batch, &shape(&d.x))?;
            let y = rows(&d.y, b * batch, batch, &shape(&d.y))?;
            let m = self.step(&x, &y)?;
            if !m.loss.is_finite() {
                return Err(err(format!(
                    "the loss is {} at epoch {}, step {}: lower the learning rate",
                    m.loss,
                    epoch + 1,
                    b + 1
                )));
            }
            sum.loss += m.loss * m.samples as f64;
            sum.accuracy += m.accuracy * m.samples as f64;
            sum.samples += m.samples;
            progress(b, &m);
        }
        let n = sum.samples.max(1) as f64;
        Ok(Metrics {
            loss: sum.loss / n,
            accuracy: sum.accuracy / n,
            samples: sum.samples,
        })
    }

    /// The model with the current weights and running statistics as its
    /// initializers (inference form).
    pub fn model(&self) -> Result<Model, Error> {
        let mut g = self.model.clone();
        for (name, t) in self.tensors()? {
            let id = g
                .find(&name)
                .ok_or_else(|| err(format!("no value named '{name}'")))?;
            let t = Arc::new(t);
            g.values[id.0].fact.value = Some(t.clone());
            g.constants.insert(id, t);
        }
        Ok(Model::from_graph(g))
    }

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

fn check_batch(x: &Tensor, y: &Tensor) -> Result<usize, Error> {
    let n = x.shape().first().copied().unwrap_or(0);
    if n == 0 || y.shape().first() != Some(&n) {
        return Err(err(format!(
            "x has {} samples and y {}; both need the same number, at least 1",
            n,
            y.shape().first().copied().unwrap_or(0)
        )));
    }
    Ok(n)
}

/// Samples `from..from + n` of `t` (along axis 0), reshaped to `shape`
/// (same element count per sample).
pub fn rows(t: &Tensor, from: usize, n: usize, shape: &[usize]) -> Result<Tensor, Error> {
    let total = t.shape().first().copied().unwrap_or(0);
    if from + n > total {
        return Err(err(format!(
            "samples {from}..{} past the {total} there are",
            from + n
        )));
    }
    let per = t.len().checked_div(total).unwrap_or(0);
    let want: usize = shape.iter().product();
    if per * n != want {
        return Err(err(format!(
            "a sample of shape {:?} does not fit the model's {:?}",
            &t.shape()[1..],
            &shape[1.min(shape.len())..]
        )));
    }
    let bytes = t.to_le_bytes();
    let es = t.dtype().size();
    let slice = &bytes[from * per * es..(from + n) * per * es];
    Ok(Tensor::from_le_bytes(t.dtype(), shape.to_vec(), slice)?)
}

/// Arg-max along axis 1 of each sample's prediction.
fn argmax_rows(pred: &Tensor) -> Vec<usize> {
    let n = pred.shape().first().copied().unwrap_or(0);
    let v = pred.to_f32_vec();
    let per = v.len().checked_div(n).unwrap_or(0);
    (0..n)
        .map(|i| {
            let r = &v[i * per..(i + 1) * per];
            let mut best = 0;
            for (k, &x) in r.iter().enumerate() {
                if x > r[best] {
                    best = k;
                }
            }
            best
        })
        .collect()
}

fn count_correct(pred: &Tensor, labels: &Tensor) -> Result<usize, Error> {
    let l = labels.to_i64_vec();
    Ok(argmax_rows(pred)
        .into_iter()
        .zip(l)
        .filter(|(p, l)| *p as i64 == *l)
        .count())
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
            let per = v.len().checked_div(n).unwrap_or(0);
            let labels = y.to_i64_vec();
            let mut total = 0.0;
            for (i, &l) in labels.iter().enumerate().take(n) {
                let r = &v[i * per..(i + 1) * per];
                let l = usize::try_from(l)
                    .ok()
                    .filter(|&l| l < per)
                    .ok_or_else(|| err(format!("label {l} out of range for {per} classes")))?;
                total -= match through {
                    Some(false) => r[l].max(1e-30).ln(),
                    Some(true) => r[l],
                    None => {
                        let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        r[l] - m - r.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
                    }
                };
            }
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

/// The model input's shape for `batch` samples.
fn sample_shape(g: &Graph, batch: usize) -> Result<Vec<usize>, Error> {
    let Some(&i) = g.inputs.first() else {
        return Err(err("the model has no input"));
    };
    let shape = g.values[i.0]
        .fact
        .shape
        .as_ref()
        .ok_or_else(|| err(format!("input '{}' has no declared shape", g.name(i))))?;
    let mut s = Vec::with_capacity(shape.len());
    for (k, d) in shape.iter().enumerate() {
        s.push(match d.known() {
            Some(n) if k > 0 => n,
            _ if k == 0 => batch,
            _ => {
                return Err(err(format!(
                    "input '{}' has symbolic dim {d} after the batch dim; training needs the sample shape",
                    g.name(i)
                )))
            }
        });
    }
    Ok(s)
}

fn constant(g: &Graph, name: &str) -> Result<Tensor, Error> {
    let id = g
        .find(name)
        .ok_or_else(|| err(format!("no value named '{name}'")))?;
    g.constants
        .get(&id)
        .map(|t| (**t).clone())
        .ok_or_else(|| err(format!("'{name}' is not an initializer")))
}
