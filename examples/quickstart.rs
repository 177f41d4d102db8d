//! Quickstart: build a small model in code (or load an ONNX file given as
//! the first argument), run it on the default CPU device, print the outputs
//! and the time taken.
//!
//! ```text
//! cargo run --release --example quickstart
//! cargo run --release --example quickstart -- model.onnx
//! ```

use hetflow::ops::op::UnaryOp;
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::{Model, SessionBuilder, Tensor};
use std::sync::Arc;
use std::time::Instant;

/// Large buffers on 64-byte lines, as the `hetflow` binary runs (see
/// `hetflow::AlignedAlloc`): a program that embeds hetflow opts in here.
#[global_allocator]
static ALLOC: hetflow::AlignedAlloc = hetflow::AlignedAlloc;

/// A two-layer MLP: softmax(relu(x W1 + b1) W2 + b2), batch symbolic.
fn mlp() -> Result<Model, hetflow::Error> {
    let mut g = Graph::default();
    let x = g.add_input(
        "x",
        DType::F32,
        vec![Dim::Sym("batch".into()), Dim::Known(4)],
    );
    let w1 = g.add_const(
        "w1",
        Tensor::from_vec(
            vec![4, 8],
            (0..32).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect(),
        )?,
    );
    let b1 = g.add_const("b1", Tensor::from_vec(vec![8], vec![0.05f32; 8])?);
    let w2 = g.add_const(
        "w2",
        Tensor::from_vec(
            vec![8, 3],
            (0..24).map(|i| ((i % 5) as f32 - 2.0) * 0.2).collect(),
        )?,
    );
    let b2 = g.add_const("b2", Tensor::from_vec(vec![3], vec![0.0f32, 0.1, -0.1])?);
    let h = g.add_node("fc1", Op::MatMul, &[x, w1], 1)[0];
    let h = g.add_node(
        "bias1",
        Op::Binary(hetflow::ops::op::BinaryOp::Add),
        &[h, b1],
        1,
    )[0];
    let h = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[h], 1)[0];
    let y = g.add_node("fc2", Op::MatMul, &[h, w2], 1)[0];
    let y = g.add_node(
        "bias2",
        Op::Binary(hetflow::ops::op::BinaryOp::Add),
        &[y, b2],
        1,
    )[0];
    let p = g.add_node(
        "probs",
        Op::Softmax {
            axis: -1,
            legacy: false,
        },
        &[y],
        1,
    )[0];
    g.add_output(p);
    Ok(Model::from_graph(g.finish()?))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1);
    let model = match &arg {
        Some(path) => Model::load(path)?,
        None => mlp()?,
    };
    println!(
        "inputs: {:?}  outputs: {:?}",
        model.input_names(),
        model.output_names()
    );

    // One random-ish input per graph input, symbolic dims set to 2.
    let g = model.graph();
    let inputs: Vec<Arc<Tensor>> = g
        .inputs
        .iter()
        .map(|i| {
            let f = &g.value(*i).fact;
            let shape: Vec<usize> = f
                .shape
                .as_ref()
                .map(|s| s.iter().map(|d| d.known().unwrap_or(2)).collect())
                .unwrap_or_default();
            let n: usize = shape.iter().product();
            let t = Tensor::from_vec(
                shape,
                (0..n).map(|k| ((k * 37 % 11) as f32 - 5.0) / 5.0).collect(),
            )
            .unwrap();
            Arc::new(t.cast(f.dtype.unwrap_or(DType::F32)))
        })
        .collect();

    let mut session = SessionBuilder::new(&model).build()?;
    let t = Instant::now();
    let outputs = session.run(inputs.clone())?;
    let first = t.elapsed();
    let t = Instant::now();
    let runs = 20;
    for _ in 0..runs {
        session.run(inputs.clone())?;
    }
    let steady = t.elapsed() / runs;
    for (name, out) in model.output_names().iter().zip(&outputs) {
        let v = out.to_f32_vec();
        println!(
            "{name}: {} {:?} first values {:?}",
            out.dtype(),
            out.shape(),
            &v[..v.len().min(6)]
        );
    }
    if arg.is_none() {
        // The built-in model ends in a softmax: every row is a distribution.
        // CI runs this example, so a wrong result fails it.
        let probs = outputs[0].to_f32_vec();
        for row in probs.chunks(3) {
            let sum: f32 = row.iter().sum();
            if (sum - 1.0).abs() > 1e-5 || row.iter().any(|p| !(0.0..=1.0).contains(p)) {
                return Err(format!("softmax row {row:?} is not a distribution").into());
            }
        }
    }
    println!(
        "first run {:.3} ms, steady state {:.3} ms per run",
        first.as_secs_f64() * 1e3,
        steady.as_secs_f64() * 1e3
    );
    Ok(())
}
