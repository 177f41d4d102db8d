//! The CLI contract: `run` writes `<sanitised output name>.npy`, binds named
//! and positional inputs (.npy and .pb), and every bad input gives a
//! one-line error and exit status 2, never a panic.

mod common;
use common::{case, read, rel_l2};
use hetflow::ops::onnx::proto;
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hetflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(args)
        .output()
        .expect("spawn hetflow")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hetflow-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Exit 2, one line on stderr containing `needle`, no panic.
fn expect_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.contains(needle), "'{needle}' not in: {err}");
}

#[test]
fn run_writes_sanitised_outputs() {
    let c = case("weird_names");
    let dir = tmp("weird");
    let input = format!("{}={}", c.inputs[0].0, c.inputs[0].1.display());
    let out = hetflow(&[
        "run",
        c.model.to_str().unwrap(),
        "--input",
        &input,
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, file) in &c.outputs {
        let sane = hetflow::sanitize_name(name);
        assert!(!sane.contains('/') && !sane.contains(':'));
        let got = read(&dir.join(format!("{sane}.npy")));
        assert!(rel_l2(&got, &read(file)) <= 1e-4, "{name}");
    }
    assert!(dir.join("block_1_out.npy").exists() && dir.join("logits_0.npy").exists());
}

#[test]
fn run_positional_and_pb_inputs() {
    let c = case("transformer_encoder");
    let dir = tmp("pb");
    // Second input as an ONNX TensorProto .pb, first as .npy, both positional.
    let mask = read(&c.inputs[1].1);
    let pb = dir.join("mask.pb");
    std::fs::write(
        &pb,
        hetflow::ops::onnx::tensor_to_proto(&mask, "mask").encode_to_vec(),
    )
    .unwrap();
    let out = hetflow(&[
        "run",
        c.model.to_str().unwrap(),
        "--input",
        c.inputs[0].1.to_str().unwrap(),
        "--input",
        pb.to_str().unwrap(),
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = hetflow::sanitize_name(&c.outputs[0].0);
    assert!(
        rel_l2(
            &read(&dir.join(format!("{name}.npy"))),
            &read(&c.outputs[0].1)
        ) <= 1e-4
    );
}

fn write_model(dir: &Path, name: &str, m: &proto::ModelProto) -> String {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p.to_str().unwrap().to_string()
}

fn tensor_vi(name: &str, elem: i32, dims: &[i64]) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(elem),
                    shape: Some(proto::TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension {
                                value: Some(Value::DimValue(d)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn relu_model(input_of_node: &str, op: &str) -> proto::ModelProto {
    proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(proto::GraphProto {
            name: Some("g".into()),
            node: vec![proto::NodeProto {
                name: Some("act".into()),
                op_type: Some(op.into()),
                input: vec![input_of_node.into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            input: vec![tensor_vi("x", 1, &[2, 3])],
            output: vec![tensor_vi("y", 1, &[2, 3])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn bad_inputs_exit_2_with_one_line() {
    let dir = tmp("bad");
    let d = dir.to_str().unwrap();
    let good = write_model(&dir, "good.onnx", &relu_model("x", "Relu"));
    let x = dir.join("x.npy");
    hetflow::ops::npy::write_npy(
        &x,
        &hetflow::Tensor::from_vec(vec![2, 3], vec![1f32, -2., 3., -4., 5., -6.]).unwrap(),
    )
    .unwrap();
    let xs = x.to_str().unwrap();

    // The good model works.
    let ok = hetflow(&["run", &good, "--input", xs, "--output-dir", d]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        read(&dir.join("y.npy")).as_slice::<f32>().unwrap(),
        &[1., 0., 3., 0., 5., 0.]
    );

    expect_error(
        &hetflow(&["run", "/nonexistent/model.onnx", "--input", xs]),
        "/nonexistent/model.onnx",
    );
    let bytes = std::fs::read(&good).unwrap();
    let trunc = dir.join("trunc.onnx");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    expect_error(
        &hetflow(&["run", trunc.to_str().unwrap(), "--input", xs]),
        "trunc.onnx",
    );
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"this is not a protobuf \xff\xff\xff\xff").unwrap();
    expect_error(
        &hetflow(&["run", junk.to_str().unwrap(), "--input", xs]),
        "junk.onnx",
    );
    let dangling = write_model(&dir, "dangling.onnx", &relu_model("ghost", "Relu"));
    expect_error(&hetflow(&["run", &dangling, "--input", xs]), "'ghost'");
    let unknown = write_model(&dir, "unknown.onnx", &relu_model("x", "FancyNewOp"));
    expect_error(
        &hetflow(&["run", &unknown, "--input", xs]),
        "unsupported op FancyNewOp (opset 17) at node 'act'",
    );

    expect_error(&hetflow(&["run", &good]), "missing input(s): x");
    expect_error(
        &hetflow(&["run", &good, "--input", xs, "--input", xs]),
        "more input file(s)",
    );
    expect_error(
        &hetflow(&["run", &good, "--input", "nosuch=foo.npy"]),
        "no input named 'nosuch'",
    );
    expect_error(
        &hetflow(&["run", &good, "--input", "/nonexistent/x.npy"]),
        "does not exist",
    );

    let rank = dir.join("rank.npy");
    hetflow::ops::npy::write_npy(
        &rank,
        &hetflow::Tensor::from_vec(vec![6], vec![0f32; 6]).unwrap(),
    )
    .unwrap();
    expect_error(
        &hetflow(&["run", &good, "--input", rank.to_str().unwrap()]),
        "rank 2",
    );
    let dt = dir.join("dtype.npy");
    hetflow::ops::npy::write_npy(
        &dt,
        &hetflow::Tensor::from_vec(vec![2, 3], vec![0i64; 6]).unwrap(),
    )
    .unwrap();
    expect_error(
        &hetflow(&["run", &good, "--input", dt.to_str().unwrap()]),
        "must be f32, got i64",
    );
    let npyjunk = dir.join("junk.npy");
    std::fs::write(&npyjunk, b"\x93NUMPY garbage").unwrap();
    expect_error(
        &hetflow(&["run", &good, "--input", npyjunk.to_str().unwrap()]),
        "junk.npy",
    );
    expect_error(
        &hetflow(&["run", &good, "--input", xs, "--device", "warp:0"]),
        "unknown device kind",
    );
}

#[test]
fn bench_prints_median_last() {
    let c = case("mlp");
    let out = hetflow(&[
        "bench",
        c.model.to_str().unwrap(),
        "--iters",
        "3",
        "--warmup",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.trim_end().lines().last().unwrap();
    let v: f64 = last
        .strip_prefix("median_ms=")
        .expect(last)
        .parse()
        .unwrap();
    assert!(v > 0.0);
}

#[test]
fn devices_lists_topology_and_absent_backends() {
    let out = hetflow(&["devices"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cpu:0"), "{text}");
    assert!(text.contains("core"), "{text}");
    for b in ["cuda", "tpu"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(b) && l.contains("unavailable")),
            "{b}: {text}"
        );
    }
    // OpenCL: a device line where an ICD (PoCL in CI) is installed, else
    // the reason there is none.
    assert!(
        text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("opencl:") || (l.starts_with("opencl") && l.contains("unavailable"))
        }),
        "opencl: {text}"
    );
}

/// Runs hetflow, killing it after `secs` (a hang fails the test instead of
/// blocking it).
fn hetflow_bounded(args: &[&str], secs: u64) -> Output {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hetflow");
    let t = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t.elapsed().as_secs() >= secs {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hetflow {args:?} still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {}", p.display());
}

/// `--input` reads only regular files, and only the bytes a `.npy` header
/// declares (issue 18: `--input /dev/urandom` and FIFOs used to hang).
#[test]
fn inputs_refuse_devices_fifos_and_size_mismatches() {
    let dir = tmp("special");
    let good = write_model(&dir, "good.onnx", &relu_model("x", "Relu"));
    for dev in ["/dev/urandom", "/dev/zero"] {
        expect_error(
            &hetflow_bounded(&["run", &good, "--input", dev], 20),
            "character device",
        );
        expect_error(
            &hetflow_bounded(&["run", &good, "--input", &format!("x={dev}")], 20),
            dev,
        );
    }
    for name in ["fifo.npy", "fifo.pb", "fifo"] {
        let f = dir.join(name);
        mkfifo(&f);
        expect_error(
            &hetflow_bounded(&["run", &good, "--input", f.to_str().unwrap()], 20),
            "FIFO",
        );
    }
    expect_error(
        &hetflow_bounded(&["run", &good, "--input", dir.to_str().unwrap()], 20),
        "directory",
    );
    expect_error(
        &hetflow_bounded(&["run", "/dev/zero"], 20),
        "character device",
    );

    // A .npy whose data is longer or shorter than its header declares.
    let x = hetflow::Tensor::from_vec(vec![2, 3], vec![1f32; 6]).unwrap();
    let bytes = hetflow::ops::npy::write_npy_bytes(&x).unwrap();
    let long = dir.join("long.npy");
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&long, &padded).unwrap();
    expect_error(
        &hetflow(&["run", &good, "--input", long.to_str().unwrap()]),
        "header declares",
    );
    let short = dir.join("short.npy");
    std::fs::write(&short, &bytes[..bytes.len() - 4]).unwrap();
    expect_error(
        &hetflow(&["run", &good, "--input", short.to_str().unwrap()]),
        "header declares",
    );
    // A header that declares a huge array is refused from the file size,
    // before anything that size is allocated or read.
    let huge = dir.join("huge.npy");
    let text = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }";
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(text.len() as u16 + 1).to_le_bytes());
    h.extend_from_slice(text.as_bytes());
    h.push(b'\n');
    std::fs::write(&huge, &h).unwrap();
    expect_error(
        &hetflow_bounded(&["run", &good, "--input", huge.to_str().unwrap()], 20),
        "header declares",
    );
}

/// Two Relu outputs with the given names.
fn two_output_model(a: &str, b: &str) -> proto::ModelProto {
    let mut m = relu_model("x", "Relu");
    let g = m.graph.as_mut().unwrap();
    g.node[0].output = vec![a.into()];
    g.node.push(proto::NodeProto {
        name: Some("act2".into()),
        op_type: Some("Relu".into()),
        input: vec!["x".into()],
        output: vec![b.into()],
        ..Default::default()
    });
    g.output = vec![tensor_vi(a, 1, &[2, 3]), tensor_vi(b, 1, &[2, 3])];
    m
}

/// Outputs are written atomically (a new file renamed into place, never
/// through a symlink), colliding sanitised names are refused, and names a
/// model chose reach messages with control characters escaped (issue 18).
#[test]
fn outputs_are_atomic_unique_and_escaped() {
    let dir = tmp("outputs");
    let d = dir.to_str().unwrap();
    let x = dir.join("x.npy");
    hetflow::ops::npy::write_npy(
        &x,
        &hetflow::Tensor::from_vec(vec![2, 3], vec![1f32, -2., 3., -4., 5., -6.]).unwrap(),
    )
    .unwrap();
    let xs = x.to_str().unwrap();
    let good = write_model(&dir, "good.onnx", &relu_model("x", "Relu"));

    // An existing y.npy is replaced, not rewritten in place: a hard link
    // to the old file keeps the old bytes, and no temporary file is left.
    let y = dir.join("y.npy");
    std::fs::write(&y, b"old").unwrap();
    std::fs::hard_link(&y, dir.join("old-link")).unwrap();
    let ok = hetflow(&["run", &good, "--input", xs, "--output-dir", d]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(std::fs::read(dir.join("old-link")).unwrap(), b"old");
    assert_eq!(
        read(&y).as_slice::<f32>().unwrap(),
        &[1., 0., 3., 0., 5., 0.]
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A symlink at the output path is refused, and its target untouched.
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"keep me").unwrap();
    let out = tmp("outputs-link");
    std::os::unix::fs::symlink(&victim, out.join("y.npy")).unwrap();
    expect_error(
        &hetflow(&[
            "run",
            &good,
            "--input",
            xs,
            "--output-dir",
            out.to_str().unwrap(),
        ]),
        "symlink",
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");

    // `a/b` and `a_b` would both be a_b.npy.
    let clash = write_model(&dir, "clash.onnx", &two_output_model("a/b", "a_b"));
    expect_error(
        &hetflow(&["run", &clash, "--input", xs, "--output-dir", d]),
        "would both be written to a_b.npy",
    );
    assert!(!dir.join("a_b.npy").exists());

    // Control characters in a model's names are escaped in messages.
    let evil = write_model(
        &dir,
        "evil.onnx",
        &relu_model("x", "Evil\u{1b}[2J\u{7}Op\r"),
    );
    let out = hetflow(&["run", &evil, "--input", xs, "--output-dir", d]);
    expect_error(&out, "Evil\\u{1b}[2J\\u{7}Op\\r");
    assert!(
        !out.stderr
            .iter()
            .any(|&b| b == 0x1b || b == 0x07 || b == b'\r'),
        "raw control bytes on stderr"
    );
}

/// Every numeric flag is range-checked with a one-line error before any
/// work sized by it (issue 18: huge values panicked with "capacity
/// overflow", aborted on a 100 GB allocation or spawned threads for
/// minutes; `--credits 0` was accepted).
#[test]
fn numeric_flags_are_range_checked() {
    let dir = tmp("flags");
    let good = write_model(&dir, "good.onnx", &relu_model("x", "Relu"));
    let huge = "18446744073709551615";
    let cases: &[(&[&str], &str)] = &[
        (&["--iters", huge], "--iters must be between 1 and"),
        (&["--iters", "0"], "--iters must be between 1 and"),
        (&["--warmup", huge], "--warmup must be between 0 and"),
        (
            &["--microbatches", huge],
            "--microbatches must be between 1 and",
        ),
        (
            &["--microbatches", "4294967296"],
            "--microbatches must be between",
        ),
        (&["--microbatches", "0"], "--microbatches must be between"),
        (&["--credits", "0"], "--credits must be between 1 and"),
        (&["--credits", huge], "--credits must be between 1 and"),
        (&["--threads", "0"], "--threads must be at least 1"),
        (
            &["--memory-limit", "12Q"],
            "--memory-limit: unknown unit 'Q'",
        ),
        (
            &["--memory-limit", "0"],
            "--memory-limit must be between 1 byte",
        ),
        (
            &["--memory-limit", "1..5G"],
            "--memory-limit must be a size",
        ),
        (&["--memory-limit", "16"], "the plan needs about"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["bench", good.as_str()];
        args.extend_from_slice(flags);
        expect_error(&hetflow_bounded(&args, 30), needle);
    }
    // Far more threads than cores: capped, with a warning, and it runs.
    let out = hetflow_bounded(
        &[
            "bench",
            &good,
            "--threads",
            "4294967296",
            "--iters",
            "2",
            "--warmup",
            "0",
        ],
        30,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: --threads 4294967296 is more than the"),
        "{err}"
    );
    for (sub, flag) in [("run", "--threads"), ("profile", "--threads")] {
        let mut args = vec![sub];
        if sub == "run" {
            args.push(&good);
        }
        args.extend_from_slice(&[flag, "0"]);
        expect_error(&hetflow_bounded(&args, 30), "--threads must be at least 1");
    }
    expect_error(
        &hetflow_bounded(&["profile", "--iters", "0"], 30),
        "--iters must be between 1 and",
    );
    // plan / simulate: checked before the cluster file is even read.
    let cluster = dir.join("none.toml");
    let c = cluster.to_str().unwrap();
    for (flags, needle) in [
        (["--microbatches", huge], "--microbatches must be between"),
        (["--credits", "0"], "--credits must be between"),
        (["--batch", "0"], "--batch must be between"),
    ] {
        for sub in ["plan", "simulate"] {
            let mut args = vec![sub, good.as_str(), "--cluster", c];
            args.extend_from_slice(&flags);
            expect_error(&hetflow_bounded(&args, 30), needle);
        }
    }
    expect_error(
        &hetflow_bounded(&["plan", &good, "--cluster", c, "--replicas", "0"], 30),
        "--replicas must be between",
    );
    expect_error(
        &hetflow_bounded(
            &[
                "simulate",
                &good,
                "--cluster",
                c,
                "--task-overhead-us",
                "NaN",
            ],
            30,
        ),
        "--task-overhead-us must be a finite number",
    );
}

/// `launch --dry-run` prints the mpirun line in every build; without the
/// `mpi` feature a real launch says how to get one, before starting
/// anything.
#[test]
fn launch_prints_its_line_and_says_how_to_enable_mpi() {
    let c = case("mlp");
    let out = hetflow(&[
        "launch",
        "--np",
        "2",
        "--dry-run",
        "--",
        "run",
        c.model.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with("mpirun ") && line.contains("-np 2 -x HETFLOW_MPI=1"),
        "{line}"
    );
    assert!(
        line.contains(&format!("run {}", c.model.display())),
        "{line}"
    );
    expect_error(
        &hetflow(&["launch", "--np", "2", "--", "plan", "m.onnx"]),
        "launch runs `run`, `bench`, `profile` or `train`",
    );
    let dir = tmp("hostfile");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "a slots=1\na slots=2\n").unwrap();
    expect_error(
        &hetflow(&[
            "launch",
            "--hostfile",
            hosts.to_str().unwrap(),
            "--",
            "run",
            "m.onnx",
        ]),
        "hosts:2: host 'a' is listed twice",
    );
    if !cfg!(feature = "mpi") {
        expect_error(
            &hetflow(&[
                "launch",
                "--np",
                "2",
                "--",
                "run",
                c.model.to_str().unwrap(),
            ]),
            "--features mpi",
        );
    }
}

/// `profile` with no `--device` profiles every device `hetflow devices`
/// lists (issue 18): cpu always, and opencl:0 wherever an OpenCL device
/// (PoCL here) is present.
#[test]
fn profile_without_device_profiles_every_listed_device() {
    let devs = hetflow(&["devices", "--json"]);
    assert!(devs.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&devs.stdout).unwrap();
    let mut want: Vec<String> = Vec::new();
    for b in listed["backends"].as_array().unwrap() {
        for d in b["devices"].as_array().unwrap() {
            let id = &d["id"];
            want.push(format!(
                "{}:{}",
                id["kind"].as_str().unwrap().to_ascii_lowercase(),
                id["index"]
            ));
        }
    }
    assert!(want.iter().any(|w| w == "cpu:0"), "devices lists {want:?}");
    let dir = tmp("profile-all");
    let spec = dir.join("cluster.toml");
    let out = hetflow_bounded(
        &["profile", "--iters", "1", "--out", spec.to_str().unwrap()],
        600,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let text = std::fs::read_to_string(&spec).unwrap();
    let spec = hetflow::scheduler::cluster::ClusterSpec::from_toml(&text).unwrap();
    let names: Vec<String> = spec.devices.iter().map(|d| d.name.clone()).collect();
    for w in &want {
        let short = w.strip_suffix(":0").filter(|k| *k == "cpu").unwrap_or(w);
        assert!(
            names.iter().any(|n| n == w || n == short),
            "{w} listed by `devices` but not profiled: {names:?}"
        );
    }
    eprintln!("profiled {names:?}");
}
