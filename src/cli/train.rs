//! `hetflow train`: trains a model's weights on a dataset folder
//! (`x.npy`, `y.npy`), with a progress bar and one line per epoch; the
//! last line is `loss=<float> accuracy=<float>` (on `--eval` when given).

use super::train_job;
use anyhow::{bail, Context, Result};
use hetflow::runtime::net::Hub;
use hetflow::scheduler::plan::{Plan, Schedule as PlanSchedule};
use hetflow::train::allreduce::{AllReduceStats, AllReduceTotals};
use hetflow::train::optim::{Config, Kind, Schedule};
use hetflow::train::pipeline::PipelineStats;
use hetflow::train::{Loss, LossScaling, Metrics, Precision, TrainOptions, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model: its first input takes the batches, its first output
    /// is the prediction.
    model: PathBuf,
    /// Training data: a folder with x.npy (samples along axis 0) and y.npy
    /// (int64 labels, or float targets for MSE).
    #[arg(long)]
    data: PathBuf,
    /// Evaluation data (same layout); the last line reports on it.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// The loss.
    #[arg(long, default_value = "cross_entropy", value_parser = ["cross_entropy", "mse"])]
    loss: String,
    /// The optimizer.
    #[arg(long, default_value = "sgd", value_parser = ["sgd", "adam", "adamw"])]
    optimizer: String,
    /// Learning rate (default: 0.05 for SGD, 0.001 for Adam/AdamW).
    #[arg(long)]
    lr: Option<f32>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    nesterov: bool,
    /// Weight decay (L2 for SGD and Adam, decoupled for AdamW).
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Clip the global gradient norm to this.
    #[arg(long)]
    clip_norm: Option<f32>,
    /// Steps of linear learning-rate warmup.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Learning rate after the warmup.
    #[arg(long, default_value = "constant", value_parser = ["constant", "cosine"])]
    lr_schedule: String,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Samples per optimizer step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Seed of the shuffle and of dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Devices, e.g. `cpu` (default), `opencl:0`, `tpu:0`.
    #[arg(long)]
    device: Option<String>,
    /// Kernel threads per CPU device.
    #[arg(long)]
    threads: Option<usize>,
    /// Micro-batches per step; their gradients are averaged.
    #[arg(long, default_value_t = 1)]
    microbatches: usize,
    /// A plan JSON of the model (`hetflow plan`) whose stages and devices
    /// pipelined training follows (with --schedule, or the plan's own).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Pipelined training: run the micro-batches through stages, one per
    /// device of --device (or per stage of --plan), in this order.
    #[arg(long, value_parser = ["gpipe", "1f1b"])]
    schedule: Option<String>,
    /// Data-parallel replicas, one per device of --device (default
    /// cpu:0, cpu:1, ...); gradients averaged by a ring all-reduce.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Write a safetensors checkpoint here after every epoch.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Resume from a checkpoint written by --checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Write the model with its trained weights (runs in `hetflow run` and
    /// onnxruntime).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compute precision: f32, or bf16 (bf16 forward and backward, f32
    /// master weights and loss, dynamic loss scaling).
    #[arg(long, default_value = "f32")]
    precision: String,
    /// First loss scale of bf16 training (default 32768).
    #[arg(long)]
    loss_scale: Option<f32>,
    /// Good steps after which the bf16 loss scale doubles (default 2000).
    #[arg(long)]
    loss_scale_growth: Option<u64>,
}

fn optimizer(a: &Args, steps: u64) -> Result<Config> {
    let mut c = match a.optimizer.as_str() {
        "sgd" => {
            let mut c = Config::sgd(a.lr.unwrap_or(0.05), a.momentum);
            c.kind = Kind::Sgd {
                momentum: a.momentum,
                nesterov: a.nesterov,
            };
            c
        }
        "adam" => Config::adam(a.lr.unwrap_or(1e-3)),
        _ => Config::adamw(a.lr.unwrap_or(1e-3), a.weight_decay),
    };
    if !(c.lr > 0.0 && c.lr.is_finite()) {
        bail!("--lr must be a positive number, got {}", c.lr);
    }
    if a.nesterov && (a.optimizer != "sgd" || a.momentum == 0.0) {
        bail!("--nesterov needs --optimizer sgd with a non-zero --momentum");
    }
    c.weight_decay = a.weight_decay;
    c.clip_norm = a.clip_norm;
    c.warmup = a.warmup;
    c.schedule = match a.lr_schedule.as_str() {
        "cosine" => Schedule::Cosine { total: steps },
        _ => Schedule::Constant,
    };
    Ok(c)
}

