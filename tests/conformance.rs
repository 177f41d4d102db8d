//! ONNX backend node-test conformance, in-process, with an expectations
//! file and a drift check.
//!
//! Data: the node tests of the installed `onnx` package, written by
//! `scripts/gen_node_tests.py` to `conformance-data/node/` (or
//! `$HETFLOW_NODE_TESTS`); `scripts/setup.sh` does that. Without the data
//! the test prints a loud SKIP and passes.
//!
//! Each test's model is loaded as `Model::load` does (import, shape
//! inference, load-time rewrites), run on the CPU device for every data set,
//! and compared with the expected outputs: floats with
//! `|got - want| <= 1e-5 + 1e-3 * |want|` (NaN equals NaN, infinities must
//! match), integers and booleans exactly; shapes and dtypes must match. A
//! test is `pass`, `fail` (wrong result, run error or panic) or
//! `unsupported` (refused at load: an op, attribute or type hetflow does
//! not have).
//!
//! `tests/conformance/expectations-cpu.txt` records the status of every
//! test. The test fails when a test recorded `pass` no longer passes (a
//! regression), and reports tests that newly pass or are new; run with
//! `HETFLOW_BLESS=1` to rewrite the file from this run. The summary and
//! every result are also written to `target/conformance-cpu.tsv`
//! (`scripts/conformance_report.py` turns them into
//! docs/onnx-conformance.md).
//!
//! `onnx_node_conformance_opencl` runs the same suite on `opencl:0`
//! (another device with `HETFLOW_CONFORMANCE_DEVICE=opencl:K`) with every
//! node that the device accepts (`Device::supports`) placed on it and the
//! rest on `cpu:0` (the fallback a mixed plan gives), against
//! `tests/conformance/expectations-opencl.txt`, writing
//! `target/conformance-opencl.tsv` (a fourth column: nodes on opencl:0 /
//! nodes). Without an OpenCL platform that run prints SKIP and passes.
//!
//! `onnx_node_conformance_tpu` does the same on the emulated `tpu:0`
//! (always present) with cpu:0 fallback, against
//! `tests/conformance/expectations-tpu.txt`, writing
//! `target/conformance-tpu.tsv`. The references are f32-accurate, so the
//! device runs its matrix products at `matmul_precision: "highest"` (six
//! bf16 passes, as XLA's HIGHEST); `HETFLOW_TPU_CONFIG` replaces that
//! configuration (`{}` measures the one-pass default).

use hetflow::{Model, SessionBuilder, Tensor};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pass,
    Fail,
    Unsupported,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Unsupported => "unsupported",
        }
    }
    fn parse(s: &str) -> Option<Status> {
        match s {
            "pass" => Some(Status::Pass),
            "fail" => Some(Status::Fail),
            "unsupported" => Some(Status::Unsupported),
            _ => None,
        }
    }
}

fn data_dir() -> PathBuf {
    match std::env::var_os("HETFLOW_NODE_TESTS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance-data/node"),
    }
}

/// `cpu` or `opencl`: the tag in file names.
fn device_tag(spec: &str) -> String {
    spec.split(':').next().unwrap_or("cpu").to_string()
}

fn expectations_path(tag: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/conformance/expectations-{tag}.txt"))
}

/// The accelerator and cpu:0 for the mixed runs; `None` for cpu runs.
type Devices = Option<Vec<Arc<dyn hetflow::devices::Device>>>;

/// Placement of `m`'s nodes: the accelerator (device 0) where it accepts
/// the op, else cpu:0 (device 1); and how many went to the accelerator.
fn mixed_plan(m: &Model, devs: &[Arc<dyn hetflow::devices::Device>]) -> (hetflow::Plan, usize) {
    let g = m.graph();
    let placement: Vec<usize> = g
        .nodes
        .iter()
        .map(|n| usize::from(devs[0].supports(&n.op).is_err()))
        .collect();
    let on = placement.iter().filter(|&&p| p == 0).count();
    let names = devs.iter().map(|d| d.id().to_string()).collect();
    (hetflow::Plan::from_placement(g, names, placement), on)
}

/// Compares one output; `Err` says what differs.
fn compare(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?}, expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    if got.dtype() != want.dtype() {
        return Err(format!("dtype {}, expected {}", got.dtype(), want.dtype()));
    }
    if want.dtype().is_float() {
        let g = got.cast(hetflow::DType::F64);
        let w = want.cast(hetflow::DType::F64);
        let (g, w) = (
            g.as_slice::<f64>().map_err(|e| e.to_string())?,
            w.as_slice::<f64>().map_err(|e| e.to_string())?,
        );
        for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
            let ok = (a.is_nan() && b.is_nan())
                || a == b
                || (a.is_finite() && b.is_finite() && (a - b).abs() <= ATOL + RTOL * b.abs());
            if !ok {
                return Err(format!("element {i}: {a}, expected {b}"));
            }
        }
        Ok(())
    } else if got == want {
        Ok(())
    } else {
        Err("integer/bool elements differ".into())
    }
}

