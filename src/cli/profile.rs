//! `hetflow profile`: measure this machine's devices and links and write a
//! cluster spec (see `hetflow::profile`). Under `hetflow launch`, rank 0
//! writes one spec for every rank's devices (`rankN/KIND:I`) and the
//! links between the ranks, measured by round trips over the job's own
//! transport (`hetflow::cluster::profile_job`).

use super::inputs::{check_range, threads_flag, MAX_ITERS};
use anyhow::{Context, Result};
use hetflow::profile::{profile, ProfileOptions};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// Devices to profile, e.g. `cpu`, `cpu:0,cpu:1` (default: the
    /// host's `devices=` from `hetflow launch --hostfile`, else every
    /// device `hetflow devices` lists: cpu, each OpenCL and CUDA device,
    /// and the TPU when HETFLOW_TPU=1).
    #[arg(long)]
    device: Option<String>,
    /// Kernel threads per CPU device.
    #[arg(long)]
    threads: Option<usize>,
    /// Also fit efficiencies to these models' kernels (repeatable).
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Also measure the training step of these models (forward, loss and
    /// backward kernels, as `hetflow train` runs them), so that `hetflow
    /// simulate --train` costs the backward pass from measurements
    /// (repeatable).
    #[arg(long = "train")]
    train: Vec<PathBuf>,
    /// Samples per micro-batch for --train.
    #[arg(long, default_value_t = 16)]
    train_batch: usize,
    /// Timed iterations per benchmark.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Where to write the spec; stdout when absent.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What `hetflow devices` lists, as a device list (`cpu,opencl:0`); `cpu`
/// when discovery finds nothing else.
fn listed_devices() -> String {
    let (_, backends) = hetflow::devices::discover();
    let ids: Vec<String> = backends
        .iter()
        .flat_map(|b| b.devices.iter().map(|d| d.id.to_string()))
        .collect();
    let list = if ids.is_empty() {
        "cpu".to_string()
    } else {
        ids.join(",")
    };
    eprintln!("profiling {list} (what `hetflow devices` lists; --device picks others)");
    list
}

pub fn main(mut a: Args, hub: Option<&Arc<hetflow::runtime::net::Hub>>) -> Result<()> {
    check_range("iters", a.iters, 1, MAX_ITERS)?;
    a.threads = threads_flag(a.threads)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let b2 = bar.clone();
    let opts = ProfileOptions {
        devices: a
            .device
            .clone()
            .or_else(hetflow::cluster::host_devices)
            .unwrap_or_else(listed_devices),
        threads: a.threads,
        models: a.models.clone(),
        graphs: a
            .train
            .iter()
            .map(|m| -> Result<Arc<hetflow::Graph>> {
                let model = hetflow::Model::load_unoptimized(m)?;
                let tg = hetflow::train::training_graph(
                    model.graph(),
                    a.train_batch.max(1),
                    hetflow::train::Loss::CrossEntropy,
                )
                .with_context(|| format!("the training graph of {}", m.display()))?;
                Ok(Arc::new(tg.graph))
            })
            .collect::<Result<_>>()?,
        batch: 1,
        iters: a.iters.max(1),
        progress: Some(Arc::new(move |done, total, what: &str| {
            b2.set_length(total as u64);
            b2.set_position(done as u64);
            b2.set_message(what.to_string());
        })),
    };
    // In a launched job, rank 0 profiles every rank's devices and the
    // links to them, and writes one spec (`hetflow::cluster::profile_job`).
    let spec = match hub {
        Some(h) if h.size() > 1 => {
            hetflow::cluster::profile_job(h, &opts).map_err(anyhow::Error::from)
        }
        _ => profile(&opts).map_err(anyhow::Error::from),
    };
    bar.finish_and_clear();
    let spec = spec?;
    let text = spec.to_toml();
    match &a.out {
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("writing '{}'", p.display()))?;
            for d in &spec.devices {
                println!(
                    "{}: {:.1} GFLOP/s f32, {:.1} GB/s, launch {:.2} us, efficiency {}",
                    d.name,
                    d.peak_gflops.get("f32").copied().unwrap_or(0.0),
                    d.mem_bw_gbps,
                    d.launch_us,
                    d.efficiency
                        .iter()
                        .map(|(c, e)| format!("{c:?}={e:.2}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            println!("cluster spec: {}", p.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
