//! Shared helpers for the end-to-end tests: locating the generated
//! fixtures (scripts/gen_fixtures.py, references from onnxruntime) and
//! comparing tensors.
#![allow(dead_code)]

use hetflow::{Model, SessionBuilder, Tensor};
use std::path::PathBuf;
use std::sync::Arc;

pub mod devices;

/// Resident set size of this process, in bytes (VmRSS).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Calls `$then! { ... }` with every foundation fixture: the one list of
/// models that `tests/devices.rs` runs on every device
/// (`foundation_fixtures!(device_tests, run_fixture)`, see
/// [`device_tests!`]). A device that cannot run one says so in the runner
/// (`devices.rs`), with the reason. Extra arguments reach `$then` first,
/// in brackets.
#[macro_export]
macro_rules! foundation_fixtures {
    ($then:ident $(, $($arg:tt)+)?) => {
        $then! {
            $([$($arg)+])?
            mlp,
            lenet,
            resnet_block,
            transformer_encoder,
            mobilenet_block,
            symbolic_batch,
            dynamic_mlp,
            weird_names,
            ops_mix_a,
            ops_mix_b,
            ops_mix_c,
            gelu20,
            nonfinite,
            lenet_nonfinite,
        }
    };
}

/// Calls `$then! { ... }` with every light-zoo CNN fixture.
#[macro_export]
macro_rules! zoo_fixtures {
    ($then:ident $(, $($arg:tt)+)?) => {
        $then! {
            $([$($arg)+])?
            zoo_bvlc_alexnet,
            zoo_densenet121,
            zoo_inception_v1,
            zoo_inception_v2,
            zoo_resnet50,
            zoo_shufflenet,
            zoo_squeezenet,
            zoo_vgg19,
            zoo_zfnet512,
        }
    };
}

/// A plan for `m` with every node on `device` (`kind:index`) except those
/// the device refuses at plan time, which go to cpu:0; with the device
/// list to open and how many nodes fell back. The runner of every
/// accelerator's model tests starts here.
pub fn plan_with_cpu_fallback(m: &Model, device: &str) -> (hetflow::Plan, String, usize) {
    use hetflow::devices::{open_devices, parse_device_list};
    let dev = open_devices(&parse_device_list(device).unwrap(), None).unwrap();
    let placement: Vec<usize> = m
        .graph()
        .nodes
        .iter()
        .map(|n| usize::from(dev[0].supports(&n.op).is_err()))
        .collect();
    let on_cpu = placement.iter().sum::<usize>();
    if on_cpu == 0 {
        let plan = hetflow::Plan::single_device(m.graph(), device);
        return (plan, device.to_string(), 0);
    }
    let names = vec![device.to_string(), "cpu:0".to_string()];
    let plan = hetflow::Plan::from_placement(m.graph(), names, placement);
    (plan, format!("{device},cpu:0"), on_cpu)
}

macro_rules! names {
    ($($n:ident),* $(,)?) => {
        &[$(stringify!($n)),*]
    };
}

/// [`foundation_fixtures!`] as names.
pub const FOUNDATION: &[&str] = foundation_fixtures!(names);
/// [`zoo_fixtures!`] as names.
pub const ZOO: &[&str] = zoo_fixtures!(names);

/// The fixtures folder: `$HETFLOW_FIXTURES`, else `<repo>/fixtures-gen`.
/// Missing fixtures fail the test loudly: they are made by
/// `bash scripts/setup.sh` (which `scripts/test.sh` and CI run first).
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("HETFLOW_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures-gen"));
    assert!(
        dir.join(".stamp").exists() || dir.join("mlp").exists(),
        "fixtures not found in {}: run `bash scripts/setup.sh` first",
        dir.display()
    );
    dir
}

/// One generated case.
pub struct Case {
    pub dir: PathBuf,
    pub model: PathBuf,
    pub inputs: Vec<(String, PathBuf)>,
    pub outputs: Vec<(String, PathBuf)>,
    pub rel_l2: f64,
}

pub fn case(name: &str) -> Case {
    let dir = fixtures().join(name);
    let text = std::fs::read_to_string(dir.join("manifest.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("manifest.json").display()));
    let m: serde_json::Value = serde_json::from_str(&text).expect("manifest json");
    let list = |k: &str| -> Vec<(String, PathBuf)> {
        m[k].as_array()
            .expect("list")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    dir.join(e["file"].as_str().unwrap()),
                )
            })
            .collect()
    };
    Case {
        model: dir.join("model.onnx"),
        inputs: list("inputs"),
        outputs: list("outputs"),
        rel_l2: m["rel_l2"].as_f64().unwrap_or(1e-4),
        dir,
    }
}

