//! The runtime's link to the other processes of a multi-host job.
//!
//! A job is one process per host (a *rank*); a plan whose devices are
//! named `HOST/KIND:N` (`rank1/cpu:0`) spans them. Every process builds
//! the same [`crate::Session`] from the same graph and plan; each deploys
//! only the actors of its own devices, and every edge whose ends are on
//! different ranks becomes a pair of network actors ([`crate::remote`]):
//! a sender on the producer's rank and a receiver on the consumer's. Rank 0
//! is the *root*: it owns the caller's inputs and outputs (the session's
//! `Source` and `Sink`), so graph inputs read on other ranks and outputs
//! made there also cross the network.
//!
//! ## Layers
//! * [`Link`]: moves opaque byte messages between ranks and reports a
//!   peer it has lost. Two implementations: [`local_group`] (ranks as
//!   threads of one process, for tests and for the simulator's twin) and
//!   `mpi::MpiLink` (cargo feature `mpi`: one communication thread that
//!   owns `MPI_COMM_WORLD` and keeps non-blocking sends and receives in
//!   flight).
//! * [`Hub`]: one per process, on top of the link. It numbers sessions
//!   (every rank creates its sessions in the same order, so session *k* is
//!   the same session everywhere), decodes messages and hands each to its
//!   session's inbox, keeping those that arrive before the session on this
//!   rank is built. Session 0 is the control channel the launcher uses to
//!   broadcast the model and the plan.
//!
//! ## Messages ([`Msg`])
//! `Data` carries one micro-batch of one edge as a host tensor; `WireOpen`
//! and `WireData` do the same for an edge between two devices with a
//! transport of their own (NCCL between GPUs, see "Wires" below), where
//! only the header travels here; `Credit`
//! hands a buffer back to the edge's sender, so flow control spans hosts
//! exactly as it spans devices: the producer's window is the same
//! `credits` buffers, counted from its own device to the consumer on the
//! other host. `Failed` ends a session everywhere with the failing rank's
//! error; `Stop` tells a serving rank that the root closed the session.
//!
//! ## Wires
//! A session built with `SessionOptions::wires` naming a device kind
//! (`cuda`, when the job sets `HETFLOW_NCCL=1`) moves each cross-host edge
//! between two devices of that kind over a [`hetflow_devices::wire::Wire`]
//! instead of host memory. One wire per directed pair of devices, shared
//! by every edge between them and numbered in the order every rank
//! computes alike. At build, the sending rank asks its device for an id
//! (an NCCL unique id), opens its end and sends `WireOpen`; the receiving
//! rank opens its end when that arrives. For each micro-batch the sender
//! queues the tensor on the wire and, under the same lock, sends the
//! `WireData` header; the receiving rank's link thread posts the matching
//! receive as each header arrives. Sends and receives thus meet in the
//! same order on both ends, as NCCL requires, because the link keeps the
//! order of messages between two ranks. Credits travel as for any other
//! edge.
//!
//! ## Security
//! The byte plane is the link's (MPI's): unauthenticated, as in every peer
//! (MPI, NCCL, Gloo). Run multi-host jobs on an isolated network.

mod link;
#[cfg(feature = "mpi")]
pub mod mpi;

use crate::error::{Result, RuntimeError};
use crossbeam::channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use hetflow_ops::{DType, Tensor};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use link::{Deliver, Incoming, Link};

