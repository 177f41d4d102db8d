//! `hetflow simulate --workload gpt`: simulate transformer training on a
//! cluster of identical GPU nodes ([`hetflow::scheduler::sim::gpt`]).
//!
//! ```text
//! hetflow simulate --workload gpt --layers L --hidden H --heads A --seq S --vocab V
//!     --global-batch B [--micro-batch b] --tp T --pp P --dp D
//!     [--schedule 1f1b|interleaved --chunks v] [--recompute none|selective|full]
//!     [--sequence-parallel] [--no-dp-overlap] --cluster NODE.toml [--nodes N]
//!     [--search [--top K]] [--trace FILE] [--svg FILE]
//! ```
//!
//! Without `--micro-batch` the fastest micro-batch size that fits is
//! chosen. `--search` ranks every layout of the cluster's GPUs (`--nodes`
//! or the spec's `nodes`, else `tp × pp × dp`). The last line is
//! `iteration_s=<float> tflops_per_device=<float>` (the best layout's,
//! with `--search`).

use anyhow::{bail, Context, Result};
use hetflow::scheduler::sim::gpt::search::{best_micro_batch, search, SearchOptions};
use hetflow::scheduler::sim::gpt::{simulate, GptModel, GptReport, Layout, NodeSpec, Recompute};
use hetflow::scheduler::sim::{chrome_trace_json, svg_gantt};
use std::path::{Path, PathBuf};

/// The GPT workload's flags (used with `--workload gpt`).
#[derive(clap::Args, Default)]
pub struct GptArgs {
    /// Transformer layers.
    #[arg(long)]
    layers: Option<usize>,
    /// Hidden size.
    #[arg(long)]
    hidden: Option<usize>,
    /// Attention heads.
    #[arg(long)]
    heads: Option<usize>,
    /// Sequence length.
    #[arg(long)]
    seq: Option<usize>,
    /// Vocabulary size.
    #[arg(long)]
    vocab: Option<usize>,
    /// Sequences per iteration over all replicas.
    #[arg(long)]
    global_batch: Option<usize>,
    /// Sequences per micro-batch (default: the fastest that fits).
    #[arg(long)]
    micro_batch: Option<usize>,
    /// Tensor-parallel size.
    #[arg(long)]
    tp: Option<usize>,
    /// Pipeline-parallel size.
    #[arg(long)]
    pp: Option<usize>,
    /// Data-parallel size.
    #[arg(long)]
    dp: Option<usize>,
    /// Model chunks per stage for `--schedule interleaved`.
    #[arg(long)]
    chunks: Option<usize>,
    /// `none`, `selective` or `full` (default full).
    #[arg(long)]
    recompute: Option<String>,
    /// Sequence parallelism.
    #[arg(long)]
    sequence_parallel: bool,
    /// Run the data-parallel all-reduce after the backward pass instead of
    /// overlapping it.
    #[arg(long)]
    no_dp_overlap: bool,
    /// Nodes in the cluster (overrides the spec's `nodes`).
    #[arg(long)]
    nodes: Option<usize>,
    /// Rank every layout that fits.
    #[arg(long)]
    search: bool,
    /// Layouts printed by --search.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

impl GptArgs {
    /// Whether any GPT flag was given (they need `--workload gpt`).
    pub fn any(&self) -> bool {
        self.layers.is_some()
            || self.hidden.is_some()
            || self.heads.is_some()
            || self.seq.is_some()
            || self.vocab.is_some()
            || self.global_batch.is_some()
            || self.micro_batch.is_some()
            || self.tp.is_some()
            || self.pp.is_some()
            || self.dp.is_some()
            || self.chunks.is_some()
            || self.recompute.is_some()
            || self.sequence_parallel
            || self.no_dp_overlap
            || self.nodes.is_some()
            || self.search
    }
}

fn need(v: Option<usize>, flag: &str) -> Result<usize> {
    v.ok_or_else(|| anyhow::anyhow!("--workload gpt needs --{flag}"))
}

/// Where to write the timeline.
pub struct Outputs<'a> {
    pub trace: Option<&'a Path>,
    pub svg: Option<&'a Path>,
}

