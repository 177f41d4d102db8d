//! [`MpiLink`]: the [`Link`] of a job launched by `mpirun` or `srun`
//! (cargo feature `mpi`, Open MPI through the `mpi` crate).
//!
//! One communication thread per process initialises MPI (`Funneled`: it
//! is the only thread that calls MPI), owns `MPI_COMM_WORLD` and loops:
//! it starts a non-blocking send (`MPI_Isend`) for every message the
//! runtime queued, tests the sends in flight, matches arriving messages
//! with `MPI_Improbe` and receives each with a non-blocking `MPI_Imrecv`,
//! delivering completed receives in arrival order. Open MPI makes progress
//! only inside MPI calls, so this polling is what moves micro-batch k
//! over the wire while the devices compute k+1. When nothing happened the
//! thread first polls on for 200 rounds, yielding the core between them
//! (right after traffic more usually follows: a reply, the next
//! micro-batch), then backs off (5 µs doubling to 100 µs, waking at once
//! for a new send): an idle job costs about 10,000 short wake-ups a
//! second, not a core. (Sleeping at once measured 310–340 µs one-way
//! latency on loopback; a 1 ms ceiling, 1.5 ms.)
//!
//! Ranks and hosts come from `MPI_COMM_WORLD` (an all-gather of
//! `MPI_Get_processor_name` at start), so the same binary runs under
//! `mpirun -H`, `mpirun --hostfile` and `srun --mpi=pmix`.
//!
//! Failure: the communicator returns errors (`MPI_ERRORS_RETURN`) instead
//! of aborting, and every rank sends a heartbeat to every other every
//! 200 ms; a rank not heard from for `HETFLOW_NET_TIMEOUT_MS` (default
//! 3000) is reported lost, which fails every session that uses it with an
//! error naming the rank and its host. On shutdown the thread finishes its
//! sends, meets the other ranks in a non-blocking barrier and finalises
//! MPI; when a rank was lost or the barrier does not complete within 10 s
//! it leaves MPI unfinalised rather than hang.

use super::link::{Deliver, Incoming, Link};
use crate::error::{Result, RuntimeError};
use crossbeam::channel::{unbounded, RecvTimeoutError, Sender, TryRecvError};
use mpi::point_to_point::{Destination, MatchedReceiveVec as _, Source};
use mpi::raw::AsRaw;
use mpi::request::{Request, StaticScope};
use mpi::topology::Communicator;
use mpi::traits::CommunicatorCollectives;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const TAG_DATA: i32 = 1;
const TAG_BEAT: i32 = 2;
const HOST_LEN: usize = 256;
/// Polls without sleeping after the last traffic (module docs).
const SPIN_POLLS: u32 = 200;
static EMPTY: [u8; 0] = [];

enum Cmd {
    Send(usize, Vec<u8>),
    /// Start an all-reduce (sum) of these values; the sum goes back on
    /// the sender.
    AllReduce(Vec<f32>, Sender<Result<Vec<f32>>>),
    Stop,
}

/// An all-reduce in flight: its request, the leaked send and receive
/// buffers (freed when it completes), and where the sum goes.
struct Reducing(
    Request<'static, [f32]>,
    *mut [f32],
    *mut [f32],
    Sender<Result<Vec<f32>>>,
);

