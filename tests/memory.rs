//! Memory stays flat over many runs of one session (issue 18, "leak").
//!
//! Gemm with a bias and Softmax used to build their outputs outside the
//! buffer pool; the pool cached that storage when the tensors were dropped,
//! and no request ever took it back, so every run left about one output
//! behind (a one-Softmax model: 38 MB peak RSS at 200 runs, 551 MB at
//! 4,200). This test runs such a model 10,000 times through the public API
//! and checks that resident memory after a 1,000-run warm-up does not grow
//! by more than 16 MB; the old behaviour grew by about 64 KB per run here
//! (two 32 KB outputs), over 500 MB in all.
//!
//! A second test streams 2,000 micro-batches through a two-stage pipeline
//! with `run_stream_each` and checks that memory stays bounded by the
//! credits (issue 18, "memory not bounded by credits"): inputs are made
//! lazily and outputs dropped as they come back.
//!
//! It is its own test binary so that no other test allocates in the same
//! process while it measures; its two tests take turns (`TURN`).

mod common;

use common::rss_bytes;
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::{Model, SessionBuilder, Tensor};
use std::sync::Arc;

/// softmax(x W + b): x `[64, 128]`, outputs `[64, 128]` f32 (32 KB each,
/// above the pool's 16 KB caching threshold).
fn gemm_softmax() -> Model {
    let (m, k, n) = (64usize, 128usize, 128usize);
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Known(m), Dim::Known(k)]);
    let w = g.add_const(
        "w",
        Tensor::from_vec(
            vec![k, n],
            (0..k * n)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.01)
                .collect(),
        )
        .unwrap(),
    );
    let b = g.add_const(
        "b",
        Tensor::from_vec(vec![n], (0..n).map(|i| i as f32 * 1e-3).collect()).unwrap(),
    );
    let y = g.add_node(
        "fc",
        Op::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
            act: Default::default(),
        },
        &[x, w, b],
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
    Model::from_graph(g.finish().unwrap())
}

static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn input(seed: usize) -> Arc<Tensor> {
    Arc::new(
        Tensor::from_vec(
            vec![64, 128],
            (0..64 * 128)
                .map(|i| (((i + seed) * 37 % 11) as f32 - 5.0) / 5.0)
                .collect(),
        )
        .unwrap(),
    )
}

#[test]
fn streaming_memory_is_bounded_by_credits() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let model = gemm_softmax();
    let mut session = SessionBuilder::new(&model)
        .devices("cpu:0,cpu:1")
        .credits(2)
        .build()
        .expect("session");
    let mut stream = |n: usize| {
        let (mut peak, mut next) = (0u64, 0usize);
        let got = session
            .run_stream_each((0..n).map(|i| vec![input(i)]), |i, out| {
                assert_eq!(i, next, "results out of order");
                next += 1;
                let row: f32 = out[0].to_f32_vec()[..128].iter().sum();
                assert!((row - 1.0).abs() < 1e-4, "softmax row sums to {row}");
                if i % 25 == 0 {
                    peak = peak.max(rss_bytes());
                }
                Ok(())
            })
            .expect("stream");
        assert_eq!(got, n);
        peak
    };
    stream(20);
    let base = rss_bytes();
    let peak = stream(2_000);
    let grew = peak.saturating_sub(base);
    eprintln!(
        "window {} micro-batches; RSS {:.1} MB before, peak {:.1} MB over 2,000 (+{:.1} MB)",
        session.window(),
        base as f64 / 1e6,
        peak as f64 / 1e6,
        grew as f64 / 1e6
    );
    // Holding the stream would take 2,000 x (32 KB in + 32 KB out) = 128 MB.
    assert!(
        grew < 16 << 20,
        "streaming 2,000 micro-batches grew RSS by {:.1} MB",
        grew as f64 / 1e6
    );
}

#[test]
fn rss_is_flat_over_10k_runs() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let model = gemm_softmax();
    let mut session = SessionBuilder::new(&model)
        .devices("cpu")
        .build()
        .expect("session");
    let x = Arc::new(
        Tensor::from_vec(
            vec![64, 128],
            (0..64 * 128)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0)
                .collect(),
        )
        .unwrap(),
    );
    let mut run = |iters: usize| {
        for _ in 0..iters {
            let out = session.run(vec![x.clone()]).expect("run");
            let row: f32 = out[0].to_f32_vec()[..128].iter().sum();
            assert!((row - 1.0).abs() < 1e-4, "softmax row sums to {row}");
        }
    };
    run(1_000);
    let warm = rss_bytes();
    run(9_000);
    let after = rss_bytes();
    let grew = after.saturating_sub(warm);
    eprintln!(
        "RSS after 1k runs {:.1} MB, after 10k {:.1} MB (+{:.1} MB); pool {:?}",
        warm as f64 / 1e6,
        after as f64 / 1e6,
        grew as f64 / 1e6,
        hetflow::ops::pool::stats()
    );
    assert!(
        grew < 16 << 20,
        "RSS grew by {:.1} MB between run 1,000 and run 10,000",
        grew as f64 / 1e6
    );
}
