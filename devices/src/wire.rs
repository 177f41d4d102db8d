//! Wires: device-to-device channels between the ranks of a multi-host job.
//!
//! A cross-host edge normally moves its tensors through host memory: the
//! producer's device downloads, the job's link (MPI) carries bytes, the
//! consumer's device uploads. When both ends are devices with a direct
//! transport of their own (NCCL between CUDA GPUs), the runtime asks the
//! two devices for a [`Wire`] instead and sends only a small header over
//! the link.
//!
//! ## Contract
//! A wire is one *direction* between one device on one rank and one
//! device on another: the sending rank's device opens the [`WireEnd::Send`]
//! end, the receiving rank's device the [`WireEnd::Recv`] end, both with
//! the same id (made by the sender with [`crate::Device::wire_id`] and
//! carried to the receiver over the link). Operations are matched in
//! order: the k-th `send` on one end delivers into the k-th `recv` on the
//! other, so both sides must issue them in the same order (the runtime
//! posts a receive for each header in arrival order, and the link keeps
//! messages between two ranks in order). A wire is a FIFO, never shared
//! between directions: NCCL's send and receive block until their match
//! is posted, and a send and a receive queued on one stream in opposite
//! directions can wait on each other across ranks (rank 0 sends to 1
//! while 1 sends to 0). One wire per direction rules that out.
//!
//! Both calls return at once; the work runs on the wire's own thread, in
//! order, and `done` is called there. A `send` keeps its tensor alive
//! until the data has left; a `recv` hands over a tensor on the
//! receiving device whose data is complete.
//!
//! ## Implementations
//! * NCCL (`crate::cuda::nccl`): a two-rank communicator per wire on its
//!   own CUDA stream.
//! * [`Loopback`]: a device wrapper whose wires join ranks that are threads
//!   of one process, with NCCL's rendezvous (a send completes only once
//!   its receive is posted). It carries the data through host memory; it
//!   exists to test the runtime's wire protocol (ordering, credits,
//!   deadlock freedom) on any machine.

use crate::{Device, DeviceError, DeviceInfo, DeviceTensor, Result};
use hetflow_ops::{DType, Op, Tensor};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Which end of a wire a device opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireEnd {
    /// The producer's side.
    Send,
    /// The consumer's side.
    Recv,
}

/// Called when a send has left the device (or failed).
pub type SendDone = Box<dyn FnOnce(Result<()>) + Send>;
/// Called with the received tensor (or the failure).
pub type RecvDone = Box<dyn FnOnce(Result<DeviceTensor>) + Send>;

/// One direction of a device-to-device channel between two ranks (module
/// docs).
pub trait Wire: Send + Sync {
    /// What carries it (`nccl`, `loopback`), for traces and errors.
    fn kind(&self) -> &'static str;
    /// Queues `t` for the other end.
    fn send(&self, t: DeviceTensor, done: SendDone);
    /// Queues a receive of the next tensor, which has this dtype and shape.
    fn recv(&self, dtype: DType, shape: Vec<usize>, done: RecvDone);
}

/// A wire's work, run in order on its thread.
pub(crate) enum Job {
    Send(DeviceTensor, SendDone),
    Recv(DType, Vec<usize>, RecvDone),
}

/// Runs `jobs` in order on a new thread: `start` first (it may block, as
/// NCCL's communicator set-up does, until the other end joins), then each
/// job with `run_send` / `run_recv`. When `start` fails, every job fails
/// with its error. The thread ends when the wire (the sender of `jobs`)
/// is dropped.
pub(crate) fn spawn_worker<S, FS, FR>(
    name: String,
    start: impl FnOnce() -> Result<S> + Send + 'static,
    run_send: FS,
    run_recv: FR,
) -> Result<crossbeam::channel::Sender<Job>>
where
    S: 'static,
    FS: Fn(&mut S, &DeviceTensor) -> Result<()> + Send + 'static,
    FR: Fn(&mut S, DType, &[usize]) -> Result<DeviceTensor> + Send + 'static,
{
    let (tx, rx) = crossbeam::channel::unbounded::<Job>();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let mut state = start();
            for job in rx {
                match (&mut state, job) {
                    (Ok(s), Job::Send(t, done)) => {
                        let r = run_send(s, &t);
                        drop(t);
                        done(r)
                    }
                    (Ok(s), Job::Recv(dt, shape, done)) => done(run_recv(s, dt, &shape)),
                    (Err(e), Job::Send(_, done)) => done(Err(DeviceError::Other(e.to_string()))),
                    (Err(e), Job::Recv(_, _, done)) => done(Err(DeviceError::Other(e.to_string()))),
                }
            }
        })
        .map_err(|e| DeviceError::Other(format!("cannot start the thread of {name}: {e}")))?;
    Ok(tx)
}

