//! Fault injection (issue 18): a device that fails a kernel, panics in
//! one, hangs in one, or disappears mid-run. Every time, out of 100 per
//! fault, the run returns an error naming the op and the device within
//! 1 s, without hanging, and a fresh session afterwards computes the right
//! answer.
//!
//! The pipeline is two stages over logical CPU devices (`cpu:0` runs the
//! Gemm, `cpu:1` the Softmax); `cpu:0` is wrapped in
//! `hetflow::devices::fault::Faulty`, which strikes at its 4th kernel, in
//! the middle of an 8-micro-batch stream. Hangs are caught by the
//! session's kernel timeout (100 ms here).

use hetflow::devices::fault::{Fault, Faulty};
use hetflow::devices::Device;
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::{Model, SessionBuilder, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRIALS: usize = 100;
const STRIKE: u64 = 3;

/// softmax(x W + b) with x `[8, 32]`.
fn model() -> Model {
    let (m, k, n) = (8usize, 32usize, 16usize);
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Known(m), Dim::Known(k)]);
    let w = g.add_const(
        "w",
        Tensor::from_vec(
            vec![k, n],
            (0..k * n)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.05)
                .collect(),
        )
        .unwrap(),
    );
    let b = g.add_const(
        "b",
        Tensor::from_vec(vec![n], (0..n).map(|i| i as f32 * 0.01).collect()).unwrap(),
    );
    let gemm = Op::Gemm {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
        act: Default::default(),
    };
    let y = g.add_node("fc", gemm, &[x, w, b], 1)[0];
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

fn inputs(n: usize) -> Vec<Vec<Arc<Tensor>>> {
    (0..n)
        .map(|s| {
            vec![Arc::new(
                Tensor::from_vec(
                    vec![8, 32],
                    (0..256)
                        .map(|i| (((i + s) * 37 % 11) as f32 - 5.0) / 5.0)
                        .collect(),
                )
                .unwrap(),
            )]
        })
        .collect()
}

/// softmax(x W + b) row by row in f64: the independent reference.
fn reference(x: &Tensor) -> Vec<f64> {
    let xv = x.to_f32_vec();
    let mut out = Vec::new();
    for r in 0..8 {
        let z: Vec<f64> = (0..16)
            .map(|j| {
                let dot: f64 = (0..32)
                    .map(|c| xv[r * 32 + c] as f64 * (((c * 16 + j) * 7 % 13) as f64 - 6.0) * 0.05)
                    .sum();
                dot + j as f64 * 0.01
            })
            .collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| v / s));
    }
    out
}

fn devices() -> Vec<Arc<dyn Device>> {
    let specs = hetflow::devices::parse_device_list("cpu:0,cpu:1").unwrap();
    hetflow::devices::open_devices(&specs, Some(1)).unwrap()
}

/// Runs `TRIALS` sessions whose `cpu:0` injects `fault`; each must fail
/// within 1 s naming the op and `cpu:0` (or, for a vanished device, the
/// copy out of it).
fn trials(name: &str, fault: Fault, needles: &[&str]) {
    let m = model();
    let devs = devices();
    let mut slowest = Duration::ZERO;
    for t in 0..TRIALS {
        let faulty: Arc<dyn Device> = Arc::new(Faulty::new(devs[0].clone(), fault));
        let mut s = SessionBuilder::new(&m)
            .with_devices(vec![faulty, devs[1].clone()])
            .credits(2)
            .kernel_timeout(Duration::from_millis(100))
            .build()
            .unwrap_or_else(|e| panic!("{name} trial {t}: build: {e}"));
        let start = Instant::now();
        let r = s.run_stream(inputs(8));
        let took = start.elapsed();
        drop(s);
        slowest = slowest.max(took);
        let e = match r {
            Ok(_) => panic!("{name} trial {t}: the run succeeded"),
            Err(e) => e.to_string(),
        };
        assert!(
            took < Duration::from_secs(1),
            "{name} trial {t}: error after {took:?}: {e}"
        );
        assert!(
            needles.iter().any(|n| e.contains(n)),
            "{name} trial {t}: error names none of {needles:?}: {e}"
        );
        assert!(
            e.contains("cpu:0"),
            "{name} trial {t}: error does not name cpu:0: {e}"
        );
    }
    eprintln!("{name}: {TRIALS}/{TRIALS} failed cleanly, slowest {slowest:?}");
    // A fresh session on the same devices works and is right.
    let mut s = SessionBuilder::new(&m).with_devices(devs).build().unwrap();
    let ins = inputs(8);
    let outs = s.run_stream(ins.clone()).unwrap();
    for (i, o) in ins.iter().zip(&outs) {
        let want = reference(&i[0]);
        let got = o[0].to_f32_vec();
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() < 1e-5,
                "{name}: after the faults, {g} vs {w}"
            );
        }
    }
}

fn quiet_injected_panics() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("injected fault") {
            prev(info);
        }
    }));
}

#[test]
fn failing_kernel() {
    trials("fail", Fault::Fail(STRIKE), &["node 'fc' (Gemm) on cpu:0"]);
}

#[test]
fn panicking_kernel() {
    quiet_injected_panics();
    trials(
        "panic",
        Fault::Panic(STRIKE),
        &["node 'fc' (Gemm) on cpu:0"],
    );
}

#[test]
fn hanging_kernel() {
    trials(
        "hang",
        Fault::Hang(STRIKE, Duration::from_secs(3)),
        &["node 'fc' (Gemm) on cpu:0", "kernel timeout"],
    );
}

#[test]
fn vanishing_device() {
    trials(
        "vanish",
        Fault::Vanish(STRIKE),
        &["node 'fc' (Gemm) on cpu:0", "cpu:0 disappeared"],
    );
}
