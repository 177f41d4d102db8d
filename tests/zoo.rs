//! The nine CNNs of the ONNX "light" model zoo shipped in the onnx package,
//! with their constant weights replaced by seeded random initializers
//! (scripts/gen_fixtures.py) and onnxruntime as the reference; plus the
//! original files, whose shipped output we also match.

mod common;
use common::{case, read, rel_l2, run_case};
use hetflow::{Model, SessionBuilder, Tensor};
use std::sync::Arc;

macro_rules! zoo {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { run_case(concat!("zoo_", stringify!($name)), "cpu"); } )*
    };
}

zoo!(
    bvlc_alexnet,
    densenet121,
    inception_v1,
    inception_v2,
    resnet50,
    shufflenet,
    squeezenet,
    vgg19,
    zfnet512
);

/// The shipped models (constant weights) reproduce the shipped output.
#[test]
fn original_light_models_match_shipped_outputs() {
    for name in ["squeezenet", "resnet50", "shufflenet"] {
        let c = case(&format!("zoo_{name}"));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(c.dir.join("manifest.json")).unwrap())
                .unwrap();
        let model_path = m["original_model"].as_str().expect("original_model");
        let out_path = m["original_output"].as_str().expect("original_output");
        let model = Model::load(model_path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = read(&c.inputs[0].1);
        let mut s = SessionBuilder::new(&model).build().unwrap();
        let got = s.run(vec![Arc::new(x)]).unwrap();
        let (_, want): (String, Tensor) = hetflow::ops::onnx::read_tensor_pb(out_path).unwrap();
        assert_eq!(got[0].shape(), want.shape(), "{name}");
        let e = rel_l2(&got[0], &want);
        assert!(e <= 1e-4, "{name}: relative L2 {e:.3e}");
    }
}
