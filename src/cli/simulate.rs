//! `hetflow simulate`: predict a run with the discrete-event simulator
//! ([`hetflow::scheduler::sim`]).
//!
//! - `hetflow simulate MODEL.onnx --cluster c.toml [--schedule gpipe|1f1b]
//!   [--microbatches M]`: plan the model (as `hetflow plan`), then simulate;
//! - `hetflow simulate [MODEL.onnx] --plan plan.json --cluster c.toml`: a
//!   saved plan, node by node when the model is given, stage by stage
//!   otherwise;
//! - `hetflow simulate --dag dag.json [--cluster c.toml] --scheduler heft`:
//!   a research DAG under a list scheduler;
//! - `hetflow simulate --workload gpt ... --cluster NODE.toml`: transformer
//!   training at cluster scale ([`super::simulate_gpt`]).
//!
//! Prints a per-device table and the critical path; the last line is
//! `makespan=<number>` (ms for models and plans, the DAG's unit for DAGs).

use super::inputs::{check_nonneg, check_opt, MAX_BATCH, MAX_CREDITS, MAX_MICROBATCHES};
use anyhow::{bail, Context, Result};
use hetflow::scheduler::cluster::ClusterSpec;
use hetflow::scheduler::cost::GraphCosts;
use hetflow::scheduler::dag::TaskGraph;
use hetflow::scheduler::heft;
use hetflow::scheduler::partition::PartitionOptions;
use hetflow::scheduler::planner::{heft_plan, pipeline_plan, Planner};
use hetflow::scheduler::sim::{chrome_trace_json, simulate, svg_gantt, Workload};
use hetflow::scheduler::{Plan, Schedule};
use hetflow::Model;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model (to plan it, or to cost a saved plan node by node).
    model: Option<PathBuf>,
    /// The cluster spec (TOML); optional for DAGs whose tasks give
    /// per-device costs.
    #[arg(long)]
    cluster: Option<PathBuf>,
    /// A saved plan (JSON) to simulate.
    #[arg(long, conflicts_with = "dag")]
    plan: Option<PathBuf>,
    /// A research DAG (JSON: tasks with per-device `cost` or `flops`/`bytes`,
    /// edges with `comm` or `bytes`).
    #[arg(long)]
    dag: Option<PathBuf>,
    /// List scheduler for --dag: heft, cpop, peft, greedy, roundrobin.
    #[arg(long, default_value = "heft")]
    scheduler: String,
    /// Planner for a model without --plan: `pipeline` or `heft`.
    #[arg(long, default_value = "pipeline")]
    planner: Planner,
    /// Use only these cluster devices (comma-separated names).
    #[arg(long)]
    devices: Option<String>,
    /// `streaming`, `gpipe` or `1f1b` (default: the plan's, else
    /// streaming); with `--workload gpt`: `1f1b` or `interleaved`.
    #[arg(long)]
    schedule: Option<String>,
    /// Micro-batches (default: the plan's, else 1).
    #[arg(long)]
    microbatches: Option<usize>,
    /// Buffers per edge (default: the plan's, else 2).
    #[arg(long)]
    credits: Option<usize>,
    /// Size bound to symbolic dimensions (default: the plan's, else 1).
    #[arg(long)]
    batch: Option<usize>,
    /// Runtime cost per kernel and per copy, µs (dispatch, message hop).
    #[arg(long, default_value_t = 0.0)]
    task_overhead_us: f64,
    /// Fixed runtime cost per run before the first task, µs.
    #[arg(long, default_value_t = 0.0)]
    run_overhead_us: f64,
    /// Write the simulated timeline as Chrome trace / Perfetto JSON.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Write the simulated timeline as an SVG Gantt chart.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Simulate a training step of the model (forward and its real
    /// backward graph, costed per node) under --schedule gpipe|1f1b with
    /// --microbatches M of --batch samples each, over --devices (one stage
    /// each, split as `hetflow train` splits) or a --plan's stages. For
    /// measured backward kernel times, profile with `hetflow profile
    /// --train MODEL`.
    #[arg(long, conflicts_with_all = ["dag", "workload"])]
    train: bool,
    /// `gpt`: simulate transformer training at cluster scale.
    #[arg(long, conflicts_with_all = ["model", "plan", "dag"])]
    workload: Option<String>,
    #[command(flatten)]
    gpt: super::simulate_gpt::GptArgs,
}

fn read(p: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {what} '{}'", p.display()))
}

fn load_cluster(a: &Args) -> Result<Option<ClusterSpec>> {
    let Some(path) = &a.cluster else {
        return Ok(None);
    };
    let mut c = ClusterSpec::load(path)?;
    if let Some(d) = &a.devices {
        let names: Vec<String> = d.split(',').map(|s| s.trim().to_string()).collect();
        c = c.subset(&names)?;
    }
    Ok(Some(c))
}

