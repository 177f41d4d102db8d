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
const TAG_PROFILE: u32 = 4;
const TAG_SPEC: u32 = 5;
const TAG_PING: u32 = 6;
const TAG_PONG: u32 = 7;
const TAG_TRACE: u32 = 8;

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
    /// Device kinds that talk over their own wires (the root's
    /// [`wires_from_env`]).
    pub wires: Vec<hetflow_devices::DeviceKind>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    plan: String,
    credits: Option<usize>,
    threads: Option<usize>,
    trace: bool,
    #[serde(default)]
    wires: Vec<hetflow_devices::DeviceKind>,
}

/// The device kinds whose cross-host tensors skip host memory in a job:
/// `cuda` when `HETFLOW_NCCL=1` (GPU tensors over NCCL), none otherwise.
/// The root reads it and sends it with each job, so every rank agrees.
pub fn wires_from_env() -> Vec<hetflow_devices::DeviceKind> {
    match std::env::var("HETFLOW_NCCL").as_deref() {
        Ok("1") => vec![hetflow_devices::DeviceKind::Cuda],
        _ => Vec::new(),
    }
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
        wires: wires_from_env(),
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
        wires: header.wires,
    })
}

/// A builder for `job` on this rank.
pub fn builder<'a>(job: &'a Job, hub: &Arc<Hub>) -> SessionBuilder<'a> {
    let mut b = SessionBuilder::new(&job.model)
        .plan(job.plan.clone())
        .hub(hub.clone())
        .trace(job.trace)
        .wires(&job.wires);
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
                let served = decode_job(&bytes).and_then(|job| {
                    let mut session = builder(&job, hub).build()?;
                    session.serve()?;
                    if job.trace {
                        send_trace(hub, from, &session)?;
                    }
                    Ok(())
                });
                if let Err(e) = served {
                    // Let the root report first and end the command (an
                    // exit here would have the launcher kill it).
                    let _ = hub.recv_control(Some(std::time::Duration::from_secs(5)));
                    return Err(e);
                }
            }
            TAG_PROFILE => {
                let spec = decode_profile(&bytes).and_then(|o| {
                    let opts = crate::profile::ProfileOptions {
                        devices: host_devices().unwrap_or(o.devices),
                        threads: o.threads,
                        iters: o.iters,
                        ..Default::default()
                    };
                    crate::profile::profile(&opts)
                });
                let reply = match spec {
                    Ok(spec) => spec.to_toml(),
                    Err(e) => format!("error: {e}"),
                };
                hub.send_control(from, TAG_SPEC, reply.into_bytes())?;
            }
            TAG_PING => hub.send_control(from, TAG_PONG, bytes)?,
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

/// The devices `hetflow launch` says this host has (`HETFLOW_DEVICES`,
/// from the hostfile's `devices=`, with `+` for `,`).
pub fn host_devices() -> Option<String> {
    std::env::var("HETFLOW_DEVICES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.replace('+', ","))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ProfileRequest {
    devices: String,
    threads: Option<usize>,
    iters: usize,
}

fn decode_profile(bytes: &[u8]) -> Result<ProfileRequest, Error> {
    serde_json::from_slice(bytes).map_err(|e| net(format!("bad profile request: {e}")))
}

/// Sizes of the link benchmark between rank 0 and each other rank: a
/// small message for latency, a large one for bandwidth, and rounds of
/// each.
const PING_SMALL: usize = 8;
const PING_LARGE: usize = 4 << 20;

/// How the link from rank 0 to a rank measured: one-way latency (µs) and
/// bandwidth (GB/s), from round trips of a small and a large message
/// through the job's own transport (so the figures include its polling).
#[derive(Clone, Copy, Debug)]
pub struct LinkMeasure {
    /// One-way latency, µs.
    pub latency_us: f64,
    /// Bandwidth, GB/s (10⁹ bytes/s).
    pub bandwidth_gbps: f64,
}

/// Root: round trips with rank `r`; `rounds` timed round trips per size
/// (medians).
pub fn measure_link(hub: &Hub, r: usize, rounds: usize) -> Result<LinkMeasure, Error> {
    let time = |size: usize| -> Result<f64, Error> {
        let mut v = Vec::with_capacity(rounds);
        for i in 0..rounds + 2 {
            let t = std::time::Instant::now();
            hub.send_control(r, TAG_PING, vec![0u8; size])?;
            let (from, tag, bytes) = hub.recv_control(Some(std::time::Duration::from_secs(30)))?;
            if from != r || tag != TAG_PONG || bytes.len() != size {
                return Err(net(format!(
                    "unexpected reply {tag} from rank {from} while timing rank {r}"
                )));
            }
            if i >= 2 {
                v.push(t.elapsed().as_secs_f64() / 2.0);
            }
        }
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2])
    };
    let small = time(PING_SMALL)?;
    let large = time(PING_LARGE)?;
    let per_byte = ((large - small) / (PING_LARGE - PING_SMALL) as f64).max(1e-15);
    Ok(LinkMeasure {
        latency_us: small * 1e6,
        bandwidth_gbps: 1e-9 / per_byte,
    })
}

