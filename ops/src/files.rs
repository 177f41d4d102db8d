//! Reading files that users and models name: regular files only, and never
//! more bytes than the format declares.
//!
//! Model files, `--input` tensors (`.npy`, `.pb`) and external initializer
//! data all come through here, because each of them is a path someone else
//! chose. A path that names a device (`/dev/zero`, `/dev/urandom`), a FIFO,
//! a socket or a directory is refused before any byte is read:
//!
//! * the path's metadata is checked first (following symlinks), so the
//!   common mistakes fail without opening anything;
//! * the file is then opened with `O_NONBLOCK`, so that opening a FIFO
//!   swapped in after the check returns at once instead of waiting for a
//!   writer (on a regular file the flag changes nothing);
//! * the open descriptor is checked again with `fstat`, and its size is the
//!   one every later bound is checked against.
//!
//! Readers then ask for exactly the bytes they expect ([`read_exact_at`]) or
//! for the whole file under a ceiling ([`read_capped`]); nothing here reads
//! "until EOF" from a file whose size was not checked first.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        error: e,
    }
}

/// What a non-regular file is, for error messages.
fn kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// An open regular file and its size.
#[derive(Debug)]
pub struct Regular {
    /// The open file (opened read-only, non-blocking).
    pub file: File,
    /// Its size in bytes when opened.
    pub len: u64,
}

/// Opens `path` for reading if it is a regular file (symlinks followed),
/// refusing devices, FIFOs, sockets and directories without blocking.
pub fn open_regular(path: &Path) -> Result<Regular> {
    open_with(path, 0)
}

/// [`open_regular`] that also refuses a symlink as the last component
/// (for paths already canonicalised, so a swap after the check fails).
pub fn open_regular_nofollow(path: &Path) -> Result<Regular> {
    open_with(path, libc::O_NOFOLLOW)
}

fn open_with(path: &Path, flags: i32) -> Result<Regular> {
    let md = std::fs::metadata(path).map_err(|e| io(path, e))?;
    if !md.file_type().is_file() {
        return Err(bad(
            path,
            format!("is {}, not a regular file", kind(md.file_type())),
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | flags)
        .open(path)
        .map_err(|e| io(path, e))?;
    let md = file.metadata().map_err(|e| io(path, e))?;
    if !md.file_type().is_file() {
        return Err(bad(
            path,
            format!("is {}, not a regular file", kind(md.file_type())),
        ));
    }
    Ok(Regular {
        file,
        len: md.len(),
    })
}

/// Reads a whole regular file of at most `max` bytes (`what` names the
/// kind of file in the error, e.g. "ONNX model").
pub fn read_capped(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let Regular { file, len } = open_regular(path)?;
    if len > max {
        return Err(bad(
            path,
            format!("{what} is {len} bytes, more than the {max} bytes allowed"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` bounds the read even if the file grows meanwhile.
    file.take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| io(path, e))?;
    if (bytes.len() as u64) != len {
        return Err(bad(
            path,
            format!(
                "changed size while being read ({len} bytes, then {})",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Reads exactly `count` bytes at `offset` of an opened regular file,
/// after checking that they lie inside its size.
pub fn read_exact_at(path: &Path, f: &mut Regular, offset: u64, count: u64) -> Result<Vec<u8>> {
    let end = offset
        .checked_add(count)
        .filter(|&e| e <= f.len)
        .ok_or_else(|| {
            bad(
                path,
                format!(
                    "{count} bytes at offset {offset} do not fit in the file's {} bytes",
                    f.len
                ),
            )
        })?;
    debug_assert!(end <= f.len);
    let n = usize::try_from(count).map_err(|_| bad(path, format!("{count} bytes is too many")))?;
    f.file
        .seek(SeekFrom::Start(offset))
        .map_err(|e| io(path, e))?;
    let mut bytes = vec![0u8; n];
    f.file.read_exact(&mut bytes).map_err(|e| io(path, e))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("hetflow-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn refuses_non_regular_files() {
        for p in ["/dev/zero", "/dev/urandom", "/dev/null"] {
            let e = open_regular(Path::new(p)).unwrap_err().to_string();
            assert!(e.contains("character device"), "{p}: {e}");
        }
        let d = tmp("dir");
        let e = read_capped(&d, 1 << 20, "x").unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let d = tmp("fifo");
        let p = d.join("pipe");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let p2 = p.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_capped(&p2, 1 << 20, "x").map(|_| ()));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO hung");
        assert!(r.unwrap_err().to_string().contains("FIFO"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bounded_reads() {
        let d = tmp("bounded");
        let p = d.join("f.bin");
        std::fs::write(&p, (0u8..100).collect::<Vec<_>>()).unwrap();
        assert!(read_capped(&p, 99, "x").is_err());
        assert_eq!(read_capped(&p, 100, "x").unwrap().len(), 100);
        let mut f = open_regular(&p).unwrap();
        assert_eq!(read_exact_at(&p, &mut f, 10, 3).unwrap(), vec![10, 11, 12]);
        assert!(read_exact_at(&p, &mut f, 98, 3).is_err());
        assert!(read_exact_at(&p, &mut f, u64::MAX, 2).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