/// A [`Wire`] served by a [`spawn_worker`] thread.
pub(crate) struct WorkerWire {
    pub kind: &'static str,
    pub jobs: crossbeam::channel::Sender<Job>,
}

impl Wire for WorkerWire {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn send(&self, t: DeviceTensor, done: SendDone) {
        if let Err(e) = self.jobs.send(Job::Send(t, done)) {
            if let Job::Send(_, done) = e.0 {
                done(Err(DeviceError::Other(format!(
                    "{} wire closed",
                    self.kind
                ))));
            }
        }
    }
    fn recv(&self, dtype: DType, shape: Vec<usize>, done: RecvDone) {
        if let Err(e) = self.jobs.send(Job::Recv(dtype, shape, done)) {
            if let Job::Recv(_, _, done) = e.0 {
                done(Err(DeviceError::Other(format!(
                    "{} wire closed",
                    self.kind
                ))));
            }
        }
    }
}

/// The rendezvous channels of [`Loopback`] wires, by id.
type Rendezvous = (
    crossbeam::channel::Sender<Arc<Tensor>>,
    crossbeam::channel::Receiver<Arc<Tensor>>,
);

/// The half of a rendezvous one end of a [`Loopback`] wire holds.
type Half = (
    Option<crossbeam::channel::Sender<Arc<Tensor>>>,
    Option<crossbeam::channel::Receiver<Arc<Tensor>>>,
);

fn registry() -> &'static Mutex<HashMap<Vec<u8>, Rendezvous>> {
    static R: OnceLock<Mutex<HashMap<Vec<u8>, Rendezvous>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The channel of wire `id`: made by whichever end comes first, and
/// forgotten by the registry once the second end has it.
fn rendezvous(id: &[u8]) -> Rendezvous {
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    match r.remove(id) {
        Some(ch) => ch,
        None => {
            let ch = crossbeam::channel::bounded(0);
            r.insert(id.to_vec(), ch.clone());
            ch
        }
    }
}

/// A device wrapper whose wires join ranks that are threads of one process
/// (module docs). Everything else passes through to the wrapped device.
pub struct Loopback {
    inner: Arc<dyn Device>,
    sent: Arc<AtomicU64>,
}