fn data_sets(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for i in 0.. {
        let p = dir.join(format!("{prefix}_{i}.pb"));
        if !p.exists() {
            break;
        }
        v.push(p);
    }
    v
}

/// Runs one node test; the status and, when not a pass, why.
fn run_one(dir: &Path, devs: &Devices, placed: &mut String) -> (Status, String) {
    let model = match Model::load(dir.join("model.onnx")) {
        Ok(m) => m,
        Err(e) => return (Status::Unsupported, e.to_string()),
    };
    let sets = data_sets(dir);
    if sets.is_empty() {
        return (Status::Fail, "no test_data_set_* directory".into());
    }
    let builder = match devs {
        None => SessionBuilder::new(&model).devices("cpu").threads(1),
        Some(d) => {
            let (plan, on) = mixed_plan(&model, d);
            *placed = format!("{on}/{}", model.graph().nodes.len());
            SessionBuilder::new(&model)
                .with_devices(d.clone())
                .plan(plan)
        }
    };
    let mut session = match builder.build() {
        Ok(s) => s,
        Err(e) => return (Status::Unsupported, format!("session: {e}")),
    };
    for set in sets {
        let mut inputs = Vec::new();
        for p in numbered(&set, "input") {
            match hetflow::ops::onnx::read_tensor_pb(&p) {
                Ok((_, t)) => inputs.push(Arc::new(t)),
                Err(e) => return (Status::Unsupported, format!("input: {e}")),
            }
        }
        let outputs = match session.run(inputs) {
            Ok(o) => o,
            Err(e) => return (Status::Fail, format!("run: {e}")),
        };
        let expected = numbered(&set, "output");
        if outputs.len() != expected.len() {
            return (
                Status::Fail,
                format!("{} outputs, expected {}", outputs.len(), expected.len()),
            );
        }
        for (k, (got, p)) in outputs.iter().zip(&expected).enumerate() {
            let want = match hetflow::ops::onnx::read_tensor_pb(p) {
                Ok((_, t)) => t,
                Err(e) => return (Status::Unsupported, format!("expected output: {e}")),
            };
            if let Err(why) = compare(got, &want) {
                return (Status::Fail, format!("output {k}: {why}"));
            }
        }
    }
    (Status::Pass, String::new())
}

fn read_expectations(p: &Path) -> BTreeMap<String, Status> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), Status::parse(it.next()?)?))
        })
        .collect()
}

