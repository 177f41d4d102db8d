//! The source layout's rules (issue 19, docs/adding-an-op.md), checked so a
//! change that breaks them fails CI instead of drifting:
//! - no `.rs` file outside the tests is over 800 lines;
//! - no import circle between the files of a crate
//!   (`scripts/import_circles.py`);
//! - device backends never run shape inference: the runtime hands
//!   `Device::execute` resolved output shapes.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Test code: integration tests, and a crate's `tests.rs` modules.
fn is_test(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "tests.rs")
        || p.components().any(|c| c.as_os_str() == "tests")
}

const SOURCE_DIRS: &[&str] = &[
    "src",
    "ops/src",
    "devices/src",
    "runtime/src",
    "scheduler/src",
    "examples",
    "benches",
];

#[test]
fn no_source_file_is_over_800_lines() {
    let mut files = Vec::new();
    for d in SOURCE_DIRS {
        let dir = root().join(d);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
    }
    assert!(files.len() > 100, "only {} source files found", files.len());
    let long: Vec<String> = files
        .iter()
        .filter(|p| !is_test(p))
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines (split by concern, as docs/adding-an-op.md describes): {long:?}"
    );
}

#[test]
fn no_import_circles_within_a_crate() {
    let out = std::process::Command::new("python3")
        .current_dir(root())
        .args([
            "scripts/import_circles.py",
            "ops/src",
            "devices/src",
            "runtime/src",
            "scheduler/src",
            "src",
        ])
        .output()
        .expect("python3 runs scripts/import_circles.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "import circles:\n{text}");
    assert!(text.contains("no import circles"), "{text}");
}

#[test]
fn devices_do_not_run_shape_inference() {
    let mut files = Vec::new();
    rust_files(&root().join("devices/src"), &mut files);
    let offenders: Vec<String> = files
        .iter()
        // testing.rs is `#[cfg(test)]`: it plays the runtime's half of the
        // execute contract for the backends' unit tests.
        .filter(|p| !is_test(p) && !p.ends_with("devices/src/testing.rs"))
        .filter(|p| {
            let s = std::fs::read_to_string(p).unwrap();
            s.contains("hetflow_ops::infer") || s.contains("infer_op")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "devices calling shape inference: {offenders:?}"
    );
    let lib = std::fs::read_to_string(root().join("devices/src/lib.rs")).unwrap();
    assert!(
        lib.contains("#[cfg(test)]\nmod testing;"),
        "devices/src/testing.rs must stay test-only"
    );
}
