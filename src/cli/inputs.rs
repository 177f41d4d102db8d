//! Binding `--input` arguments to graph inputs, and reading tensor files.

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
