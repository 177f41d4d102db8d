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
    let mut session = b.build()?;
    for _ in 0..a.warmup {
        session.run(inputs.clone())?;
    }
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