impl Loopback {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Device>) -> Loopback {
        Loopback {
            inner,
            sent: Arc::new(AtomicU64::new(0)),
        }
    }
    /// Tensors sent over this device's wires so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Device for Loopback {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn supports(&self, op: &Op) -> std::result::Result<(), String> {
        self.inner.supports(op)
    }
    fn upload(&self, t: Arc<Tensor>) -> Result<DeviceTensor> {
        self.inner.upload(t)
    }
    fn download(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        self.inner.download(t)
    }
    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        outputs: &[crate::OutputSpec],
    ) -> Result<Vec<DeviceTensor>> {
        self.inner.execute(op, inputs, outputs)
    }
    fn init_executor_thread(&self) {
        self.inner.init_executor_thread()
    }
    fn prepare_weight(
        &self,
        op: &Op,
        slot: usize,
        t: &DeviceTensor,
        lhs_shape: Option<&[usize]>,
    ) -> Result<()> {
        self.inner.prepare_weight(op, slot, t, lhs_shape)
    }
    fn view(&self, t: &DeviceTensor, shape: Vec<usize>) -> Option<Result<DeviceTensor>> {
        self.inner.view(t, shape)
    }
    fn host_value(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        self.inner.host_value(t)
    }
    fn wire_id(&self) -> Option<Result<Vec<u8>>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut id = b"loopback".to_vec();
        id.extend_from_slice(&std::process::id().to_le_bytes());
        id.extend_from_slice(&n.to_le_bytes());
        Some(Ok(id))
    }
    fn open_wire(&self, end: WireEnd, id: &[u8]) -> Option<Result<Arc<dyn Wire>>> {
        // Each end keeps only its half of the rendezvous, so a send fails
        // (instead of waiting forever) once the receiving end is gone, and
        // the other way round.
        let (tx, rx) = rendezvous(id);
        let half: Half = match end {
            WireEnd::Send => (Some(tx), None),
            WireEnd::Recv => (None, Some(rx)),
        };
        let gone = |what: &str| DeviceError::Other(format!("loopback wire: {what}"));
        let (dev, sent) = (self.inner.clone(), self.sent.clone());
        let up = self.inner.clone();
        let jobs = spawn_worker(
            format!("hetflow-wire-{}", self.inner.id()),
            move || Ok(half),
            move |(tx, _): &mut Half, t: &DeviceTensor| {
                let tx = tx
                    .as_ref()
                    .ok_or_else(|| gone("send on the receiving end"))?;
                let host = dev.download(t)?;
                // Blocks until the other end posts its receive, as NCCL does.
                tx.send(host).map_err(|_| gone("the receiver is gone"))?;
                sent.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
            move |(_, rx): &mut Half, dtype: DType, shape: &[usize]| {
                let rx = rx
                    .as_ref()
                    .ok_or_else(|| gone("receive on the sending end"))?;
                let t = rx.recv().map_err(|_| gone("the sender is gone"))?;
                if t.dtype() != dtype || t.shape() != shape {
                    return Err(gone(&format!(
                        "expected {dtype}{shape:?}, got {}{:?} (sends and receives out of order)",
                        t.dtype(),
                        t.shape()
                    )));
                }
                up.upload(t)
            },
        );
        Some(jobs.map(|jobs| {
            Arc::new(WorkerWire {
                kind: "loopback",
                jobs,
            }) as Arc<dyn Wire>
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cpu() -> Arc<dyn Device> {
        crate::open_devices(&crate::parse_device_list("cpu:0").unwrap(), Some(1))
            .unwrap()
            .remove(0)
    }

    fn send(
        w: &Arc<dyn Wire>,
        dev: &Arc<dyn Device>,
        v: Vec<f32>,
    ) -> std::sync::mpsc::Receiver<bool> {
        let t = dev
            .upload(Arc::new(Tensor::from_vec(vec![v.len()], v).unwrap()))
            .unwrap();
        let (s, r) = std::sync::mpsc::channel();
        w.send(
            t,
            Box::new(move |res| {
                let _ = s.send(res.is_ok());
            }),
        );
        r
    }

    /// Tensors arrive in order, and each send completes only once its
    /// receive is posted (NCCL's rendezvous).
    #[test]
    fn loopback_wires_deliver_in_order_with_a_rendezvous() {
        let dev = cpu();
        let d = Loopback::new(dev.clone());
        let id = d.wire_id().unwrap().unwrap();
        let tx = d.open_wire(WireEnd::Send, &id).unwrap().unwrap();
        let rx = d.open_wire(WireEnd::Recv, &id).unwrap().unwrap();
        let first = send(&tx, &dev, vec![1.0, 2.0]);
        let second = send(&tx, &dev, vec![3.0, 4.0]);
        assert!(
            first.recv_timeout(Duration::from_millis(100)).is_err(),
            "sent before a receive was posted"
        );
        for want in [[1.0f32, 2.0], [3.0, 4.0]] {
            let (s, r) = std::sync::mpsc::channel();
            rx.recv(DType::F32, vec![2], Box::new(move |t| drop(s.send(t))));
            let got = r.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
            assert_eq!(dev.download(&got).unwrap().as_slice::<f32>().unwrap(), want);
        }
        assert_eq!(first.recv_timeout(Duration::from_secs(5)), Ok(true));
        assert_eq!(second.recv_timeout(Duration::from_secs(5)), Ok(true));
        assert_eq!(d.sent(), 2);
    }

    /// A send fails, instead of waiting forever, once the receiving end
    /// is gone.
    #[test]
    fn a_send_fails_once_the_receiving_end_is_gone() {
        let dev = cpu();
        let d = Loopback::new(dev.clone());
        let id = d.wire_id().unwrap().unwrap();
        let tx = d.open_wire(WireEnd::Send, &id).unwrap().unwrap();
        drop(d.open_wire(WireEnd::Recv, &id).unwrap().unwrap());
        let done = send(&tx, &dev, vec![1.0]);
        assert_eq!(done.recv_timeout(Duration::from_secs(5)), Ok(false));
    }
}
