//! The OpenCL backend through the public API and the CLI (the fixture
//! models run wholly on `opencl:0` in `tests/devices.rs`): fixtures split
//! between `cpu:0` and `opencl:0` against
//! onnxruntime's references (relative L2 <= 1e-4), and the behaviour with
//! no OpenCL platform (simulated with an empty OCL_ICD_VENDORS). Tests that
//! need a device skip with a message on stderr when there is none; CI
//! installs PoCL, so they run there.

mod common;
use common::{case, check_outputs, read, run_case};
use hetflow::devices::opencl::{OpenclDevice, OpenclOptions};
use hetflow::devices::{open_devices, parse_device_list, Device};
use hetflow::ops::DType;
use hetflow::{Model, Plan, SessionBuilder, Tensor};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

/// Taken by every test here: they run one at a time, so the copy/compute
/// overlap that `squeezenet_branch_on_opencl_matches_cpu_and_overlaps_copies`
/// looks for is not decided by which other test holds the two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn have_opencl(test: &str) -> bool {
    match hetflow::devices::opencl::list_devices() {
        Ok(_) => true,
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

/// Node `i` goes to opencl:0 when the device accepts its op, its inputs
/// are f32 (or it is a view), and `pick(i)` says so; else to cpu:0.
fn mixed_plan(m: &Model, pick: impl Fn(usize) -> bool) -> (Plan, usize) {
    let cl = open_devices(&parse_device_list("opencl:0").unwrap(), None).unwrap();
    let g = m.graph();
    let placement: Vec<usize> = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let f32_in = n.op.is_view()
                || n.inputs
                    .iter()
                    .flatten()
                    .all(|v| g.values[v.0].fact.dtype == Some(DType::F32));
            let on_cl = pick(i) && f32_in && cl[0].supports(&n.op).is_ok();
            usize::from(!on_cl)
        })
        .collect();
    let on_cl = placement.iter().filter(|&&p| p == 0).count();
    let plan = Plan::from_placement(g, vec!["opencl:0".into(), "cpu:0".into()], placement);
    (plan, on_cl)
}

