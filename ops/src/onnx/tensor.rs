//! TensorProto conversion (typed fields, raw data, and external data
//! confined to the model's directory: `read_external`), the `.pb` tensor
//! readers, and the file-size limit and path helpers model loading shares.

use super::proto;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{Data, Tensor};
use prost::Message;
use proto::tensor_proto::DataLocation;
use std::path::{Component, Path};

pub(super) fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// The largest model or `.pb` file read: protobuf's own 2 GiB limit
/// (larger models keep their weights as external data).
pub const MAX_PROTO_BYTES: u64 = (2 << 30) - 1;

/// The directory a file's relative references resolve in (`.` for a bare
/// file name).
pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn need(t: &proto::TensorProto, n: usize, have: usize) -> Result<()> {
    if n != have {
        crate::bail!(
            "tensor '{}' declares {} elements but holds {}",
            t.name(),
            n,
            have
        );
    }
    Ok(())
}

/// Converts an ONNX TensorProto (raw or typed fields, or external data
/// inside `dir`; `None` refuses external data) into a host [`Tensor`].
pub fn tensor_from_proto(t: &proto::TensorProto, dir: Option<&Path>) -> Result<Tensor> {
    let dtype = DType::from_onnx(t.data_type()).ok_or_else(|| {
        Error::msg(format!(
            "tensor '{}' has element type {} which hetflow does not support",
            t.name(),
            DType::onnx_name(t.data_type())
        ))
    })?;
    if t.dims.iter().any(|&d| d < 0) {
        crate::bail!("tensor '{}' has negative dims {:?}", t.name(), t.dims);
    }
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size()).map(|_| n))
        .ok_or_else(|| {
            Error::msg(format!(
                "tensor '{}' has dims {:?} whose size overflows",
                t.name(),
                t.dims
            ))
        })?;
    if let Some(bits) = crate::narrow::packed_bits(dtype) {
        return packed_from_proto(t, dir, dtype, shape, n, bits);
    }
    if t.data_location == Some(DataLocation::External as i32) {
        let bytes = read_external(t, dir, n * dtype.size())?;
        return Tensor::from_le_bytes(dtype, shape, &bytes);
    }
    if let Some(raw) = &t.raw_data {
        return Tensor::from_le_bytes(dtype, shape, raw);
    }
    let data = match dtype {
        DType::F32 => {
            need(t, n, t.float_data.len())?;
            Data::F32(t.float_data.clone())
        }
        DType::F64 => {
            need(t, n, t.double_data.len())?;
            Data::F64(t.double_data.clone())
        }
        DType::I64 => {
            need(t, n, t.int64_data.len())?;
            Data::I64(t.int64_data.clone())
        }
        DType::U32 | DType::U64 => {
            need(t, n, t.uint64_data.len())?;
            if dtype == DType::U32 {
                Data::U32(t.uint64_data.iter().map(|&v| v as u32).collect())
            } else {
                Data::U64(t.uint64_data.clone())
            }
        }
        _ => {
            // int32_data carries i32, i16, i8, u16, u8, bool, and f16/bf16 bits.
            need(t, n, t.int32_data.len())?;
            let v = &t.int32_data;
            match dtype {
                DType::I32 => Data::I32(v.clone()),
                DType::I16 => Data::I16(v.iter().map(|&x| x as i16).collect()),
                DType::I8 => Data::I8(v.iter().map(|&x| x as i8).collect()),
                DType::U16 => Data::U16(v.iter().map(|&x| x as u16).collect()),
                DType::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
                DType::Bool => Data::Bool(v.iter().map(|&x| x != 0).collect()),
                DType::F16 => {
                    Data::F16(v.iter().map(|&x| half::f16::from_bits(x as u16)).collect())
                }
                DType::BF16 => {
                    Data::BF16(v.iter().map(|&x| half::bf16::from_bits(x as u16)).collect())
                }
                // The 8-bit floats: one bit pattern per int32.
                _ => {
                    let bytes: Vec<u8> = v.iter().map(|&x| x as u8).collect();
                    return Tensor::from_le_bytes(dtype, shape, &bytes);
                }
            }
        }
    };
    Tensor::new(shape, data)
}

/// A tensor of a sub-byte type: raw, external or int32 data hold the
/// elements packed (`bits` wide, first element in the low bits; int32_data
/// one packed byte per entry), unpacked here to one byte each.
fn packed_from_proto(
    t: &proto::TensorProto,
    dir: Option<&Path>,
    dtype: DType,
    shape: Vec<usize>,
    n: usize,
    bits: usize,
) -> Result<Tensor> {
    let len = n.div_ceil(8 / bits);
    let packed: Vec<u8> = if t.data_location == Some(DataLocation::External as i32) {
        read_external(t, dir, len)?
    } else if let Some(raw) = &t.raw_data {
        raw.to_vec()
    } else {
        t.int32_data.iter().map(|&x| x as u8).collect()
    };
    if packed.len() != len {
        crate::bail!(
            "tensor '{}' of {} elements of {} needs {} packed bytes, got {}",
            t.name(),
            n,
            dtype,
            len,
            packed.len()
        );
    }
    let signed = matches!(dtype, DType::I4 | DType::I2);
    let bytes = crate::narrow::unpack(&packed, n, bits, signed)
        .ok_or_else(|| Error::msg(format!("tensor '{}': packed data too short", t.name())))?;
    Tensor::from_le_bytes(dtype, shape, &bytes)
}

