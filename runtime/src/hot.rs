//! Hot waits: the threads of a run keep checking for work for a short
//! while after their last message instead of going to sleep at once.
//!
//! A run crosses threads: the caller's input goes to the device's compute
//! thread and the result comes back. Waking a parked thread costs a
//! futex call on the sender's side and the scheduler's wake-up latency on
//! the receiver's, which on this project's 2-vCPU VM measured ~30 µs a
//! crossing: a one-Neg model ran in 64 µs median but 7 µs at best, when
//! both threads happened to be awake (docs/benchmarks.md, issue 17). So:
//!
//! A plan on one CPU device alone runs on the caller's thread by default
//! (`session/inline.rs`) and crosses no thread at all; what follows is
//! for such a plan run through the actors (`SessionOptions::actors`,
//! `HETFLOW_INLINE=0`).
//!
//! - The thread of a session on one CPU device alone (its compute
//!   arbiter, which also holds the source and the sink) runs a
//!   [`Spinner`]: after any of its actors calls [`touch`] (a kernel ran, a
//!   result was gathered, an input came in) the spinner keeps the thread's
//!   event loop turning for [`SPIN`], re-waking itself, so the next input
//!   is seen in a microsecond or two without a wake-up. Then the thread
//!   parks. It spins only while inputs keep coming that soon after the
//!   run before ([`arrived`], [`finished`]): a session run now and then
//!   (a test suite's, a service's at low load) stops spinning after one
//!   miss and starts again once an input comes within the spin time of
//!   its run's end. Plans over several devices do not spin: their threads
//!   outnumber the cores of a small machine, and spinning starved the
//!   copies that overlap compute.
//! - The caller waiting for a result of such a session ([`recv`]) polls
//!   its channel for up to [`SPIN`] before blocking, when recent results
//!   came within that time; a long run (a ResNet) blocks at once and
//!   costs nothing.
//!
//! Both spin with `spin_loop` for the first [`SPIN_HOT`] and then yield
//! the core now and then, so a runnable thread on the same core (a kernel
//! team's worker, the caller) is not held off. `HETFLOW_SPIN_US` sets the
//! spin time in microseconds (`0`: park at once, for hosts where idle
//! cores belong to someone else).

use crossbeam::channel::{Receiver, RecvError, TryRecvError};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long a thread keeps checking for work after its last message,
/// unless `HETFLOW_SPIN_US` says otherwise.
pub const SPIN: Duration = Duration::from_micros(300);

/// Spinning with `spin_loop` alone for this long, then yielding the core
/// now and then.
pub const SPIN_HOT: Duration = Duration::from_micros(20);

