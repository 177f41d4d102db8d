//! Binding `--input` arguments to graph inputs, reading tensor files, and
//! range checks for the numeric flags every subcommand shares (each out of
//! range value is a one-line error naming the flag and its range, before any
//! work or allocation sized by it).

use anyhow::{bail, Context, Result};
use hetflow::{Model, Tensor};
use std::path::Path;
use std::sync::Arc;

/// Reads a `.npy` or ONNX TensorProto `.pb` file. Both readers refuse
/// anything but a regular file and read no more than the file's header
/// declares (`.npy`) or protobuf's 2 GiB limit (`.pb`), so `/dev/urandom`
/// or a FIFO is an error, not a hang.
pub fn read_tensor(path: &Path) -> Result<Tensor> {
    if !path.exists() {
        bail!("input file '{}' does not exist", path.display());
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let npy = match ext.as_str() {
        "pb" => false,
        "npy" => true,
        _ => {
            // Sniff: .npy files start with \x93NUMPY.
            let mut f = hetflow::ops::files::open_regular(path)?;
            let n = f.len.min(6);
            hetflow::ops::files::read_exact_at(path, &mut f, 0, n)? == b"\x93NUMPY"
        }
    };
    Ok(if npy {
        hetflow::ops::npy::read_npy(path)?
    } else {
        hetflow::ops::onnx::read_tensor_pb(path)?.1
    })
}

/// Binds `NAME=PATH` and bare `PATH` arguments to the model's inputs:
/// named ones by name, bare ones to the remaining inputs in order.
pub fn bind_inputs(model: &Model, args: &[String]) -> Result<Vec<Arc<Tensor>>> {
    let names: Vec<String> = model.input_names().iter().map(|s| s.to_string()).collect();
    let mut bound: Vec<Option<Arc<Tensor>>> = vec![None; names.len()];
    let mut positional = Vec::new();
    for a in args {
        match a.split_once('=') {
            Some((n, p)) if names.iter().any(|x| x == n) => {
                let i = names.iter().position(|x| x == n).unwrap_or(0);
                if bound[i].is_some() {
                    bail!("input '{n}' given twice");
                }
                bound[i] = Some(Arc::new(
                    read_tensor(Path::new(p)).with_context(|| format!("input '{n}'"))?,
                ));
            }
            Some((n, _)) if !Path::new(a).exists() => {
                bail!(
                    "the model has no input named '{n}' (inputs: {})",
                    names.join(", ")
                );
            }
            _ => positional.push(a.clone()),
        }
    }
    let mut pos = positional.into_iter();
    for (i, slot) in bound.iter_mut().enumerate() {
        if slot.is_none() {
            if let Some(p) = pos.next() {
                *slot = Some(Arc::new(
                    read_tensor(Path::new(&p)).with_context(|| format!("input '{}'", names[i]))?,
                ));
            }
        }
    }
    let extra: Vec<String> = pos.collect();
    if !extra.is_empty() {
        bail!(
            "{} more input file(s) than the model has inputs ({}): {}",
            extra.len(),
            names.len(),
            extra.join(", ")
        );
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&bound)
        .filter(|(_, b)| b.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing input(s): {} (give --input NAME=PATH or --input PATH)",
            missing.join(", ")
        );
    }
    Ok(bound.into_iter().flatten().collect())
}

/// Random inputs of the declared shapes (symbolic dims = 1), for `bench`.
pub fn random_inputs(model: &Model) -> Result<Vec<Arc<Tensor>>> {
    Ok(hetflow::random_inputs(
        model.graph(),
        1,
        0x2545F4914F6CDD1D,
    )?)
}

/// The largest `--iters` / `--warmup`: far more than any benchmark needs,
/// small enough that a timing per iteration fits in memory.
pub const MAX_ITERS: usize = 10_000_000;
/// The largest `--microbatches` (fed lazily, so this bounds time, not
/// memory).
pub const MAX_MICROBATCHES: usize = 100_000;
/// The largest `--credits` (buffers per edge).
pub const MAX_CREDITS: usize = 1024;
/// The largest `--replicas` / `--replicate-stages`.
pub const MAX_REPLICAS: usize = 1024;
/// The largest `--batch` (the size bound to symbolic dims when planning).
pub const MAX_BATCH: usize = 1 << 20;

/// Parses a size flag such as `--memory-limit`: bytes, or a number with a
/// binary suffix `K`, `M`, `G` or `T` (optionally followed by `iB` or `B`):
/// `512M`, `1.5GiB`, `2048`.
pub fn parse_size(flag: &str, s: &str) -> Result<u64> {
    let t = s.trim();
    let cut = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(cut);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        other => bail!("--{flag}: unknown unit '{other}' in '{s}' (use bytes or K, M, G, T)"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("--{flag} must be a size such as 512M or 2G, got '{s}'"))?;
    let bytes = v * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < 2f64.powi(63)) {
        bail!("--{flag} must be between 1 byte and 8 EiB, got '{s}'");
    }
    Ok(bytes as u64)
}

/// Checks that `--flag`'s value lies in `lo..=hi`.
pub fn check_range(flag: &str, v: usize, lo: usize, hi: usize) -> Result<usize> {
    if v < lo || v > hi {
        bail!("--{flag} must be between {lo} and {hi}, got {v}");
    }
    Ok(v)
}

/// [`check_range`] for an optional flag.
pub fn check_opt(flag: &str, v: Option<usize>, lo: usize, hi: usize) -> Result<Option<usize>> {
    v.map(|v| check_range(flag, v, lo, hi)).transpose()
}

/// Checks that a float flag is finite and not negative.
pub fn check_nonneg(flag: &str, v: f64) -> Result<f64> {
    if !v.is_finite() || v < 0.0 {
        bail!("--{flag} must be a finite number >= 0, got {v}");
    }
    Ok(v)
}

/// `--threads`: at least 1, and at most this machine's hardware threads
/// (more only oversubscribes the cores): a larger value is capped, with a
/// warning on stderr. Each CPU device also caps its pool at its own cores.
pub fn threads_flag(t: Option<usize>) -> Result<Option<usize>> {
    let Some(t) = t else { return Ok(None) };
    if t == 0 {
        bail!("--threads must be at least 1, got 0");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if t > cores {
        eprintln!("warning: --threads {t} is more than the {cores} cores here; using {cores}");
        return Ok(Some(cores));
    }
    Ok(Some(t))
}
