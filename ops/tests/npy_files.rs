//! `.npy` reading is bounded by the header (issue 18): regular files only,
//! the file's size must match what the header declares, and a shape whose
//! byte count overflows is an error, not a panic or a huge allocation.

use hetflow_ops::npy::{read_npy, read_npy_bytes, write_npy_bytes};
use hetflow_ops::Tensor;
use std::path::Path;

fn header(shape: &str) -> Vec<u8> {
    let text = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(text.len() as u16 + 1).to_le_bytes());
    h.extend_from_slice(text.as_bytes());
    h.push(b'\n');
    h
}

#[test]
fn overflowing_shapes_are_errors() {
    for shape in [
        "(4294967296, 4294967296)",
        "(18446744073709551615, 2)",
        "(4611686018427387904,)",
        "(99999999999999999999999,)",
    ] {
        let e = read_npy_bytes(&header(shape)).unwrap_err().to_string();
        assert!(
            e.contains("not a valid .npy") || e.contains("overflows"),
            "{shape}: {e}"
        );
    }
    // A large but representable shape fails on the size check instead.
    let e = read_npy_bytes(&header("(1000000, 1000000)"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("header declares"), "{e}");
}

#[test]
fn size_must_match_the_header() {
    let t = Tensor::from_vec(vec![2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
    let b = write_npy_bytes(&t).unwrap();
    assert_eq!(read_npy_bytes(&b).unwrap(), t);
    let mut long = b.clone();
    long.push(0);
    assert!(read_npy_bytes(&long)
        .unwrap_err()
        .to_string()
        .contains("header declares"));
    // A header length pointing past the end of the file.
    let mut bad = b.clone();
    bad[8] = 0xff;
    bad[9] = 0xff;
    assert!(read_npy_bytes(&bad).is_err());
    assert!(read_npy_bytes(b"\x93NUMPY").is_err());
}

#[test]
fn devices_are_refused() {
    for p in ["/dev/zero", "/dev/urandom"] {
        let e = read_npy(Path::new(p)).unwrap_err().to_string();
        assert!(e.contains(p) && e.contains("character device"), "{e}");
    }
}
