//! `hetflow train` as one rank of a data-parallel job (`hetflow launch
//! --np N -- train ...`, or a hostfile): rank 0 reads the files the
//! command names (the model with its external data inlined, the training
//! data, a checkpoint to resume) and sends their bytes to the other ranks
//! (rank 0 alone evaluates, so the evaluation data stays there), so hosts need no shared filesystem; every rank then
//! trains its share of each batch (`hetflow::train::dist`). Every rank
//! runs the same command line, so the options need no sending.

use anyhow::{anyhow, bail, Context, Result};
use hetflow::ops::npy::{read_npy_bytes, write_npy_bytes};
use hetflow::runtime::net::Hub;
use hetflow::train::data::Dataset;
use hetflow::Model;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Control tags of the training job (after `hetflow::cluster`'s).
const TAG_TRAIN: u32 = 20;
const TAG_TRAIN_ABORT: u32 = 21;

/// What the command reads from files.
pub struct Inputs {
    pub model: Model,
    pub train: Dataset,
    /// On rank 0 (and outside a job) only.
    pub eval: Option<Dataset>,
    /// A checkpoint to resume from: the caller's path on rank 0, a copy
    /// in a temporary file elsewhere.
    pub resume: Option<PathBuf>,
}

/// Reads the inputs on this process (outside a job, and on rank 0).
pub fn read(
    model: &Path,
    data: &Path,
    eval: Option<&PathBuf>,
    resume: Option<&PathBuf>,
) -> Result<Inputs> {
    Ok(Inputs {
        model: Model::load_unoptimized(model)?,
        train: Dataset::load(data)?,
        eval: eval.map(Dataset::load).transpose()?,
        resume: resume.cloned(),
    })
}

fn put(buf: &mut Vec<u8>, part: &[u8]) {
    buf.extend_from_slice(&(part.len() as u64).to_le_bytes());
    buf.extend_from_slice(part);
}

fn take<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8]> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
        .filter(|&n| n <= bytes.len() - 8)
        .ok_or_else(|| anyhow!("truncated training job message"))?;
    let part = &bytes[8..8 + n];
    *bytes = &bytes[8 + n..];
    Ok(part)
}

/// Rank 0: reads the inputs and sends them to every other rank (or, when
/// reading fails, tells them to stop).
pub fn share(
    hub: &Arc<Hub>,
    model: &Path,
    data: &Path,
    eval: Option<&PathBuf>,
    resume: Option<&PathBuf>,
) -> Result<Inputs> {
    let encoded = read(model, data, eval, resume).and_then(|inputs| {
        let mut buf = Vec::new();
        put(&mut buf, &hetflow::ops::onnx::inline_external_data(model)?);
        put(&mut buf, &write_npy_bytes(&inputs.train.x)?);
        put(&mut buf, &write_npy_bytes(&inputs.train.y)?);
        match resume {
            Some(p) => {
                let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                put(&mut buf, &[1]);
                put(&mut buf, &bytes);
            }
            None => put(&mut buf, &[0]),
        }
        Ok((inputs, buf))
    });
    match encoded {
        Ok((inputs, buf)) => {
            hub.broadcast(TAG_TRAIN, &buf)?;
            Ok(inputs)
        }
        Err(e) => {
            let _ = hub.broadcast(TAG_TRAIN_ABORT, format!("{e:#}").as_bytes());
            Err(e)
        }
    }
}

/// Other ranks: receives the inputs rank 0 read.
pub fn receive(hub: &Arc<Hub>) -> Result<Inputs> {
    let (from, tag, bytes) = hub.recv_control(None)?;
    match tag {
        TAG_TRAIN => {}
        TAG_TRAIN_ABORT => bail!(
            "rank {from} could not start the training job: {}",
            String::from_utf8_lossy(&bytes)
        ),
        other => bail!("unexpected control message {other} (expected the training job)"),
    }
    let mut rest = bytes.as_slice();
    let model_bytes = take(&mut rest)?;
    let graph = hetflow::ops::onnx::load_model_bytes(model_bytes, None)?;
    let x = read_npy_bytes(take(&mut rest)?)?;
    let y = read_npy_bytes(take(&mut rest)?)?;
    let train = Dataset { x, y };
    let resume = match take(&mut rest)? {
        [1] => {
            let p = std::env::temp_dir().join(format!(
                "hetflow-resume-{}-rank{}.safetensors",
                std::process::id(),
                hub.rank()
            ));
            std::fs::write(&p, take(&mut rest)?)
                .with_context(|| format!("writing {}", p.display()))?;
            Some(p)
        }
        _ => None,
    };
    Ok(Inputs {
        model: Model::from_graph(graph),
        train,
        eval: None,
        resume,
    })
}