/// The precision and its loss scaling, checked together.
fn precision(a: &Args) -> Result<(Precision, LossScaling)> {
    let p: Precision = a.precision.parse().map_err(anyhow::Error::msg)?;
    let mut s = LossScaling::default();
    if p == Precision::F32 {
        for (given, flag) in [
            (a.loss_scale.is_some(), "--loss-scale"),
            (a.loss_scale_growth.is_some(), "--loss-scale-growth"),
        ] {
            if given {
                bail!("{flag} needs --precision bf16 (f32 training runs unscaled)");
            }
        }
    }
    if let Some(v) = a.loss_scale {
        if !(v > 0.0 && v.is_finite()) {
            bail!("--loss-scale must be a positive number, got {v}");
        }
        s.init = v;
    }
    if let Some(n) = a.loss_scale_growth {
        if n == 0 {
            bail!("--loss-scale-growth must be at least 1");
        }
        s.growth_interval = n;
    }
    if p == Precision::Bf16 && a.schedule.is_some() {
        bail!("--precision bf16 with --schedule (pipelined training) is not supported: choose one");
    }
    if p == Precision::Bf16 && a.plan.is_some() {
        bail!("--precision bf16 with --plan (pipelined training) is not supported: choose one");
    }
    Ok((p, s))
}

fn line(m: &Metrics) -> String {
    format!("loss={:.6} accuracy={:.4}", m.loss, m.accuracy)
}

/// One line on what the pipeline measured over `steps` steps.
fn pipeline_line(s: &PipelineStats, steps: u64, step_ms: f64, bound_ms: f64) -> String {
    let mut line = format!(
        "pipeline {}: {} stage(s) x {} micro-batch(es), {steps} step(s): step {:.2} ms, ideal (m+p-1) x slowest stage {:.2} ms, efficiency {:.1}%; stash peak per stage:",
        match s.schedule {
            PlanSchedule::OneFOneB => "1f1b",
            _ => "gpipe",
        },
        s.stages.len(),
        s.microbatches,
        step_ms / steps.max(1) as f64,
        bound_ms / steps.max(1) as f64,
        100.0 * bound_ms / step_ms.max(1e-9),
    );
    for st in &s.stages {
        line.push_str(&format!(
            " {} {} micro-batch(es) {:.1} KiB (fwd {:.2} ms, bwd {:.2} ms);",
            st.device,
            st.peak_in_flight,
            st.peak_stash_bytes as f64 / 1024.0,
            st.forward_ms,
            st.backward_ms
        ));
    }
    line.pop();
    line
}

/// The replicas' all-reduce over the epoch's steps (totals now minus
/// totals before the epoch).
fn allreduce_line(s: &AllReduceStats, now: AllReduceTotals, before: AllReduceTotals) -> String {
    let (steps, reduce, hidden) = (
        now.steps - before.steps,
        now.reduce_ms - before.reduce_ms,
        now.hidden_ms - before.hidden_ms,
    );
    format!(
        "all-reduce: {} replicas x {} micro-batch(es), {} bucket(s), {steps} step(s): {:.3} ms per step, {:.0}% of it hidden behind the backward pass",
        s.replicas,
        s.microbatches,
        s.buckets.len(),
        reduce / steps.max(1) as f64,
        100.0 * hidden / reduce.max(1e-12),
    )
}

pub fn main(a: Args) -> Result<()> {
    if a.batch == 0 || a.epochs == 0 {
        bail!("--batch and --epochs must be at least 1");
    }
    // A rank of a job started by `hetflow launch` (train_job.rs).
    let Some(hub) = super::cluster::hub()? else {
        return run(a, None);
    };
    let rank = hub.rank();
    let r = run(a, Some(&hub)).map_err(|e| {
        if rank == 0 {
            e
        } else {
            e.context(format!("rank {rank} (host {})", hub.host(rank)))
        }
    });
    hub.shutdown();
    r
}

