//! Generated ONNX protobuf types.

include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