/// Reads the bytes of a tensor kept in an external file: only inside `dir`,
/// only a regular file, only the `offset`/`length` range (checked against
/// the file's size and against `len`, the tensor's byte count, before any
/// byte is read).
fn read_external(t: &proto::TensorProto, dir: Option<&Path>, len: usize) -> Result<Vec<u8>> {
    let mut location = None;
    let mut offset = None;
    let mut length = None;
    for kv in &t.external_data {
        match kv.key() {
            "location" => location = Some(kv.value()),
            "offset" => offset = Some(kv.value()),
            "length" => length = Some(kv.value()),
            _ => {} // "checksum" and keys of later versions
        }
    }
    let Some(location) = location else {
        crate::bail!(
            "tensor '{}' uses external data but names no location",
            t.name()
        );
    };
    let fail = |msg: String| {
        Error::msg(format!(
            "tensor '{}': external data '{}': {msg}",
            t.name(),
            location.escape_debug()
        ))
    };
    let number = |key: &str, v: Option<&str>| -> Result<Option<u64>> {
        v.map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| fail(format!("{key} '{}' is not a byte count", v.escape_debug())))
        })
        .transpose()
    };
    let offset = number("offset", offset)?.unwrap_or(0);
    let length = number("length", length)?;
    let Some(dir) = dir else {
        return Err(fail(
            "the model was loaded from memory, so there is no directory to read external data from; load it from its file".into(),
        ));
    };
    let rel = Path::new(location);
    if location.is_empty() {
        return Err(fail("the location is empty".into()));
    }
    if rel.is_absolute() {
        return Err(fail(
            "absolute locations are refused; external data must lie in the model's directory"
                .into(),
        ));
    }
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(fail(
            "locations with '..' are refused; external data must lie in the model's directory"
                .into(),
        ));
    }
    // Symlinks are followed only while the target stays inside the
    // (canonical) model directory.
    let root = dir
        .canonicalize()
        .map_err(|e| fail(format!("model directory '{}': {e}", dir.display())))?;
    let file = root
        .join(rel)
        .canonicalize()
        .map_err(|e| fail(format!("cannot be read: {e}")))?;
    if !file.starts_with(&root) {
        return Err(fail(format!(
            "resolves to '{}', outside the model's directory '{}'",
            file.display(),
            root.display()
        )));
    }
    if let Some(l) = length {
        if l != len as u64 {
            return Err(fail(format!(
                "length is {l} bytes but the tensor's dims {:?} need {len}",
                t.dims
            )));
        }
    }
    let mut f = crate::files::open_regular_nofollow(&file).map_err(|e| fail(e.to_string()))?;
    if offset.checked_add(len as u64).is_none_or(|end| end > f.len) {
        return Err(fail(format!(
            "{len} bytes at offset {offset} do not fit in the file's {} bytes",
            f.len
        )));
    }
    crate::files::read_exact_at(&file, &mut f, offset, len as u64).map_err(|e| fail(e.to_string()))
}

/// Converts a host tensor into an ONNX TensorProto (raw data; the
/// sub-byte types packed).
pub fn tensor_to_proto(t: &Tensor, name: &str) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.to_string()),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(t.dtype().to_onnx()),
        raw_data: Some(
            match crate::narrow::packed_bits(t.dtype()) {
                Some(bits) => crate::narrow::pack(&t.to_le_bytes(), bits),
                None => t.to_le_bytes().into_owned(),
            }
            .into(),
        ),
        ..Default::default()
    }
}

/// Reads a serialized TensorProto file (`.pb`, as in the ONNX test data):
/// a regular file of at most [`MAX_PROTO_BYTES`]; external data it names
/// is confined to the file's directory as for models.
pub fn read_tensor_pb(path: impl AsRef<Path>) -> Result<(String, Tensor)> {
    let path = path.as_ref();
    let bytes = crate::files::read_capped(path, MAX_PROTO_BYTES, "the TensorProto file")?;
    read_tensor_pb_bytes(&bytes, Some(parent_dir(path))).map_err(|e| bad(path, e.to_string()))
}

/// Decodes a serialized TensorProto from memory into its name and tensor.
/// External data is looked up in `dir` (confined to it, as for models);
/// with `None` a tensor with external data is an error.
pub fn read_tensor_pb_bytes(bytes: &[u8], dir: Option<&Path>) -> Result<(String, Tensor)> {
    let tp = proto::TensorProto::decode(bytes)
        .map_err(|e| Error::msg(format!("not a valid ONNX TensorProto: {e}")))?;
    let t = tensor_from_proto(&tp, dir)?;
    Ok((tp.name().to_string(), t))
}
