//! [`Team`]: the kernel threads of one CPU device, the thread that runs
//! the device's ops plus `threads - 1` workers.
//!
//! Why not a rayon pool: a rayon pool is entered from outside through
//! `install`, which wakes a sleeping worker, blocks the caller on a latch
//! and wakes it again at the end; inside, the second worker is woken once
//! more for the split. On this project's 2-vCPU VM that was ~50 µs of
//! wake-ups per op (docs/benchmarks.md), so a model of many small ops ran
//! slower at 2 threads than at 1. Rayon's idle workers also go to sleep
//! after a few dozen yields, well inside the gap between two ops.
//!
//! A team works differently:
//! - The caller is member 0 and runs its kernel itself ([`Team::run`]
//!   makes the team current on the calling thread; nothing is handed off).
//! - A parallel loop ([`crate::kernels::par`]'s `par_for`) publishes one
//!   job: a piece count and a function of the piece index. Members claim
//!   pieces from a shared counter, the caller included, and the caller
//!   returns once every piece has run and no worker still holds the job.
//! - Idle workers spin (checking for a new job) for [`SPIN`] after their
//!   last piece, yielding the core to other runnable threads after the
//!   first few microseconds, and only then sleep on a condition variable.
//!   Back-to-back ops of one run so find them awake: a job starts on the
//!   other cores in about a microsecond.
//!
//! A loop started inside a piece runs serially on the thread that runs the
//! piece, as does a loop started while another thread has a job on the
//! same team (a team serves one caller at a time; others never wait).
//! A panic in a piece is caught on the worker and resumed on the caller
//! once the job is over. Dropping the team stops and joins its workers.

use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long an idle worker keeps checking for a job before it sleeps.
pub const SPIN: Duration = Duration::from_micros(300);

/// Spinning with `spin_loop` alone for this long, then with
/// `thread::yield_now` (another runnable thread on the core gets it).
const SPIN_HOT: Duration = Duration::from_micros(20);

/// Looks at the job counter with one pause between them before the
/// pauses come in bursts (about the first few microseconds).
const HOT_LOOKS: u32 = 1024;

type Job<'a> = dyn Fn(usize) + Sync + 'a;

struct Shared {
    threads: usize,
    /// Bumped when a job is published.
    epoch: AtomicU64,
    /// Whether the published job may still be joined.
    open: AtomicBool,
    /// Workers between joining a job and leaving it.
    active: AtomicUsize,
    next: AtomicUsize,
    done: AtomicUsize,
    pieces: AtomicUsize,
    /// The job, valid while `open` (written only by the caller holding
    /// `caller`, before `open` is set).
    job: UnsafeCell<Option<*const Job<'static>>>,
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    /// Held by the thread with a job on the team.
    caller: Mutex<()>,
    shutdown: AtomicBool,
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the caller holding `caller` while no
// worker can read it (`open` false and `active` zero), and read by workers
// only while `open` and counted in `active` (see `Team::broadcast`).
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

thread_local! {
    /// The team current on this thread ([`Team::run`]).
    static CURRENT: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
    /// Whether this thread is running a piece of a job.
    static IN_PIECE: Cell<bool> = const { Cell::new(false) };
}

/// The kernel threads of one device (see the module docs).
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Team({} threads)", self.shared.threads)
    }
}

impl Team {
    /// A team of `threads` (at least 1): the caller of [`Team::run`] and
    /// `threads - 1` workers named by `name(i)`, each of which calls
    /// `start(i)` first (binding it to a core, say), for `i` in
    /// `1..threads`.
    pub fn new(
        threads: usize,
        name: impl Fn(usize) -> String,
        start: impl Fn(usize) + Send + Sync + 'static,
    ) -> std::io::Result<Team> {
        let shared = Arc::new(Shared {
            threads: threads.max(1),
            epoch: AtomicU64::new(0),
            open: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            pieces: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            panic: Mutex::new(None),
            caller: Mutex::new(()),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        });
        let start = Arc::new(start);
        let mut team = Team {
            shared,
            workers: Vec::new(),
        };
        for i in 1..threads.max(1) {
            let (s, start) = (team.shared.clone(), start.clone());
            // On failure, `team` drops here and joins the workers started.
            let h = std::thread::Builder::new().name(name(i)).spawn(move || {
                start(i);
                worker(&s)
            })?;
            team.workers.push(h);
        }
        Ok(team)
    }

