//! Shared helpers for the end-to-end tests: locating the generated
//! fixtures (scripts/gen_fixtures.py, references from onnxruntime) and
//! comparing tensors.
#![allow(dead_code)]

use hetflow::{Model, SessionBuilder, Tensor};
use std::path::PathBuf;
use std::sync::Arc;

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
            let e = rel_l2(g, &want);
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
    for (a, b) in inputs.iter().zip(&kept) {
        assert_eq!(**a, *b, "{name}: an input was modified");
    }
}
