//! Generates the ONNX protobuf types from the `onnx.proto` shipped with the
//! onnx Python package (copied into `proto/`), using a vendored `protoc`.
fn main() {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    prost_build::Config::new()
        .compile_protos(&["proto/onnx.proto"], &["proto/"])
        .expect("compile onnx.proto");
}