/// A message between the ranks of a job.
#[derive(Debug)]
pub enum Msg {
    /// Micro-batch `mb` of cross-host edge `edge`.
    Data {
        /// Edge id (same on every rank).
        edge: u32,
        /// Micro-batch number (of the plan copy the edge belongs to).
        mb: u64,
        /// The value, on the host.
        tensor: Arc<Tensor>,
    },
    /// The consumer side of `edge` has used one buffer.
    Credit {
        /// Edge id.
        edge: u32,
    },
    /// The session failed on the sending rank.
    Failed {
        /// The error, as text.
        text: String,
    },
    /// The root closed the session.
    Stop,
    /// The sender of a wire edge opened wire `pair` (see
    /// [`hetflow_devices::wire`]) with this id; the receiver opens its end.
    WireOpen {
        /// Wire number within the session.
        pair: u32,
        /// The wire's id (an NCCL unique id).
        id: Vec<u8>,
    },
    /// Micro-batch `mb` of wire edge `edge` is on its wire: the receiver
    /// posts a receive of this dtype and shape.
    WireData {
        /// Edge id.
        edge: u32,
        /// Micro-batch number.
        mb: u64,
        /// Element type.
        dtype: DType,
        /// Dimensions.
        shape: Vec<usize>,
    },
    /// Launcher control data (session 0).
    Control {
        /// What it is.
        tag: u32,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

const K_DATA: u8 = 1;
const K_CREDIT: u8 = 2;
const K_FAILED: u8 = 3;
const K_STOP: u8 = 4;
const K_CONTROL: u8 = 5;
const K_WIRE_OPEN: u8 = 6;
const K_WIRE_DATA: u8 = 7;

/// Appends a dtype and shape: ONNX dtype code (i32), rank (u32), dims
/// (u64 each).
fn put_type(b: &mut Vec<u8>, dtype: DType, shape: &[usize]) {
    b.extend_from_slice(&dtype.to_onnx().to_le_bytes());
    b.extend_from_slice(&(shape.len() as u32).to_le_bytes());
    for &d in shape {
        b.extend_from_slice(&(d as u64).to_le_bytes());
    }
}

/// Encodes `msg` for session `session`: kind (u8), session (u32), then the
/// kind's fields, little-endian; a tensor as its ONNX dtype code (i32),
/// rank (u32), dims (u64 each) and raw little-endian data.
pub fn encode(session: u32, msg: &Msg) -> Vec<u8> {
    let mut b = Vec::new();
    let head = |b: &mut Vec<u8>, k: u8| {
        b.push(k);
        b.extend_from_slice(&session.to_le_bytes());
    };
    match msg {
        Msg::Data { edge, mb, tensor } => {
            let data = tensor.to_le_bytes();
            b.reserve(32 + 8 * tensor.rank() + data.len());
            head(&mut b, K_DATA);
            b.extend_from_slice(&edge.to_le_bytes());
            b.extend_from_slice(&mb.to_le_bytes());
            put_type(&mut b, tensor.dtype(), tensor.shape());
            b.extend_from_slice(&data);
        }
        Msg::WireOpen { pair, id } => {
            head(&mut b, K_WIRE_OPEN);
            b.extend_from_slice(&pair.to_le_bytes());
            b.extend_from_slice(id);
        }
        Msg::WireData {
            edge,
            mb,
            dtype,
            shape,
        } => {
            head(&mut b, K_WIRE_DATA);
            b.extend_from_slice(&edge.to_le_bytes());
            b.extend_from_slice(&mb.to_le_bytes());
            put_type(&mut b, *dtype, shape);
        }
        Msg::Credit { edge } => {
            head(&mut b, K_CREDIT);
            b.extend_from_slice(&edge.to_le_bytes());
        }
        Msg::Failed { text } => {
            head(&mut b, K_FAILED);
            b.extend_from_slice(text.as_bytes());
        }
        Msg::Stop => head(&mut b, K_STOP),
        Msg::Control { tag, bytes } => {
            head(&mut b, K_CONTROL);
            b.extend_from_slice(&tag.to_le_bytes());
            b.extend_from_slice(bytes);
        }
    }
    b
}

/// Reads little-endian fields off the front of a message.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(RuntimeError::Network(format!(
                "truncated message: needs {n} more bytes, has {}",
                self.0.len()
            )));
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    /// A dtype and shape written by [`put_type`], with the tensor's byte
    /// count (checked for overflow).
    fn typ(&mut self) -> Result<(DType, Vec<usize>, usize)> {
        let code = self.u32()? as i32;
        let dtype = DType::from_onnx(code).ok_or_else(|| {
            RuntimeError::Network(format!("message carries unknown dtype code {code}"))
        })?;
        let rank = self.u32()? as usize;
        if rank > 64 {
            return Err(RuntimeError::Network(format!(
                "message carries a tensor of rank {rank}"
            )));
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(self.u64()? as usize);
        }
        let bytes = shape
            .iter()
            .try_fold(dtype.size(), |a, &d| a.checked_mul(d))
            .ok_or_else(|| RuntimeError::Network("tensor size overflows".into()))?;
        Ok((dtype, shape, bytes))
    }
}

