//! The CUDA backend end to end. Without a usable CUDA driver (this
//! machine, CI) the GPU tests print "SKIP ..." with discovery's reason and
//! return, and the refusal tests check that `cuda:0` fails cleanly: a
//! one-line error naming the reason from `hetflow run`, the reason on
//! `hetflow devices`. With a GPU (scripts/gpu-check.sh) the foundation
//! models and the light zoo CNNs run on cuda:0 in `tests/devices.rs` (ops
//! the device refuses on cpu:0) against onnxruntime's references within
//! relative L2 1e-4 (f32 GEMMs in true f32, no TF32), every node of a zoo
//! CNN placed on the GPU; here, bf16 GEMM and a bf16 conv / pool stack
//! are checked against f32 within 1e-2.

mod common;
use common::{case, check_outputs_within, read, rel_l2, FOUNDATION, ZOO};
use hetflow::devices::cuda::{op_supported, probe};
use hetflow::devices::{open_devices, parse_device_list};
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::{Model, Plan, SessionBuilder, Tensor};
use std::process::Command;
use std::sync::Arc;

/// `Some(())` when a GPU is here; otherwise prints why the test skips.
fn gpu(test: &str) -> Option<()> {
    match probe() {
        Ok(_) => Some(()),
        Err(why) => {
            eprintln!("SKIP {test}: no GPU ({why})");
            None
        }
    }
}

/// A bf16 conv stack (padded strided conv with fused Relu, a depthwise
/// conv with fused Clip, max and average pooling, global average pool) on
/// cuda:0 against the same graph in f32 on the CPU.
#[test]
fn bf16_conv_stack_matches_f32() {
    let Some(()) = gpu("bf16_conv_stack_matches_f32") else {
        return;
    };
    use hetflow::ops::op::{Activation, ConvAttrs, PoolAttrs};
    let build = |dt: DType| {
        let mut g = Graph::default();
        let d = |v: &[usize]| v.iter().map(|&n| Dim::Known(n)).collect::<Vec<_>>();
        let x = g.add_input("x", dt, d(&[2, 3, 17, 17]));
        let w1 = g.add_input("w1", dt, d(&[8, 3, 3, 3]));
        let b1 = g.add_input("b1", dt, d(&[8]));
        let w2 = g.add_input("w2", dt, d(&[8, 1, 3, 3]));
        let c1 = ConvAttrs {
            strides: vec![2, 2],
            pads: vec![1, 1, 1, 1],
            activation: Activation::Relu,
            ..Default::default()
        };
        let y = g.add_node("c1", Op::Conv(c1), &[x, w1, b1], 1)[0];
        let c2 = ConvAttrs {
            pads: vec![1, 1, 1, 1],
            group: 8,
            activation: Activation::Clip { lo: 0.0, hi: 0.5 },
            ..Default::default()
        };
        let y = g.add_node("c2", Op::Conv(c2), &[y, w2], 1)[0];
        let p = PoolAttrs {
            kernel_shape: vec![3, 3],
            strides: vec![2, 2],
            pads: vec![1, 1, 1, 1],
            ..Default::default()
        };
        let y = g.add_node("mp", Op::MaxPool(p.clone()), &[y], 1)[0];
        let y = g.add_node("ap", Op::AveragePool(p), &[y], 1)[0];
        let y = g.add_node("gap", Op::GlobalAveragePool, &[y], 1)[0];
        g.add_output(y);
        Model::from_graph(g.finish().unwrap())
    };
    let mut seed = 11u64;
    let mut vals = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        // Round to bf16 first so both runs see the same inputs.
        Tensor::from_vec(shape.to_vec(), v)
            .unwrap()
            .cast(DType::BF16)
    };
    let ins: Vec<Tensor> = [&[2, 3, 17, 17][..], &[8, 3, 3, 3], &[8], &[8, 1, 3, 3]]
        .iter()
        .map(|s| vals(s))
        .collect();
    let run = |dt: DType, devices: &str| {
        let m = build(dt);
        let mut s = SessionBuilder::new(&m).devices(devices).build().unwrap();
        let inputs = ins.iter().map(|t| Arc::new(t.cast(dt))).collect();
        s.run(inputs).unwrap().remove(0)
    };
    let got = run(DType::BF16, "cuda:0");
    assert_eq!(got.dtype(), DType::BF16);
    let want = run(DType::F32, "cpu:0");
    let e = rel_l2(&got.cast(DType::F32), &want);
    assert!(e < 1e-2, "bf16 conv stack relative L2 {e:.3e}");
}

/// bf16 operands, tensor-core GEMM with f32 accumulation: within bf16
/// rounding of the f32 product (inputs cast to bf16 on the host).
#[test]
fn bf16_matmul_matches_f32_within_bf16_rounding() {
    let Some(()) = gpu("bf16_matmul_matches_f32_within_bf16_rounding") else {
        return;
    };
    let (m, k, n) = (67, 300, 45);
    let mut seed = 5u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
    let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
    let mut g = Graph::default();
    let x = g.add_input("a", DType::BF16, vec![Dim::Known(m), Dim::Known(k)]);
    let w = g.add_input("b", DType::BF16, vec![Dim::Known(k), Dim::Known(n)]);
    let y = g.add_node("mm", Op::MatMul, &[x, w], 1)[0];
    g.add_output(y);
    let model = Model::from_graph(g.finish().unwrap());
    let mut s = SessionBuilder::new(&model)
        .devices("cuda:0")
        .build()
        .unwrap();
    let ta = Tensor::from_vec(vec![m, k], a.clone())
        .unwrap()
        .cast(DType::BF16);
    let tb = Tensor::from_vec(vec![k, n], b.clone())
        .unwrap()
        .cast(DType::BF16);
    let got = s.run(vec![Arc::new(ta), Arc::new(tb)]).unwrap();
    assert_eq!(got[0].dtype(), DType::BF16);
    let want: Vec<f32> = (0..m * n)
        .map(|idx| {
            let (i, j) = (idx / n, idx % n);
            (0..k).map(|kk| a[i * k + kk] * b[kk * n + j]).sum()
        })
        .collect();
    let want = Tensor::from_vec(vec![m, n], want).unwrap();
    let e = rel_l2(&got[0].cast(DType::F32), &want);
    assert!(e < 1e-2, "bf16 GEMM relative L2 {e:.3e}");
}

