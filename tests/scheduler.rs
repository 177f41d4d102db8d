//! The scheduler end to end: plans made by the pipeline partitioner and by
//! HEFT run on real devices with outputs equal to onnxruntime's and to the
//! single-device run; on devices of unlike speed the partitioner balances
//! the predicted stage times and beats an even split in measured
//! throughput; `hetflow profile`, `plan` and `run --plan` work together.

mod common;

use common::{case, check_outputs, check_outputs_within, read, rel_l2};
use hetflow::devices::throttle::Throttled;
use hetflow::devices::Device;
use hetflow::ops::op::UnaryOp;
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::scheduler::cluster::ClusterSpec;
use hetflow::scheduler::cost::GraphCosts;
use hetflow::scheduler::partition::{partition, PartitionOptions};
use hetflow::scheduler::planner::heft_plan;
use hetflow::{Model, Plan, SessionBuilder, Tensor};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

/// Two equal CPU devices on one host.
fn two_cpus() -> ClusterSpec {
    ClusterSpec::from_toml(
        r#"
[[device]]
name = "cpu:0"
kind = "cpu"
peak_gflops = { f32 = 60.0 }
memory_gib = 4.0
mem_bw_gbps = 20.0
launch_us = 2.0
[[device]]
name = "cpu:1"
kind = "cpu"
peak_gflops = { f32 = 60.0 }
memory_gib = 4.0
mem_bw_gbps = 20.0
launch_us = 2.0
[defaults]
intra_host = { bandwidth_gbps = 100.0, latency_us = 1.0 }
"#,
    )
    .unwrap()
}

fn run_plan(model: &Model, plan: Plan, inputs: &[Arc<Tensor>]) -> Vec<Arc<Tensor>> {
    let mut s = SessionBuilder::new(model).plan(plan).build().unwrap();
    s.run(inputs.to_vec()).unwrap()
}

#[test]
fn planned_runs_match_references_and_the_single_device_run() {
    let cluster = two_cpus();
    for name in [
        "transformer_encoder",
        "resnet_block",
        "mobilenet_block",
        "zoo_squeezenet",
    ] {
        let c = case(name);
        let model = Model::load(&c.model).unwrap();
        let g = model.graph();
        let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
        let single = run_plan(&model, Plan::single_device(g, "cpu:0"), &inputs);
        let costs = GraphCosts::new(g, 1);
        let opts = PartitionOptions {
            microbatches: 4,
            use_all: true,
            ..Default::default()
        };
        let pipe = partition(g, &costs, &cluster, &opts).unwrap();
        assert_eq!(
            pipe.plan.devices.len(),
            2,
            "{name}: pipeline uses both devices"
        );
        let (heft, _) = heft_plan(g, &costs, &cluster, &opts).unwrap();
        for (label, plan) in [("pipeline", pipe.plan.clone()), ("heft", heft)] {
            plan.validate(g).unwrap();
            // The plan survives JSON, as `hetflow plan --out` writes it.
            let plan = Plan::from_json(&plan.to_json()).unwrap();
            let got = run_plan(&model, plan, &inputs);
            check_outputs(&c, &got, &format!("{name} {label}"));
            for (a, b) in got.iter().zip(&single) {
                if b.dtype().is_float() {
                    let e = rel_l2(a, b);
                    assert!(
                        e <= 1e-6,
                        "{name} {label}: differs from single device by {e:.2e}"
                    );
                } else {
                    assert_eq!(**a, **b, "{name} {label}");
                }
            }
        }
    }
}

const LAYERS: usize = 48;
const WIDTH: usize = 256;
const ROWS: usize = 64;

