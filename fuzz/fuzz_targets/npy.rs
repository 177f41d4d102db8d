//! `.npy` decoding from memory: any bytes give a tensor or an error.
#![no_main]

#[global_allocator]
static ALLOC: hetflow_fuzz::CappedAlloc = hetflow_fuzz::CappedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(t) = hetflow_ops::npy::read_npy_bytes(data) {
        // What was read must write back and read again to the same tensor.
        let bytes = hetflow_ops::npy::write_npy_bytes(&t).expect("re-encoding a read tensor");
        let again = hetflow_ops::npy::read_npy_bytes(&bytes).expect("re-reading a written tensor");
        assert!(same_bits(&t, &again), "npy round trip changed the tensor");
    }
});

/// Equal shape, dtype and bytes (NaN payloads compare as bits).
fn same_bits(a: &hetflow_ops::Tensor, b: &hetflow_ops::Tensor) -> bool {
    a.shape() == b.shape() && a.dtype() == b.dtype() && a.to_le_bytes() == b.to_le_bytes()
}
