//! The simulator end to end: `hetflow simulate` on research DAGs (the
//! published HEFT and CPOP makespans of Topcuoglu et al.), on models and on
//! saved plans; the trace it writes is valid Chrome trace event JSON laid
//! out exactly as the runtime's; the SVG renders to a non-empty picture.

mod common;

use hetflow::scheduler::cluster::ClusterSpec;
use hetflow::scheduler::cost::GraphCosts;
use hetflow::scheduler::partition::PartitionOptions;
use hetflow::scheduler::planner::pipeline_plan;
use hetflow::scheduler::sim::{chrome_trace_json, simulate, svg_gantt, Workload};
use hetflow::scheduler::Schedule;
use hetflow::Model;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const CLUSTER: &str = r#"
[[device]]
name = "cpu:0"
kind = "cpu"
peak_gflops = { f32 = 50.0 }
memory_gib = 4.0
mem_bw_gbps = 20.0
launch_us = 3.0
[[device]]
name = "cpu:1"
kind = "cpu"
peak_gflops = { f32 = 30.0 }
memory_gib = 4.0
mem_bw_gbps = 20.0
launch_us = 3.0
[defaults]
intra_host = { bandwidth_gbps = 5.0, latency_us = 20.0 }
"#;

fn hetflow(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(args)
        .output()
        .expect("run hetflow");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn makespan(stdout: &str) -> f64 {
    let last = stdout.lines().last().unwrap_or("");
    last.strip_prefix("makespan=")
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("last line is not makespan=: {stdout}"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hetflow-sim-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

/// Checks JSON against the trace event format (Chrome's "Trace Event
/// Format" document): a `traceEvents` array; complete events (`ph: "X"`)
/// with string `name`, numeric `ts` and `dur >= 0`, integer `pid` and
/// `tid`; metadata events (`ph: "M"`) `process_name` / `thread_name` with
/// `args.name`; every (pid, tid) used by an event named by metadata.
/// Returns the number of complete events.
fn check_trace_format(text: &str) -> usize {
    let j: Value = serde_json::from_str(text).expect("trace is JSON");
    let evs = j["traceEvents"].as_array().expect("traceEvents array");
    let mut procs = std::collections::BTreeSet::new();
    let mut threads = std::collections::BTreeSet::new();
    let mut complete = 0;
    for e in evs {
        let ph = e["ph"].as_str().expect("ph is a string");
        let pid = e["pid"].as_u64().expect("pid is an integer");
        match ph {
            "M" => {
                let name = e["name"].as_str().unwrap();
                assert!(
                    e["args"]["name"].is_string(),
                    "metadata without args.name: {e}"
                );
                match name {
                    "process_name" => {
                        procs.insert(pid);
                    }
                    "thread_name" => {
                        threads.insert((pid, e["tid"].as_u64().expect("thread tid")));
                    }
                    other => panic!("unexpected metadata {other}"),
                }
            }
            "X" => {
                complete += 1;
                assert!(e["name"].is_string(), "{e}");
                assert!(
                    e["ts"].as_f64().is_some_and(|t| t.is_finite() && t >= 0.0),
                    "{e}"
                );
                assert!(
                    e["dur"].as_f64().is_some_and(|t| t.is_finite() && t >= 0.0),
                    "{e}"
                );
                let tid = e["tid"].as_u64().expect("tid is an integer");
                assert!(
                    procs.contains(&pid) && threads.contains(&(pid, tid)),
                    "unnamed pid/tid: {e}"
                );
                assert!(e["args"]["mb"].is_u64(), "{e}");
            }
            other => panic!("unexpected phase {other}"),
        }
    }
    complete
}

#[test]
fn dag_cli_gives_the_published_makespans() {
    let dag = data("topcuoglu.json");
    for (s, want) in [("heft", 80.0), ("cpop", 86.0)] {
        let (ok, out, err) = hetflow(&["simulate", "--dag", &dag, "--scheduler", s]);
        assert!(ok, "{err}");
        assert_eq!(makespan(&out), want, "{s}: {out}");
    }
    for s in ["peft", "greedy", "roundrobin"] {
        let (ok, out, err) = hetflow(&["simulate", "--dag", &dag, "--scheduler", s]);
        assert!(ok && makespan(&out) >= 80.0 - 1e-9, "{s}: {out}{err}");
    }
    let (ok, _, err) = hetflow(&["simulate", "--dag", &dag, "--scheduler", "nope"]);
    assert!(
        !ok && err.contains("unknown scheduler 'nope'") && err.contains("heft"),
        "{err}"
    );
    // A bad DAG is named, not a panic.
    let bad = tmp("bad.json");
    std::fs::write(
        &bad,
        r#"{"tasks":[{"id":"A","cost":{"P1":1}}],"edges":[{"from":"A","to":"B","comm":1}]}"#,
    )
    .unwrap();
    let (ok, _, err) = hetflow(&["simulate", "--dag", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("unknown task 'B'"), "{err}");
}

#[test]
fn model_cli_writes_valid_trace_and_rendering_svg() {
    let model = common::fixtures().join("mlp/model.onnx");
    if !model.exists() {
        panic!(
            "fixture {} missing: run scripts/gen_fixtures.py",
            model.display()
        );
    }
    let cluster = tmp("cluster.toml");
    std::fs::write(&cluster, CLUSTER).unwrap();
    let (trace, svg) = (tmp("sim.json"), tmp("sim.svg"));
    let (ok, out, err) = hetflow(&[
        "simulate",
        model.to_str().unwrap(),
        "--cluster",
        cluster.to_str().unwrap(),
        "--schedule",
        "1f1b",
        "--microbatches",
        "4",
        "--trace",
        trace.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        makespan(&out) > 0.0 && out.contains("critical path"),
        "{out}"
    );
    let n = check_trace_format(&std::fs::read_to_string(&trace).unwrap());
    assert!(n > 0);
    render_is_not_empty(&std::fs::read_to_string(&svg).unwrap());

    // A saved plan, with and without its model; a plan on a device the
    // cluster lacks is refused by name.
    let m = Model::load(&model).unwrap();
    let c = ClusterSpec::from_toml(CLUSTER).unwrap();
    let costs = GraphCosts::new(m.graph(), 1);
    let opts = PartitionOptions {
        microbatches: 3,
        use_all: true,
        ..Default::default()
    };
    let plan = pipeline_plan(m.graph(), &costs, &c, &opts).unwrap();
    let pj = tmp("plan.json");
    std::fs::write(&pj, plan.to_json()).unwrap();
    let cl = cluster.to_str().unwrap();
    let (ok, out, err) = hetflow(&["simulate", "--plan", pj.to_str().unwrap(), "--cluster", cl]);
    assert!(ok && makespan(&out) > 0.0, "{out}{err}");
    let (ok, out2, err) = hetflow(&[
        "simulate",
        model.to_str().unwrap(),
        "--plan",
        pj.to_str().unwrap(),
        "--cluster",
        cl,
    ]);
    assert!(ok, "{err}");
    // Stage-level and node-level agree closely on a plan made by the same model.
    let (a, b) = (makespan(&out), makespan(&out2));
    assert!((a - b).abs() <= 0.25 * b, "stages {a} vs nodes {b}");
    let mut other = plan.clone();
    other.devices[0] = "tpu:9".into();
    std::fs::write(&pj, other.to_json()).unwrap();
    let (ok, _, err) = hetflow(&[
        "simulate",
        model.to_str().unwrap(),
        "--plan",
        pj.to_str().unwrap(),
        "--cluster",
        cl,
    ]);
    assert!(!ok && err.contains("'tpu:9'"), "{err}");
}

fn render_is_not_empty(svg: &str) {
    use resvg::{tiny_skia, usvg};
    let tree = usvg::Tree::from_str(svg, &usvg::Options::default()).expect("SVG parses");
    let size = tree.size().to_int_size();
    assert!(size.width() > 100 && size.height() > 30);
    let mut pix = tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pix.as_mut());
    // Kernels are drawn in #4e79a7: count pixels of that colour.
    let blue = pix
        .pixels()
        .iter()
        .filter(|p| (p.red(), p.green(), p.blue()) == (0x4e, 0x79, 0xa7))
        .count();
    assert!(blue > 500, "only {blue} kernel pixels rendered");
}

#[test]
fn trace_layout_matches_the_runtime_writer() {
    // Two devices named out of order, copies and kernels, several mbs.
    let mut w = Workload::new(vec!["cpu:1".into(), "cpu:0".into()], "ms", 1e3);
    let a = w.add_unit("a", "MatMul", 0, 0.5);
    let b = w.add_unit("b", "Relu", 1, 0.25);
    w.add_value("x", a, vec![b], 4096.0, None);
    w.set_links(&ClusterSpec::from_toml(CLUSTER).unwrap())
        .unwrap();
    w.microbatches = 3;
    w.schedule = Schedule::Streaming;
    let r = simulate(&w).unwrap();
    let events: Vec<hetflow::TraceEvent> = r
        .events
        .iter()
        .map(|e| hetflow::TraceEvent {
            name: e.name.clone(),
            op: e.op.clone(),
            cat: e.cat,
            device: r.device_names[e.device].clone(),
            queue: e.queue,
            mb: e.mb,
            start_us: e.start * r.us_per_unit,
            dur_us: e.dur * r.us_per_unit,
            modelled_us: None,
        })
        .collect();
    let ours: Value = serde_json::from_str(&chrome_trace_json(&r)).unwrap();
    let theirs: Value =
        serde_json::from_str(&hetflow::runtime::chrome_trace_json(&events)).unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(check_trace_format(&chrome_trace_json(&r)), 9);
    render_is_not_empty(&svg_gantt(&r));
}
