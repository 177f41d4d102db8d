//! The original files of the ONNX "light" model zoo shipped in the onnx
//! package reproduce their shipped outputs. (The fixtures made from them,
//! with seeded random initializers and onnxruntime as the reference, run
//! on every device in `tests/devices.rs`.)

mod common;
use common::{case, read, rel_l2};
use hetflow::{Model, SessionBuilder, Tensor};
use std::sync::Arc;

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