fn chain_model() -> Model {
    let mut g = Graph::default();
    let mut x = g.add_input(
        "x",
        DType::F32,
        vec![Dim::Sym("batch".into()), Dim::Known(WIDTH)],
    );
    for i in 0..LAYERS {
        let w: Vec<f32> = (0..WIDTH * WIDTH)
            .map(|k| (((k * 7 + i * 13) % 97) as f32 - 48.0) / (48.0 * WIDTH as f32))
            .collect();
        let w = g.add_const(
            &format!("w{i}"),
            Tensor::from_vec(vec![WIDTH, WIDTH], w).unwrap(),
        );
        let y = g.add_node(&format!("matmul{i}"), Op::MatMul, &[x, w], 1)[0];
        x = g.add_node(&format!("relu{i}"), Op::Unary(UnaryOp::Relu), &[y], 1)[0];
    }
    g.add_output(x);
    Model::from_graph(g.finish().unwrap())
}

/// Best of five runs, in seconds, streaming `m` micro-batches through
/// `plan` (the minimum: other processes on a shared machine only add
/// time).
fn stream_time(model: &Model, devices: &[Arc<dyn Device>], plan: &Plan, m: usize) -> f64 {
    let mut s = SessionBuilder::new(model)
        .with_devices(devices.to_vec())
        .plan(plan.clone())
        .build()
        .unwrap();
    let x: Vec<f32> = (0..ROWS * WIDTH)
        .map(|k| ((k % 31) as f32 - 15.0) / 15.0)
        .collect();
    let x = Arc::new(Tensor::from_vec(vec![ROWS, WIDTH], x).unwrap());
    let batch: Vec<Vec<Arc<Tensor>>> = (0..m).map(|_| vec![x.clone()]).collect();
    s.run_stream(batch.clone()).unwrap();
    (0..5)
        .map(|_| {
            let t0 = Instant::now();
            s.run_stream(batch.clone()).unwrap();
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// cpu:1 is made 3x slower; the profiled cluster spec sees it, the
/// partitioner gives it about a quarter of the layers so that the predicted
/// stage times agree within 10%, and the measured stream beats the even
/// split (which leaves the slow device the bottleneck).
#[test]
fn heterogeneous_devices_get_balanced_stages() {
    let specs = hetflow::devices::parse_device_list("cpu:0,cpu:1").unwrap();
    let opened = hetflow::devices::open_devices(&specs, Some(1)).unwrap();
    let slow: Arc<dyn Device> = Arc::new(Throttled::new(opened[1].clone(), 3.0).unwrap());
    let devices = vec![opened[0].clone(), slow];
    let model = chain_model();
    let g = model.graph();
    // Profile with the chain's own kernels in the fit: the planner learns
    // the speeds from measurements, not from the throttle factor.
    let opts = hetflow::profile::ProfileOptions {
        iters: 3,
        graphs: vec![g.clone()],
        batch: ROWS,
        ..Default::default()
    };
    let cluster = hetflow::profile::profile_devices(&devices, &opts).unwrap();
    let costs = GraphCosts::new(g, ROWS);
    let ratio = cluster.devices[0].peak_gflops["f32"] / cluster.devices[1].peak_gflops["f32"];
    eprintln!("profiled GEMM speed ratio cpu:0 / throttled cpu:1 = {ratio:.2}");
    let part = partition(
        g,
        &costs,
        &cluster,
        &PartitionOptions {
            microbatches: 8,
            use_all: true,
            ..Default::default()
        },
    )
    .unwrap();
    let times: Vec<f64> = part.stages.iter().map(|s| s.compute).collect();
    let layers: Vec<usize> = part
        .stages
        .iter()
        .map(|s| (s.nodes.1 - s.nodes.0) / 2)
        .collect();
    eprintln!(
        "planned stages {:?}: layers {layers:?}, predicted {times:?}",
        part.plan.devices
    );
    let (lo, hi) = (
        times.iter().cloned().fold(f64::MAX, f64::min),
        times.iter().cloned().fold(0.0, f64::max),
    );
    assert!(
        (hi - lo) / hi <= 0.10,
        "predicted stage times differ by more than 10%: {times:?}"
    );
    let slow_layers = part
        .stages
        .iter()
        .find(|s| s.device == 1)
        .map(|s| (s.nodes.1 - s.nodes.0) / 2)
        .unwrap_or(0);
    assert!(
        slow_layers < LAYERS / 2,
        "the slow device got {slow_layers} of {LAYERS} layers"
    );
    let even = Plan::from_placement(
        g,
        vec!["cpu:0".into(), "cpu:1".into()],
        (0..g.nodes.len())
            .map(|i| usize::from(i >= g.nodes.len() / 2))
            .collect(),
    );
    let t_plan = stream_time(&model, &devices, &part.plan, 8);
    let t_even = stream_time(&model, &devices, &even, 8);
    eprintln!(
        "8 micro-batches: planned {:.1} ms, even split {:.1} ms",
        t_plan * 1e3,
        t_even * 1e3
    );
    assert!(
        t_plan < t_even * 0.9,
        "planned {t_plan:.4}s does not beat even split {t_even:.4}s"
    );
}

#[test]
fn cli_profile_plan_run() {
    let exe = env!("CARGO_BIN_EXE_hetflow");
    let dir = std::env::temp_dir().join(format!("hetflow-plan-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = case("transformer_encoder");
    let cluster = dir.join("cluster.toml");
    let out = Command::new(exe)
        .args([
            "profile",
            "--device",
            "cpu:0,cpu:1",
            "--iters",
            "1",
            "--out",
        ])
        .arg(&cluster)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec = ClusterSpec::load(&cluster).unwrap();
    assert_eq!(spec.devices.len(), 2);
    assert_eq!(spec.links.len(), 1);
    let plan = dir.join("plan.json");
    for planner in ["pipeline", "heft"] {
        let out = Command::new(exe)
            .arg("plan")
            .arg(&c.model)
            .args(["--cluster"])
            .arg(&cluster)
            .args(["--planner", planner, "--microbatches", "4", "--out"])
            .arg(&plan)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("compute_ms") && text.contains("predicted_ms="),
            "{text}"
        );
        let outdir = dir.join(planner);
        let mut cmd = Command::new(exe);
        cmd.arg("run")
            .arg(&c.model)
            .arg("--plan")
            .arg(&plan)
            .arg("--output-dir")
            .arg(&outdir);
        for (n, f) in &c.inputs {
            cmd.arg("--input").arg(format!("{n}={}", f.display()));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (n, f) in &c.outputs {
            let got = read(&outdir.join(format!("{}.npy", hetflow::sanitize_name(n))));
            let e = rel_l2(&got, &read(f));
            assert!(e <= 1e-4, "{planner}: {n} rel L2 {e:.2e}");
        }
    }
    // Bad cluster specs are one-line errors with status 2.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[device]]\nname = \"cpu:0\"\nkind = \"cpu\"\npeak_gflops = { f32 = 0.0 }\nmemory_gib = 1.0\nmem_bw_gbps = 1.0\n").unwrap();
    let out = Command::new(exe)
        .arg("plan")
        .arg(&c.model)
        .arg("--cluster")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("peak_gflops.f32") && err.lines().count() == 1,
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The emulated TPU reports modelled kernel times; profiled with them, it
/// is far faster at GEMMs than a CPU core, and the planners put the
/// MatMuls there. The mixed plan runs with bf16-level agreement.
#[test]
fn tpu_takes_the_matmul_heavy_work() {
    let specs = hetflow::devices::parse_device_list("cpu:0,tpu:0").unwrap();
    let devices = hetflow::devices::open_devices(&specs, Some(1)).unwrap();
    let model = chain_model();
    let g = model.graph();
    let opts = hetflow::profile::ProfileOptions {
        iters: 1,
        graphs: vec![g.clone()],
        batch: ROWS,
        ..Default::default()
    };
    let cluster = hetflow::profile::profile_devices(&devices, &opts).unwrap();
    let (cpu, tpu) = (&cluster.devices[0], &cluster.devices[1]);
    eprintln!(
        "profiled: cpu {:.0} GF/s, tpu {:.0} GF/s (modelled)",
        cpu.peak_gflops["f32"], tpu.peak_gflops["f32"]
    );
    assert!(tpu.peak_gflops["f32"] > 10.0 * cpu.peak_gflops["f32"]);
    let costs = GraphCosts::new(g, ROWS);
    let part = partition(g, &costs, &cluster, &PartitionOptions::default()).unwrap();
    let (heft, _) = heft_plan(g, &costs, &cluster, &PartitionOptions::default()).unwrap();
    for (label, plan) in [("pipeline", &part.plan), ("heft", &heft)] {
        let on_tpu = g
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| n.op == Op::MatMul && plan.devices[plan.placement[*i]] == "tpu:0")
            .count();
        assert!(
            on_tpu * 10 >= LAYERS * 9,
            "{label}: only {on_tpu} of {LAYERS} MatMuls on tpu:0"
        );
    }
    let x: Vec<f32> = (0..ROWS * WIDTH)
        .map(|k| ((k % 31) as f32 - 15.0) / 15.0)
        .collect();
    let x = Arc::new(Tensor::from_vec(vec![ROWS, WIDTH], x).unwrap());
    let cpu_only = run_plan(
        &model,
        Plan::single_device(g, "cpu:0"),
        std::slice::from_ref(&x),
    );
    let mut s = SessionBuilder::new(&model)
        .with_devices(devices.clone())
        .plan(heft)
        .build()
        .unwrap();
    let got = s.run(vec![x]).unwrap();
    let e = rel_l2(&got[0], &cpu_only[0]);
    assert!(e <= 1e-2, "mixed cpu+tpu plan differs from cpu by {e:.2e}");
}

/// Without a plan, a device list that includes a device refusing some ops
/// (the TPU refuses Gather and friends) still builds: the default planner
/// keeps those ops on the CPU.
#[test]
fn default_plan_keeps_refused_ops_off_the_tpu() {
    let c = case("ops_mix_a");
    let model = Model::load(&c.model).unwrap();
    let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
    let b = SessionBuilder::new(&model).devices("cpu:0,tpu:0");
    let specs = hetflow::devices::parse_device_list("cpu:0,tpu:0").unwrap();
    let devices = hetflow::devices::open_devices(&specs, None).unwrap();
    let plan = b.make_plan(&devices).unwrap();
    let g = model.graph();
    let on_tpu = plan
        .placement
        .iter()
        .filter(|&&d| plan.devices[d] == "tpu:0")
        .count();
    eprintln!("{} of {} nodes on tpu:0", on_tpu, g.nodes.len());
    assert!(on_tpu > 0, "the default plan left tpu:0 unused");
    for (i, n) in g.nodes.iter().enumerate() {
        let d = &devices
            .iter()
            .find(|d| d.id().to_string() == plan.devices[plan.placement[i]])
            .unwrap();
        assert!(d.supports(&n.op).is_ok(), "{} placed on {}", n.name, d.id());
    }
    let mut s = b.build().unwrap();
    let got = s.run(inputs).unwrap();
    check_outputs_within(&c, &got, "ops_mix_a on cpu:0,tpu:0", 1e-2);
}

/// Two data-parallel copies of a one-stage plan on cpu:0 and cpu:1:
/// micro-batches alternate between the devices (the trace shows each
/// device ran half of them) and every result equals the single-device one.
#[test]
fn replicated_plan_alternates_microbatches() {
    let model = chain_model();
    let g = model.graph();
    let mut plan = Plan::single_device(g, "cpu:0");
    plan.replicas = vec![vec!["cpu:1".to_string()]];
    plan.validate(g).unwrap();
    let inputs: Vec<Vec<Arc<Tensor>>> = (0..6)
        .map(|i| {
            let x: Vec<f32> = (0..ROWS * WIDTH)
                .map(|k| (((k + i * 5) % 29) as f32 - 14.0) / 14.0)
                .collect();
            vec![Arc::new(Tensor::from_vec(vec![ROWS, WIDTH], x).unwrap())]
        })
        .collect();
    let mut single = SessionBuilder::new(&model)
        .plan(Plan::single_device(g, "cpu:0"))
        .build()
        .unwrap();
    let want = single.run_stream(inputs.clone()).unwrap();
    let mut s = SessionBuilder::new(&model)
        .plan(plan)
        .trace(true)
        .build()
        .unwrap();
    let got = s.run_stream(inputs).unwrap();
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            **a.first().unwrap(),
            **b.first().unwrap(),
            "micro-batch {i}"
        );
    }
    let ev = s.trace_events();
    let kernels = |d: &str| {
        ev.iter()
            .filter(|e| e.device == d && e.cat == "kernel")
            .count()
    };
    assert_eq!(kernels("cpu:0"), 3 * g.nodes.len());
    assert_eq!(kernels("cpu:1"), 3 * g.nodes.len());
}

/// Stage-level data parallelism: the second half of the chain on a device
/// made 8x slower is the bottleneck; `replicate_stages` gives it a second
/// copy on a spare slow device (the fast first stage stays shared), the
/// stream of 8 micro-batches gets faster, and the outputs stay those of the
/// single-device run.
#[test]
fn a_replicated_bottleneck_stage_speeds_up_the_stream() {
    use hetflow::devices::cpu::{topology::CpuTopology, CpuDevice};
    use hetflow::scheduler::planner::{annotate, replicate_stages};
    let topo = CpuTopology::discover();
    let last = topo.cores.len() - 1;
    let cpu = |i: usize, core: usize| -> Arc<dyn Device> {
        Arc::new(CpuDevice::new(i, &topo, &[core], Some(1)).unwrap())
    };
    let slow =
        |d: Arc<dyn Device>| -> Arc<dyn Device> { Arc::new(Throttled::new(d, 8.0).unwrap()) };
    // Throttled devices mostly sleep, so two of them can share a core.
    let devices = vec![cpu(0, 0), slow(cpu(1, last)), slow(cpu(2, last))];
    let mut cluster = two_cpus();
    cluster.devices[1]
        .peak_gflops
        .insert("f32".into(), 60.0 / 8.0);
    let mut third = cluster.devices[1].clone();
    third.name = "cpu:2".into();
    cluster.devices.push(third);
    let model = chain_model();
    let g = model.graph();
    let costs = GraphCosts::new(g, ROWS);
    let n = g.nodes.len();
    let mut plan = Plan::from_placement(
        g,
        vec!["cpu:0".into(), "cpu:1".into()],
        (0..n).map(|i| usize::from(i >= n / 2)).collect(),
    )
    .with_microbatches(8, 2);
    annotate(&mut plan, g, &costs, &cluster);
    let mut replicated = plan.clone();
    let done = replicate_stages(&mut replicated, &costs, &cluster, 2).unwrap();
    assert_eq!(done, vec![1]);
    assert_eq!(
        replicated.replicas,
        vec![vec!["cpu:0".to_string(), "cpu:2".to_string()]]
    );

    let t_one = stream_time(&model, &devices, &plan, 8);
    let t_two = stream_time(&model, &devices, &replicated, 8);
    eprintln!(
        "8 micro-batches, slow stage x8: one copy {:.1} ms, two copies {:.1} ms",
        t_one * 1e3,
        t_two * 1e3
    );
    assert!(
        t_two < t_one * 0.75,
        "replicating the bottleneck stage did not speed up the stream: {t_two:.4}s vs {t_one:.4}s"
    );
    // Outputs of every micro-batch equal the single-device run.
    let x: Vec<Vec<Arc<Tensor>>> = (0..4)
        .map(|k| {
            let v: Vec<f32> = (0..ROWS * WIDTH)
                .map(|i| (((i + 7 * k) % 29) as f32 - 14.0) / 14.0)
                .collect();
            vec![Arc::new(Tensor::from_vec(vec![ROWS, WIDTH], v).unwrap())]
        })
        .collect();
    let mut single = SessionBuilder::new(&model)
        .with_devices(vec![devices[0].clone()])
        .build()
        .unwrap();
    let want = single.run_stream(x.clone()).unwrap();
    let mut s = SessionBuilder::new(&model)
        .with_devices(devices.clone())
        .plan(replicated)
        .build()
        .unwrap();
    let got = s.run_stream(x).unwrap();
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        let e = rel_l2(&a[0], &b[0]);
        assert!(e <= 1e-6, "micro-batch {k}: rel L2 {e}");
    }
}
