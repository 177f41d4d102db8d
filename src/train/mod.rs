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
//!   and optimizer moments, with the step count (and in bf16 the loss
//!   scale) in the metadata.
//! - `precision: Bf16` computes in bf16 with f32 master weights and
//!   dynamic loss scaling ([`precision`] has the design).

pub mod allreduce;
mod batch;
pub mod checkpoint;
pub mod data;
pub mod dist;
mod evaluate;
pub mod graph;
pub mod optim;
pub mod pipeline;
pub mod precision;

pub use batch::rows;
use batch::{check_batch, count_correct};

pub use graph::Loss;
pub use precision::{LossScaler, LossScaling, Precision};

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
    /// Steps skipped by dynamic loss scaling because a gradient was not
    /// finite (bf16 only; their loss and accuracy still count).
    pub skipped: u64,
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
    /// Micro-batches per step and replica (gradients averaged over them).
    pub microbatches: usize,
    /// Data-parallel replicas: each runs `batch / replicas` samples on its
    /// own device (the i-th of `devices`, else `cpu:i`), and their
    /// gradients are averaged by a ring all-reduce per bucket, started
    /// while the backward pass runs ([`allreduce`]), before the step.
    pub replicas: usize,
    /// Seed of dropout masks (shuffling has its own, in [`data`]).
    pub seed: u64,
    /// Pipelined training ([`pipeline`]): the GPipe or 1F1B schedule of
    /// the `microbatches` over stages, one per device of `devices` (or
    /// per stage of `plan`). None: each micro-batch runs the whole
    /// training graph as one session.
    pub schedule: Option<hetflow_scheduler::plan::Schedule>,
    /// A plan of the model whose stages and devices the pipeline follows
    /// (needs `schedule`).
    pub plan: Option<hetflow_scheduler::plan::Plan>,
    /// The precision of the training graph's compute ([`precision`]);
    /// the master weights are f32 either way.
    pub precision: Precision,
    /// Dynamic loss scaling (bf16 only).
    pub loss_scaling: LossScaling,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            loss: Loss::CrossEntropy,
            optimizer: optim::Config::sgd(0.01, 0.9),
            devices: None,
            threads: None,
            microbatches: 1,
            replicas: 1,
            seed: 0,
            schedule: None,
            plan: None,
            precision: Precision::F32,
            loss_scaling: LossScaling::default(),
        }
    }
}

/// What runs a step.
enum Runner {
    /// The whole training graph as one session (per replica).
    Session(Box<crate::Session>),
    /// Stages running the schedule.
    Pipeline(pipeline::Pipeline),
}

/// A compiled training step for one batch shape.
struct Step {
    shape: Vec<usize>,
    runner: Runner,
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
    steps: Vec<Step>,
    last_pipeline: Option<pipeline::PipelineStats>,
    /// Pipelined steps, their summed wall time and ideal time, ms.
    pipeline_totals: (u64, f64, f64),
    /// The other ranks of a data-parallel job ([`dist`]).
    ranks: Option<Arc<dyn dist::Ranks>>,
    /// Dynamic loss scaling (bf16).
    scaler: Option<LossScaler>,
    /// Buckets and measures of the replicas' gradient all-reduce.
    dp: allreduce::DataParallel,
}

fn err(m: impl Into<String>) -> Error {
    Error::Setting(m.into())
}

