//! Models built for the CPU path against onnxruntime references: control
//! flow, and graphs built in code. (The foundation fixtures run on every
//! device in `tests/devices.rs`.)

mod common;
use common::run_case;

/// Control flow against onnxruntime (issue 20): a Loop with a
/// data-dependent trip count and an If nested in its body, and an RNN
/// exported as Scan, both reading outer-scope values. A control-flow node
/// runs on a CPU device, its body with the host interpreter; split over
/// two devices the nodes around it run on the other.
mod control_flow {
    use super::*;
    #[test]
    fn loop_dynamic() {
        run_case("loop_dynamic", "cpu");
    }
    #[test]
    fn loop_dynamic_split() {
        run_case("loop_dynamic", "cpu:0,cpu:1");
    }
    #[test]
    fn rnn_scan() {
        run_case("rnn_scan", "cpu");
    }
    #[test]
    fn rnn_scan_split() {
        run_case("rnn_scan", "cpu:0,cpu:1");
    }
}

/// A Loop built in code: three trips of `v + w` with `w` an outer value
/// the body captures (its fourth input, the node's fourth); and the same
/// node given a body that takes the wrong inputs fails with an error that
/// names the node, not a panic.
#[test]
fn loop_built_in_code_reads_a_captured_value() {
    use hetflow::ops::graph::Dim;
    use hetflow::ops::op::{BinaryOp, Body, Op};
    use hetflow::ops::{DType, Graph, Tensor};
    use std::sync::Arc;
    let body = |formal_ok: bool| {
        let mut b = Graph::default();
        b.add_input("iter", DType::I64, vec![]);
        let cond = b.add_input("cond", DType::Bool, vec![]);
        let v = if formal_ok {
            b.add_input("v", DType::F32, vec![Dim::Known(2)])
        } else {
            b.add_const("v", Tensor::from_vec(vec![2], vec![0f32, 0.0]).unwrap())
        };
        let w = b.add_input("w", DType::F32, vec![Dim::Known(2)]);
        let v2 = b.add_node("v2", Op::Binary(BinaryOp::Add), &[v, w], 1)[0];
        b.add_output(cond);
        b.add_output(v2);
        let g = b.finish().unwrap();
        let formal = g.inputs.len() - 1;
        Body {
            graph: Arc::new(g),
            formal,
        }
    };
    let model = |formal_ok: bool| {
        let mut g = Graph::default();
        let x = g.add_input("x", DType::F32, vec![Dim::Known(2)]);
        let m = g.add_const("m", Tensor::scalar(3i64));
        let c = g.add_const("c", Tensor::scalar(true));
        let w = g.add_const("w", Tensor::from_vec(vec![2], vec![0.5f32, -1.0]).unwrap());
        let body = body(formal_ok);
        let y = g.add_node("loop", Op::Loop { body }, &[m, c, x, w], 1)[0];
        g.add_output(y);
        g.finish()
    };
    let g = model(true).unwrap();
    let m = hetflow::Model::from_graph(g);
    let mut s = hetflow::SessionBuilder::new(&m)
        .devices("cpu")
        .build()
        .unwrap();
    let x = Arc::new(Tensor::from_vec(vec![2], vec![1f32, 2.0]).unwrap());
    let y = s.run(vec![x.clone()]).unwrap();
    assert_eq!(y[0].as_slice::<f32>().unwrap(), &[2.5, -1.0]);
    // A body with one declared input too few: refused with the node's name
    // (at inference or at run), never a panic.
    let err = match model(false) {
        Err(e) => e.to_string(),
        Ok(g) => {
            let m = hetflow::Model::from_graph(g);
            let mut s = hetflow::SessionBuilder::new(&m)
                .devices("cpu")
                .build()
                .unwrap();
            s.run(vec![x]).unwrap_err().to_string()
        }
    };
    assert!(err.contains("loop"), "{err}");
}

/// A graph whose every output is a constant (an ONNX model of one Constant
/// node) runs and returns the constant, instead of waiting forever for an
/// actor that does not exist.
#[test]
fn constant_only_graph_returns_its_constants() {
    use hetflow::ops::{Graph, Tensor};
    let mut g = Graph::default();
    let c = g.add_const("c", Tensor::from_vec(vec![2], vec![1.5f32, -2.0]).unwrap());
    g.add_output(c);
    let m = hetflow::Model::from_graph(g.finish().unwrap());
    let mut s = hetflow::SessionBuilder::new(&m)
        .devices("cpu")
        .build()
        .unwrap();
    let out = s.run(vec![]).unwrap();
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[1.5, -2.0]);
    let many = s.run_stream(vec![vec![], vec![]]).unwrap();
    assert_eq!(many.len(), 2);
}

/// `credits(0)` and `threads(0)` are refused at build with an error naming
/// the setting (issue 18), instead of a session that never starts a
/// micro-batch; 1 works.
#[test]
fn zero_credits_or_threads_are_refused() {
    let c = common::case("mlp");
    let m = hetflow::Model::load(&c.model).unwrap();
    let err = |b: hetflow::SessionBuilder| match b.build() {
        Ok(_) => panic!("build accepted a zero setting"),
        Err(e) => e.to_string(),
    };
    let e = err(hetflow::SessionBuilder::new(&m).credits(0));
    assert!(e.contains("credits(0)"), "{e}");
    let e = err(hetflow::SessionBuilder::new(&m).threads(0));
    assert!(e.contains("threads(0)"), "{e}");
    let mut s = hetflow::SessionBuilder::new(&m)
        .credits(1)
        .threads(1)
        .build()
        .unwrap();
    let x = std::sync::Arc::new(common::read(&c.inputs[0].1));
    common::check_outputs(&c, &s.run(vec![x]).unwrap(), "mlp with credits 1");
}

/// A plan whose predicted memory on a device is over its budget is refused
/// at build, naming the device and the budget (issue 18, "memory budget"),
/// instead of running into an OOM kill; a budget that fits builds.
#[test]
fn memory_budget_is_checked_at_build() {
    let c = common::case("mlp");
    let m = hetflow::Model::load(&c.model).unwrap();
    let e = match hetflow::SessionBuilder::new(&m)
        .memory_limit(4 << 10)
        .build()
    {
        Ok(_) => panic!("a 4 KiB budget was accepted for the mlp's 40 KB of weights"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("on cpu:0") && e.contains("the memory limit is 0.0 MiB"),
        "{e}"
    );
    let e = match hetflow::SessionBuilder::new(&m)
        .devices("cpu:0,cpu:1")
        .memory_limit(20 << 10)
        .build()
    {
        Ok(_) => panic!("a 20 KiB budget per device was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("MiB on cpu:"), "{e}");
    let mut s = hetflow::SessionBuilder::new(&m)
        .memory_limit(64 << 20)
        .build()
        .unwrap();
    let x = std::sync::Arc::new(common::read(&c.inputs[0].1));
    common::check_outputs(&c, &s.run(vec![x]).unwrap(), "mlp under a 64 MiB budget");
}
