//! `hetflow plan`: place a model on a cluster and print the stage table.

use super::inputs::{
    check_opt, check_range, MAX_BATCH, MAX_CREDITS, MAX_MICROBATCHES, MAX_REPLICAS,
};
use anyhow::{Context, Result};
use hetflow::scheduler::cluster::ClusterSpec;
use hetflow::scheduler::cost::GraphCosts;
use hetflow::scheduler::partition::PartitionOptions;
use hetflow::scheduler::planner::{
    annotate, describe, heft_plan, manual_plan, pipeline_plan, replicate_stages, replicated,
    Planner,
};
use hetflow::scheduler::Schedule;
use hetflow::Model;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// The cluster spec (TOML), e.g. from `hetflow profile`.
    #[arg(long)]
    cluster: PathBuf,
    /// Use only these cluster devices (comma-separated names).
    #[arg(long)]
    devices: Option<String>,
    /// `pipeline` (contiguous stages balanced by device speed) or `heft`.
    #[arg(long, default_value = "pipeline")]
    planner: Planner,
    /// A placement file (TOML: `default = "cpu:0"` and a `[nodes]` table)
    /// instead of a planner.
    #[arg(long, conflicts_with = "planner")]
    placement: Option<PathBuf>,
    /// `streaming` (inference), `gpipe` or `1f1b`.
    #[arg(long, default_value = "streaming")]
    schedule: Schedule,
    /// Micro-batches per run.
    #[arg(long, default_value_t = 1)]
    microbatches: usize,
    /// Buffers per edge.
    #[arg(long, default_value_t = 2)]
    credits: usize,
    /// Size bound to symbolic dimensions (the micro-batch size).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Data-parallel copies: split the devices into this many equal groups
    /// and run one copy of the plan on each (micro-batches alternate).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Stage-level data parallelism: give the busiest stages this many
    /// copies in all, on cluster devices the plan leaves spare (with
    /// `--devices`, those not listed); other stages are shared.
    #[arg(long, conflicts_with = "replicas")]
    replicate_stages: Option<usize>,
    /// Cap every device's memory at SIZE (bytes, or 512M, 2G, ...) below
    /// what the cluster spec says: the planners then keep each stage's
    /// weights and buffers under it, or fail naming the limit.
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<String>,
    /// Write the plan as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn main(a: Args) -> Result<()> {
    check_range("microbatches", a.microbatches, 1, MAX_MICROBATCHES)?;
    check_range("credits", a.credits, 1, MAX_CREDITS)?;
    check_range("batch", a.batch, 1, MAX_BATCH)?;
    check_range("replicas", a.replicas, 1, MAX_REPLICAS)?;
    check_opt("replicate-stages", a.replicate_stages, 1, MAX_REPLICAS)?;
    let limit = a
        .memory_limit
        .as_deref()
        .map(|m| super::inputs::parse_size("memory-limit", m))
        .transpose()?;
    let model = Model::load(&a.model)?;
    let mut cluster = ClusterSpec::load(&a.cluster)?;
    if let Some(l) = limit {
        let gib = l as f64 / (1u64 << 30) as f64;
        for d in &mut cluster.devices {
            d.memory_gib = d.memory_gib.min(gib);
        }
    }
    let full = cluster.clone();
    if let Some(d) = &a.devices {
        let names: Vec<String> = d.split(',').map(|s| s.trim().to_string()).collect();
        cluster = cluster.subset(&names)?;
    }
    let g = model.graph();
    let costs = GraphCosts::new(g, a.batch);
    let opts = PartitionOptions {
        microbatches: a.microbatches,
        credits: a.credits,
        schedule: a.schedule,
        use_all: false,
    };
    let plan = if let Some(p) = &a.placement {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading placement '{}'", p.display()))?;
        let mut plan = manual_plan(g, &text)?.with_microbatches(a.microbatches, a.credits);
        for d in &plan.devices {
            if cluster.device_index(d).is_none() {
                anyhow::bail!(
                    "placement uses device '{d}', which is not in the cluster spec '{}'",
                    a.cluster.display()
                );
            }
        }
        plan.schedule = a.schedule;
        annotate(&mut plan, g, &costs, &cluster);
        plan
    } else {
        let plan_on = |c: &ClusterSpec| match a.planner {
            Planner::Pipeline => pipeline_plan(g, &costs, c, &opts),
            Planner::Heft => heft_plan(g, &costs, c, &opts).map(|p| p.0),
        };
        if a.replicas > 1 {
            replicated(&cluster, a.replicas, plan_on)?
        } else {
            plan_on(&cluster)?
        }
    };
    let mut plan = plan;
    if let Some(k) = a.replicate_stages {
        let done = replicate_stages(&mut plan, &costs, &full, k)?;
        let names: Vec<&str> = done.iter().map(|&d| plan.devices[d].as_str()).collect();
        println!("replicated {k}x: the stages on {}", names.join(", "));
    }
    print!("{}", describe(&plan, g));
    if let Some(out) = &a.out {
        std::fs::write(out, plan.to_json())
            .with_context(|| format!("writing plan '{}'", out.display()))?;
        println!("plan: {}", out.display());
    }
    Ok(())
}