pub fn read(p: &PathBuf) -> Tensor {
    hetflow::ops::npy::read_npy(p).unwrap_or_else(|e| panic!("{e}"))
}

/// ||a - b|| / max(||b||, tiny), in f64.
pub fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let (x, y) = (a.cast(hetflow::DType::F64), b.cast(hetflow::DType::F64));
    let (x, y) = (x.as_slice::<f64>().unwrap(), y.as_slice::<f64>().unwrap());
    let num: f64 = x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum();
    let den: f64 = y.iter().map(|q| q * q).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Asserts outputs match the references (dtype, shape, relative L2).
pub fn check_outputs(c: &Case, got: &[Arc<Tensor>], label: &str) {
    // f32 models: relative L2 <= 1e-4 at most (the bound), tighter
    // where the manifest says so.
    check_outputs_within(c, got, label, c.rel_l2.min(1e-4));
}

/// Asserts outputs match the references: same count, shapes and dtypes,
/// floats within relative L2 `tol`, everything else exactly.
pub fn check_outputs_within(c: &Case, got: &[Arc<Tensor>], label: &str, tol: f64) {
    assert_eq!(got.len(), c.outputs.len(), "{label}: output count");
    for ((name, file), g) in c.outputs.iter().zip(got) {
        let want = read(file);
        assert_eq!(g.shape(), want.shape(), "{label}: output '{name}' shape");
        assert_eq!(g.dtype(), want.dtype(), "{label}: output '{name}' dtype");
        if want.dtype().is_float() {
            let (g, want) = split_nonfinite(g, &want, &format!("{label}: output '{name}'"));
            let e = rel_l2(&g, &want);
            eprintln!("{label}: output '{name}' relative L2 error {e:.3e}");
            assert!(
                e <= tol,
                "{label}: output '{name}' relative L2 error {e:.3e} > {tol:.1e}"
            );
        } else {
            assert_eq!(**g, want, "{label}: output '{name}' differs");
        }
    }
}

/// Checks that `got` has NaN, +Inf and -Inf exactly where `want` has them,
/// and returns both with those positions zeroed, for the relative-L2 check
/// of the finite rest.
pub fn split_nonfinite(got: &Tensor, want: &Tensor, label: &str) -> (Tensor, Tensor) {
    let (g, w) = (
        got.cast(hetflow::DType::F64),
        want.cast(hetflow::DType::F64),
    );
    let (mut gv, mut wv) = (
        g.as_slice::<f64>().unwrap().to_vec(),
        w.as_slice::<f64>().unwrap().to_vec(),
    );
    let class = |v: f64| {
        if v.is_nan() {
            1
        } else if v == f64::INFINITY {
            2
        } else if v == f64::NEG_INFINITY {
            3
        } else {
            0
        }
    };
    let mut odd = 0;
    for (i, (a, b)) in gv.iter_mut().zip(wv.iter_mut()).enumerate() {
        let (ca, cb) = (class(*a), class(*b));
        assert_eq!(
            ca, cb,
            "{label}: element {i} is {a} but the reference has {b}"
        );
        if cb != 0 {
            odd += 1;
            (*a, *b) = (0.0, 0.0);
        }
    }
    if odd > 0 {
        eprintln!("{label}: {odd} NaN/Inf elements in the same places as the reference");
    }
    let shape = got.shape().to_vec();
    (
        Tensor::from_vec(shape.clone(), gv).unwrap(),
        Tensor::from_vec(shape, wv).unwrap(),
    )
}

/// Loads a case's model and inputs, runs it on `devices`, checks outputs.
pub fn run_case(name: &str, devices: &str) {
    let c = case(name);
    let model = Model::load(&c.model).unwrap_or_else(|e| panic!("{name}: load: {e}"));
    let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
    let kept: Vec<Tensor> = inputs.iter().map(|t| (**t).clone()).collect();
    let mut s = SessionBuilder::new(&model)
        .devices(devices)
        .build()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = s
        .run(inputs.clone())
        .unwrap_or_else(|e| panic!("{name} on {devices}: {e}"));
    check_outputs(&c, &got, &format!("{name} on {devices}"));
    // The caller's inputs are untouched.
    // Compared as bytes, so NaN inputs compare equal to themselves.
    for (a, b) in inputs.iter().zip(&kept) {
        assert!(
            a.shape() == b.shape() && a.to_le_bytes() == b.to_le_bytes(),
            "{name}: an input was modified"
        );
    }
}
