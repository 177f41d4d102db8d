//! Two logical CPU devices each run half of a model at the same time on
//! different micro-batches: the trace shows kernels of different
//! micro-batches overlapping in time on cpu:0 and cpu:1, and the results
//! equal both a float64 reference and the single-device run.

use hetflow::ops::op::UnaryOp;
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::{Model, SessionBuilder, Tensor};
use std::sync::Arc;

const LAYERS: usize = 8;
const WIDTH: usize = 256;
const ROWS: usize = 64;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

/// x -> (MatMul W_i, Relu) x LAYERS; weights scaled to keep values O(1).
fn model(weights: &[Vec<f32>]) -> Model {
    let mut g = Graph::default();
    let mut x = g.add_input(
        "x",
        DType::F32,
        vec![Dim::Sym("batch".into()), Dim::Known(WIDTH)],
    );
    for (i, w) in weights.iter().enumerate() {
        let w = g.add_const(
            &format!("w{i}"),
            Tensor::from_vec(vec![WIDTH, WIDTH], w.clone()).unwrap(),
        );
        let y = g.add_node(&format!("matmul{i}"), Op::MatMul, &[x, w], 1)[0];
        x = g.add_node(&format!("relu{i}"), Op::Unary(UnaryOp::Relu), &[y], 1)[0];
    }
    g.add_output(x);
    Model::from_graph(g.finish().unwrap())
}

fn reference(x: &[f32], weights: &[Vec<f32>]) -> Vec<f64> {
    let mut a: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for w in weights {
        let mut out = vec![0f64; ROWS * WIDTH];
        for r in 0..ROWS {
            for k in 0..WIDTH {
                let av = a[r * WIDTH + k];
                for c in 0..WIDTH {
                    out[r * WIDTH + c] += av * w[k * WIDTH + c] as f64;
                }
            }
        }
        a = out.into_iter().map(|v| v.max(0.0)).collect();
    }
    a
}

#[test]
fn two_cpu_devices_overlap_microbatches() {
    let mut seed = 7u64;
    let scale = (2.0 / WIDTH as f32).sqrt() * 3.4;
    let weights: Vec<Vec<f32>> = (0..LAYERS)
        .map(|_| (0..WIDTH * WIDTH).map(|_| lcg(&mut seed) * scale).collect())
        .collect();
    let m = model(&weights);
    let batches: Vec<Vec<Arc<Tensor>>> = (0..8)
        .map(|_| {
            let x: Vec<f32> = (0..ROWS * WIDTH).map(|_| lcg(&mut seed)).collect();
            vec![Arc::new(Tensor::from_vec(vec![ROWS, WIDTH], x).unwrap())]
        })
        .collect();

    let mut split = SessionBuilder::new(&m)
        .devices("cpu:0,cpu:1")
        .threads(1)
        .trace(true)
        .build()
        .unwrap();
    // Warm up (first-touch allocations), then the measured stream.
    split.run_stream(batches.clone()).unwrap();
    let t0 = split.trace_events().len();
    let got = split.run_stream(batches.clone()).unwrap();
    let events: Vec<_> = split.trace_events().into_iter().skip(t0).collect();

    let mut single = SessionBuilder::new(&m)
        .devices("cpu")
        .threads(1)
        .build()
        .unwrap();
    let want = single.run_stream(batches.clone()).unwrap();

    for (i, (b, (g, w))) in batches.iter().zip(got.iter().zip(&want)).enumerate() {
        let r = reference(b[0].as_slice::<f32>().unwrap(), &weights);
        let gv = g[0].as_slice::<f32>().unwrap();
        let num: f64 = gv
            .iter()
            .zip(&r)
            .map(|(p, q)| (*p as f64 - q).powi(2))
            .sum();
        let den: f64 = r.iter().map(|q| q * q).sum();
        assert!(den > 0.0);
        assert!(
            (num / den).sqrt() < 1e-5,
            "micro-batch {i}: rel L2 {:.3e} vs f64",
            (num / den).sqrt()
        );
        assert_eq!(
            g[0].as_slice::<f32>().unwrap(),
            w[0].as_slice::<f32>().unwrap(),
            "micro-batch {i}: split != single"
        );
    }

    // Both devices did work, and some kernel on cpu:0 overlapped in time
    // with a kernel of a different micro-batch on cpu:1.
    let on = |d: &str| {
        events
            .iter()
            .filter(|e| e.device == d && e.cat == "kernel")
            .collect::<Vec<_>>()
    };
    let (d0, d1) = (on("cpu:0"), on("cpu:1"));
    assert_eq!(
        d0.len() + d1.len(),
        2 * LAYERS * 8,
        "every node ran once per micro-batch"
    );
    assert!(!d0.is_empty() && !d1.is_empty(), "both stages ran");
    let overlapping = d0
        .iter()
        .flat_map(|a| d1.iter().map(move |b| (a, b)))
        .filter(|(a, b)| {
            a.mb != b.mb && a.start_us < b.start_us + b.dur_us && b.start_us < a.start_us + a.dur_us
        })
        .count();
    assert!(
        overlapping > 0,
        "no overlap between the two stages: {:?}",
        events
            .iter()
            .map(|e| (&e.device, e.mb, e.start_us as u64, e.dur_us as u64))
            .collect::<Vec<_>>()
    );
}
