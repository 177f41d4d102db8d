//! The emulated TPU-like device through the public API (the foundation
//! models run on it in `tests/devices.rs`, within bf16 tolerance): a MatMul
//! bit-identical to an independent bf16-operand / f32-accumulate
//! reference, a mixed cpu + tpu plan with its trace, and the CLI.

mod common;
use common::{case, check_outputs_within, read, rel_l2};
use hetflow::devices::tpu::TpuConfig;
use hetflow::ops::op::UnaryOp;
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::{Model, Plan, SessionBuilder, Tensor};
use std::sync::Arc;

/// bf16 tolerance of the issue: relative L2 against the f32 reference.
const BF16_REL_L2: f64 = 1e-2;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

/// Round to nearest even bf16 through the `half` crate (not the device's
/// own rounding code).
fn bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// The documented order: per output, K tiles of `tile` in increasing
/// order; inside a tile, products summed in increasing k from +0.0; tile
/// sums added to an accumulator from +0.0. All arithmetic in f32.
fn reference_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, tile: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            let mut t0 = 0;
            while t0 < k {
                let mut s = 0f32;
                for kk in t0..(t0 + tile).min(k) {
                    s += bf16(a[i * k + kk]) * bf16(b[kk * n + j]);
                }
                acc += s;
                t0 += tile;
            }
            out[i * n + j] = acc;
        }
    }
    out
}

#[test]
fn matmul_is_bit_identical_to_bf16_reference() {
    // K = 300: two full 128-deep tiles and a partial one; odd M and N.
    let (m, k, n) = (37, 300, 45);
    let mut seed = 11u64;
    // Values spread over several binades so rounding and order matter.
    let a: Vec<f32> = (0..m * k)
        .map(|i| lcg(&mut seed) * (1 << (i % 7)) as f32)
        .collect();
    let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed) * 3.0).collect();
    let mut g = Graph::default();
    let x = g.add_input("a", DType::F32, vec![Dim::Known(m), Dim::Known(k)]);
    let w = g.add_input("b", DType::F32, vec![Dim::Known(k), Dim::Known(n)]);
    let y = g.add_node("mm", Op::MatMul, &[x, w], 1)[0];
    g.add_output(y);
    let model = Model::from_graph(g.finish().unwrap());
    let mut s = SessionBuilder::new(&model)
        .devices("tpu:0")
        .build()
        .unwrap();
    let got = s
        .run(vec![
            Arc::new(Tensor::from_vec(vec![m, k], a.clone()).unwrap()),
            Arc::new(Tensor::from_vec(vec![k, n], b.clone()).unwrap()),
        ])
        .unwrap();
    let got = got[0].as_slice::<f32>().unwrap();
    let tile = TpuConfig::default().mxu_rows;
    assert_eq!(tile, 128);
    let want = reference_matmul(&a, &b, m, k, n, tile);
    let differ = got
        .iter()
        .zip(&want)
        .filter(|(p, q)| p.to_bits() != q.to_bits())
        .count();
    assert_eq!(differ, 0, "{differ} of {} outputs differ in bits", m * n);
    // And it is a bf16 result, not an f32 one: the f32 product differs.
    let f32_exact: Vec<f32> = (0..m * n)
        .map(|idx| {
            let (i, j) = (idx / n, idx % n);
            (0..k).map(|kk| a[i * k + kk] * b[kk * n + j]).sum()
        })
        .collect();
    assert!(got.iter().zip(&f32_exact).any(|(p, q)| p != q));
}

