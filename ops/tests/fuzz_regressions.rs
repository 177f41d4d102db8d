//! Inputs that `scripts/fuzz.sh` (docs/reliability.md, "Fuzzing") found to
//! crash, hang or over-allocate, minimised and kept under
//! `tests/data/fuzz/<target>-<what>`: each must now give an error that
//! names the problem, quickly. Findings below the loader's entry points
//! also have a unit test next to the fix.

use std::path::Path;
use std::time::{Duration, Instant};

fn data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Loads an `onnx_load` finding from memory, as the fuzz target does, and
/// returns the error (the load must fail within a second).
fn load_error(name: &str) -> String {
    let start = Instant::now();
    // The fuzzer's inputs predate strict loading and set no ir_version,
    // which is now refused before inference; IR 1 (opset 1 implied, no
    // attribute types) lets them reach the inference rules they broke.
    use prost::Message;
    let mut m = hetflow_ops::onnx::proto::ModelProto::decode(data(name).as_slice()).unwrap();
    m.ir_version.get_or_insert(1);
    let r = hetflow_ops::onnx::load_model_bytes(&m.encode_to_vec(), None);
    assert!(start.elapsed() < Duration::from_secs(1), "{name}: slow");
    match r {
        Ok(_) => panic!("{name}: loaded"),
        Err(e) => e.to_string(),
    }
}

/// A ConvTranspose whose weight is declared rank 0: inference gave no
/// shape instead of an error, and the cost model then indexed `w[1..]`.
#[test]
fn convtranspose_with_a_rank0_weight() {
    let e = load_error("onnx_load-convtranspose-rank0-weight.onnx");
    assert!(
        e.contains("ConvTranspose") && e.contains("ranks do not fit"),
        "{e}"
    );
}

/// A Split of a scalar (rank 0) input: `norm_axis` lets axis 0 through for
/// rank 0, and inference then indexed the shape's first dim. Every
/// inference rule that indexes a dim by axis now refuses a scalar.
#[test]
fn split_of_a_scalar() {
    let e = load_error("onnx_load-split-scalar.onnx");
    assert!(e.contains("Split") && e.contains("scalar"), "{e}");
}

/// Constant folding bounded only its inputs: a ConstantOfShape whose
/// constant shape is `[2^50]` asked the kernel for 9 PB at load. Outputs
/// over the folding limit stay nodes now (sized by inference).
#[test]
fn constant_of_shape_with_a_huge_constant_shape_is_not_folded() {
    use hetflow_ops::{DType, Dim, Graph, Op, Tensor};
    let mut g = Graph::default();
    let shape = g.add_const(
        "shape",
        Tensor::from_vec(vec![1], vec![1i64 << 50]).unwrap(),
    );
    let value = Tensor::from_vec(vec![1], vec![0f32]).unwrap();
    let y = g.add_node("big", Op::ConstantOfShape { value }, &[shape], 1)[0];
    g.add_output(y);
    let g = g.finish().unwrap();
    assert_eq!(g.nodes.len(), 1, "folded");
    let f = &g.value(y).fact;
    assert_eq!(f.dtype, Some(DType::F32));
    assert_eq!(f.shape, Some(vec![Dim::Known(1 << 50)]));
}

/// Reshape to a constant shape whose element count overflows usize
/// (`[0, 1023, 2^57 - 1]` copying a dim of 3): the product of the target
/// dims overflowed (a panic with overflow checks, a wrong count without).
#[test]
fn reshape_to_an_overflowing_shape() {
    use hetflow_ops::{DType, Dim, Graph, Op, Tensor};
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Known(3), Dim::Known(5)]);
    let target = vec![0i64, 1023, (1 << 57) - 1];
    let shape = g.add_const("shape", Tensor::from_vec(vec![3], target).unwrap());
    let y = g.add_node(
        "r",
        Op::Reshape {
            allowzero: false,
            shape: None,
        },
        &[x, shape],
        1,
    )[0];
    g.add_output(y);
    let e = g.finish().unwrap_err().to_string();
    assert!(e.contains("more elements than fit"), "{e}");
}

/// Reshape by a non-constant shape input declared `[2^62]`: inference
/// made one symbolic dim per entry and overflowed the Vec's capacity. A
/// rank that large stays unknown now.
#[test]
fn reshape_by_a_huge_declared_shape_input() {
    use hetflow_ops::{DType, Dim, Graph, Op};
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Known(2), Dim::Known(3)]);
    let shape = g.add_input("shape", DType::I64, vec![Dim::Known(1 << 62)]);
    let y = g.add_node(
        "r",
        Op::Reshape {
            allowzero: false,
            shape: None,
        },
        &[x, shape],
        1,
    )[0];
    g.add_output(y);
    let g = g.finish().unwrap();
    assert_eq!(g.value(y).fact.shape, None);
}
