//! `hetflow bench`: latency of one input set, repeated.

use super::inputs::{
    bind_inputs, check_opt, check_range, random_inputs, threads_flag, MAX_CREDITS, MAX_ITERS,
    MAX_MICROBATCHES,
};
use anyhow::{Context, Result};
use hetflow::{Model, SessionBuilder};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Inputs as for `run`; random inputs of the declared shapes when none.
    #[arg(long = "input", short = 'i')]
    inputs: Vec<String>,
    /// Timed iterations.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Kernel threads per CPU device.
    #[arg(long)]
    threads: Option<usize>,
    /// Devices, e.g. `cpu`, `cpu:0,cpu:1` (default: the plan's, else `cpu`).
    #[arg(long)]
    device: Option<String>,
    /// Print per-op-type kernel time per iteration (from the trace of the
    /// timed iterations) before the result lines.
    #[arg(long)]
    profile: bool,
    /// Write a Chrome/Perfetto trace of the timed iterations.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// A plan JSON to execute (its devices are opened unless --device).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Stream this many copies of the input set per iteration through the
    /// pipeline and report throughput and pipeline efficiency.
    #[arg(long, default_value_t = 1)]
    microbatches: usize,
    /// Buffers per edge (default: the plan's, else 2).
    #[arg(long)]
    credits: Option<usize>,
    /// Refuse to start when the plan's predicted memory on a device is
    /// over SIZE (bytes, or 512M, 2G, ...); default: each device's memory.
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<String>,
}

pub fn main(mut a: Args, hub: Option<&std::sync::Arc<hetflow::runtime::net::Hub>>) -> Result<()> {
    let start_rss = status_mib("VmRSS");
    check_range("iters", a.iters, 1, MAX_ITERS)?;
    check_range("warmup", a.warmup, 0, MAX_ITERS)?;
    check_range("microbatches", a.microbatches, 1, MAX_MICROBATCHES)?;
    a.credits = check_opt("credits", a.credits, 1, MAX_CREDITS)?;
    a.threads = threads_flag(a.threads)?;
    let model = Model::load(&a.model)?;
    let inputs = if a.inputs.is_empty() {
        random_inputs(&model)?
    } else {
        bind_inputs(&model, &a.inputs)?
    };
    let mut b = super::run::specialise(SessionBuilder::new(&model), &model, &inputs);
    if let Some(d) = &a.device {
        b = b.devices(d);
    }
    if let Some(t) = a.threads {
        b = b.threads(t);
    }
    if let Some(c) = a.credits {
        b = b.credits(c);
    }
    if let Some(m) = &a.memory_limit {
        b = b.memory_limit(super::inputs::parse_size("memory-limit", m)?);
    }
    let plan = match &a.plan {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading plan '{}'", p.display()))?;
            Some(hetflow::Plan::from_json(&text)?)
        }
        None => None,
    };
    if let Some(plan) = &plan {
        b = b.plan(plan.clone());
    }
    let streaming = a.microbatches > 1;
    let tracing = a.profile || a.trace.is_some() || streaming;
    if let Some(h) = hub {
        // Rank 0 of a multi-host job: the other ranks get the model and
        // the plan from here.
        super::cluster::share(h, &a.model, plan.as_ref(), a.credits, a.threads, tracing)?;
        b = b.hub(h.clone()).wires(&hetflow::cluster::wires_from_env());
    }
    let mut session = b.trace(tracing).build()?;
    // Micro-batches are fed lazily and their outputs dropped as they come
    // back, so memory is bounded by the session's window (credits), not by
    // --microbatches.
    let stream = |s: &mut hetflow::Session| {
        let feed = std::iter::repeat_n(&inputs, a.microbatches).cloned();
        s.run_stream_each(feed, |_, _| Ok(()))
    };
    for _ in 0..a.warmup {
        stream(&mut session)?;
    }
    session.take_trace_events();
    let mut times = Vec::with_capacity(a.iters);
    for _ in 0..a.iters {
        let t = Instant::now();
        stream(&mut session)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|x, y| x.total_cmp(y));
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    if tracing {
        let mut events = session.take_trace_events();
        if let Some(h) = hub.filter(|h| h.size() > 1) {
            // One timeline for the whole job: close the session (the other
            // ranks then send theirs) and merge, rows named rankN/device.
            let since = events
                .iter()
                .map(|e| e.start_us)
                .fold(f64::INFINITY, f64::min);
            let origin = session.trace_origin_unix_us();
            drop(session);
            events = hetflow::cluster::gather_trace(h, events, origin, since)?;
            if let Some(f) = hetflow::cluster::transfer_hidden_fraction(&events) {
                println!("transfer_hidden={f:.3} (share of cross-host transfer time overlapped by compute)");
            }
        }
        if streaming {
            pipeline_report(&events, a.iters, a.microbatches, median);
        }
        if let Some(tp) = &a.trace {
            let json = hetflow::runtime::chrome_trace_json(&events);
            std::fs::write(tp, json)
                .map_err(|e| anyhow::anyhow!("writing trace '{}': {e}", tp.display()))?;
            println!("trace: {}", tp.display());
        }
        if a.profile {
            let prof = hetflow::runtime::op_profile(&events);
            let total: f64 = prof.iter().map(|p| p.2).sum();
            let it = a.iters as f64;
            println!(
                "{:<24} {:>8} {:>12} {:>7}",
                "op", "per_iter", "ms_per_iter", "share"
            );
            for (op, n, us) in &prof {
                println!(
                    "{:<24} {:>8} {:>12.3} {:>6.1}%",
                    op,
                    *n as f64 / it,
                    us / it / 1e3,
                    100.0 * us / total.max(1e-9)
                );
            }
            println!(
                "{:<24} {:>8} {:>12.3}",
                "kernels total",
                "",
                total / it / 1e3
            );
            let ps = hetflow::ops::pool::stats();
            println!(
                "buffer pool: {} hits, {} misses, {:.1} MiB cached",
                ps.hits,
                ps.misses,
                ps.cached_bytes as f64 / (1u64 << 20) as f64
            );
        }
    }
    println!(
        "model {} device {} iters {} warmup {} microbatches {}",
        a.model.display(),
        a.device.as_deref().unwrap_or("(plan/default)"),
        a.iters,
        a.warmup,
        a.microbatches
    );
    println!(
        "min_ms={:.3} max_ms={:.3}",
        times[0],
        times[times.len() - 1]
    );
    if let (Some(peak), Some(start)) = (status_mib("VmHWM"), start_rss) {
        println!("peak_rss_mb={peak:.1} start_rss_mb={start:.1} (VmHWM; the process at its start)");
    }
    println!("median_ms={median:.3}");
    Ok(())
}

