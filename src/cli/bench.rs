//! `hetflow bench`: latency of one input set, repeated.

use super::inputs::{bind_inputs, random_inputs};
use anyhow::Result;
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
    /// Devices, e.g. `cpu`, `cpu:0,cpu:1`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print per-op-type kernel time per iteration (from the trace of the
    /// timed iterations) before the result lines.
    #[arg(long)]
    profile: bool,
    /// Write a Chrome/Perfetto trace of the timed iterations.
    #[arg(long)]
    trace: Option<PathBuf>,
}

pub fn main(a: Args) -> Result<()> {
    if a.iters == 0 {
        anyhow::bail!("--iters must be at least 1");
    }
    let model = Model::load(&a.model)?;
    let inputs = if a.inputs.is_empty() {
        random_inputs(&model)?
    } else {
        bind_inputs(&model, &a.inputs)?
    };
    let mut b = SessionBuilder::new(&model).devices(&a.device);
    if let Some(t) = a.threads {
        b = b.threads(t);
    }
    let tracing = a.profile || a.trace.is_some();
    let mut session = b.trace(tracing).build()?;
    for _ in 0..a.warmup {
        session.run(inputs.clone())?;
    }
    session.take_trace_events();
    let mut times = Vec::with_capacity(a.iters);
    for _ in 0..a.iters {
        let t = Instant::now();
        session.run(inputs.clone())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|x, y| x.total_cmp(y));
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    if tracing {
        let events = session.take_trace_events();
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
        "model {} device {} iters {} warmup {}",
        a.model.display(),
        a.device,
        a.iters,
        a.warmup
    );
    println!(
        "min_ms={:.3} max_ms={:.3}",
        times[0],
        times[times.len() - 1]
    );
    println!("median_ms={median:.3}");
    Ok(())
}
