//! `hetflow simulate --workload gpt` end to end: the last line's contract,
//! the throughput formula, memory verdicts, the layout search, traces, and
//! one-line errors with exit status 2 for bad flag combinations.

use std::path::PathBuf;
use std::process::Command;

const A100: &str = "docs/clusters/dgx-a100-80gb.toml";

fn hetflow(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("spawn hetflow");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The 1.7B row of Megatron-LM's Table 1 (32 GPUs on 4 nodes).
fn gpt_1_7b(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "simulate",
        "--workload",
        "gpt",
        "--layers",
        "24",
        "--hidden",
        "2304",
        "--heads",
        "24",
        "--seq",
        "2048",
        "--vocab",
        "51200",
        "--global-batch",
        "512",
        "--cluster",
        A100,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run(args: &[String]) -> (Option<i32>, String, String) {
    let v: Vec<&str> = args.iter().map(String::as_str).collect();
    hetflow(&v)
}

/// (iteration_s, tflops_per_device) from the last line.
fn last_line(out: &str) -> (f64, f64) {
    let last = out.trim_end().lines().last().unwrap_or("");
    let mut it = None;
    let mut tf = None;
    for kv in last.split_whitespace() {
        match kv.split_once('=') {
            Some(("iteration_s", v)) => it = v.parse().ok(),
            Some(("tflops_per_device", v)) => tf = v.parse().ok(),
            _ => panic!("unexpected field in last line: {last}"),
        }
    }
    (
        it.expect("iteration_s in last line"),
        tf.expect("tflops_per_device in last line"),
    )
}

fn expect_error(r: (Option<i32>, String, String), needle: &str) {
    let (code, _, err) = r;
    assert_eq!(code, Some(2), "exit status; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "'{needle}' not in: {err}");
}

#[test]
fn last_line_and_throughput_formula() {
    let a = gpt_1_7b(&[
        "--micro-batch",
        "16",
        "--tp",
        "1",
        "--pp",
        "1",
        "--dp",
        "32",
        "--nodes",
        "4",
    ]);
    let (code, out, err) = run(&a);
    assert_eq!(code, Some(0), "{err}");
    let (it, tf) = last_line(&out);
    assert!(it > 0.0 && tf > 0.0, "{out}");
    // Narayanan et al. eq. 3 (full recomputation, the default):
    // 96·B·s·L·h²·(1 + s/(6h) + V/(16·L·h)) per iteration over 32 GPUs.
    let (b, s, l, h, v) = (512.0, 2048.0, 24.0, 2304.0, 51200.0);
    let flops = 96.0 * b * s * l * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * l * h));
    let want = flops / it / 32.0 / 1e12;
    assert!((tf - want).abs() <= 0.01 * want, "{tf} vs {want}");
    for what in ["memory per device", "bubble", "DP all-reduce", "exposed"] {
        assert!(out.contains(what), "'{what}' missing:\n{out}");
    }
    assert!(!out.contains("DOES NOT FIT"), "{out}");
}

#[test]
fn picks_a_micro_batch_that_fits_and_flags_one_that_does_not() {
    let a = gpt_1_7b(&["--tp", "1", "--pp", "1", "--dp", "32"]);
    let (code, out, err) = run(&a);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("(the fastest that fits)"), "{out}");
    last_line(&out);
    // 512 sequences of 2048 tokens in one micro-batch without
    // recomputation: far beyond 80 GiB.
    let a = gpt_1_7b(&[
        "--tp",
        "1",
        "--pp",
        "1",
        "--dp",
        "1",
        "--micro-batch",
        "512",
        "--recompute",
        "none",
    ]);
    let (code, out, err) = run(&a);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("DOES NOT FIT"), "{out}");
}

#[test]
fn search_ranks_layouts_and_writes_a_timeline() {
    let dir = std::env::temp_dir().join(format!("hetflow-gpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace: PathBuf = dir.join("t.json");
    let svg: PathBuf = dir.join("t.svg");
    let a = gpt_1_7b(&[
        "--nodes",
        "4",
        "--search",
        "--top",
        "3",
        "--trace",
        trace.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let (code, out, err) = run(&a);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("search:") && out.contains("best:"), "{out}");
    let ranks = out
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(ranks, 3, "{out}");
    last_line(&out);
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let events = j["traceEvents"].as_array().expect("traceEvents");
    assert!(
        events.iter().any(|e| e["ph"] == "X"),
        "no passes in the trace"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_combinations_are_one_line_errors() {
    let l = |x: &[&str]| gpt_1_7b(x);
    expect_error(
        run(&l(&[
            "--tp", "1", "--pp", "1", "--dp", "16", "--nodes", "4",
        ])),
        "32 GPUs",
    );
    expect_error(
        run(&l(&[
            "--tp",
            "1",
            "--pp",
            "5",
            "--dp",
            "8",
            "--micro-batch",
            "1",
        ])),
        "layers (24) must be divisible by pp",
    );
    expect_error(
        run(&l(&[
            "--tp",
            "5",
            "--pp",
            "1",
            "--dp",
            "1",
            "--micro-batch",
            "1",
        ])),
        "heads (24) must be divisible by tp (5)",
    );
    expect_error(
        run(&l(&[
            "--tp",
            "1",
            "--pp",
            "2",
            "--dp",
            "1",
            "--schedule",
            "interleaved",
        ])),
        "--chunks",
    );
    expect_error(
        run(&l(&[
            "--tp",
            "1",
            "--pp",
            "1",
            "--dp",
            "1",
            "--recompute",
            "most",
        ])),
        "unknown recompute",
    );
    expect_error(
        run(&l(&[
            "--tp",
            "1",
            "--pp",
            "1",
            "--dp",
            "1",
            "--micro-batch",
            "0",
        ])),
        "micro-batch",
    );
    expect_error(
        run(&l(&[
            "--tp",
            "1",
            "--pp",
            "1",
            "--dp",
            "32",
            "--microbatches",
            "4",
        ])),
        "--microbatches is for plans",
    );
    let mut huge = gpt_1_7b(&["--nodes", "4", "--search"]);
    let at = huge.iter().position(|a| a == "512").unwrap();
    huge[at] = "1000000000000".into();
    expect_error(run(&huge), "global-batch");
    let mut no_cluster = gpt_1_7b(&["--tp", "1", "--pp", "1", "--dp", "1"]);
    let at = no_cluster.iter().position(|a| a == "--cluster").unwrap();
    no_cluster.drain(at..at + 2);
    expect_error(run(&no_cluster), "--cluster");
    expect_error(
        hetflow(&["simulate", "--tp", "2", "--dag", "x.json"]),
        "--workload gpt",
    );
    expect_error(
        hetflow(&["simulate", "--workload", "bert", "--cluster", A100]),
        "unknown workload",
    );
}