fn run_mixed(name: &str, pick: impl Fn(usize) -> bool, label: &str) -> usize {
    let c = case(name);
    let m = Model::load(&c.model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (plan, on_cl) = mixed_plan(&m, pick);
    eprintln!(
        "{name} ({label}): {on_cl} of {} nodes on opencl:0",
        m.graph().nodes.len()
    );
    let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
    let mut s = SessionBuilder::new(&m)
        .devices("opencl:0,cpu:0")
        .plan(plan)
        .build()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = s.run(inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
    check_outputs(&c, &got, &format!("{name} {label}"));
    on_cl
}

#[test]
fn fixtures_run_with_every_supported_node_on_opencl() {
    let _serial = serial();
    if !have_opencl("fixtures_run_with_every_supported_node_on_opencl") {
        return;
    }
    // nonfinite: MaxPool, GlobalMaxPool and the reductions on opencl (NaN
    // must survive them), variadic Max/Min on the CPU.
    for name in [
        "mlp",
        "transformer_encoder",
        "weird_names",
        "gelu20",
        "nonfinite",
    ] {
        let on_cl = run_mixed(name, |_| true, "supported nodes on opencl");
        assert!(on_cl > 0, "{name}: nothing ran on opencl:0");
    }
}

#[test]
fn transformer_split_node_by_node_between_cpu_and_opencl() {
    let _serial = serial();
    if !have_opencl("transformer_split_node_by_node_between_cpu_and_opencl") {
        return;
    }
    // Every other node on each device: every edge crosses devices.
    let on_cl = run_mixed(
        "transformer_encoder",
        |i| i % 2 == 0,
        "alternating cpu/opencl",
    );
    assert!(on_cl > 0);
}

#[test]
fn default_plan_over_cpu_and_opencl_is_correct() {
    let _serial = serial();
    if !have_opencl("default_plan_over_cpu_and_opencl_is_correct") {
        return;
    }
    // The planner keeps refused ops (Conv, Gather, Shape, ...) on cpu:0.
    run_case("mlp", "cpu:0,opencl:0");
    run_case("symbolic_batch", "cpu:0,opencl:0");
}

fn hetflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hetflow"))
}

#[test]
fn cli_lists_and_runs_on_opencl() {
    let _serial = serial();
    if !have_opencl("cli_lists_and_runs_on_opencl") {
        return;
    }
    let out = hetflow().arg("devices").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("opencl:0"), "{text}");
    let c = case("mlp");
    let dir = std::env::temp_dir().join(format!("hetflow-ocl-run-{}", std::process::id()));
    let out = hetflow()
        .args([
            "run",
            c.model.to_str().unwrap(),
            "--device",
            "opencl:0",
            "--output-dir",
        ])
        .arg(&dir)
        .arg("--input")
        .arg(&c.inputs[0].1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Arc<Tensor>> = c
        .outputs
        .iter()
        .map(|(n, _)| {
            Arc::new(read(
                &dir.join(format!("{}.npy", hetflow::sanitize_name(n))),
            ))
        })
        .collect();
    check_outputs(&c, &got, "hetflow run --device opencl:0");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_an_opencl_platform_devices_says_so_and_run_fails_cleanly() {
    let _serial = serial();
    // An empty vendors directory: the ICD loader finds no platform.
    let empty = std::env::temp_dir().join(format!("hetflow-no-icd-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = hetflow()
        .arg("devices")
        .env("OCL_ICD_VENDORS", &empty)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("no OpenCL platform"), "{text}");
    let c = case("mlp");
    let out = hetflow()
        .args([
            "run",
            c.model.to_str().unwrap(),
            "--device",
            "opencl:0",
            "--input",
        ])
        .arg(&c.inputs[0].1)
        .env("OCL_ICD_VENDORS", &empty)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no OpenCL platform") && !err.contains("panicked"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&empty);
}

/// Kernel spans in the runtime trace come from the OpenCL profiling
/// events: their total equals the device's own profiling totals (every
/// node of the mlp is one kernel launch), which a host wall-clock span of
/// the asynchronous `execute` would not.
#[test]
fn trace_kernel_times_come_from_profiling_events() {
    let _serial = serial();
    if !have_opencl("trace_kernel_times_come_from_profiling_events") {
        return;
    }
    let c = case("mlp");
    let m = Model::load(&c.model).unwrap();
    let d = Arc::new(OpenclDevice::open(0, &OpenclOptions::default()).unwrap());
    let mut s = SessionBuilder::new(&m)
        .with_devices(vec![d.clone() as Arc<dyn Device>])
        .trace(true)
        .build()
        .unwrap();
    let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
    s.run(inputs.clone()).unwrap();
    d.set_profiling(true);
    let t0 = s.trace_events().len();
    let got = s.run(inputs).unwrap();
    check_outputs(&c, &got, "mlp traced on opencl:0");
    let kernels: Vec<_> = s
        .trace_events()
        .into_iter()
        .skip(t0)
        .filter(|e| e.cat == "kernel" && e.device == "opencl:0")
        .collect();
    let launches: usize = d.kernel_times().unwrap().values().map(|t| t.0).sum();
    let profiled_us: f64 = d
        .kernel_times()
        .unwrap()
        .values()
        .map(|t| t.1 as f64 / 1e3)
        .sum();
    let traced_us: f64 = kernels.iter().map(|e| e.dur_us).sum();
    eprintln!(
        "{} kernel events, {traced_us:.1} us traced; {launches} launches, {profiled_us:.1} us profiled",
        kernels.len()
    );
    assert_eq!(kernels.len(), m.graph().nodes.len());
    assert_eq!(launches, kernels.len());
    assert!(profiled_us > 0.0);
    assert!(
        (traced_us - profiled_us).abs() <= 0.02 * profiled_us + 1.0 * kernels.len() as f64,
        "trace {traced_us} us vs profiling {profiled_us} us"
    );
}

/// SqueezeNet with the last fire module's 1x1 expand (a Conv, its Relu
/// fused) on opencl:0 and the rest on cpu:0, over a stream of micro-batches:
/// outputs equal the cpu-only run's (within relative L2 1e-5), and the
/// trace shows a copy (on its destination's copy queue, onto opencl:0 or
/// back onto cpu:0) overlapping a kernel on cpu:0's compute queue.
///
/// The branch is a placement where overlap is the schedule, not luck: the
/// squeeze output's copy onto opencl:0 is issued with the 3x3 expand
/// beside it (about half a millisecond on cpu:0), and the expand's output
/// comes back while cpu:0 starts the next micro-batch. The copy onto
/// opencl:0 is fast (43 KB) and sometimes ends within the few tens of
/// microseconds cpu:0's queue takes to start the expand, so copies both
/// ways count. With the graph cut into two
/// stages instead, PoCL's slower second stage (it runs on the same two
/// cores) held cpu:0 back, each copy came after the kernel it unblocked,
/// and in about one run of four (here and in CI) nothing overlapped. The
/// traced stream follows an untraced one that builds PoCL's programs,
/// whose first-use compile stalls opencl:0 for tens of milliseconds.
#[test]
fn squeezenet_branch_on_opencl_matches_cpu_and_overlaps_copies() {
    let _serial = serial();
    if !have_opencl("squeezenet_branch_on_opencl_matches_cpu_and_overlaps_copies") {
        return;
    }
    let c = case("zoo_squeezenet");
    let m = Model::load(&c.model).unwrap();
    let g = m.graph();
    // The last Concat joins the 1x1 and 3x3 expands of the squeeze output
    // (each Conv with its Relu fused in).
    let producer = |v| g.nodes.iter().position(|n| n.outputs.contains(&v)).unwrap();
    let concat = g
        .nodes
        .iter()
        .rposition(|n| n.op.name() == "Concat")
        .unwrap();
    let conv = producer(g.nodes[concat].inputs[0].unwrap());
    assert_eq!(g.nodes[conv].op.name(), "Conv");
    let placement: Vec<usize> = (0..g.nodes.len()).map(|i| usize::from(i == conv)).collect();
    let plan = Plan::from_placement(g, vec!["cpu:0".into(), "opencl:0".into()], placement)
        .with_microbatches(8, 2);
    let x = read(&c.inputs[0].1);
    let batches: Vec<Vec<Arc<Tensor>>> = (0..8)
        .map(|k| {
            let v: Vec<f32> = x
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|&a| a * (1.0 + 0.1 * k as f32))
                .collect();
            vec![Arc::new(Tensor::from_vec(x.shape().to_vec(), v).unwrap())]
        })
        .collect();
    // One kernel thread on cpu:0: on a 2-core machine the other core is
    // then free for the copy queue's thread and PoCL's. With both cores
    // in cpu:0's kernel team, a copy waited for a kernel's end to get a
    // core in about half the runs, and nothing overlapped.
    let mut split = SessionBuilder::new(&m)
        .devices("cpu:0,opencl:0")
        .threads(1)
        .plan(plan)
        .trace(true)
        .build()
        .unwrap();
    split.run_stream(batches[..2].to_vec()).unwrap();
    split.take_trace_events();
    let got = split.run_stream(batches.clone()).unwrap();
    let events = split.trace_events();
    let mut cpu = SessionBuilder::new(&m).devices("cpu:0").build().unwrap();
    let want = cpu.run_stream(batches).unwrap();
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        let e = common::rel_l2(&a[0], &b[0]);
        eprintln!("micro-batch {k}: split vs cpu relative L2 {e:.3e}");
        assert!(e <= 1e-5, "micro-batch {k}: {e:.3e}");
    }
    // Copies onto opencl:0 (the squeeze output) and back onto cpu:0 (the
    // expand's output), each on its destination's copy queue, against
    // cpu:0's compute queue.
    let kernels: Vec<_> = events
        .iter()
        .filter(|e| e.cat == "kernel" && e.device == "cpu:0")
        .collect();
    let overlapping = |dev: &str| {
        let copies: Vec<_> = events
            .iter()
            .filter(|e| e.cat == "copy" && e.device == dev)
            .collect();
        assert_eq!(copies.len(), 8, "copies onto {dev}");
        let n = copies
            .iter()
            .filter(|cp| {
                kernels.iter().any(|k| {
                    cp.start_us < k.start_us + k.dur_us && k.start_us < cp.start_us + cp.dur_us
                })
            })
            .count();
        eprintln!("{n} of 8 copies onto {dev} overlap a cpu:0 kernel");
        n
    };
    let overlaps = overlapping("opencl:0") + overlapping("cpu:0");
    if overlaps == 0 {
        let mut ev: Vec<_> = events.iter().collect();
        ev.sort_by(|a, b| a.start_us.total_cmp(&b.start_us));
        for e in ev {
            eprintln!(
                "{:>10.1} us +{:>8.1} {} {} {} mb {}",
                e.start_us, e.dur_us, e.cat, e.device, e.name, e.mb
            );
        }
    }
    assert!(overlaps > 0, "no copy overlapped a kernel on cpu:0");
}

/// Shape specialisation (issue 20): the dynamic-batch models whose flatten
/// is `Shape → Gather → Unsqueeze → Concat → Reshape` (`symbolic_batch`,
/// a conv net, and `dynamic_mlp`) run on opencl:0 alone once the input
/// shapes are bound: the shape subgraph folds to a constant, so no Shape,
/// Gather, Unsqueeze or Concat node is left to need a kernel, and every
/// node runs on opencl:0. Outputs match onnxruntime.
#[test]
fn dynamic_flattens_run_on_opencl_alone_once_specialised() {
    let _serial = serial();
    if !have_opencl("dynamic_flattens_run_on_opencl_alone_once_specialised") {
        return;
    }
    for name in ["symbolic_batch", "dynamic_mlp"] {
        let c = case(name);
        let m = Model::load(&c.model).unwrap();
        let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
        let shapes = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let mut s = SessionBuilder::new(&m)
            .devices("opencl:0")
            .input_shapes(shapes)
            .build()
            .unwrap_or_else(|e| panic!("{name} on opencl:0 alone: {e}"));
        let ops: Vec<&str> = s.graph().nodes.iter().map(|n| n.op.name()).collect();
        assert!(
            !ops.iter()
                .any(|o| matches!(*o, "Shape" | "Gather" | "Concat" | "Unsqueeze")),
            "{name}: {ops:?}"
        );
        let got = s.run(inputs).unwrap();
        check_outputs(&c, &got, &format!("{name} on opencl:0 alone"));
    }
}