/// Decodes a message of [`encode`]: (session, message).
pub fn decode(bytes: &[u8]) -> Result<(u32, Msg)> {
    let mut r = Reader(bytes);
    let kind = r.take(1)?[0];
    let session = r.u32()?;
    let msg = match kind {
        K_DATA => {
            let edge = r.u32()?;
            let mb = r.u64()?;
            let (dtype, shape, want) = r.typ()?;
            if r.0.len() != want {
                return Err(RuntimeError::Network(format!(
                    "tensor {dtype}{shape:?} needs {want} bytes, message has {}",
                    r.0.len()
                )));
            }
            let t = Tensor::from_le_bytes(dtype, shape, r.0)
                .map_err(|e| RuntimeError::Network(e.to_string()))?;
            Msg::Data {
                edge,
                mb,
                tensor: Arc::new(t),
            }
        }
        K_CREDIT => Msg::Credit { edge: r.u32()? },
        K_FAILED => Msg::Failed {
            text: String::from_utf8_lossy(r.0).into_owned(),
        },
        K_STOP => Msg::Stop,
        K_WIRE_OPEN => Msg::WireOpen {
            pair: r.u32()?,
            id: r.0.to_vec(),
        },
        K_WIRE_DATA => {
            let edge = r.u32()?;
            let mb = r.u64()?;
            let (dtype, shape, _) = r.typ()?;
            if !r.0.is_empty() {
                return Err(RuntimeError::Network(format!(
                    "wire header has {} trailing bytes",
                    r.0.len()
                )));
            }
            Msg::WireData {
                edge,
                mb,
                dtype,
                shape,
            }
        }
        K_CONTROL => {
            let tag = r.u32()?;
            Msg::Control {
                tag,
                bytes: r.0.to_vec(),
            }
        }
        k => return Err(RuntimeError::Network(format!("unknown message kind {k}"))),
    };
    Ok((session, msg))
}

/// A session's mailbox in the hub.
enum Inbox {
    /// Not built on this rank yet: messages wait here.
    Waiting(Vec<(usize, Msg)>),
    /// Built: messages go to its handler.
    Open(Arc<dyn Fn(usize, Msg) + Send + Sync>),
    /// Ended: late messages are dropped.
    Closed,
}

#[derive(Default)]
struct HubState {
    sessions: HashMap<u32, Inbox>,
    /// Ranks lost so far, and why.
    lost: Vec<(usize, String)>,
}

/// One per process: numbers sessions, routes messages to them (module
/// docs).
pub struct Hub {
    link: Box<dyn Link>,
    state: Arc<Mutex<HubState>>,
    control: Receiver<(usize, u32, Vec<u8>)>,
    /// Receives a copy of every loss, for control waiters.
    losses: Receiver<(usize, String)>,
    next_session: AtomicU32,
    hosts: Vec<String>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hub(rank {} of {})", self.rank(), self.size())
    }
}

impl Hub {
    /// Builds a hub over the link that `make` opens; `make` gets the
    /// delivery callback the link must call with everything it receives.
    pub fn new<F>(make: F) -> Result<Arc<Hub>>
    where
        F: FnOnce(Deliver) -> Result<Box<dyn Link>>,
    {
        let state: Arc<Mutex<HubState>> = Arc::default();
        let (ctl_tx, ctl_rx) = unbounded();
        let (loss_tx, loss_rx) = unbounded();
        let deliver = make_deliver(state.clone(), ctl_tx, loss_tx);
        let link = make(deliver)?;
        let hosts = link.hosts();
        Ok(Arc::new(Hub {
            link,
            state,
            control: ctl_rx,
            losses: loss_rx,
            next_session: AtomicU32::new(1),
            hosts,
        }))
    }