/// The MPI link (module docs).
pub struct MpiLink {
    rank: usize,
    size: usize,
    hosts: Vec<String>,
    tx: Sender<Cmd>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl MpiLink {
    /// Initialises MPI on a new communication thread and starts polling;
    /// everything received goes to `deliver`. Fails when MPI is already
    /// initialised in this process or the thread level is not available.
    pub fn start(deliver: Deliver) -> Result<MpiLink> {
        let (tx, rx) = unbounded::<Cmd>();
        let (init_tx, init_rx) = std::sync::mpsc::channel();
        let timeout = std::env::var("HETFLOW_NET_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(3));
        let thread = std::thread::Builder::new()
            .name("hetflow-mpi".into())
            .spawn(move || comm_thread(rx, init_tx, deliver, timeout))
            .map_err(|e| RuntimeError::Network(format!("cannot start the MPI thread: {e}")))?;
        let (rank, size, hosts) = init_rx
            .recv()
            .map_err(|_| RuntimeError::Network("the MPI thread died while starting".into()))??;
        Ok(MpiLink {
            rank,
            size,
            hosts,
            tx,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }
}

impl Link for MpiLink {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn hosts(&self) -> Vec<String> {
        self.hosts.clone()
    }
    fn send(&self, to: usize, bytes: Vec<u8>) -> Result<()> {
        if to >= self.size || to == self.rank {
            return Err(RuntimeError::Network(format!(
                "cannot send to rank {to} from rank {} of {}",
                self.rank, self.size
            )));
        }
        if bytes.len() > i32::MAX as usize {
            return Err(RuntimeError::Network(format!(
                "a {} byte message exceeds MPI's 2 GiB count limit",
                bytes.len()
            )));
        }
        self.tx
            .send(Cmd::Send(to, bytes))
            .map_err(|_| RuntimeError::Network("the MPI thread has stopped".into()))
    }
    fn allreduce_sum(&self, data: Vec<f32>) -> Result<Vec<f32>> {
        if data.len() > i32::MAX as usize {
            return Err(RuntimeError::Network(format!(
                "an all-reduce of {} values exceeds MPI's count limit",
                data.len()
            )));
        }
        let (tx, rx) = crossbeam::channel::bounded(1);
        self.tx
            .send(Cmd::AllReduce(data, tx))
            .map_err(|_| RuntimeError::Network("the MPI thread has stopped".into()))?;
        rx.recv().map_err(|_| {
            RuntimeError::Network("the MPI thread stopped during an all-reduce".into())
        })?
    }
    fn shutdown(&self) {
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = self.tx.send(Cmd::Stop);
            let _ = t.join();
        }
    }
}

impl Drop for MpiLink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type InitResult = Result<(usize, usize, Vec<String>)>;

/// A send in flight and the buffer it reads (leaked until it completes;
/// `None` for the static heartbeat buffer).
struct Sending(Request<'static, [u8]>, Option<*mut [u8]>);

/// A receive in flight (or completed, waiting for the ones before it).
enum Receiving {
    Pending(Request<'static, [u8]>, *mut [u8], usize),
    Done(Vec<u8>, usize),
}

fn comm_thread(
    rx: crossbeam::channel::Receiver<Cmd>,
    init: std::sync::mpsc::Sender<InitResult>,
    deliver: Deliver,
    timeout: Duration,
) {
    let Some((universe, _level)) = mpi::initialize_with_threading(mpi::Threading::Funneled) else {
        let _ = init.send(Err(RuntimeError::Network(
            "MPI is already initialised in this process".into(),
        )));
        return;
    };
    let world = universe.world();
    // Errors come back as codes instead of aborting the job.
    unsafe {
        mpi::ffi::MPI_Comm_set_errhandler(world.as_raw(), mpi::ffi::RSMPI_ERRORS_RETURN);
    }
    let rank = world.rank() as usize;
    let size = world.size() as usize;
    let mut name = [0u8; HOST_LEN];
    let me = mpi::environment::processor_name().unwrap_or_else(|_| format!("rank{rank}"));
    let n = me.len().min(HOST_LEN);
    name[..n].copy_from_slice(&me.as_bytes()[..n]);
    let mut all = vec![0u8; HOST_LEN * size];
    world.all_gather_into(&name[..], &mut all[..]);
    let hosts: Vec<String> = all
        .chunks(HOST_LEN)
        .map(|c| {
            let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect();
    if init.send(Ok((rank, size, hosts.clone()))).is_err() {
        return;
    }

    let mut sending: Vec<Sending> = Vec::new();
    let mut reducing: Vec<Reducing> = Vec::new();
    let mut receiving: VecDeque<Receiving> = VecDeque::new();
    let mut heard = vec![Instant::now(); size];
    let mut lost = vec![false; size];
    let mut last_beat = Instant::now() - Duration::from_secs(1);
    let beat_every = Duration::from_millis(200);
    let mut idle: u32 = 0;
    let mut stopping = false;
    let start_send = |sending: &mut Vec<Sending>, to: usize, bytes: Vec<u8>| {
        let buf: &'static mut [u8] = Box::leak(bytes.into_boxed_slice());
        let ptr = buf as *mut [u8];
        let req =
            world
                .process_at_rank(to as i32)
                .immediate_send_with_tag(StaticScope, &*buf, TAG_DATA);
        sending.push(Sending(req, Some(ptr)));
    };
    loop {
        let mut busy = false;
        // 1. New sends.
        loop {
            match rx.try_recv() {
                Ok(Cmd::Send(to, bytes)) => {
                    start_send(&mut sending, to, bytes);
                    busy = true;
                }
                Ok(Cmd::AllReduce(data, reply)) => {
                    start_reduce(&world, &mut reducing, data, reply, lost.iter().any(|&l| l));
                    busy = true;
                }
                Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => stopping = true,
                Err(TryRecvError::Empty) => break,
            }
            if stopping {
                break;
            }
        }
        // 2. Sends that completed free their buffers; finished all-reduces
        // hand back their sums.
        busy |= reap_sends(&mut sending);
        busy |= reap_reduces(&mut reducing);
        // 3. Arrivals: match each, receive it without blocking.
        while let Some((msg, status)) = world.any_process().immediate_matched_probe() {
            let from = status.source_rank() as usize;
            if from < size {
                heard[from] = Instant::now();
            }
            if status.tag() == TAG_BEAT {
                let _ = (msg, status).matched_receive_vec::<u8>();
                continue;
            }
            let count = status
                .count(<u8 as mpi::datatype::Equivalence>::equivalent_datatype())
                .max(0) as usize;
            let buf: &'static mut [u8] = Box::leak(vec![0u8; count].into_boxed_slice());
            let ptr = buf as *mut [u8];
            let req = msg.immediate_matched_receive_into(StaticScope, buf);
            receiving.push_back(Receiving::Pending(req, ptr, from));
            busy = true;
        }
        for r in receiving.iter_mut() {
            if let Receiving::Pending(..) = r {
                let Receiving::Pending(req, ptr, from) =
                    std::mem::replace(r, Receiving::Done(Vec::new(), 0))
                else {
                    continue;
                };
                *r = match req.test() {
                    // SAFETY: leaked above; the receive has completed.
                    Ok(_) => Receiving::Done(unsafe { Box::from_raw(ptr) }.into_vec(), from),
                    Err(req) => Receiving::Pending(req, ptr, from),
                };
            }
        }
        while let Some(Receiving::Done(..)) = receiving.front() {
            if let Some(Receiving::Done(bytes, from)) = receiving.pop_front() {
                deliver(Incoming::Message { from, bytes });
                busy = true;
            }
        }
        // 4. Heartbeats out, silent ranks reported.
        let now = Instant::now();
        if !stopping && now.duration_since(last_beat) >= beat_every {
            last_beat = now;
            for r in (0..size).filter(|&r| r != rank && !lost[r]) {
                let req = world.process_at_rank(r as i32).immediate_send_with_tag(
                    StaticScope,
                    &EMPTY[..],
                    TAG_BEAT,
                );
                sending.push(Sending(req, None));
            }
        }
        for r in (0..size).filter(|&r| r != rank) {
            if !lost[r] && !stopping && now.duration_since(heard[r]) > timeout {
                lost[r] = true;
                fail_reduces(&mut reducing, &format!("rank {r} was lost"));
                deliver(Incoming::Lost {
                    rank: r,
                    why: format!(
                        "no message for {:.1} s (process dead or host unreachable)",
                        now.duration_since(heard[r]).as_secs_f64()
                    ),
                });
            }
        }
        if stopping {
            break;
        }
        // 5. Back off when idle; a new send wakes the thread at once.
        if busy {
            idle = 0;
            continue;
        }
        idle = idle.saturating_add(1);
        // Right after traffic, more is likely (the reply, the next
        // micro-batch): poll again at once, yielding the core to anyone
        // who wants it, before sleeping (a sleep costs ~60 µs of timer
        // slack and wake-up however short it is asked to be).
        if idle < SPIN_POLLS {
            std::thread::yield_now();
            continue;
        }
        let wait = Duration::from_micros((5u64 << (idle - SPIN_POLLS).min(5)).min(100));
        match rx.recv_timeout(wait) {
            Ok(Cmd::Send(to, bytes)) => start_send(&mut sending, to, bytes),
            Ok(Cmd::AllReduce(data, reply)) => {
                start_reduce(&world, &mut reducing, data, reply, lost.iter().any(|&l| l))
            }
            Ok(Cmd::Stop) | Err(RecvTimeoutError::Disconnected) => stopping = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if stopping {
            // One more round to start what was queued before the stop.
            while let Ok(cmd) = rx.try_recv() {
                match cmd {
                    Cmd::Send(to, bytes) => start_send(&mut sending, to, bytes),
                    Cmd::AllReduce(_, reply) => {
                        let _ = reply.send(Err(RuntimeError::Network(
                            "the link is shutting down".into(),
                        )));
                    }
                    Cmd::Stop => {}
                }
            }
        }
    }
    fail_reduces(&mut reducing, "the link shut down");
    shutdown(
        &world,
        sending,
        receiving,
        lost.iter().any(|&l| l),
        universe,
    );
}

/// Starts `MPI_Iallreduce` (sum) of `data` on the communication thread,
/// which is the only one that calls MPI; the loop tests it like a send.
/// After a rank is lost a collective can never complete: refused.
fn start_reduce<C: CommunicatorCollectives>(
    world: &C,
    reducing: &mut Vec<Reducing>,
    data: Vec<f32>,
    reply: Sender<Result<Vec<f32>>>,
    any_lost: bool,
) {
    if any_lost {
        let _ = reply.send(Err(RuntimeError::Network(
            "all-reduce after a rank was lost".into(),
        )));
        return;
    }
    let n = data.len();
    let send: &'static mut [f32] = Box::leak(data.into_boxed_slice());
    let recv: &'static mut [f32] = Box::leak(vec![0f32; n].into_boxed_slice());
    let (sp, rp) = (send as *mut [f32], recv as *mut [f32]);
    let req = world.immediate_all_reduce_into(
        StaticScope,
        &*send,
        recv,
        mpi::collective::SystemOperation::sum(),
    );
    reducing.push(Reducing(req, sp, rp, reply));
}

/// Tests the all-reduces in flight; those that completed free their send
/// buffer and hand their sum back. Whether any did.
fn reap_reduces(reducing: &mut Vec<Reducing>) -> bool {
    let mut any = false;
    let mut i = 0;
    while i < reducing.len() {
        let Reducing(req, sp, rp, reply) = reducing.swap_remove(i);
        match req.test() {
            Ok(_) => {
                // SAFETY: leaked in start_reduce; the request has completed,
                // so MPI no longer reads or writes either buffer.
                unsafe { drop(Box::from_raw(sp)) };
                let sum = unsafe { Box::from_raw(rp) }.into_vec();
                let _ = reply.send(Ok(sum));
                any = true;
            }
            Err(req) => {
                reducing.push(Reducing(req, sp, rp, reply));
                let last = reducing.len() - 1;
                reducing.swap(i, last);
                i += 1;
            }
        }
    }
    any
}

/// Fails every all-reduce in flight (a rank is gone: they cannot
/// complete). Their requests and buffers are leaked: MPI may still own
/// them.
fn fail_reduces(reducing: &mut Vec<Reducing>, why: &str) {
    for Reducing(req, _, _, reply) in reducing.drain(..) {
        std::mem::forget(req);
        let _ = reply.send(Err(RuntimeError::Network(format!(
            "all-reduce failed: {why}"
        ))));
    }
}

/// Tests the sends in flight, frees the buffers of those that completed;
/// whether any did.
fn reap_sends(sending: &mut Vec<Sending>) -> bool {
    let mut any = false;
    let mut i = 0;
    while i < sending.len() {
        let Sending(req, buf) = sending.swap_remove(i);
        match req.test() {
            Ok(_) => {
                if let Some(p) = buf {
                    // SAFETY: leaked when the send started; MPI is done
                    // with it.
                    drop(unsafe { Box::from_raw(p) });
                }
                any = true;
            }
            Err(req) => {
                sending.push(Sending(req, buf));
                let last = sending.len() - 1;
                sending.swap(i, last);
                i += 1;
            }
        }
    }
    any
}

/// Finishes the sends in flight, meets the other ranks in a barrier and
/// finalises MPI, within a bound (module docs).
fn shutdown(
    world: &mpi::topology::SimpleCommunicator,
    mut sending: Vec<Sending>,
    receiving: VecDeque<Receiving>,
    any_lost: bool,
    universe: mpi::environment::Universe,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut barrier = if any_lost {
        None
    } else {
        Some(world.immediate_barrier())
    };
    let mut clean = !any_lost;
    loop {
        reap_sends(&mut sending);
        // Late messages (heartbeats, credits of closed sessions) are
        // drained so the other ranks' sends complete.
        while let Some((msg, status)) = world.any_process().immediate_matched_probe() {
            let _ = (msg, status).matched_receive_vec::<u8>();
        }
        if let Some(b) = barrier.take() {
            match b.test() {
                Ok(_) => {}
                Err(b) => barrier = Some(b),
            }
        }
        if sending.is_empty() && barrier.is_none() {
            break;
        }
        if Instant::now() > deadline {
            clean = false;
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // Requests still in flight cannot be completed; forget them (the
    // process is ending) rather than panic in their destructors.
    for s in sending {
        std::mem::forget(s);
    }
    for r in receiving {
        std::mem::forget(r);
    }
    if let Some(b) = barrier {
        std::mem::forget(b);
    }
    if clean {
        drop(universe);
    } else {
        std::mem::forget(universe);
    }
}