/// x -> (MatMul W_i, Relu) x 4, layers alternating between cpu:0 and tpu:0.
#[test]
fn mixed_cpu_and_tpu_plan_runs_with_trace() {
    const WIDTH: usize = 96;
    const ROWS: usize = 16;
    const LAYERS: usize = 4;
    let mut seed = 3u64;
    let scale = (2.0 / WIDTH as f32).sqrt() * 3.4;
    let weights: Vec<Vec<f32>> = (0..LAYERS)
        .map(|_| (0..WIDTH * WIDTH).map(|_| lcg(&mut seed) * scale).collect())
        .collect();
    let mut g = Graph::default();
    let mut x = g.add_input("x", DType::F32, vec![Dim::Known(ROWS), Dim::Known(WIDTH)]);
    for (i, w) in weights.iter().enumerate() {
        let w = g.add_const(
            &format!("w{i}"),
            Tensor::from_vec(vec![WIDTH, WIDTH], w.clone()).unwrap(),
        );
        let y = g.add_node(&format!("matmul{i}"), Op::MatMul, &[x, w], 1)[0];
        x = g.add_node(&format!("relu{i}"), Op::Unary(UnaryOp::Relu), &[y], 1)[0];
    }
    g.add_output(x);
    let model = Model::from_graph(g.finish().unwrap());
    // Nodes are matmul0, relu0, matmul1, ...: layer i on device i % 2.
    let placement: Vec<usize> = (0..2 * LAYERS).map(|n| (n / 2) % 2).collect();
    let plan = Plan::from_placement(
        model.graph(),
        vec!["cpu:0".into(), "tpu:0".into()],
        placement,
    );
    assert!(
        !plan.transfers.is_empty(),
        "the plan moves data between devices"
    );
    let mut s = SessionBuilder::new(&model)
        .devices("cpu:0,tpu:0")
        .plan(plan)
        .trace(true)
        .build()
        .unwrap();
    let input: Vec<f32> = (0..ROWS * WIDTH).map(|_| lcg(&mut seed)).collect();
    let got = s
        .run(vec![Arc::new(
            Tensor::from_vec(vec![ROWS, WIDTH], input.clone()).unwrap(),
        )])
        .unwrap();

    // f64 reference.
    let mut a: Vec<f64> = input.iter().map(|&v| v as f64).collect();
    for w in &weights {
        let mut out = vec![0f64; ROWS * WIDTH];
        for r in 0..ROWS {
            for k in 0..WIDTH {
                for c in 0..WIDTH {
                    out[r * WIDTH + c] += a[r * WIDTH + k] * w[k * WIDTH + c] as f64;
                }
            }
        }
        a = out.into_iter().map(|v| v.max(0.0)).collect();
    }
    let want = Tensor::from_vec(vec![ROWS, WIDTH], a).unwrap();
    let e = rel_l2(&got[0], &want);
    eprintln!("mixed cpu+tpu: relative L2 vs f64 {e:.3e}");
    assert!(e <= BF16_REL_L2, "relative L2 {e:.3e}");
    assert!(
        e > 1e-6,
        "the TPU layers should show bf16 rounding, got {e:.3e}"
    );

    let events = s.trace_events();
    let kernels = |d: &str| {
        events
            .iter()
            .filter(|e| e.cat == "kernel" && e.device == d)
            .collect::<Vec<_>>()
    };
    let (cpu, tpu) = (kernels("cpu:0"), kernels("tpu:0"));
    assert_eq!(cpu.len(), LAYERS, "cpu kernels: {cpu:?}");
    assert_eq!(tpu.len(), LAYERS, "tpu kernels: {tpu:?}");
    let copies: Vec<_> = events.iter().filter(|e| e.cat == "copy").collect();
    assert!(!copies.is_empty(), "no copies traced");
    // Each copy touches tpu:0 (one way or the other): its modelled time is
    // the link latency plus bytes over bandwidth.
    let cfg = TpuConfig::default();
    let bytes = (ROWS * WIDTH * 4) as f64;
    let link_us = (cfg.host_latency_s + bytes / cfg.host_bytes_per_s) * 1e6;
    for c in &copies {
        let m = c
            .modelled_us
            .expect("copies to or from the TPU are modelled");
        assert!((m - link_us).abs() < 1e-9, "{c:?} vs {link_us}");
    }
    for e in &tpu {
        let m = e
            .modelled_us
            .expect("TPU kernels carry their modelled time");
        assert!(m > 0.0 && e.dur_us >= 0.0, "{e:?}");
    }
    assert!(cpu.iter().all(|e| e.modelled_us.is_none()));
    let json = hetflow::runtime::trace::chrome_trace_json(&events);
    assert!(json.contains("modelled_us"));

    // Streaming: micro-batches pipeline through cpu:0 and tpu:0 with
    // asynchronous TPU kernels; each result equals its single run.
    let batches: Vec<Vec<Arc<Tensor>>> = (0..4)
        .map(|_| {
            let v: Vec<f32> = (0..ROWS * WIDTH).map(|_| lcg(&mut seed)).collect();
            vec![Arc::new(Tensor::from_vec(vec![ROWS, WIDTH], v).unwrap())]
        })
        .collect();
    let streamed = s.run_stream(batches.clone()).unwrap();
    assert_eq!(streamed.len(), batches.len());
    for (b, got) in batches.into_iter().zip(&streamed) {
        assert_eq!(*s.run(b).unwrap()[0], *got[0]);
    }
}