    /// The hub of an MPI job (this process was started by `mpirun` or
    /// `srun`): initialises MPI on the communication thread.
    #[cfg(feature = "mpi")]
    pub fn mpi() -> Result<Arc<Hub>> {
        Hub::new(|deliver| Ok(Box::new(mpi::MpiLink::start(deliver)?) as Box<dyn Link>))
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.link.rank()
    }
    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.link.size()
    }
    /// Host name of `rank`.
    pub fn host(&self, rank: usize) -> &str {
        self.hosts.get(rank).map(String::as_str).unwrap_or("?")
    }
    /// Closes the link for good (see [`Link::shutdown`]); call it once the
    /// process is done with the job, on every rank. Actors that still hold
    /// the hub may outlive this call; their sends then fail.
    pub fn shutdown(&self) {
        self.link.shutdown();
    }

    /// Whether this is rank 0.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// The rank a plan device name belongs to: `rankN/...` or
    /// `HOSTNAME/...` (the host names of the ranks; a host that runs
    /// several ranks must be named `rankN`). A name without a host part
    /// belongs to the root.
    pub fn rank_of(&self, device: &str) -> Result<usize> {
        let Some((host, _)) = split_host(device) else {
            return Ok(0);
        };
        if let Some(r) = host
            .strip_prefix("rank")
            .and_then(|n| n.parse::<usize>().ok())
        {
            if r < self.size() {
                return Ok(r);
            }
            return Err(RuntimeError::Setup(format!(
                "device {device} names rank {r}, but the job has {} rank(s)",
                self.size()
            )));
        }
        let hits: Vec<usize> = (0..self.size()).filter(|&r| self.host(r) == host).collect();
        match hits.as_slice() {
            [r] => Ok(*r),
            [] => Err(RuntimeError::Setup(format!(
                "device {device} names host '{host}', which runs no rank of this job (hosts: {})",
                self.hosts.join(", ")
            ))),
            _ => Err(RuntimeError::Setup(format!(
                "device {device}: host '{host}' runs ranks {hits:?}; name the rank (rankN/...)"
            ))),
        }
    }

    /// Sends `msg` of session `session` to `to`.
    pub fn send(&self, to: usize, session: u32, msg: &Msg) -> Result<()> {
        self.link.send(to, encode(session, msg))
    }

    /// The element-wise sum of `data` over every rank of the job, on every
    /// rank ([`Link::allreduce_sum`]: MPI's `Iallreduce` under `mpirun`,
    /// shared memory in a [`local_group`]). Every rank calls it, in the
    /// same order, with buffers of one length.
    pub fn allreduce_sum(&self, data: Vec<f32>) -> Result<Vec<f32>> {
        if self.size() == 1 {
            return Ok(data);
        }
        self.link.allreduce_sum(data)
    }

    /// A new session id; every rank must call this in the same order.
    pub fn new_session(&self) -> u32 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens session `id`'s inbox: `handler` gets its messages from now
    /// on, first those that arrived early. A rank already lost is reported
    /// to the handler as a failure.
    pub fn open(&self, id: u32, handler: Arc<dyn Fn(usize, Msg) + Send + Sync>) {
        let (early, lost) = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let early = match st.sessions.insert(id, Inbox::Open(handler.clone())) {
                Some(Inbox::Waiting(v)) => v,
                _ => Vec::new(),
            };
            (early, st.lost.clone())
        };
        for (from, m) in early {
            handler(from, m);
        }
        for (rank, why) in lost {
            handler(rank, Msg::Failed { text: why });
        }
    }

    /// Closes session `id`: later messages for it are dropped.
    pub fn close(&self, id: u32) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.sessions.insert(id, Inbox::Closed);
    }

    /// Sends control data to every other rank (from the root: a
    /// broadcast).
    pub fn broadcast(&self, tag: u32, bytes: &[u8]) -> Result<()> {
        let msg = encode(
            0,
            &Msg::Control {
                tag,
                bytes: bytes.to_vec(),
            },
        );
        for r in 0..self.size() {
            if r != self.rank() {
                self.link.send(r, msg.clone())?;
            }
        }
        Ok(())
    }

    /// Sends control data to one rank.
    pub fn send_control(&self, to: usize, tag: u32, bytes: Vec<u8>) -> Result<()> {
        self.send(to, 0, &Msg::Control { tag, bytes })
    }

    /// Waits for the next control message (from, tag, bytes); fails when a
    /// rank is lost or after `timeout`.
    pub fn recv_control(&self, timeout: Option<Duration>) -> Result<(usize, u32, Vec<u8>)> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if let Ok((rank, why)) = self.losses.try_recv() {
                return Err(RuntimeError::Network(format!(
                    "rank {rank} (host {}) was lost: {why}",
                    self.host(rank)
                )));
            }
            let step = Duration::from_millis(50);
            match self.control.recv_timeout(step) {
                Ok(m) => return Ok(m),
                Err(RecvTimeoutError::Timeout) => {
                    if deadline.is_some_and(|d| std::time::Instant::now() > d) {
                        return Err(RuntimeError::Network(format!(
                            "no control message within {:.1} s",
                            timeout.unwrap_or_default().as_secs_f64()
                        )));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(RuntimeError::Network("the link closed".into()))
                }
            }
        }
    }
}

