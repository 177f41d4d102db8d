//! `.npy` read/write for host tensors, through the `npyz` crate.
//!
//! Convention for bfloat16, which numpy has no type code for: a bf16 tensor
//! is written as a `<u2` array of its raw bits, so nothing is lost; reading
//! a `<u2` file gives a u16 tensor (cast or reinterpret as needed).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{Data, Tensor};
use std::io::{Read, Write};
use std::path::Path;

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::BadFile {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// Reads a `.npy` file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    read_npy_bytes(&bytes).map_err(|e| bad(path, e))
}

/// Decodes `.npy` bytes.
pub fn read_npy_bytes(bytes: &[u8]) -> Result<Tensor> {
    read_from(bytes)
}

fn read_from<R: Read>(r: R) -> Result<Tensor> {
    let npy =
        npyz::NpyFile::new(r).map_err(|e| Error::msg(format!("not a valid .npy file: {e}")))?;
    if npy.order() == npyz::Order::Fortran {
        crate::bail!("Fortran-ordered .npy arrays are unsupported; save with np.ascontiguousarray");
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let ts = match npy.dtype() {
        npyz::DType::Plain(ts) => ts,
        other => crate::bail!(
            "unsupported .npy dtype {:?} (structured or array dtypes)",
            other.descr()
        ),
    };
    let code = ts.to_string();
    // npyz converts endianness itself; we only need the kind and width.
    let key = code.trim_start_matches(['<', '>', '|', '=']);
    let err = |e: std::io::Error| Error::msg(format!("bad .npy data: {e}"));
    let data = match key {
        "f4" => Data::F32(npy.into_vec().map_err(err)?),
        "f8" => Data::F64(npy.into_vec().map_err(err)?),
        "f2" => Data::F16(npy.into_vec().map_err(err)?),
        "i1" => Data::I8(npy.into_vec().map_err(err)?),
        "i2" => Data::I16(npy.into_vec().map_err(err)?),
        "i4" => Data::I32(npy.into_vec().map_err(err)?),
        "i8" => Data::I64(npy.into_vec().map_err(err)?),
        "u1" => Data::U8(npy.into_vec().map_err(err)?),
        "u2" => Data::U16(npy.into_vec().map_err(err)?),
        "u4" => Data::U32(npy.into_vec().map_err(err)?),
        "u8" => Data::U64(npy.into_vec().map_err(err)?),
        "b1" => Data::Bool(npy.into_vec().map_err(err)?),
        other => crate::bail!("unsupported .npy dtype '{other}'"),
    };
    Tensor::new(shape, data)
}

fn write_typed<T: npyz::Serialize + npyz::AutoSerialize + Copy, W: Write>(
    w: W,
    shape: &[u64],
    v: &[T],
) -> std::io::Result<()> {
    use npyz::WriterBuilder;
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(w)
        .begin_nd()?;
    writer.extend(v.iter().copied())?;
    writer.finish()
}

/// Encodes a tensor as `.npy` bytes.
pub fn write_npy_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(t.byte_len() + 128);
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let w = &mut out;
    let r = match t.data() {
        Data::F32(v) => write_typed(w, &shape, v),
        Data::F64(v) => write_typed(w, &shape, v),
        Data::F16(v) => write_typed(w, &shape, v),
        Data::BF16(v) => {
            let bits: Vec<u16> = v.iter().map(|x| x.to_bits()).collect();
            write_typed(w, &shape, &bits)
        }
        Data::I8(v) => write_typed(w, &shape, v),
        Data::I16(v) => write_typed(w, &shape, v),
        Data::I32(v) => write_typed(w, &shape, v),
        Data::I64(v) => write_typed(w, &shape, v),
        Data::U8(v) => write_typed(w, &shape, v),
        Data::U16(v) => write_typed(w, &shape, v),
        Data::U32(v) => write_typed(w, &shape, v),
        Data::U64(v) => write_typed(w, &shape, v),
        Data::Bool(v) => write_typed(w, &shape, v),
    };
    r.map_err(|e| Error::msg(format!("encoding .npy: {e}")))?;
    Ok(out)
}

/// Writes a tensor to a `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    let path = path.as_ref();
    let bytes = write_npy_bytes(t)?;
    std::fs::write(path, bytes).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })
}

/// The dtype a `.npy` file of `t` will declare (bf16 becomes u16).
pub fn npy_dtype(t: &Tensor) -> DType {
    match t.dtype() {
        DType::BF16 => DType::U16,
        d => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_all_dtypes() {
        let ts = vec![
            Tensor::from_vec(vec![2, 3], vec![1.5f32, -2.0, 3.25, 0.0, 1e-7, 7.0]).unwrap(),
            Tensor::from_vec(vec![3], vec![1i64, -5, 1 << 40]).unwrap(),
            Tensor::from_vec(vec![2], vec![true, false]).unwrap(),
            Tensor::from_vec(
                vec![1, 2],
                vec![half::f16::from_f32(0.5), half::f16::from_f32(-3.0)],
            )
            .unwrap(),
            Tensor::from_vec(vec![], vec![42u8]).unwrap(),
        ];
        for t in ts {
            let b = write_npy_bytes(&t).unwrap();
            assert_eq!(read_npy_bytes(&b).unwrap(), t);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(read_npy_bytes(b"not an npy file at all").is_err());
        let t = Tensor::from_vec(vec![4], vec![1f32, 2.0, 3.0, 4.0]).unwrap();
        let b = write_npy_bytes(&t).unwrap();
        assert!(
            read_npy_bytes(&b[..b.len() - 3]).is_err(),
            "truncated data must fail"
        );
    }
}
