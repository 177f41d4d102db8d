//! Multi-host jobs: how the ranks of a job agree on what to run.
//!
//! A job is one process per host, started by `hetflow launch` (through
//! `mpirun` or `srun`); every process runs the same command line. Rank 0
//! (the *root*) reads the files: it loads the model, binds the inputs and
//! reads the plan, then sends each session to the other ranks as a
//! [`Job`] over the hub's control channel (the model as ONNX bytes with
//! any external data inlined, the plan as JSON), so hosts need no shared
//! filesystem. The other ranks [`serve_jobs`]: they build each session
//! from the job (opening only their own devices, the `rankN/...` or
//! `HOSTNAME/...` entries of the plan) and serve it until the root closes
//! it, until the root says the command is over ([`end_jobs`]).
//!
//! The plan decides what runs where: make it with `hetflow plan` on a
//! cluster spec whose devices are named `HOST/KIND:N` (written by
//! `hetflow launch -- profile`, or by hand), or write it by hand.

use crate::{Error, Model, Plan, SessionBuilder};
use hetflow_runtime::net::Hub;
use hetflow_runtime::RuntimeError;
use std::path::Path;
use std::sync::Arc;

/// Control tags of the job protocol.
const TAG_JOB: u32 = 1;
const TAG_END: u32 = 2;
const TAG_ABORT: u32 = 3;

/// One session of a multi-host command, as the root sends it.
pub struct Job {
    /// The model (identical on every rank: the same bytes, the same
    /// load-time rewrites, so node indices agree with the plan).
    pub model: Model,
    /// The plan, whose devices name their hosts.
    pub plan: Plan,
    /// Buffers per edge.
    pub credits: Option<usize>,
    /// Kernel threads per CPU device.
    pub threads: Option<usize>,
    /// Record a timeline.
    pub trace: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    plan: String,
    credits: Option<usize>,
    threads: Option<usize>,
    trace: bool,
}

fn net(msg: String) -> Error {
    Error::Runtime(RuntimeError::Network(msg))
}

/// Root: sends the session of `model_path` (loaded by the caller as
/// [`Model::load`] does) and `plan` to every other rank.
pub fn share_job(
    hub: &Hub,
    model_path: &Path,
    plan: &Plan,
    credits: Option<usize>,
    threads: Option<usize>,
    trace: bool,
) -> Result<(), Error> {
    let model = hetflow_ops::onnx::inline_external_data(model_path)?;
    let header = serde_json::to_vec(&Header {
        plan: plan.to_json(),
        credits,
        threads,
        trace,
    })
    .map_err(|e| net(format!("encoding the job: {e}")))?;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&model);
    Ok(hub.broadcast(TAG_JOB, &bytes)?)
}

fn decode_job(bytes: &[u8]) -> Result<Job, Error> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
        .filter(|&n| n <= bytes.len() - 8)
        .ok_or_else(|| net("truncated job message".into()))?;
    let header: Header = serde_json::from_slice(&bytes[8..8 + n])
        .map_err(|e| net(format!("bad job header: {e}")))?;
    Ok(Job {
        model: Model::from_onnx_bytes(&bytes[8 + n..])?,
        plan: Plan::from_json(&header.plan)?,
        credits: header.credits,
        threads: header.threads,
        trace: header.trace,
    })
}

/// A builder for `job` on this rank.
pub fn builder<'a>(job: &'a Job, hub: &Arc<Hub>) -> SessionBuilder<'a> {
    let mut b = SessionBuilder::new(&job.model)
        .plan(job.plan.clone())
        .hub(hub.clone())
        .trace(job.trace);
    if let Some(c) = job.credits {
        b = b.credits(c);
    }
    if let Some(t) = job.threads {
        b = b.threads(t);
    }
    b
}

/// Ranks other than 0: builds and serves every job the root sends until
/// the root ends the command. `Ok` when the root ended it normally; the
/// first failure (here, on another rank or at the root) otherwise.
pub fn serve_jobs(hub: &Arc<Hub>) -> Result<(), Error> {
    loop {
        let (from, tag, bytes) = hub.recv_control(None)?;
        match tag {
            TAG_JOB => {
                let served =
                    decode_job(&bytes).and_then(|job| Ok(builder(&job, hub).build()?.serve()?));
                if let Err(e) = served {
                    // Let the root report first and end the command (an
                    // exit here would have the launcher kill it).
                    let _ = hub.recv_control(Some(std::time::Duration::from_secs(5)));
                    return Err(e);
                }
            }
            TAG_END => return Ok(()),
            TAG_ABORT => {
                return Err(net(format!(
                    "rank {from} (host {}) stopped the job: {}",
                    hub.host(from),
                    String::from_utf8_lossy(&bytes)
                )))
            }
            other => return Err(net(format!("unexpected control message {other}"))),
        }
    }
}

/// Root: tells the other ranks the command is over, normally (`None`) or
/// because of `error`.
pub fn end_jobs(hub: &Hub, error: Option<&str>) -> Result<(), Error> {
    match error {
        None => hub.broadcast(TAG_END, &[])?,
        Some(e) => hub.broadcast(TAG_ABORT, e.as_bytes())?,
    }
    Ok(())
}