/// Splits `HOST/KIND:N` into (`HOST`, `KIND:N`).
pub fn split_host(device: &str) -> Option<(&str, &str)> {
    device.split_once('/')
}

/// The local part of a plan device name (`rank1/cpu:0` → `cpu:0`).
pub fn local_name(device: &str) -> &str {
    split_host(device).map(|(_, d)| d).unwrap_or(device)
}

fn make_deliver(
    state: Arc<Mutex<HubState>>,
    control: Sender<(usize, u32, Vec<u8>)>,
    losses: Sender<(usize, String)>,
) -> Deliver {
    Arc::new(move |inc: Incoming| match inc {
        Incoming::Message { from, bytes } => {
            let (session, msg) = match decode(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("dropping a bad message from rank {from}: {e}");
                    return;
                }
            };
            if session == 0 {
                if let Msg::Control { tag, bytes } = msg {
                    let _ = control.send((from, tag, bytes));
                }
                return;
            }
            let handler = {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                match st
                    .sessions
                    .entry(session)
                    .or_insert_with(|| Inbox::Waiting(Vec::new()))
                {
                    Inbox::Waiting(v) => {
                        v.push((from, msg));
                        return;
                    }
                    Inbox::Open(h) => h.clone(),
                    Inbox::Closed => return,
                }
            };
            handler(from, msg);
        }
        Incoming::Lost { rank, why } => {
            let handlers: Vec<_> = {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                st.lost.push((rank, why.clone()));
                st.sessions
                    .values()
                    .filter_map(|i| match i {
                        Inbox::Open(h) => Some(h.clone()),
                        _ => None,
                    })
                    .collect()
            };
            let _ = losses.send((rank, why.clone()));
            for h in handlers {
                h(rank, Msg::Failed { text: why.clone() });
            }
        }
    })
}

/// Ranks as threads of one process: `local_group(n)` returns one hub per
/// rank, connected by in-memory channels (tests, and jobs that want the
/// multi-host code path on one machine without MPI).
pub fn local_group(n: usize) -> Result<Vec<Arc<Hub>>> {
    let delivers: Arc<Mutex<Vec<Option<Deliver>>>> = Arc::new(Mutex::new(vec![None; n]));
    let reducer: Arc<LocalReduce> = Arc::default();
    let mut hubs = Vec::with_capacity(n);
    for rank in 0..n {
        let d = delivers.clone();
        let reducer = reducer.clone();
        hubs.push(Hub::new(move |deliver| {
            d.lock().unwrap_or_else(|e| e.into_inner())[rank] = Some(deliver);
            Ok(Box::new(LocalLink {
                rank,
                peers: d,
                size: n,
                reducer,
            }) as Box<dyn Link>)
        })?);
    }
    Ok(hubs)
}

