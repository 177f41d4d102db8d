//! ONNX TensorProto (`.pb`) decoding from memory, as `hetflow run --input
//! x.pb` and the conformance runner read it (without a directory, so
//! external data is refused).
#![no_main]

#[global_allocator]
static ALLOC: hetflow_fuzz::CappedAlloc = hetflow_fuzz::CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((name, t)) = hetflow_ops::onnx::read_tensor_pb_bytes(data, None) {
        // The writer's output must read back to the same tensor.
        let pb = hetflow_ops::onnx::tensor_to_proto(&t, &name);
        let again =
            hetflow_ops::onnx::tensor_from_proto(&pb, None).expect("re-reading a written tensor");
        assert!(
            t.shape() == again.shape()
                && t.dtype() == again.dtype()
                && t.to_le_bytes() == again.to_le_bytes(),
            "TensorProto round trip changed the tensor"
        );
    }
});