impl Trainer {
    /// A trainer for `model` (load it with
    /// [`Model::load_unoptimized`]: the load-time rewrites fold
    /// BatchNorm into Conv, which training must not).
    pub fn new(model: &Model, opts: TrainOptions) -> Result<Trainer, Error> {
        if opts.microbatches == 0 || opts.replicas == 0 {
            return Err(err("microbatches and replicas must be at least 1"));
        }
        if opts.schedule.is_some() && opts.replicas > 1 {
            return Err(err(
                "pipelined training (a schedule) with several replicas is not supported: choose one",
            ));
        }
        if opts.precision == Precision::Bf16 {
            if opts.schedule.is_some() {
                return Err(err(
                    "bf16 precision with pipelined training (a schedule) is not supported: choose one",
                ));
            }
            let s = opts.loss_scaling;
            if !(s.init.is_finite() && s.init > 0.0) || s.growth_interval == 0 {
                return Err(err(format!(
                    "the loss scale must start positive and finite and grow after at least 1 step, got {} and {}",
                    s.init, s.growth_interval
                )));
            }
        }
        if opts.plan.is_some() && opts.schedule.is_none() {
            return Err(err(
                "a training plan needs a schedule (gpipe or 1f1b) for its stages",
            ));
        }
        if opts.replicas > 1 {
            if let Some(d) = &opts.devices {
                let n = d.split(',').count();
                if n != opts.replicas {
                    return Err(err(format!(
                        "{} replicas need {} devices, one each; '{d}' names {n}",
                        opts.replicas, opts.replicas
                    )));
                }
            }
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
            steps: Vec::new(),
            last_pipeline: None,
            pipeline_totals: (0, 0.0, 0.0),
            ranks: None,
            scaler: (opts.precision == Precision::Bf16).then(|| LossScaler::new(opts.loss_scaling)),
            dp: allreduce::DataParallel::default(),
            opts,
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

    /// What the last pipelined step measured (None without a schedule).
    pub fn pipeline_stats(&self) -> Option<&pipeline::PipelineStats> {
        self.last_pipeline.as_ref()
    }

    /// Pipelined steps so far, with their summed wall time and summed
    /// ideal time (ms); None without a schedule.
    pub fn pipeline_totals(&self) -> Option<(u64, f64, f64)> {
        self.last_pipeline.as_ref().map(|_| self.pipeline_totals)
    }

    /// Dynamic loss scaling's state (None in f32).
    pub fn loss_scaler(&self) -> Option<&LossScaler> {
        self.scaler.as_ref()
    }

    /// The replicas' gradient exchange: its bucket cap and what the steps
    /// measured ([`allreduce::AllReduceStats`]).
    pub fn data_parallel(&self) -> &allreduce::DataParallel {
        &self.dp
    }

    /// The replicas' gradient exchange, to set its bucket cap.
    pub fn data_parallel_mut(&mut self) -> &mut allreduce::DataParallel {
        &mut self.dp
    }

    /// Steps taken (skipped steps not counted).
    pub fn steps(&self) -> u64 {
        self.optimizer.step
    }

    /// Makes this trainer one rank of a data-parallel job ([`dist`]):
    /// each step then trains on this rank's share of the batch it is
    /// given and averages gradients, statistics and metrics over the
    /// ranks. Every rank must be built the same way and fed the same
    /// batches.
    pub fn across_ranks(&mut self, ranks: Arc<dyn dist::Ranks>) {
        self.ranks = Some(ranks);
    }

    /// The optimizer (settings, step count and moments).
    pub fn optimizer_mut(&mut self) -> &mut optim::Optimizer {
        &mut self.optimizer
    }

    /// The sessions (one per replica) for batches of `batch` samples.
    fn sessions(&mut self, batch: usize) -> Result<(), Error> {
        let units = self.opts.microbatches * self.opts.replicas;
        let mb = batch / units;
        if mb == 0 || !batch.is_multiple_of(units) {
            return Err(err(format!(
                "a batch of {batch} does not split into {} replica(s) of {} equal micro-batches",
                self.opts.replicas, self.opts.microbatches
            )));
        }
        let shape = sample_shape(&self.model, mb)?;
        if self.steps.first().is_some_and(|s| s.shape == shape) {
            return Ok(());
        }
        self.steps.clear();
        // Replicas' devices are opened as one list (so `cpu:0,cpu:1`
        // splits the machine between them), one per replica.
        let replica_devices = if self.opts.replicas > 1 {
            let list = match &self.opts.devices {
                Some(d) => d.clone(),
                None => (0..self.opts.replicas)
                    .map(|r| format!("cpu:{r}"))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let specs = hetflow_devices::parse_device_list(&list)?;
            hetflow_devices::open_devices(&specs, self.opts.threads)?
        } else {
            Vec::new()
        };
        let tg = graph::build_in(&self.model, &shape, self.opts.loss, self.opts.precision)?;
        if tg.params != self.names {
            return Err(err("the trained weights differ between batch sizes"));
        }
        if let Some(schedule) = self.opts.schedule {
            let devices = self.opts.devices.clone().unwrap_or_else(|| "cpu".into());
            let p = pipeline::Pipeline::new(
                &tg,
                &self.model,
                schedule,
                self.opts.plan.as_ref(),
                &devices,
                self.opts.threads,
            )?;
            self.steps.push(Step {
                shape,
                runner: Runner::Pipeline(p),
                tg,
            });
            return Ok(());
        }
        let model = Model::from_graph(tg.graph.clone());
        for r in 0..self.opts.replicas {
            let mut b = SessionBuilder::new(&model);
            match (replica_devices.get(r), &self.opts.devices) {
                (Some(dev), _) => b = b.with_devices(vec![dev.clone()]),
                (None, Some(d)) => b = b.devices(d),
                (None, None) => {}
            }
            if let Some(t) = self.opts.threads {
                b = b.threads(t);
            }
            let session = b.build()?;
            self.steps.push(Step {
                shape: shape.clone(),
                runner: Runner::Session(Box::new(session)),
                tg: tg.clone(),
            });
        }
        Ok(())
    }

    /// One optimizer step on a batch: `x` holds the samples along axis 0,
    /// `y` the labels (i64, cross-entropy) or targets (MSE). Returns the
    /// batch's loss and accuracy before the update.
    pub fn step(&mut self, x: &Tensor, y: &Tensor) -> Result<Metrics, Error> {
        check_batch(x, y)?;
        let shard = dist::shard(self.ranks.as_deref(), x, y)?;
        let (x, y) = shard.as_ref().map_or((x, y), |(x, y)| (x, y));
        let n = check_batch(x, y)?;
        let (k, per_replica) = (self.opts.replicas, self.opts.microbatches);
        let m = k * per_replica;
        let seed =
            (self.opts.seed ^ self.optimizer.step.wrapping_mul(hetflow_ops::rng::GOLDEN)) as i64;
        let weights: Vec<Arc<Tensor>> = self
            .weights
            .iter()
            .zip(&self.shapes)
            .map(|(w, s)| Tensor::from_vec(s.clone(), w.clone()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let loss_kind = self.opts.loss;
        let stats_now = self.stats.clone();
        let scale = self.scaler.map(|s| Arc::new(Tensor::scalar(s.scale)));
        self.sessions(n)?;
        let shape = self.steps[0].shape.clone();
        let tg = &self.steps[0].tg;
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
        // Dropout seeds follow the micro-batch's place in the global
        // batch, so a job's ranks draw what one process would.
        let first_unit = self.ranks.as_ref().map_or(0, |r| r.rank() * m);
        let mut feeds = Vec::with_capacity(m);
        for i in 0..m {
            let xi = rows(x, i * mb, mb, &shape)?;
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
                f.push(Arc::new(Tensor::scalar(
                    seed.wrapping_add((first_unit + i) as i64),
                )));
            }
            f.extend(stats.iter().cloned());
            f.extend(weights.iter().cloned());
            f.extend(scale.iter().cloned());
            feeds.push(f);
        }
        let n_params = tg.params.len();
        let state_names = tg.state.clone();
        let sizes: Vec<usize> = self.weights.iter().map(|w| w.len()).collect();
        let labels: Vec<Arc<Tensor>> = feeds.iter().map(|f| f[1].clone()).collect();
        // Per micro-batch: loss, prediction and statistics; per parameter,
        // its gradient's mean over the micro-batches (and replicas).
        let (outs, grads) = if let Runner::Pipeline(p) = &mut self.steps[0].runner {
            let r = p.step(&feeds, 2..2 + n_params)?;
            if r.means.iter().zip(&sizes).any(|(g, &len)| g.len() != len) {
                return Err(err("a gradient's size differs from its weight's"));
            }
            self.pipeline_totals.0 += 1;
            self.pipeline_totals.1 += r.stats.step_ms;
            self.pipeline_totals.2 += r.stats.bound_ms;
            self.last_pipeline = Some(r.stats);
            (r.per_mb, r.means)
        } else {
            // Replica r takes micro-batches r·per_replica.. of the batch.
            let sessions = self.steps.iter_mut().map(|st| match &mut st.runner {
                Runner::Session(s) => Ok(&mut **s),
                Runner::Pipeline(_) => Err(err("a replica cannot be a pipeline")),
            });
            let sessions = sessions.collect::<Result<Vec<_>, _>>()?;
            let r = self.dp.step(sessions, feeds, 2..2 + n_params, &sizes)?;
            (r.per_mb, r.means)
        };
        let out = |o: &[Option<Arc<Tensor>>], i: usize| -> Result<Arc<Tensor>, Error> {
            o.get(i)
                .cloned()
                .flatten()
                .ok_or_else(|| err(format!("the step produced no output {i}")))
        };
        let mut new_stats: Vec<Vec<f64>> = Vec::new();
        let mut metrics = Metrics::default();
        for o in &outs {
            metrics.loss += out(o, 0)?.cast(DType::F64).to_f32_vec()[0] as f64 / m as f64;
            for k in 0..state_names.len() {
                let t = out(o, 2 + n_params + k)?;
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
                    correct += count_correct(&*out(o, 1)?, &labels[i])?;
                }
                correct as f64 / n as f64
            }
            Loss::Mse => f64::NAN,
        };
        let job = dist::combine(
            self.ranks.as_deref(),
            dist::StepSums {
                grads: grads.concat(),
                stats: new_stats,
                loss: metrics.loss,
                accuracy: metrics.accuracy,
                samples: n,
            },
        )?;
        let (flat, new_stats) = (job.grads, job.stats);
        (metrics.loss, metrics.accuracy, metrics.samples) = (job.loss, job.accuracy, job.samples);
        let mut grads = Vec::with_capacity(sizes.len());
        let mut at = 0;
        for len in sizes {
            grads.push(flat[at..at + len].to_vec());
            at += len;
        }
        if let Some(s) = &mut self.scaler {
            if !s.unscale(&mut grads) {
                // Skipped: nothing changes but the scale.
                if s.scale <= f32::MIN_POSITIVE {
                    return Err(err(
                        "the gradients are not finite at any loss scale: lower the learning rate",
                    ));
                }
                metrics.skipped = 1;
                return Ok(metrics);
            }
        }
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
            sum.skipped += m.skipped;
            progress(b, &m);
        }
        let n = sum.samples.max(1) as f64;
        Ok(Metrics {
            loss: sum.loss / n,
            accuracy: sum.accuracy / n,
            samples: sum.samples,
            skipped: sum.skipped,
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
}

/// The training graph of `model` for batches of `batch` samples
/// (what a [`Trainer`] runs for each micro-batch of that size).
pub fn training_graph(model: &Graph, batch: usize, loss: Loss) -> Result<graph::TrainGraph, Error> {
    training_graph_in(model, batch, loss, Precision::F32)
}

/// [`training_graph`] computing in `precision`.
pub fn training_graph_in(
    model: &Graph,
    batch: usize,
    loss: Loss,
    precision: Precision,
) -> Result<graph::TrainGraph, Error> {
    Ok(graph::build_in(
        model,
        &sample_shape(model, batch)?,
        loss,
        precision,
    )?)
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