/// A rank of [`local_group`].
struct LocalLink {
    rank: usize,
    size: usize,
    peers: Arc<Mutex<Vec<Option<Deliver>>>>,
    reducer: Arc<LocalReduce>,
}

/// The all-reduce of a [`local_group`]: rounds of a shared sum. The ranks'
/// contributions are added in rank order, so every rank gets bit-identical
/// sums whatever order the threads arrive in.
#[derive(Default)]
struct LocalReduce {
    state: Mutex<ReduceRound>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct ReduceRound {
    /// Round number; a rank waits for the round it joined to finish.
    round: u64,
    parts: Vec<Option<Vec<f32>>>,
    /// The finished sum of round `round - 1`, and how many ranks still
    /// have to take it.
    done: Option<(Arc<Vec<f32>>, usize)>,
}

impl LocalReduce {
    fn sum(&self, rank: usize, size: usize, data: Vec<f32>) -> Result<Vec<f32>> {
        let timeout = Duration::from_secs(60);
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The previous round's sum must be taken by every rank first.
        let (mut st, wait) = self
            .changed
            .wait_timeout_while(st, timeout, |s| s.done.is_some())
            .unwrap_or_else(|e| e.into_inner());
        if wait.timed_out() {
            return Err(RuntimeError::Network(
                "all-reduce: the previous round was never collected".into(),
            ));
        }
        if st.parts.len() != size {
            st.parts = vec![None; size];
        }
        if let Some(other) = st.parts.iter().flatten().next() {
            if other.len() != data.len() {
                return Err(RuntimeError::Network(format!(
                    "all-reduce: rank {rank} gives {} values, another rank {}",
                    data.len(),
                    other.len()
                )));
            }
        }
        st.parts[rank] = Some(data);
        let my_round = st.round;
        if st.parts.iter().all(Option::is_some) {
            let mut parts = std::mem::take(&mut st.parts).into_iter().flatten();
            let mut acc = parts.next().unwrap_or_default();
            for p in parts {
                for (a, b) in acc.iter_mut().zip(p) {
                    *a += b;
                }
            }
            st.done = Some((Arc::new(acc), size));
            st.round += 1;
            self.changed.notify_all();
        }
        let (mut st, wait) = self
            .changed
            .wait_timeout_while(st, timeout, |s| s.round == my_round || s.done.is_none())
            .unwrap_or_else(|e| e.into_inner());
        let taken = if wait.timed_out() {
            None
        } else {
            st.done.take()
        };
        let Some((sum, left)) = taken else {
            return Err(RuntimeError::Network(format!(
                "all-reduce: rank {rank} waited {} s for the other ranks",
                timeout.as_secs()
            )));
        };
        let out = (*sum).clone();
        if left > 1 {
            st.done = Some((sum, left - 1));
        } else {
            self.changed.notify_all();
        }
        Ok(out)
    }
}

impl Link for LocalLink {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn hosts(&self) -> Vec<String> {
        (0..self.size).map(|r| format!("local{r}")).collect()
    }
    fn send(&self, to: usize, bytes: Vec<u8>) -> Result<()> {
        let d = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(to)
            .cloned()
            .flatten()
            .ok_or_else(|| RuntimeError::Network(format!("no rank {to} in this group")))?;
        d(Incoming::Message {
            from: self.rank,
            bytes,
        });
        Ok(())
    }
    fn allreduce_sum(&self, data: Vec<f32>) -> Result<Vec<f32>> {
        self.reducer.sum(self.rank, self.size, data)
    }
}

#[cfg(test)]
mod tests;