pub fn main(
    workload: &str,
    a: &GptArgs,
    cluster: Option<&PathBuf>,
    schedule: Option<&str>,
    out: Outputs,
) -> Result<()> {
    if workload != "gpt" {
        bail!("unknown workload '{workload}' (known: gpt)");
    }
    let Some(cluster) = cluster else {
        bail!("--workload gpt needs --cluster NODE.toml (e.g. docs/clusters/dgx-a100-80gb.toml)");
    };
    let spec = NodeSpec::load(cluster)?;
    let model = GptModel {
        layers: need(a.layers, "layers")?,
        hidden: need(a.hidden, "hidden")?,
        heads: need(a.heads, "heads")?,
        seq: need(a.seq, "seq")?,
        vocab: need(a.vocab, "vocab")?,
    };
    let chunks = match (schedule.unwrap_or("1f1b"), a.chunks) {
        ("1f1b", None | Some(1)) => 1,
        ("1f1b", Some(v)) => {
            bail!("--chunks {v} needs --schedule interleaved (1f1b runs one chunk per stage)")
        }
        ("interleaved", Some(v)) if v >= 2 => v,
        ("interleaved", Some(v)) => bail!("--schedule interleaved needs --chunks >= 2 (got {v})"),
        ("interleaved", None) => bail!("--schedule interleaved needs --chunks v"),
        (s, _) => bail!("unknown schedule '{s}' for --workload gpt (known: 1f1b, interleaved)"),
    };
    let recompute: Recompute = a
        .recompute
        .as_deref()
        .unwrap_or("full")
        .parse()
        .map_err(anyhow::Error::msg)?;
    let global_batch = need(a.global_batch, "global-batch")?;
    let template = Layout {
        tp: a.tp.unwrap_or(1),
        pp: a.pp.unwrap_or(1),
        dp: a.dp.unwrap_or(1),
        micro_batch: a.micro_batch.unwrap_or(1),
        global_batch,
        chunks,
        recompute,
        sequence_parallel: a.sequence_parallel,
        dp_overlap: !a.no_dp_overlap,
    };
    if a.search {
        return run_search(&model, &template, &spec, a, schedule, out);
    }
    let tp = need(a.tp, "tp")?;
    let pp = need(a.pp, "pp")?;
    let dp = need(a.dp, "dp")?;
    let l = Layout {
        tp,
        pp,
        dp,
        ..template
    };
    let r = match a.micro_batch {
        Some(_) => simulate(&model, &l, &spec, a.nodes, true)?,
        None => {
            // Check everything but the micro-batch first, for a clear error.
            hetflow::scheduler::sim::gpt::check(
                &model,
                &Layout {
                    micro_batch: 1,
                    ..l.clone()
                },
                &spec,
                a.nodes,
            )?;
            let r = best_micro_batch(&model, &l, &spec, a.nodes, 64)?;
            println!(
                "micro-batch: {} (the fastest that fits)",
                r.layout.micro_batch
            );
            r
        }
    };
    write_outputs(&r, &out)?;
    print!("{}", r.summary());
    Ok(())
}

fn write_outputs(r: &GptReport, out: &Outputs) -> Result<()> {
    if out.trace.is_none() && out.svg.is_none() {
        return Ok(());
    }
    let t = r.timeline();
    if let Some(p) = out.trace {
        std::fs::write(p, chrome_trace_json(&t))
            .with_context(|| format!("writing trace '{}'", p.display()))?;
        println!("trace: {}", p.display());
    }
    if let Some(p) = out.svg {
        std::fs::write(p, svg_gantt(&t))
            .with_context(|| format!("writing SVG '{}'", p.display()))?;
        println!("svg: {}", p.display());
    }
    Ok(())
}

