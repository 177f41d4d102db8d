//! Generates the ONNX protobuf types from the `onnx.proto` shipped with the
//! onnx Python package (copied into `proto/`), using a vendored `protoc`.
fn main() {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    // Tensor bytes stay slices of the file's buffer while a model is
    // imported, instead of a second copy of every weight.
    prost_build::Config::new()
        .bytes([".onnx.TensorProto.raw_data"])
        .compile_protos(&["proto/onnx.proto"], &["proto/"])
        .expect("compile onnx.proto");
}