fn one_line(s: &str) -> String {
    let s = s.replace(['\n', '\t'], " ");
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

#[test]
fn onnx_node_conformance_cpu() {
    conformance("cpu".into());
}

/// On `opencl:0` (or `$HETFLOW_CONFORMANCE_DEVICE`) with cpu:0 fallback;
/// a few seconds on PoCL, so part of the default suite.
#[test]
fn onnx_node_conformance_opencl() {
    conformance(std::env::var("HETFLOW_CONFORMANCE_DEVICE").unwrap_or_else(|_| "opencl:0".into()));
}

/// On the emulated `tpu:0` with cpu:0 fallback (the TPU-like device
/// needs no hardware, so this always runs).
#[test]
fn onnx_node_conformance_tpu() {
    conformance("tpu:0".into());
}

fn conformance(spec: String) {
    let tag = device_tag(&spec);
    let devs: Devices = if spec == "cpu" {
        None
    } else {
        if tag == "opencl" {
            if let Err(why) = hetflow::devices::opencl::list_devices() {
                eprintln!("SKIP onnx_node_conformance on {spec}: {why}");
                return;
            }
        }
        let spec_all = format!("{spec},cpu:0");
        let list = hetflow::devices::parse_device_list(&spec_all)
            .unwrap_or_else(|e| panic!("HETFLOW_CONFORMANCE_DEVICE={spec}: {e}"));
        let mut devs = hetflow::devices::open_devices(&list, Some(1))
            .unwrap_or_else(|e| panic!("HETFLOW_CONFORMANCE_DEVICE={spec}: {e}"));
        if tag == "tpu" && std::env::var_os("HETFLOW_TPU_CONFIG").is_none() {
            use hetflow::devices::tpu::{config::MatmulPrecision, TpuConfig, TpuDevice};
            let cfg = TpuConfig {
                matmul_precision: MatmulPrecision::Highest,
                ..TpuConfig::default()
            };
            devs[0] = Arc::new(TpuDevice::new(0, cfg).expect("tpu:0"));
        }
        Some(devs)
    };
    let dir = data_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        eprintln!(
            "SKIP onnx_node_conformance ({spec}): no node tests at {} (run scripts/gen_node_tests.py or scripts/setup.sh)",
            dir.display()
        );
        return;
    };
    let mut tests: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    tests.sort();
    if let Ok(filter) = std::env::var("HETFLOW_NODE_FILTER") {
        tests.retain(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(&filter))
        });
    }
    // Quiet the default panic message: panics are caught and reported.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut results: BTreeMap<String, (Status, String)> = BTreeMap::new();
    let mut placements: BTreeMap<String, String> = BTreeMap::new();
    let verbose = std::env::var_os("HETFLOW_NODE_VERBOSE").is_some();
    for t in &tests {
        let name = t
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if verbose {
            eprintln!("conformance: {name}");
        }
        let mut placed = String::new();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| run_one(t, &devs, &mut placed)))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                (Status::Fail, format!("PANIC: {msg}"))
            });
        placements.insert(name.clone(), placed);
        results.insert(name, r);
    }
    std::panic::set_hook(hook);

    let n = results.len();
    let count = |s: Status| results.values().filter(|r| r.0 == s).count();
    let (pass, fail, unsup) = (
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Unsupported),
    );
    let panics: Vec<&String> = results
        .iter()
        .filter(|(_, r)| r.1.starts_with("PANIC"))
        .map(|(k, _)| k)
        .collect();
    eprintln!(
        "conformance ({spec}): {pass} of {n} pass ({:.1}%), {fail} fail, {unsup} unsupported, {} panics",
        100.0 * pass as f64 / n.max(1) as f64,
        panics.len()
    );
    for p in &panics {
        eprintln!("  panic: {p}: {}", one_line(&results[*p].1));
    }

    // Machine-readable results.
    let tsv: String = results
        .iter()
        .map(|(k, (s, why))| {
            let placed = placements.get(k).filter(|p| !p.is_empty());
            match placed {
                Some(p) => format!("{k}\t{}\t{}\t{p}\n", s.name(), one_line(why)),
                None => format!("{k}\t{}\t{}\n", s.name(), one_line(why)),
            }
        })
        .collect();
    if devs.is_some() {
        let on_all = placements
            .values()
            .filter(|p| p.split_once('/').is_some_and(|(a, b)| a == b && a != "0"))
            .count();
        let on_none = placements.values().filter(|p| p.starts_with("0/")).count();
        let pass_on = results
            .iter()
            .filter(|(k, r)| {
                r.0 == Status::Pass
                    && placements[*k]
                        .split_once('/')
                        .is_some_and(|(a, _)| a != "0")
            })
            .count();
        eprintln!(
            "placement: {on_all} tests with every node on {spec}, {on_none} with none; {pass_on} passing tests ran at least one node on {spec}"
        );
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/conformance-{tag}.tsv"));
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(&out, tsv);

    let exp_path = expectations_path(&tag);
    if std::env::var_os("HETFLOW_BLESS").is_some() {
        let text = String::from(
            "# ONNX backend node tests on {spec} (see tests/conformance.rs): pass | fail | unsupported.\n# Written by HETFLOW_BLESS=1 cargo test --test conformance; checked by it otherwise.\n",
        );
        let mut text = text.replace("{spec}", &spec);
        for (k, (s, _)) in &results {
            text.push_str(&format!("{k} {}\n", s.name()));
        }
        std::fs::create_dir_all(exp_path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&exp_path, text).expect("write expectations");
        eprintln!("blessed {} expectations into {}", n, exp_path.display());
        return;
    }
    let expected = read_expectations(&exp_path);
    let filtered = std::env::var("HETFLOW_NODE_FILTER").is_ok();
    let mut regressions = Vec::new();
    let mut improved = Vec::new();
    let mut new = Vec::new();
    for (k, (s, why)) in &results {
        match expected.get(k) {
            Some(Status::Pass) if *s != Status::Pass => {
                regressions.push(format!("{k}: now {} ({})", s.name(), one_line(why)))
            }
            Some(e) if *s == Status::Pass && *e != Status::Pass => improved.push(k.clone()),
            None => new.push(format!("{k} ({})", s.name())),
            _ => {}
        }
    }
    let missing: Vec<&String> = if filtered {
        Vec::new()
    } else {
        expected
            .keys()
            .filter(|k| !results.contains_key(*k))
            .collect()
    };
    if !improved.is_empty() {
        eprintln!("{} tests now pass that were recorded failing; rerun with HETFLOW_BLESS=1 to record them:", improved.len());
        for k in &improved {
            eprintln!("  + {k}");
        }
    }
    if !new.is_empty() {
        eprintln!(
            "{} tests are not in {} (bless to record):",
            new.len(),
            exp_path.display()
        );
        for k in new.iter().take(50) {
            eprintln!("  ? {k}");
        }
    }
    if !missing.is_empty() {
        eprintln!(
            "{} recorded tests were not found in {}",
            missing.len(),
            dir.display()
        );
    }
    assert!(
        regressions.is_empty(),
        "{} conformance regressions (recorded pass, now not):\n{}",
        regressions.len(),
        regressions.join("\n")
    );
}