fn run_search(
    model: &GptModel,
    template: &Layout,
    spec: &NodeSpec,
    a: &GptArgs,
    schedule: Option<&str>,
    out: Outputs,
) -> Result<()> {
    let schedule_given = schedule.is_some();
    let gpus = match (a.nodes.or(spec.nodes), a.tp, a.pp, a.dp) {
        (Some(n), _, _, _) => n
            .checked_mul(spec.node.gpus)
            .ok_or_else(|| anyhow::anyhow!("--nodes {n} is too large"))?,
        (None, Some(t), Some(p), Some(d)) => t * p * d,
        _ => bail!(
            "--search needs the cluster size: --nodes N (or nodes in the spec, or --tp --pp --dp)"
        ),
    };
    if a.top == 0 {
        bail!("--top must be >= 1");
    }
    let t0 = std::time::Instant::now();
    let res = search(model, template, spec, gpus, &SearchOptions::default())?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "search: {} layouts of {gpus} GPUs, {} fit in memory, simulated in {secs:.2} s",
        res.candidates, res.fitting
    );
    if res.ranked.is_empty() {
        bail!("no layout of {gpus} GPUs fits in memory");
    }
    println!(
        "{:>4} {:>3} {:>4} {:>5} {:>3} {:<16} {:<10} {:>12} {:>9} {:>9} {:>8}",
        "rank",
        "tp",
        "pp",
        "dp",
        "mb",
        "schedule",
        "recompute",
        "iteration_s",
        "TFLOP/s",
        "mem_GiB",
        "bubble%"
    );
    for (i, r) in res.ranked.iter().take(a.top).enumerate() {
        print_row(i + 1, r);
    }
    if let (Some(t), Some(p), Some(d)) = (a.tp, a.pp, a.dp) {
        // The given layout: tp, pp, dp and whichever of micro-batch,
        // schedule and recompute were given too.
        let given = |l: &Layout| {
            l.tp == t
                && l.pp == p
                && l.dp == d
                && a.micro_batch.is_none_or(|b| l.micro_batch == b)
                && (!schedule_given || l.chunks == template.chunks)
                && (a.recompute.is_none() || l.recompute == template.recompute)
        };
        let what = describe_given(a, schedule);
        match res.ranked.iter().position(|r| given(&r.layout)) {
            Some(i) => {
                println!("given {what}: ranks {}", i + 1);
                print_row(i + 1, &res.ranked[i]);
            }
            None => println!("given {what}: does not fit"),
        }
    }
    let best = simulate(
        model,
        &res.ranked[0].layout,
        spec,
        Some(gpus.div_ceil(spec.node.gpus)),
        true,
    )?;
    write_outputs(&best, &out)?;
    println!("best: {}", best.layout_line());
    println!(
        "iteration_s={:.6} tflops_per_device={:.2}",
        best.iteration_s, best.tflops_per_device
    );
    Ok(())
}

fn describe_given(a: &GptArgs, schedule: Option<&str>) -> String {
    let mut s = format!(
        "tp={} pp={} dp={}",
        a.tp.unwrap_or(0),
        a.pp.unwrap_or(0),
        a.dp.unwrap_or(0)
    );
    if let Some(b) = a.micro_batch {
        s += &format!(" micro_batch={b}");
    }
    if let Some(sch) = schedule {
        s += &format!(" schedule={sch}");
    }
    if let Some(v) = a.chunks {
        s += &format!(" chunks={v}");
    }
    if let Some(r) = &a.recompute {
        s += &format!(" recompute={r}");
    }
    if a.micro_batch.is_none() && schedule.is_none() && a.recompute.is_none() {
        s += " (its best variant)";
    }
    s
}

fn print_row(rank: usize, r: &GptReport) {
    let l = &r.layout;
    println!(
        "{:>4} {:>3} {:>4} {:>5} {:>3} {:<16} {:<10} {:>12.4} {:>9.1} {:>9.1} {:>8.1}",
        rank,
        l.tp,
        l.pp,
        l.dp,
        l.micro_batch,
        l.schedule_name(),
        l.recompute.to_string(),
        r.iteration_s,
        r.tflops_per_device,
        r.memory.total() / (1u64 << 30) as f64,
        100.0 * r.bubble
    );
}
