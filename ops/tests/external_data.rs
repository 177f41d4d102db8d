//! External initializer data stays inside the model's directory: relative
//! locations without `..`, symlinks only when their target stays inside,
//! regular files only, and exactly `offset`/`length` bytes read after they
//! are checked against the file and the tensor (issue 18, "arbitrary file
//! read").

use hetflow_ops::onnx::{load_model, load_model_bytes, proto};
use prost::Message;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hetflow-ext-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn vi(name: &str, dims: &[i64]) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(1),
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

/// An f32 `[n]` initializer whose data lives in an external file.
fn external(name: &str, n: i64, kv: &[(&str, &str)]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: vec![n],
        data_type: Some(1),
        data_location: Some(proto::tensor_proto::DataLocation::External as i32),
        external_data: kv
            .iter()
            .map(|(k, v)| proto::StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v.to_string()),
            })
            .collect(),
        ..Default::default()
    }
}

/// y = (x + a) + b, with x `[n]` and the initializers given.
fn model(n: i64, a: proto::TensorProto, b: proto::TensorProto) -> proto::ModelProto {
    let node = |name: &str, ins: [&str; 2], out: &str| proto::NodeProto {
        name: Some(name.into()),
        op_type: Some("Add".into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        ..Default::default()
    };
    proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(proto::GraphProto {
            name: Some("g".into()),
            node: vec![
                node("add_a", ["x", "a"], "t"),
                node("add_b", ["t", "b"], "y"),
            ],
            initializer: vec![a, b],
            input: vec![vi("x", &[n])],
            output: vec![vi("y", &[n])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write(dir: &Path, m: &proto::ModelProto) -> PathBuf {
    let p = dir.join("model.onnx");
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn constant(g: &hetflow_ops::Graph, name: &str) -> Vec<f32> {
    let id = g.find(name).expect(name);
    g.constants[&id].as_slice::<f32>().unwrap().to_vec()
}

/// Loads with a bound on time, so a read that blocks fails the test
/// instead of hanging it.
fn load_bounded(p: &Path) -> Result<hetflow_ops::Graph, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = p.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(load_model(&p).map_err(|e| e.to_string()));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("loading the model blocked for 10 s")
}

fn expect_refused(p: &Path, needles: &[&str]) {
    let e = load_bounded(p).expect_err("the model must be refused");
    assert!(!e.contains('\n'), "one line: {e}");
    for n in needles {
        assert!(e.contains(n), "'{n}' not in: {e}");
    }
}

/// A file of two tensors at different offsets, with padding between and
/// after them: each tensor reads exactly its own bytes.
#[test]
fn offset_and_length_are_honoured() {
    let d = tmp("offsets");
    let a = [1.0f32, 2.0, 3.0];
    let b = [10.0f32, 20.0, 30.0];
    let mut file = f32_bytes(&[-7.0, -7.0]); // 8 bytes of padding
    file.extend(f32_bytes(&a)); // a at 8
    file.extend(f32_bytes(&[-9.0])); // 4 bytes of padding
    file.extend(f32_bytes(&b)); // b at 24
    file.extend(f32_bytes(&[-5.0; 4])); // trailing bytes
    std::fs::write(d.join("weights.bin"), &file).unwrap();
    let m = model(
        3,
        external(
            "a",
            3,
            &[
                ("location", "weights.bin"),
                ("offset", "8"),
                ("length", "12"),
            ],
        ),
        external("b", 3, &[("location", "./weights.bin"), ("offset", "24")]),
    );
    let g = load_bounded(&write(&d, &m)).unwrap();
    assert_eq!(constant(&g, "a"), a);
    assert_eq!(constant(&g, "b"), b);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn wrong_length_or_range_is_refused() {
    let d = tmp("length");
    std::fs::write(d.join("w.bin"), f32_bytes(&[1.0; 6])).unwrap();
    let ok = || external("b", 3, &[("location", "w.bin")]);
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 4] = [
        (
            &[("location", "w.bin"), ("length", "8")],
            &["tensor 'a'", "'w.bin'", "length is 8 bytes", "need 12"],
        ),
        (
            &[("location", "w.bin"), ("offset", "16")],
            &["tensor 'a'", "12 bytes at offset 16", "file's 24 bytes"],
        ),
        (
            &[("location", "w.bin"), ("offset", "18446744073709551615")],
            &["tensor 'a'", "do not fit"],
        ),
        (&[("location", "w.bin"), ("offset", "-4")], &["offset '-4'"]),
    ];
    for (kv, needles) in cases {
        let m = model(3, external("a", 3, kv), ok());
        expect_refused(&write(&d, &m), needles);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn locations_outside_the_model_dir_are_refused() {
    let root = tmp("escape");
    let dir = root.join("models/deep/dir");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = root.join("secret.bin");
    std::fs::write(&secret, f32_bytes(&[42.0; 3])).unwrap();
    std::fs::write(dir.join("ok.bin"), f32_bytes(&[1.0; 3])).unwrap();
    let ok = || external("b", 3, &[("location", "ok.bin")]);
    let try_loc = |loc: &str, needles: &[&str]| {
        let m = model(3, external("a", 3, &[("location", loc)]), ok());
        expect_refused(&write(&dir, &m), needles);
    };
    try_loc("../../../secret.bin", &["tensor 'a'", "'..'"]);
    try_loc("sub/../../ok.bin", &["'..'"]);
    try_loc(secret.to_str().unwrap(), &["absolute"]);
    try_loc("/etc/passwd", &["'/etc/passwd'", "absolute"]);
    try_loc("/dev/zero", &["absolute"]);
    try_loc("", &["empty"]);
    try_loc("missing.bin", &["'missing.bin'", "cannot be read"]);

    // A symlink whose target leaves the directory is refused...
    symlink(&secret, dir.join("escape.bin")).unwrap();
    try_loc("escape.bin", &["outside the model's directory"]);
    symlink("/dev/zero", dir.join("zero.bin")).unwrap();
    try_loc("zero.bin", &["outside the model's directory"]);
    symlink("../../../secret.bin", dir.join("rel.bin")).unwrap();
    try_loc("rel.bin", &["outside the model's directory"]);

    // ...one that stays inside works.
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/real.bin"), f32_bytes(&[4.0, 5.0, 6.0])).unwrap();
    symlink("data/real.bin", dir.join("inside.bin")).unwrap();
    let m = model(3, external("a", 3, &[("location", "inside.bin")]), ok());
    let g = load_bounded(&write(&dir, &m)).unwrap();
    assert_eq!(constant(&g, "a"), [4.0, 5.0, 6.0]);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn non_regular_files_are_refused_without_blocking() {
    let d = tmp("special");
    std::fs::write(d.join("ok.bin"), f32_bytes(&[1.0; 3])).unwrap();
    let ok = || external("b", 3, &[("location", "ok.bin")]);
    let fifo = d.join("pipe.bin");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let m = model(3, external("a", 3, &[("location", "pipe.bin")]), ok());
    expect_refused(&write(&d, &m), &["tensor 'a'", "FIFO"]);
    std::fs::create_dir_all(d.join("adir")).unwrap();
    let m = model(3, external("a", 3, &[("location", "adir")]), ok());
    expect_refused(&write(&d, &m), &["directory"]);
    // The model file itself must be regular too.
    expect_refused(Path::new("/dev/zero"), &["/dev/zero", "character device"]);
    expect_refused(&fifo, &["FIFO"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn models_from_memory_refuse_external_data() {
    let m = model(
        3,
        external("a", 3, &[("location", "w.bin")]),
        external("b", 3, &[("location", "w.bin")]),
    );
    let e = load_model_bytes(&m.encode_to_vec(), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tensor 'a'") && e.contains("loaded from memory"),
        "{e}"
    );
}