/// The spin time: [`SPIN`] or `HETFLOW_SPIN_US` microseconds.
pub fn spin_time() -> Duration {
    static T: OnceLock<Duration> = OnceLock::new();
    *T.get_or_init(|| {
        std::env::var("HETFLOW_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_micros)
            .unwrap_or(SPIN)
    })
}

/// The spinner's state on its thread.
struct Hot {
    /// Spin until then.
    until: Cell<Option<Instant>>,
    /// The last [`touch`]: the thread has been idle since.
    since: Cell<Instant>,
    /// The spinner's waker while it is parked.
    waker: RefCell<Option<Waker>>,
    polls: Cell<u32>,
    /// When the last run ended ([`finished`]).
    ended: Cell<Option<Instant>>,
    /// Whether the last gap between a run's end and the next input was
    /// within the spin time: only then does the thread spin after a run.
    worth: Cell<bool>,
}

fn current() -> Option<std::rc::Rc<Hot>> {
    HOT.with(|h| h.borrow().clone())
}

/// An input came in ([`crate::actors::Source`]): learns whether spinning
/// after the last run caught it, and touches.
pub fn arrived() {
    if let Some(hot) = current() {
        if let Some(end) = hot.ended.take() {
            hot.worth.set(end.elapsed() <= spin_time());
        }
        hot.touch();
    }
}

/// A run's outputs are all in ([`crate::actors::Sink`]): the thread spins
/// for the next input if the last one came soon enough after its run.
pub fn finished() {
    if let Some(hot) = current() {
        hot.ended.set(Some(Instant::now()));
        hot.touch();
    }
}

thread_local! {
    static HOT: RefCell<Option<std::rc::Rc<Hot>>> = const { RefCell::new(None) };
}

/// Keeps this thread's event loop turning for the spin time from now
/// (no-op on a thread without a [`Spinner`]).
pub fn touch() {
    if let Some(hot) = current() {
        hot.touch();
    }
}

impl Hot {
    fn touch(&self) {
        if !self.worth.get() {
            return;
        }
        let now = Instant::now();
        self.since.set(now);
        self.until.set(Some(now + spin_time()));
        let w = self.waker.borrow_mut().take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// The future that keeps an arbiter's loop turning after [`touch`]; the
/// session spawns one on a lone CPU device's thread (module docs). It
/// never completes; it is dropped with its arbiter.
pub struct Spinner;

impl Future for Spinner {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if spin_time().is_zero() {
            return Poll::Pending; // never woken again: spinning is off
        }
        HOT.with(|h| {
            let mut h = h.borrow_mut();
            let hot = h.get_or_insert_with(|| {
                std::rc::Rc::new(Hot {
                    until: Cell::new(None),
                    since: Cell::new(Instant::now()),
                    waker: RefCell::new(None),
                    polls: Cell::new(0),
                    ended: Cell::new(None),
                    worth: Cell::new(true),
                })
            });
            let now = Instant::now();
            match hot.until.get() {
                Some(t) if now < t => {
                    let n = hot.polls.get().wrapping_add(1);
                    hot.polls.set(n);
                    // Every poll lets the loop look at its other tasks
                    // (and, every few dozen, at messages from other
                    // threads); yielding the core on each one would
                    // space those looks a syscall apart. While the
                    // thread's actors are busy (a run's kernels), each of
                    // their messages touches, so it never yields then.
                    let idle = now - hot.since.get();
                    if idle > SPIN_HOT && n.is_multiple_of(16) {
                        std::thread::yield_now();
                    } else if idle > IDLE_BURST {
                        for _ in 0..PAUSES {
                            std::hint::spin_loop();
                        }
                    } else {
                        std::hint::spin_loop();
                    }
                    cx.waker().wake_by_ref();
                }
                _ => {
                    hot.until.set(None);
                    *hot.waker.borrow_mut() = Some(cx.waker().clone());
                }
            }
            Poll::Pending
        })
    }
}

/// Receives from `rx`, polling it for up to `spin` before blocking.
pub fn recv<T>(rx: &Receiver<T>, spin: Duration) -> Result<T, RecvError> {
    if !spin.is_zero() {
        let start = Instant::now();
        let mut n = 0u32;
        loop {
            match rx.try_recv() {
                Ok(v) => return Ok(v),
                Err(TryRecvError::Disconnected) => return Err(RecvError),
                Err(TryRecvError::Empty) => {}
            }
            n = n.wrapping_add(1);
            // A burst of pauses between looks: the sibling hardware
            // thread (or the vCPU's) keeps the core's resources.
            for _ in 0..PAUSES {
                std::hint::spin_loop();
            }
            if !n.is_multiple_of(8) {
                continue;
            }
            let waited = start.elapsed();
            if waited >= spin {
                break;
            }
            if waited > SPIN_HOT && n.is_multiple_of(64) {
                std::thread::yield_now();
            }
        }
    }
    rx.recv()
}

/// `spin_loop` hints between two looks at the caller's channel (and
/// between a [`Spinner`]'s polls once idle for [`IDLE_BURST`]): the
/// sibling hardware thread (or the vCPU sharing the core) keeps the core.
/// Polling without them slowed the other thread's kernels: LeNet at one
/// thread ran in 60 or 95 µs by the run, with them 59-60 µs every run.
const PAUSES: usize = 16;

/// Idle time after which a [`Spinner`] pauses in bursts.
const IDLE_BURST: Duration = Duration::from_micros(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_gets_a_value_sent_while_spinning_and_after() {
        let (tx, rx) = crossbeam::channel::unbounded();
        let t = std::thread::spawn(move || {
            tx.send(1).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            tx.send(2).unwrap();
        });
        assert_eq!(recv(&rx, Duration::from_millis(50)).unwrap(), 1);
        // Spin budget shorter than the sender's pause: falls back to a
        // blocking receive.
        assert_eq!(recv(&rx, Duration::from_micros(10)).unwrap(), 2);
        t.join().unwrap();
        assert!(recv(&rx, Duration::from_micros(10)).is_err());
    }

    #[test]
    fn touch_without_a_spinner_does_nothing() {
        touch();
        HOT.with(|h| assert!(h.borrow().is_none()));
    }
}
