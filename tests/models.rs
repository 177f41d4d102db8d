//! Foundation models against onnxruntime references (relative L2 ≤ 1e-4 for
//! f32, per each case's manifest), on the default CPU device and split over
//! two logical CPU devices.

mod common;
use common::run_case;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        mod cpu {
            use super::*;
            $( #[test] fn $name() { run_case(stringify!($name), "cpu"); } )*
        }
        mod cpu_split {
            use super::*;
            $( #[test] fn $name() { run_case(stringify!($name), "cpu:0,cpu:1"); } )*
        }
    };
}

cases!(
    mlp,
    lenet,
    resnet_block,
    transformer_encoder,
    mobilenet_block,
    symbolic_batch,
    weird_names,
    ops_mix_a,
    ops_mix_b,
    ops_mix_c,
    gelu20,
);

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
