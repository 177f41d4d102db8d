//! `.npy` read/write for host tensors, through the `npyz` crate.
//!
//! Convention for bfloat16, which numpy has no type code for: a bf16 tensor
//! is written as a `<u2` array of its raw bits, so nothing is lost; reading
//! a `<u2` file gives a u16 tensor (cast or reinterpret as needed).
//!
//! Reading is bounded by the header: the file must be a regular file
//! ([`crate::files`]), its size must be exactly the header plus the bytes the
//! header's shape and dtype declare (checked before the data is read), and
//! only those bytes are read. `/dev/urandom`, a FIFO or a truncated or
//! padded file is an error, never a long read.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{Data, Tensor};
use std::io::Write;
use std::path::Path;

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::BadFile {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// Where the parts of a `.npy` file lie, read off its preamble and header.
struct Layout {
    /// Bytes before the data (magic, version, header length, header text).
    header_end: usize,
    /// Bytes of data the header declares (elements × item size).
    data_bytes: u64,
    header: npyz::NpyHeader,
}

/// The header's length from the fixed preamble (magic, version, length),
/// `head` holding at least the first 12 bytes of the file (or all of it).
fn header_end(head: &[u8]) -> Result<usize> {
    if !head.starts_with(b"\x93NUMPY") || head.len() < 10 {
        crate::bail!("not a .npy file (no \\x93NUMPY magic)");
    }
    let (start, len) = match head[6] {
        1 => (10, u16::from_le_bytes([head[8], head[9]]) as usize),
        2 | 3 if head.len() >= 12 => (
            12,
            u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize,
        ),
        2 | 3 => crate::bail!("not a valid .npy file (truncated preamble)"),
        v => crate::bail!("unsupported .npy format version {v}"),
    };
    Ok(start + len)
}

/// Checks that the `shape` tuple of a header text multiplies out without
/// overflow (the header parser would overflow on it), where it can be read.
fn check_shape_text(text: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(text);
    let Some(at) = text.find("'shape'").or_else(|| text.find("\"shape\"")) else {
        return Ok(());
    };
    let rest = &text[at..];
    let (Some(open), Some(close)) = (rest.find('('), rest.find(')')) else {
        return Ok(());
    };
    if close < open {
        return Ok(());
    }
    let mut n = 1u64;
    for d in rest[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let d = d.trim_end_matches('L');
        let Ok(d) = d.parse::<u64>() else {
            crate::bail!("not a valid .npy file (shape entry '{}')", d.escape_debug());
        };
        n = n
            .checked_mul(d)
            .ok_or_else(|| Error::msg("not a valid .npy file (shape overflows)"))?;
    }
    Ok(())
}

/// The deepest bracket nesting a header may have. A plain header is a dict
/// holding a tuple (depth 2); the header parser under npyz backtracks
/// exponentially in the nesting depth (a 12-deep header takes seconds, each
/// level ~3x more), so deeper text is refused before it is parsed.
const MAX_HEADER_NESTING: usize = 4;

/// Refuses header text whose brackets nest deeper than
/// [`MAX_HEADER_NESTING`] (counted everywhere, quoted or not: no supported
/// header needs more).
fn check_nesting(text: &[u8]) -> Result<()> {
    let mut depth = 0usize;
    for &c in text {
        match c {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_HEADER_NESTING {
                    crate::bail!(
                        "not a valid .npy file (header brackets nest deeper than {MAX_HEADER_NESTING})"
                    );
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses the header (`head` holds the file's first `header_end` bytes) and
/// the data size it declares.
fn layout(head: &[u8], header_end: usize) -> Result<Layout> {
    check_nesting(&head[head.len().min(10)..])?;
    check_shape_text(&head[head.len().min(10)..])?;
    let header = npyz::NpyHeader::from_reader(head)
        .map_err(|e| Error::msg(format!("not a valid .npy file: {e}")))?;
    let item = match header.dtype() {
        npyz::DType::Plain(ts) => ts.num_bytes(),
        other => crate::bail!(
            "unsupported .npy dtype {:?} (structured or array dtypes)",
            other.descr()
        ),
    }
    .ok_or_else(|| Error::msg("unsupported .npy dtype (no fixed size)"))?;
    let data_bytes = header
        .shape()
        .iter()
        .try_fold(item as u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::msg("not a valid .npy file (shape overflows)"))?;
    Ok(Layout {
        header_end,
        data_bytes,
        header,
    })
}

/// Checks that the file's size is exactly header plus declared data.
fn check_size(l: &Layout, total: u64) -> Result<()> {
    let have = total.saturating_sub(l.header_end as u64);
    if have != l.data_bytes {
        crate::bail!(
            "holds {have} bytes of data after its header, but the header declares {:?} {} = {} bytes",
            l.header.shape(),
            l.header.dtype().descr(),
            l.data_bytes
        );
    }
    Ok(())
}

/// Reads a `.npy` file: a regular file whose size is checked against its
/// header before the data is read, and only the declared bytes are read.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let mut f = crate::files::open_regular(path)?;
    let first = f.len.min(12);
    let head = crate::files::read_exact_at(path, &mut f, 0, first)?;
    let end = header_end(&head).map_err(|e| bad(path, e))?;
    if end as u64 > f.len {
        return Err(bad(
            path,
            format!("header declares {end} bytes, the file holds {}", f.len),
        ));
    }
    let head = crate::files::read_exact_at(path, &mut f, 0, end as u64)?;
    let l = layout(&head, end).map_err(|e| bad(path, e))?;
    check_size(&l, f.len).map_err(|e| bad(path, e))?;
    let data = crate::files::read_exact_at(path, &mut f, end as u64, l.data_bytes)?;
    decode(l.header, &data).map_err(|e| bad(path, e))
}

/// Decodes `.npy` bytes (exactly a header and the data it declares).
pub fn read_npy_bytes(bytes: &[u8]) -> Result<Tensor> {
    let end = header_end(bytes)?;
    if end > bytes.len() {
        crate::bail!(
            "not a valid .npy file (header declares {end} bytes, there are {})",
            bytes.len()
        );
    }
    let l = layout(&bytes[..end], end)?;
    check_size(&l, bytes.len() as u64)?;
    decode(l.header, &bytes[end..])
}

/// Converts the data (exactly the declared bytes) to a tensor.
fn decode(header: npyz::NpyHeader, data: &[u8]) -> Result<Tensor> {
    let npy = npyz::NpyFile::with_header(header, data);
    if npy.order() == npyz::Order::Fortran {
        crate::bail!("Fortran-ordered .npy arrays are unsupported; save with np.ascontiguousarray");
    }
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| Error::msg("a .npy dim does not fit in usize")))
        .collect::<Result<_>>()?;
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
        // The narrow types (no .npy code): floats as their bits (u8),
        // integers as i8 / u8 values.
        Data::I4(v) => write_typed(w, &shape, &v.iter().map(|x| x.0).collect::<Vec<i8>>()),
        Data::I2(v) => write_typed(w, &shape, &v.iter().map(|x| x.0).collect::<Vec<i8>>()),
        _ => write_typed(w, &shape, &t.to_le_bytes()),
    };
    r.map_err(|e| Error::msg(format!("encoding .npy: {e}")))?;
    Ok(out)
}

/// Writes a tensor to a `.npy` file, atomically: the bytes go to a new
/// temporary file in the same directory (created exclusively, never through
/// a symlink), are flushed to disk, and the file is then renamed over
/// `path`. A failure part-way leaves `path` as it was, never a torn file.
/// A symlink at `path` is refused rather than followed, and so is a
/// directory.
pub fn write_npy(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = path.as_ref();
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        error: e,
    };
    let bytes = write_npy_bytes(t)?;
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_symlink() => {
            return Err(bad(path, "is a symlink; refusing to write through it"))
        }
        Ok(md) if md.is_dir() => return Err(bad(path, "is a directory")),
        _ => {}
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let mut tmp = None;
    for attempt in 0..16u32 {
        let p = dir.join(format!(".{name}.{}.{attempt}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
        {
            Ok(f) => {
                tmp = Some((p, f));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(e)),
        }
    }
    let (tmp_path, mut f) =
        tmp.ok_or_else(|| bad(path, "could not create a temporary file beside it"))?;
    let written = f
        .write_all(&bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp_path, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(io(e));
    }
    Ok(())
}

/// The dtype a `.npy` file of `t` will declare (bf16 becomes u16, the
/// narrow floats and unsigned integers u8, the narrow signed ones i8).
pub fn npy_dtype(t: &Tensor) -> DType {
    match t.dtype() {
        DType::BF16 => DType::U16,
        DType::I4 | DType::I2 => DType::I8,
        d if d.is_narrow_float() || d.is_narrow_int() => DType::U8,
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

    /// Found by `scripts/fuzz.sh` (target `npy`): a header nesting 28
    /// brackets took the header parser minutes.
    #[test]
    fn deeply_nested_header_is_refused_quickly() {
        let text = format!(
            "{{'descr': '<i8', 'fortran_order': {}False, 'shape': (), }}",
            "{".repeat(28)
        );
        let mut header = text.into_bytes();
        header.resize(117, b' ');
        header.push(b'\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(&header);
        b.extend_from_slice(&[0; 8]);
        let start = std::time::Instant::now();
        let e = read_npy_bytes(&b).unwrap_err().to_string();
        assert!(e.contains("nest deeper"), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
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
