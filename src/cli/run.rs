//! `hetflow run`.

use super::inputs::{bind_inputs, threads_flag};
use anyhow::{bail, Context, Result};
use hetflow::{Model, SessionBuilder};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model.
    model: PathBuf,
    /// Input as NAME=PATH or PATH (.npy or ONNX TensorProto .pb); bare
    /// paths bind to the remaining inputs in order.
    #[arg(long = "input", short = 'i')]
    inputs: Vec<String>,
    /// Where to write <output_name>.npy files.
    #[arg(long, default_value = ".")]
    output_dir: PathBuf,
    /// Devices, e.g. `cpu`, `cpu:0,cpu:1` (default: the plan's, else `cpu`).
    #[arg(long)]
    device: Option<String>,
    /// Kernel threads per CPU device.
    #[arg(long)]
    threads: Option<usize>,
    /// A plan JSON to execute instead of the default placement.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Write a Chrome/Perfetto trace of the run.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Refuse to start when the plan's predicted memory on a device is
    /// over SIZE (bytes, or 512M, 2G, ...); default: each device's memory.
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<String>,
}

/// Each output's file name, refusing two outputs whose sanitised names
/// collide (`a/b` and `a_b` would overwrite each other).
fn output_files(model: &Model) -> Result<Vec<String>> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut files = Vec::new();
    for name in model.output_names() {
        let file = format!("{}.npy", hetflow::sanitize_name(name));
        match seen.insert(file.clone(), name) {
            Some(prev) if prev != name => bail!(
                "outputs '{}' and '{}' would both be written to {file}; rename one in the model",
                hetflow::escape_controls(prev),
                hetflow::escape_controls(name)
            ),
            _ => files.push(file),
        }
    }
    Ok(files)
}

pub fn main(mut a: Args, hub: Option<&std::sync::Arc<hetflow::runtime::net::Hub>>) -> Result<()> {
    a.threads = threads_flag(a.threads)?;
    let model = Model::load(&a.model)?;
    let files = output_files(&model)?;
    let inputs = bind_inputs(&model, &a.inputs)?;
    let mut b = SessionBuilder::new(&model).trace(a.trace.is_some());
    b = specialise(b, &model, &inputs);
    if let Some(d) = &a.device {
        b = b.devices(d);
    }
    if let Some(t) = a.threads {
        b = b.threads(t);
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
    if let Some(h) = hub {
        // Rank 0 of a multi-host job: the other ranks get the model and
        // the plan from here.
        super::cluster::share(
            h,
            &a.model,
            plan.as_ref(),
            None,
            a.threads,
            a.trace.is_some(),
        )?;
        b = b.hub(h.clone()).wires(&hetflow::cluster::wires_from_env());
    }
    let mut session = b.build()?;
    let start = std::time::Instant::now();
    let outputs = session.run(inputs)?;
    let elapsed = start.elapsed();
    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("creating output dir '{}'", a.output_dir.display()))?;
    for ((name, t), file) in model.output_names().iter().zip(&outputs).zip(&files) {
        let file = a.output_dir.join(file);
        hetflow::ops::npy::write_npy(&file, t)?;
        println!(
            "{}: {} {:?} -> {}",
            hetflow::escape_controls(name),
            t.dtype(),
            t.shape(),
            file.display()
        );
    }
    if let Some(tp) = &a.trace {
        let json = hetflow::runtime::chrome_trace_json(&session.trace_events());
        std::fs::write(tp, json).with_context(|| format!("writing trace '{}'", tp.display()))?;
        println!("trace: {}", tp.display());
    }
    println!("ran in {:.3} ms", elapsed.as_secs_f64() * 1e3);
    Ok(())
}

/// Specialises the session to the inputs' shapes
/// ([`SessionBuilder::input_shapes`]) when they fit the model; inputs that
/// do not fit are left to the session, whose error names what is wrong.
pub fn specialise<'a>(
    b: SessionBuilder<'a>,
    model: &hetflow::Model,
    inputs: &[std::sync::Arc<hetflow::Tensor>],
) -> SessionBuilder<'a> {
    if hetflow::runtime::check_inputs(model.graph(), inputs).is_err() {
        return b;
    }
    b.input_shapes(inputs.iter().map(|t| t.shape().to_vec()).collect())
}
