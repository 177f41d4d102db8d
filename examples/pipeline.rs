//! Pipeline parallelism on one machine: measure two logical CPU devices,
//! let the partitioner cut a model into two stages balanced by their
//! measured speed, stream micro-batches through the plan, and compare with
//! the ideal pipelined time.
//!
//! ```text
//! cargo run --release --example pipeline                 # a 24-layer MLP built here
//! cargo run --release --example pipeline -- model.onnx   # any model (random inputs)
//! ```

use hetflow::ops::op::UnaryOp;
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::profile::{profile_devices, ProfileOptions};
use hetflow::scheduler::cost::GraphCosts;
use hetflow::scheduler::partition::{partition, PartitionOptions};
use hetflow::scheduler::planner::describe;
use hetflow::{Model, SessionBuilder, Tensor};
use std::sync::Arc;
use std::time::Instant;

const MICROBATCHES: usize = 8;

/// x -> 24 x (MatMul 512x512, Relu), batch symbolic.
fn chain() -> Result<Model, hetflow::Error> {
    let w = 512;
    let mut g = Graph::default();
    let mut x = g.add_input(
        "x",
        DType::F32,
        vec![Dim::Sym("batch".into()), Dim::Known(w)],
    );
    for i in 0..24 {
        let data: Vec<f32> = (0..w * w)
            .map(|k| (((k * 31 + i) % 101) as f32 - 50.0) / (50.0 * w as f32))
            .collect();
        let wt = g.add_const(&format!("w{i}"), Tensor::from_vec(vec![w, w], data)?);
        let y = g.add_node(&format!("matmul{i}"), Op::MatMul, &[x, wt], 1)[0];
        x = g.add_node(&format!("relu{i}"), Op::Unary(UnaryOp::Relu), &[y], 1)[0];
    }
    g.add_output(x);
    Ok(Model::from_graph(g.finish()?))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = match std::env::args().nth(1) {
        Some(path) => Model::load(path)?,
        None => chain()?,
    };
    let batch = 64;
    let specs = hetflow::devices::parse_device_list("cpu:0,cpu:1")?;
    let devices = hetflow::devices::open_devices(&specs, None)?;

    // 1. Measure the devices (and the model's own kernels) into a cluster spec.
    let t = Instant::now();
    let opts = ProfileOptions {
        iters: 3,
        graphs: vec![model.graph().clone()],
        batch,
        ..Default::default()
    };
    let cluster = profile_devices(&devices, &opts)?;
    println!(
        "profiled {} devices in {:.1} s",
        cluster.devices.len(),
        t.elapsed().as_secs_f64()
    );

    // 2. Plan: two stages balanced by measured speed, link and memory costs.
    let g = model.graph();
    let costs = GraphCosts::new(g, batch);
    let part = partition(
        g,
        &costs,
        &cluster,
        &PartitionOptions {
            microbatches: MICROBATCHES,
            use_all: true,
            ..Default::default()
        },
    )?;
    print!("{}", describe(&part.plan, g));

    // 3. Run: stream the micro-batches through the plan.
    let mut session = SessionBuilder::new(&model)
        .with_devices(devices)
        .plan(part.plan.clone())
        .build()?;
    let x = hetflow::random_inputs(model.graph(), batch, 7)?;
    let stream: Vec<Vec<Arc<Tensor>>> = (0..MICROBATCHES).map(|_| x.clone()).collect();
    session.run_stream(stream.clone())?; // warm-up
    let t = Instant::now();
    let outs = session.run_stream(stream)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let ideal = (MICROBATCHES + part.stages.len() - 1) as f64 * part.bottleneck * 1e3;
    println!(
        "{} micro-batches in {ms:.1} ms; predicted {:.1} ms (ideal pipelined {ideal:.1} ms); output shape {:?}",
        outs.len(),
        part.makespan * 1e3,
        outs[0][0].shape()
    );
    Ok(())
}