fn hetflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(args)
        .output()
        .expect("spawn hetflow")
}

/// Without a GPU, `hetflow run --device cuda:0` exits 2 with discovery's
/// reason on one line; `hetflow devices` lists cuda as unavailable with
/// the same reason.
#[test]
fn cli_without_gpu_refuses_cuda_with_the_reason() {
    let why = match probe() {
        Ok(_) => {
            eprintln!("SKIP cli_without_gpu_refuses_cuda_with_the_reason: a GPU is present");
            return;
        }
        Err(why) => why,
    };
    let c = case("mlp");
    let mut args: Vec<String> = vec!["run".into(), c.model.display().to_string()];
    for (_, f) in &c.inputs {
        args.push("--input".into());
        args.push(f.display().to_string());
    }
    let dir = std::env::temp_dir().join(format!("hetflow-cuda-{}", std::process::id()));
    args.extend(["--output-dir".into(), dir.display().to_string()]);
    args.extend(["--device".into(), "cuda:0".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = hetflow(&refs);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("cuda:0") && err.contains(&why), "{err}");

    let out = hetflow(&["devices"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("cuda"))
        .unwrap_or_else(|| panic!("no cuda line: {text}"));
    assert!(line.contains(&format!("unavailable: {why}")), "{line}");
}

/// Without a GPU too: every node of the light zoo CNNs (as loaded, after
/// BatchNorm folding and activation fusion) is in the CUDA op table, so
/// on a GPU with cuBLAS and NVRTC they run entirely on cuda:0; the ops
/// the foundation models keep on a CPU are exactly the known ones.
#[test]
fn op_table_covers_the_zoo_cnns() {
    let mut on_cpu = std::collections::BTreeSet::new();
    for &name in ZOO.iter().chain(FOUNDATION) {
        let m = Model::load(&case(name).model).unwrap_or_else(|e| panic!("{name}: {e}"));
        for n in &m.graph().nodes {
            if op_supported(&n.op).is_err() {
                assert!(
                    !name.starts_with("zoo_"),
                    "{name}: {} ({}) refused",
                    n.name,
                    n.op.name()
                );
                on_cpu.insert(n.op.name());
            }
        }
    }
    // Shape ops whose outputs are host metadata stay on the CPU, and so
    // do the variadic Max and Min of the nonfinite fixture (no CUDA
    // kernel yet).
    assert_eq!(
        on_cpu.into_iter().collect::<Vec<_>>(),
        ["ConstantOfShape", "Max", "Min", "Shape"]
    );
}

/// Two GPUs: a tensor copied cuda:0 -> cuda:1 through the direct path
/// (when the pair has peer access) holds the same bytes, and the mlp
/// fixture split across both GPUs (its transfers take that path) matches
/// onnxruntime.
#[test]
fn peer_copy_between_two_gpus() {
    let n = match probe() {
        Ok(g) => g.len(),
        Err(why) => {
            eprintln!("SKIP peer_copy_between_two_gpus: no GPU ({why})");
            return;
        }
    };
    if n < 2 {
        eprintln!("SKIP peer_copy_between_two_gpus: {n} GPU(s), needs 2");
        return;
    }
    let devs = open_devices(&parse_device_list("cuda:0,cuda:1").unwrap(), None).unwrap();
    let host = Arc::new(Tensor::from_vec(vec![3, 5], (0..15).map(|i| i as f32).collect()).unwrap());
    let t0 = devs[0].upload(host.clone()).unwrap();
    match devs[1].copy_from_device(&t0) {
        Some(t1) => {
            let t1 = t1.unwrap();
            assert_eq!(t1.device.to_string(), "cuda:1");
            assert_eq!(
                devs[1].download(&t1).unwrap().to_f32_vec(),
                host.to_f32_vec()
            );
        }
        None => eprintln!("cuda:1 cannot address cuda:0: copies go through the host"),
    }
    let c = case("mlp");
    let m = Model::load(&c.model).unwrap();
    let nodes = m.graph().nodes.len();
    let placement: Vec<usize> = (0..nodes).map(|i| usize::from(i >= nodes / 2)).collect();
    let plan = Plan::from_placement(m.graph(), vec!["cuda:0".into(), "cuda:1".into()], placement);
    let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
    let mut s = SessionBuilder::new(&m)
        .devices("cuda:0,cuda:1")
        .plan(plan)
        .build()
        .unwrap();
    let got = s.run(inputs).unwrap();
    check_outputs_within(&c, &got, "mlp on cuda:0 + cuda:1", c.rel_l2.min(1e-4));
}
