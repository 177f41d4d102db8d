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