pub fn main(a: Args) -> Result<()> {
    if let Some(w) = &a.workload {
        for (flag, given) in [
            ("microbatches", a.microbatches.is_some()),
            ("credits", a.credits.is_some()),
            ("batch", a.batch.is_some()),
            ("devices", a.devices.is_some()),
        ] {
            if given {
                bail!(
                    "--{flag} is for plans; --workload gpt takes --global-batch and --micro-batch"
                );
            }
        }
        let out = super::simulate_gpt::Outputs {
            trace: a.trace.as_deref(),
            svg: a.svg.as_deref(),
        };
        return super::simulate_gpt::main(
            w,
            &a.gpt,
            a.cluster.as_ref(),
            a.schedule.as_deref(),
            out,
        );
    }
    if a.gpt.any() {
        bail!("--layers, --tp, --search and the other transformer flags need --workload gpt");
    }
    let schedule: Option<Schedule> = a
        .schedule
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    check_opt("microbatches", a.microbatches, 1, MAX_MICROBATCHES)?;
    check_opt("credits", a.credits, 1, MAX_CREDITS)?;
    check_opt("batch", a.batch, 1, MAX_BATCH)?;
    check_nonneg("task-overhead-us", a.task_overhead_us)?;
    check_nonneg("run-overhead-us", a.run_overhead_us)?;
    let cluster = load_cluster(&a)?;
    let mut w = if a.train {
        let (Some(path), Some(cluster)) = (&a.model, &cluster) else {
            bail!("--train needs the model and --cluster");
        };
        let schedule = match schedule {
            Some(s @ (Schedule::Gpipe | Schedule::OneFOneB)) => s,
            _ => bail!("--train needs --schedule gpipe or 1f1b"),
        };
        let model = Model::load_unoptimized(path)?;
        let tg = hetflow::train::training_graph(
            model.graph(),
            a.batch.unwrap_or(1),
            hetflow::train::Loss::CrossEntropy,
        )?;
        let plan = a
            .plan
            .as_ref()
            .map(|p| Plan::from_json(&read(p, "plan")?).map_err(anyhow::Error::from))
            .transpose()?;
        let devices: Vec<&str> = cluster.devices.iter().map(|d| d.name.as_str()).collect();
        hetflow::train::pipeline::simulated(
            &tg,
            model.graph(),
            plan.as_ref(),
            &devices.join(","),
            cluster,
            schedule,
            a.microbatches.unwrap_or(1),
        )?
    } else if let Some(dag) = &a.dag {
        if a.model.is_some() {
            bail!("give either a model or --dag, not both");
        }
        let g = TaskGraph::from_json(&read(dag, "DAG")?, cluster.as_ref())
            .with_context(|| format!("DAG '{}'", dag.display()))?;
        let sched = heft::by_name(&a.scheduler).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown scheduler '{}' (known: {})",
                a.scheduler,
                heft::SCHEDULERS.join(", ")
            )
        })?;
        let s = sched(&g)?;
        Workload::from_task_graph(&g, &s)?
    } else {
        let Some(cluster) = &cluster else {
            bail!("--cluster is required to simulate a model or a plan");
        };
        let model = a.model.as_ref().map(Model::load).transpose()?;
        match (&a.plan, &model) {
            (Some(p), m) => {
                let plan = Plan::from_json(&read(p, "plan")?)?;
                match m {
                    Some(model) => {
                        let g = model.graph();
                        let batch = a.batch.or(plan.batch).unwrap_or(1);
                        let costs = GraphCosts::new(g, batch);
                        Workload::from_plan(g, &plan, &costs, cluster)
                            .with_context(|| format!("plan '{}'", p.display()))?
                    }
                    None => Workload::from_plan_stages(&plan, cluster)
                        .with_context(|| format!("plan '{}'", p.display()))?,
                }
            }
            (None, Some(model)) => {
                let g = model.graph();
                let costs = GraphCosts::new(g, a.batch.unwrap_or(1));
                let opts = PartitionOptions {
                    microbatches: a.microbatches.unwrap_or(1),
                    credits: a.credits.unwrap_or(2),
                    schedule: schedule.unwrap_or_default(),
                    use_all: false,
                };
                let plan = match a.planner {
                    Planner::Pipeline => pipeline_plan(g, &costs, cluster, &opts)?,
                    Planner::Heft => heft_plan(g, &costs, cluster, &opts)?.0,
                };
                Workload::from_plan(g, &plan, &costs, cluster)?
            }
            (None, None) => bail!("give a model, --plan or --dag"),
        }
    };
    if let Some(m) = a.microbatches {
        w.microbatches = m;
    }
    if let Some(c) = a.credits {
        w.credits = c;
    }
    if let Some(s) = schedule {
        w.schedule = s;
    }
    w.task_overhead = a.task_overhead_us / w.us_per_unit;
    w.run_overhead = a.run_overhead_us / w.us_per_unit;
    let r = simulate(&w)?;
    if let Some(t) = &a.trace {
        std::fs::write(t, chrome_trace_json(&r))
            .with_context(|| format!("writing trace '{}'", t.display()))?;
        println!("trace: {}", t.display());
    }
    if let Some(s) = &a.svg {
        std::fs::write(s, svg_gantt(&r))
            .with_context(|| format!("writing SVG '{}'", s.display()))?;
        println!("svg: {}", s.display());
    }
    print!("{}", r.summary());
    if r.unit == "ms" {
        println!("throughput_per_s={:.3}", r.throughput * 1e3);
    }
    println!("makespan={}", r.makespan);
    Ok(())
}