    /// Threads in the team, the caller included.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Runs `f` on the calling thread with this team current: the
    /// parallel loops of the kernels it calls split over the team.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(*const Shared);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.replace(Arc::as_ptr(&self.shared))));
        f()
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        {
            let _g = self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Threads of the team current on this thread, when there is one and
/// this thread is not inside a piece already.
pub(crate) fn current_threads() -> Option<usize> {
    if IN_PIECE.with(|p| p.get()) {
        return None;
    }
    let s = CURRENT.with(|c| c.get());
    // SAFETY: `Team::run` keeps the team (and its `Shared`) alive while
    // it is current on this thread.
    (!s.is_null()).then(|| unsafe { &*s }.threads)
}

/// Whether this thread is running a piece of a team's job.
pub(crate) fn in_piece() -> bool {
    IN_PIECE.with(|p| p.get())
}

/// Runs `job(p)` for every `p` in `0..pieces` on the current team, the
/// calling thread included; returns when all have run. Serial when there
/// is no current team, inside a piece, or while another thread has a job
/// on the team.
pub(crate) fn broadcast(pieces: usize, job: &Job<'_>) {
    let s = CURRENT.with(|c| c.get());
    if s.is_null() || IN_PIECE.with(|p| p.get()) || pieces < 2 {
        (0..pieces).for_each(job);
        return;
    }
    // SAFETY: as in `current_threads`.
    let s = unsafe { &*s };
    let Ok(_caller) = s.caller.try_lock() else {
        (0..pieces).for_each(job);
        return;
    };
    // Publish. No worker reads these now: the last job was closed with no
    // worker active, and workers join only while `open`.
    s.next.store(0, SeqCst);
    s.done.store(0, SeqCst);
    s.pieces.store(pieces, SeqCst);
    // SAFETY: the lifetime is erased; the job is only called until it is
    // closed below, and the function does not return before that.
    let erased: *const Job<'static> =
        unsafe { std::mem::transmute::<&Job<'_>, &'static Job<'static>>(job) };
    // SAFETY: no worker reads `job` while `open` is false (see above).
    unsafe { *s.job.get() = Some(erased) };
    s.open.store(true, SeqCst);
    s.epoch.fetch_add(1, SeqCst);
    if s.sleepers.load(SeqCst) > 0 {
        let _g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
    }
    claim(s, job);
    // Wait for the pieces other members claimed.
    let mut spins = 0u32;
    while s.done.load(Acquire) < pieces {
        spins = spins.saturating_add(1);
        if spins < 1 << 14 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    // Close, then wait for any worker that joined to leave (a worker counts
    // itself in `active` before it checks `open`: one of the two sees the
    // other).
    s.open.store(false, SeqCst);
    while s.active.load(SeqCst) != 0 {
        std::hint::spin_loop();
    }
    let panic = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(p) = panic {
        resume_unwind(p);
    }
}

/// Claims and runs pieces of the open job until none are left.
fn claim(s: &Shared, job: &Job<'_>) {
    IN_PIECE.with(|p| p.set(true));
    let pieces = s.pieces.load(SeqCst);
    loop {
        let p = s.next.fetch_add(1, AcqRel);
        if p >= pieces {
            break;
        }
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| job(p))) {
            let mut slot = s.panic.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(e);
        }
        s.done.fetch_add(1, Release);
    }
    IN_PIECE.with(|p| p.set(false));
}

fn worker(s: &Shared) {
    let mut seen = s.epoch.load(SeqCst);
    loop {
        // Spin, then sleep, until a new job or shutdown.
        let t0 = Instant::now();
        let mut n = 0u32;
        loop {
            if s.shutdown.load(Acquire) {
                return;
            }
            if s.epoch.load(Acquire) != seen {
                break;
            }
            n = n.wrapping_add(1);
            // Past the hot phase, a burst of pauses between looks leaves
            // the core's resources to its sibling hardware thread (or
            // the vCPU sharing it): a kernel or the caller running there.
            for _ in 0..if n > HOT_LOOKS { 16 } else { 1 } {
                std::hint::spin_loop();
            }
            if !n.is_multiple_of(64) {
                continue;
            }
            let idle = t0.elapsed();
            if idle < SPIN_HOT {
                continue;
            }
            if idle < SPIN {
                std::thread::yield_now();
                continue;
            }
            let mut g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, SeqCst);
            while s.epoch.load(SeqCst) == seen && !s.shutdown.load(SeqCst) {
                g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, SeqCst);
            break;
        }
        if s.shutdown.load(Acquire) {
            return;
        }
        seen = s.epoch.load(SeqCst);
        s.active.fetch_add(1, SeqCst);
        if s.open.load(SeqCst) {
            // SAFETY: the job stays valid while this worker is counted in
            // `active` and saw it open (the caller waits for `active` to
            // drop to zero after closing it).
            if let Some(job) = unsafe { *s.job.get() } {
                claim(s, unsafe { &*job });
            }
        }
        s.active.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_runs_once_and_the_caller_takes_part() {
        let team = Team::new(3, |i| format!("t{i}"), |_| {}).expect("team");
        assert_eq!(team.threads(), 3);
        for pieces in [0usize, 1, 2, 7, 1000] {
            let hits: Vec<AtomicUsize> = (0..pieces).map(|_| AtomicUsize::new(0)).collect();
            team.run(|| {
                assert_eq!(current_threads(), Some(3));
                broadcast(pieces, &|p| {
                    // Nested loops run serially inside a piece (of a job
                    // of two pieces or more: one piece runs as a call).
                    if pieces > 1 {
                        assert_eq!(current_threads(), None);
                    }
                    hits[p].fetch_add(1, SeqCst);
                })
            });
            assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "{pieces} pieces");
        }
        // Outside `run` there is no team.
        assert_eq!(current_threads(), None);
    }

    #[test]
    fn a_panicking_piece_resumes_on_the_caller_and_the_team_goes_on() {
        let team = Team::new(2, |i| format!("t{i}"), |_| {}).expect("team");
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run(|| {
                broadcast(16, &|p| {
                    if p == 11 {
                        panic!("piece 11");
                    }
                })
            })
        }));
        assert!(r.is_err());
        let sum = AtomicUsize::new(0);
        team.run(|| broadcast(100, &|p| _ = sum.fetch_add(p, SeqCst)));
        assert_eq!(sum.load(SeqCst), 4950);
    }

    #[test]
    fn workers_sleep_and_wake_and_stop_on_drop() {
        let team = Team::new(2, |i| format!("t{i}"), |_| {}).expect("team");
        for _ in 0..3 {
            // Past the spin: the worker sleeps, the next job wakes it.
            std::thread::sleep(SPIN * 3);
            let sum = AtomicUsize::new(0);
            team.run(|| broadcast(64, &|p| _ = sum.fetch_add(p, SeqCst)));
            assert_eq!(sum.load(SeqCst), 2016);
        }
        drop(team);
    }

    #[test]
    fn two_callers_on_one_team_both_finish() {
        let team = Team::new(2, |i| format!("t{i}"), |_| {}).expect("team");
        std::thread::scope(|sc| {
            for _ in 0..2 {
                sc.spawn(|| {
                    for _ in 0..200 {
                        let sum = AtomicUsize::new(0);
                        team.run(|| broadcast(32, &|p| _ = sum.fetch_add(p, SeqCst)));
                        assert_eq!(sum.load(SeqCst), 496);
                    }
                });
            }
        });
    }
}