fn run(a: Args, hub: Option<&Arc<Hub>>) -> Result<()> {
    let job = hub.filter(|h| h.size() > 1);
    if job.is_some() && (a.plan.is_some() || a.schedule.is_some()) {
        bail!("a training job over several ranks is data-parallel: --plan and --schedule (pipelined training) run in one process");
    }
    let root = job.is_none_or(|h| h.is_root());
    let inputs = match job {
        None => train_job::read(&a.model, &a.data, a.eval.as_ref(), a.resume.as_ref())?,
        Some(h) if h.is_root() => {
            train_job::share(h, &a.model, &a.data, a.eval.as_ref(), a.resume.as_ref())?
        }
        Some(h) => train_job::receive(h)?,
    };
    let train_job::Inputs {
        model,
        train,
        eval,
        resume,
    } = inputs;
    let (precision, loss_scaling) = precision(&a)?;
    if train.len() < a.batch {
        bail!(
            "{}: {} samples, fewer than one batch of {}",
            a.data.display(),
            train.len(),
            a.batch
        );
    }
    let per_epoch = train.len() / a.batch;
    let loss = match a.loss.as_str() {
        "mse" => Loss::Mse,
        _ => Loss::CrossEntropy,
    };
    let plan = match &a.plan {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the plan {}", p.display()))?;
            Some(Plan::from_json(&text).with_context(|| format!("plan {}", p.display()))?)
        }
        None => None,
    };
    let schedule =
        match (&a.schedule, &plan) {
            (Some(s), _) => Some(s.parse::<PlanSchedule>().map_err(anyhow::Error::msg)?),
            (None, Some(p)) if p.schedule != PlanSchedule::Streaming => Some(p.schedule),
            (None, Some(_)) => bail!(
            "the plan {} has the streaming schedule; training runs gpipe or 1f1b: pass --schedule",
            a.plan.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        ),
            (None, None) => None,
        };
    if plan.is_some() && a.device.is_some() {
        bail!("--plan names its devices; drop --device");
    }
    let opts = TrainOptions {
        loss,
        optimizer: optimizer(&a, (per_epoch * a.epochs) as u64)?,
        // A hostfile's `devices=` for this host, else --device.
        devices: hetflow::cluster::host_devices().or_else(|| a.device.clone()),
        threads: a.threads,
        microbatches: a.microbatches,
        replicas: a.replicas,
        seed: a.seed,
        schedule,
        plan,
        precision,
        loss_scaling,
    };
    let mut t = Trainer::new(&model, opts)?;
    if let Some(h) = job {
        t.across_ranks(h.clone());
        if root {
            eprintln!(
                "data-parallel over {} ranks: {} samples of each batch per rank",
                h.size(),
                a.batch / h.size()
            );
        }
    }
    let mut first = 0;
    if let Some(r) = &resume {
        let resumed = t.resume(r);
        if !root {
            let _ = std::fs::remove_file(r);
        }
        first = resumed?;
    }
    if let (Some(r), true) = (&a.resume, root) {
        eprintln!(
            "resumed from {} after epoch {first} (step {})",
            r.display(),
            t.steps()
        );
    }
    let weights: usize = t.tensors()?.iter().map(|(_, w)| w.len()).sum();
    // Other ranks of a job train in step with rank 0 and report nothing.
    let say = |msg: &str| {
        if root {
            println!("{msg}");
        }
    };
    if root {
        eprintln!(
            "training {} weights ({} tensors) on {} samples, {per_epoch} steps per epoch",
            weights,
            t.param_names().len(),
            train.len()
        );
    }
    let mut last = None;
    let mut seen = (0u64, 0.0f64, 0.0f64);
    let mut seen_dp = AllReduceTotals::default();
    for epoch in first..a.epochs {
        let started = Instant::now();
        let bar = if root {
            ProgressBar::new(per_epoch as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} {per_sec}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("{}/{}", epoch + 1, a.epochs));
        let train_m = t
            .epoch(&train, a.batch, epoch, a.seed, |_, _| bar.inc(1))
            .with_context(|| format!("epoch {}", epoch + 1));
        bar.finish_and_clear();
        let train_m = train_m?;
        let mut msg = format!(
            "epoch {}/{} train {} ({:.2} s)",
            epoch + 1,
            a.epochs,
            line(&train_m),
            started.elapsed().as_secs_f64()
        );
        if let Some(s) = t.loss_scaler() {
            msg.push_str(&format!(
                " bf16 loss scale {} ({} step(s) skipped)",
                s.scale, train_m.skipped
            ));
        }
        let report = match &eval {
            Some(e) => {
                let m = t.evaluate(&e.x, &e.y, 256)?;
                msg.push_str(&format!(" eval {}", line(&m)));
                m
            }
            None => train_m,
        };
        say(&msg);
        if let (Some(s), Some(sum)) = (t.pipeline_stats(), t.pipeline_totals()) {
            let (steps, step_ms, bound_ms) = sum;
            say(&pipeline_line(
                s,
                steps - seen.0,
                step_ms - seen.1,
                bound_ms - seen.2,
            ));
            seen = sum;
        }
        let dp = t.data_parallel();
        if let Some(s) = dp.last().filter(|s| s.replicas > 1) {
            say(&allreduce_line(s, dp.totals(), seen_dp));
            seen_dp = dp.totals();
        }
        if !root {
            continue;
        }
        if let Some(c) = &a.checkpoint {
            t.save_checkpoint(c, epoch + 1)?;
        }
        last = Some(report);
    }
    if !root {
        return Ok(());
    }
    if let Some(out) = &a.out {
        let src = hetflow::ops::onnx::inline_external_data(&a.model)?;
        let bytes = hetflow::ops::onnx::with_initializers(&src, &t.tensors()?)?;
        std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    let last = match last {
        Some(m) => m,
        None => match &eval {
            Some(e) => t.evaluate(&e.x, &e.y, 256)?,
            None => t.evaluate(&train.x, &train.y, 256)?,
        },
    };
    println!("{}", line(&last));
    Ok(())
}