/// Root: profiles every rank's devices in turn (rank 0's here, then each
/// other rank's on that rank, one at a time so hosts that share a machine
/// do not disturb each other), measures the link from rank 0 to every
/// other rank, and returns one spec whose devices are `rankN/KIND:I` on
/// hosts `rankN`. Links between devices of rank 0 and rank r are the
/// measured ones; other pairs of hosts get the median as `inter_host`.
pub fn profile_job(
    hub: &Hub,
    opts: &crate::profile::ProfileOptions,
) -> Result<hetflow_scheduler::ClusterSpec, Error> {
    use hetflow_scheduler::cluster::{HostSpec, LinkParams, LinkSpec};
    let rename = |spec: hetflow_scheduler::ClusterSpec, r: usize| {
        let host = format!("rank{r}");
        let mut spec = spec;
        spec.hosts = vec![HostSpec { name: host.clone() }];
        for d in &mut spec.devices {
            d.name = format!("{host}/{}", d.name);
            d.host = host.clone();
        }
        for l in &mut spec.links {
            l.from = format!("{host}/{}", l.from);
            l.to = format!("{host}/{}", l.to);
        }
        spec
    };
    let mut all = rename(crate::profile::profile(opts)?, 0);
    let request = serde_json::to_vec(&ProfileRequest {
        devices: opts.devices.clone(),
        threads: opts.threads,
        iters: opts.iters,
    })
    .map_err(|e| net(e.to_string()))?;
    let mut measured: Vec<(usize, LinkMeasure)> = Vec::new();
    for r in 1..hub.size() {
        hub.send_control(r, TAG_PROFILE, request.clone())?;
        let (from, tag, bytes) = hub.recv_control(None)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if from != r || tag != TAG_SPEC {
            return Err(net(format!(
                "unexpected reply {tag} from rank {from} while profiling rank {r}"
            )));
        }
        if let Some(e) = text.strip_prefix("error: ") {
            return Err(net(format!(
                "profiling rank {r} (host {}): {e}",
                hub.host(r)
            )));
        }
        let spec = rename(hetflow_scheduler::ClusterSpec::from_toml(&text)?, r);
        all.hosts.extend(spec.hosts);
        all.devices.extend(spec.devices);
        all.links.extend(spec.links);
        if all.defaults.intra_host.is_none() {
            all.defaults.intra_host = spec.defaults.intra_host;
        }
        measured.push((r, measure_link(hub, r, 10)?));
    }
    for (r, m) in &measured {
        let (a, b): (Vec<String>, Vec<String>) = (
            all.devices
                .iter()
                .filter(|d| d.host == "rank0")
                .map(|d| d.name.clone())
                .collect(),
            all.devices
                .iter()
                .filter(|d| d.host == format!("rank{r}"))
                .map(|d| d.name.clone())
                .collect(),
        );
        for x in &a {
            for y in &b {
                all.links.push(LinkSpec {
                    from: x.clone(),
                    to: y.clone(),
                    bandwidth_gbps: m.bandwidth_gbps,
                    latency_us: m.latency_us,
                    shared: true,
                });
            }
        }
    }
    if !measured.is_empty() {
        let mut bw: Vec<f64> = measured.iter().map(|(_, m)| m.bandwidth_gbps).collect();
        let mut lat: Vec<f64> = measured.iter().map(|(_, m)| m.latency_us).collect();
        bw.sort_by(f64::total_cmp);
        lat.sort_by(f64::total_cmp);
        all.defaults.inter_host = Some(LinkParams {
            bandwidth_gbps: bw[bw.len() / 2],
            latency_us: lat[lat.len() / 2],
            shared: true,
        });
    }
    Ok(all)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WireTrace {
    origin_unix_us: f64,
    /// (name, op, cat, device, queue, mb, start_us, dur_us, modelled_us)
    #[allow(clippy::type_complexity)]
    events: Vec<(
        String,
        String,
        String,
        String,
        String,
        u64,
        f64,
        f64,
        Option<f64>,
    )>,
}

fn send_trace(hub: &Hub, to: usize, s: &crate::Session) -> Result<(), Error> {
    let t = WireTrace {
        origin_unix_us: s.trace_origin_unix_us(),
        events: s
            .take_trace_events()
            .into_iter()
            .map(|e| {
                (
                    e.name,
                    e.op,
                    e.cat.to_string(),
                    e.device,
                    e.queue.to_string(),
                    e.mb,
                    e.start_us,
                    e.dur_us,
                    e.modelled_us,
                )
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&t).map_err(|e| net(e.to_string()))?;
    Ok(hub.send_control(to, TAG_TRACE, bytes)?)
}

/// The `&'static str` a category or queue name received from another
/// rank stands for.
fn known(s: &str) -> &'static str {
    match s {
        "kernel" => "kernel",
        "copy" => "copy",
        "compute" => "compute",
        "net" => "net",
        _ => "other",
    }
}

/// Root, after closing a traced session (dropping it): gathers the other
/// ranks' timelines and merges them with `own` (rank 0's events, its
/// session's trace origin `origin_unix_us`) into one, on rank 0's clock
/// (the hosts' wall clocks must agree, as NTP keeps them to about a
/// millisecond), every row prefixed with its rank (`rank1/cpu:0`). Events
/// of the other ranks that started before `since_us` (e.g. warm-up runs
/// rank 0 has dropped) are left out.
pub fn gather_trace(
    hub: &Hub,
    own: Vec<hetflow_runtime::TraceEvent>,
    origin_unix_us: f64,
    since_us: f64,
) -> Result<Vec<hetflow_runtime::TraceEvent>, Error> {
    let mut all: Vec<hetflow_runtime::TraceEvent> = own
        .into_iter()
        .map(|mut e| {
            e.device = format!("rank{}/{}", hub.rank(), e.device);
            e
        })
        .collect();
    for _ in 1..hub.size() {
        let (from, tag, bytes) = hub.recv_control(Some(std::time::Duration::from_secs(60)))?;
        if tag != TAG_TRACE {
            return Err(net(format!(
                "unexpected control message {tag} from rank {from} while gathering traces"
            )));
        }
        let t: WireTrace = serde_json::from_slice(&bytes)
            .map_err(|e| net(format!("bad trace from rank {from}: {e}")))?;
        let shift = t.origin_unix_us - origin_unix_us;
        for (name, op, cat, device, queue, mb, start, dur, modelled) in t.events {
            let start_us = start + shift;
            if start_us + dur < since_us {
                continue;
            }
            all.push(hetflow_runtime::TraceEvent {
                name,
                op,
                cat: known(&cat),
                device: format!("rank{from}/{device}"),
                queue: known(&queue),
                mb,
                start_us,
                dur_us: dur,
                modelled_us: modelled,
            });
        }
    }
    all.sort_by(|a, b| a.start_us.total_cmp(&b.start_us));
    Ok(all)
}

/// How much of the cross-host transfer time the timeline hides behind
/// compute: each micro-batch's transfer runs from its send's start on the
/// producer's rank to its receive's end on the consumer's rank; the
/// fraction is the part of those intervals during which some device of
/// either rank was computing, over their total length. `None` when the
/// trace has no cross-host transfer.
pub fn transfer_hidden_fraction(events: &[hetflow_runtime::TraceEvent]) -> Option<f64> {
    use std::collections::HashMap;
    let rank = |d: &str| d.split('/').next().unwrap_or("").to_string();
    // (value, mb) -> (send start, sender rank) and (receive end, receiver rank)
    let mut sends: HashMap<(String, u64), (f64, String)> = HashMap::new();
    let mut recvs: HashMap<(String, u64), (f64, String)> = HashMap::new();
    for e in events.iter().filter(|e| e.queue == "net") {
        if let Some(v) = e.name.strip_prefix("send ") {
            sends.insert((v.to_string(), e.mb), (e.start_us, rank(&e.device)));
        } else if let Some(v) = e.name.strip_prefix("receive ") {
            recvs.insert(
                (v.to_string(), e.mb),
                (e.start_us + e.dur_us, rank(&e.device)),
            );
        }
    }
    let mut busy: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    for e in events.iter().filter(|e| e.cat == "kernel") {
        busy.entry(rank(&e.device))
            .or_default()
            .push((e.start_us, e.start_us + e.dur_us));
    }
    let (mut total, mut hidden) = (0.0, 0.0);
    for (k, (s, sr)) in &sends {
        let Some((end, rr)) = recvs.get(k) else {
            continue;
        };
        if end <= s {
            continue;
        }
        total += end - s;
        let mut spans: Vec<(f64, f64)> = busy
            .get(sr)
            .into_iter()
            .chain(busy.get(rr))
            .flatten()
            .map(|&(a, b)| (a.max(*s), b.min(*end)))
            .filter(|(a, b)| b > a)
            .collect();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut reach = f64::NEG_INFINITY;
        for (a, b) in spans {
            if b > reach {
                hidden += b - a.max(reach);
                reach = b;
            }
        }
    }
    (total > 0.0).then(|| hidden / total)
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

#[cfg(test)]
mod tests {
    use super::*;
    use hetflow_runtime::TraceEvent;

    fn ev(
        name: &str,
        cat: &'static str,
        device: &str,
        queue: &'static str,
        mb: u64,
        s: f64,
        d: f64,
    ) -> TraceEvent {
        TraceEvent {
            name: name.into(),
            op: String::new(),
            cat,
            device: device.into(),
            queue,
            mb,
            start_us: s,
            dur_us: d,
            modelled_us: None,
        }
    }

    #[test]
    fn hidden_transfer_time_is_the_compute_covered_part() {
        let events = vec![
            // Micro-batch 0 travels from 0 to 100 µs.
            ev("send y", "copy", "rank0/net", "net", 0, 0.0, 5.0),
            ev("receive y", "copy", "rank1/net", "net", 0, 90.0, 10.0),
            // Compute on both ranks covers 20..80 of it (overlapping spans
            // count once); a kernel on an unrelated rank does not count.
            ev("a", "kernel", "rank1/cpu:0", "compute", 1, 20.0, 40.0),
            ev("b", "kernel", "rank0/cpu:0", "compute", 1, 50.0, 30.0),
            ev("c", "kernel", "rank2/cpu:0", "compute", 1, 0.0, 100.0),
            // Micro-batch 1 travels from 200 to 300 µs, fully covered.
            ev("send y", "copy", "rank0/net", "net", 1, 200.0, 5.0),
            ev("receive y", "copy", "rank1/net", "net", 1, 290.0, 10.0),
            ev("d", "kernel", "rank0/cpu:0", "compute", 2, 150.0, 200.0),
        ];
        let f = transfer_hidden_fraction(&events).unwrap();
        assert!((f - (60.0 + 100.0) / 200.0).abs() < 1e-12, "{f}");
        assert!(transfer_hidden_fraction(&events[2..5]).is_none());
    }
}