/// A `VmRSS`/`VmHWM` line of /proc/self/status in MiB; None off Linux.
fn status_mib(key: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Per-device busy time per micro-batch (the union of its kernel spans in
/// the trace of the timed iterations), the ideal pipelined time of `m` micro-batches through `p`
/// stages, `(m + p - 1) × slowest stage`, and the measured efficiency
/// against it (1.0 = the GPipe bound is reached).
fn pipeline_report(events: &[hetflow::TraceEvent], iters: usize, m: usize, median_ms: f64) {
    // Busy = the union of a device's kernel spans: devices that report
    // spans from their own clocks (OpenCL profiling on PoCL) can overlap
    // consecutive kernels, and a plain sum would count that time twice.
    let mut spans: std::collections::BTreeMap<&str, Vec<(f64, f64)>> = Default::default();
    for e in events.iter().filter(|e| e.cat == "kernel") {
        spans
            .entry(e.device.as_str())
            .or_default()
            .push((e.start_us, e.start_us + e.dur_us));
    }
    let busy: std::collections::BTreeMap<&str, f64> = spans
        .into_iter()
        .map(|(d, mut v)| {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (mut total, mut end) = (0.0, f64::NEG_INFINITY);
            for (s, e) in v {
                if e > end {
                    total += e - s.max(end);
                    end = e;
                }
            }
            (d, total)
        })
        .collect();
    let per_mb = (iters * m) as f64;
    let p = busy.len().max(1);
    for (d, us) in &busy {
        println!("stage {d}: {:.3} ms per micro-batch", us / per_mb / 1e3);
    }
    let slowest = busy.values().copied().fold(0.0, f64::max) / per_mb / 1e3;
    let ideal = (m + p - 1) as f64 * slowest;
    println!(
        "throughput={:.2} microbatches/s ideal_ms={ideal:.3} (slowest stage {slowest:.3} ms x (m + p - 1) = {} )",
        m as f64 / (median_ms / 1e3),
        m + p - 1
    );
    println!("pipeline_efficiency={:.3}", ideal / median_ms);
}