/// The device refuses gathers at plan time with a reason, and the session
/// names the node.
#[test]
fn unsupported_ops_are_refused_at_plan_time() {
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Known(4), Dim::Known(3)]);
    let idx = g.add_const("idx", Tensor::from_vec(vec![2], vec![0i64, 2]).unwrap());
    let y = g.add_node("pick", Op::Gather { axis: 0 }, &[x, idx], 1)[0];
    g.add_output(y);
    let model = Model::from_graph(g.finish().unwrap());
    let err = SessionBuilder::new(&model)
        .devices("tpu:0")
        .build()
        .err()
        .expect("Gather must be refused")
        .to_string();
    assert!(
        err.contains("pick") && err.contains("tpu:0") && err.contains("gather"),
        "{err}"
    );
}

fn hetflow(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_hetflow"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("spawn hetflow")
}

#[test]
fn cli_lists_and_runs_tpu() {
    let out = hetflow(&["devices"], &[("HETFLOW_TPU", "1")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("tpu:0") && l.contains("emulated")),
        "{text}"
    );
    // A configuration file changes the device.
    let dir = std::env::temp_dir().join(format!("hetflow-tpu-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tpu.json");
    std::fs::write(&cfg, r#"{"mxu_rows": 64, "mxu_cols": 64, "mxu_count": 2}"#).unwrap();
    let out = hetflow(
        &["devices"],
        &[
            ("HETFLOW_TPU", "1"),
            ("HETFLOW_TPU_CONFIG", cfg.to_str().unwrap()),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 MXU 64x64"), "{text}");
    std::fs::write(&cfg, r#"{"mxu_rows": "many"}"#).unwrap();
    let c = case("mlp");
    let out = hetflow(
        &[
            "run",
            c.model.to_str().unwrap(),
            "--input",
            c.inputs[0].1.to_str().unwrap(),
            "--device",
            "tpu:0",
            "--output-dir",
            dir.to_str().unwrap(),
        ],
        &[("HETFLOW_TPU_CONFIG", cfg.to_str().unwrap())],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("HETFLOW_TPU_CONFIG") && !err.contains("panicked"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let out = hetflow(&["devices"], &[("HETFLOW_TPU", "0")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("tpu:0")),
        "{text}"
    );

    let dir = std::env::temp_dir().join(format!("hetflow-tpu-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let trace = dir.join("trace.json");
    let out = hetflow(
        &[
            "run",
            c.model.to_str().unwrap(),
            "--input",
            c.inputs[0].1.to_str().unwrap(),
            "--device",
            "tpu:0",
            "--output-dir",
            dir.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = read(&dir.join("y.npy"));
    let e = rel_l2(&got, &read(&c.outputs[0].1));
    assert!(e <= BF16_REL_L2, "cli mlp on tpu:0: relative L2 {e:.3e}");
    let t = std::fs::read_to_string(&trace).unwrap();
    assert!(t.contains("tpu:0") && t.contains("modelled_us"), "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A kernel that fails on the device's queue (after `execute` returned)
/// fails the run with an error naming the op and the device, also when a
/// later TPU op consumed its output; nothing hangs.
#[test]
fn asynchronous_failures_reach_the_caller() {
    let build = || {
        let mut g = Graph::default();
        let x = g.add_input("x", DType::F32, vec![Dim::Known(2), Dim::Known(3)]);
        // training_mode arrives at run time, so only the kernel can refuse it.
        let train = g.add_input("train", DType::Bool, vec![]);
        let ratio = g.add_const("ratio", Tensor::scalar(0.5f32));
        let y = g.add_node("drop", Op::Dropout, &[x, ratio, train], 1)[0];
        let z = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[y], 1)[0];
        g.add_output(z);
        let model = Model::from_graph(g.finish().unwrap());
        SessionBuilder::new(&model)
            .devices("tpu:0")
            .build()
            .unwrap()
    };
    let x = Arc::new(Tensor::from_vec(vec![2, 3], vec![-1f32, 2., -3., 4., -5., 6.]).unwrap());
    let ok = build()
        .run(vec![x.clone(), Arc::new(Tensor::scalar(false))])
        .unwrap();
    assert_eq!(ok[0].as_slice::<f32>().unwrap(), &[0., 2., 0., 4., 0., 6.]);
    let err = build()
        .run(vec![x, Arc::new(Tensor::scalar(true))])
        .unwrap_err()
        .to_string();
    eprintln!("asynchronous failure: {err}");
    assert!(
        err.contains("Dropout") && err.contains("tpu:0") && err.contains("training_mode"),
        "{err}"
    );
}

/// Shape specialisation (issue 20): `symbolic_batch` (a conv net) and
/// `dynamic_mlp` flatten with `Shape → Gather → Unsqueeze → Concat →
/// Reshape`, and tpu:0 has no Gather, so on tpu:0 alone each model is
/// refused, naming the Gather. Given the inputs' shapes, the session folds
/// that subgraph to a constant and the whole model runs on tpu:0, matching
/// onnxruntime (bf16 tolerance). `hetflow run --device tpu:0` does the same
/// from its inputs.
#[test]
fn a_dynamic_flatten_runs_on_the_tpu_alone_once_specialised() {
    for name in ["symbolic_batch", "dynamic_mlp"] {
        dynamic_flatten_on_the_tpu(name);
    }
}

fn dynamic_flatten_on_the_tpu(name: &str) {
    let c = case(name);
    let m = Model::load(&c.model).unwrap();
    let e = match SessionBuilder::new(&m).devices("tpu:0").build() {
        Ok(_) => panic!("{name} built on tpu:0 without shapes"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("Gather") && e.contains("tpu:0"), "{e}");
    let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
    let shapes = inputs.iter().map(|t| t.shape().to_vec()).collect();
    let mut s = SessionBuilder::new(&m)
        .devices("tpu:0")
        .input_shapes(shapes)
        .build()
        .unwrap();
    let ops: Vec<&str> = s.graph().nodes.iter().map(|n| n.op.name()).collect();
    assert!(
        !ops.iter()
            .any(|o| matches!(*o, "Shape" | "Gather" | "Concat" | "Unsqueeze")),
        "{ops:?}"
    );
    let got = s.run(inputs).unwrap();
    check_outputs_within(&c, &got, &format!("{name} on tpu:0 alone"), BF16_REL_L2);
    // The CLI specialises from its inputs.
    let out = std::env::temp_dir().join(format!("hetflow-tpu-spec-{name}-{}", std::process::id()));
    let mut args = vec![
        "run".to_string(),
        c.model.display().to_string(),
        "--device".into(),
        "tpu:0".into(),
        "--output-dir".into(),
        out.display().to_string(),
    ];
    for (name, f) in &c.inputs {
        args.extend(["--input".into(), format!("{name}={}", f.display())]);
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&out);
}

/// Per-shape specialisation without shapes up front (issue 20): a
/// [`hetflow::PerShape`] on tpu:0 alone runs `dynamic_mlp` (flatten by
/// `Shape → Gather → Concat → Reshape`, no Gather kernel on tpu:0) at
/// batch 5 (onnxruntime's reference) and at batches 2 and 7 (against the
/// unspecialised model on cpu), building one session per batch size and
/// reusing it when a size comes back; the least recently used session goes
/// when the cache is full.
#[test]
fn per_shape_sessions_run_a_dynamic_batch_on_the_tpu_alone() {
    let c = case("dynamic_mlp");
    let m = Model::load(&c.model).unwrap();
    let mut tpu = hetflow::PerShape::new(&m, |b| b.devices("tpu:0")).with_capacity(2);
    let x5 = Arc::new(read(&c.inputs[0].1));
    let got = tpu.run(vec![x5.clone()]).unwrap();
    check_outputs_within(
        &c,
        &got,
        "dynamic_mlp, batch 5, per-shape on tpu:0",
        BF16_REL_L2,
    );
    let mut cpu = SessionBuilder::new(&m).devices("cpu").build().unwrap();
    let rows = |n: usize| {
        let v: Vec<f32> = x5.to_f32_vec().into_iter().cycle().take(n * 64).collect();
        Arc::new(Tensor::from_vec(vec![n, 8, 8], v).unwrap())
    };
    for n in [2, 5, 7, 7] {
        let x = if n == 5 { x5.clone() } else { rows(n) };
        let want = cpu.run(vec![x.clone()]).unwrap();
        let got = tpu.run(vec![x]).unwrap();
        assert_eq!(got[0].shape(), &[n, 10]);
        let r = rel_l2(&got[0], &want[0]);
        assert!(r <= BF16_REL_L2, "batch {n}: rel L2 {r:.2e}");
    }
    // 5, 2 and 7 built; 5 and the second 7 reused; 2, least recently
    // used, evicted by 7 (capacity 2).
    assert_eq!(tpu.builds(), 3);
    assert_eq!(
        tpu.signatures(),
        vec![vec![vec![5, 8, 8]], vec![vec![7, 8, 8]]]
    );
}
