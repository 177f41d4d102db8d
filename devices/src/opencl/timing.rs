//! Kernel reports for the tracer ([`crate::Device::on_kernel_done`]) from
//! OpenCL profiling events (the compute queue is created with
//! `CL_QUEUE_PROFILING_ENABLE`).
//!
//! When the runtime asks to be told about a kernel, its event goes to the
//! device's watcher thread, which waits for it (so the executor never
//! blocks), reads `CL_PROFILING_COMMAND_START` and `_END` (device
//! nanoseconds) and reports a span that ends when the wait returned and
//! lasts the device-measured time. Reports are numbered and delivered in
//! order; a download first waits until the producer of what it reads has
//! been reported, so the report comes before anyone waiting on the output
//! on the host wakes.

use crate::KernelReport;
use opencl3::event::Event;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

struct Watch {
    seq: u64,
    ev: Arc<Event>,
    first: Option<Arc<Event>>,
    done: Box<dyn FnOnce(KernelReport) + Send>,
}

#[derive(Default)]
struct Progress {
    issued: u64,
    delivered: u64,
}

/// One device's watcher thread (started on first use).
#[derive(Default)]
pub(crate) struct Watcher {
    tx: Mutex<Option<Sender<Watch>>>,
    progress: Arc<(Mutex<Progress>, Condvar)>,
}

/// Device-measured duration of a completed command, in nanoseconds.
pub(crate) fn duration_ns(ev: &Event) -> u64 {
    let s = ev.profiling_command_start().unwrap_or(0);
    let e = ev.profiling_command_end().unwrap_or(0);
    e.saturating_sub(s)
}

/// Device nanoseconds from the start of `first` to the end of `last`
/// (completed commands of one in-order queue).
fn span_ns(first: &Event, last: &Event) -> u64 {
    let s = first.profiling_command_start().unwrap_or(0);
    let e = last.profiling_command_end().unwrap_or(0);
    if s == 0 {
        duration_ns(last)
    } else {
        e.saturating_sub(s)
    }
}

impl Watcher {
    /// Queues a report of the command behind `ev` (with `first`: of the
    /// commands from `first`'s start to `ev`'s end, on an in-order queue);
    /// returns its number, or `None` when the watcher thread cannot be
    /// started.
    pub fn watch(
        &self,
        ev: Arc<Event>,
        first: Option<Arc<Event>>,
        done: Box<dyn FnOnce(KernelReport) + Send>,
    ) -> Option<u64> {
        let mut tx = self.tx.lock().ok()?;
        if tx.is_none() {
            let (s, r) = channel::<Watch>();
            let progress = self.progress.clone();
            std::thread::Builder::new()
                .name("opencl-watcher".into())
                .spawn(move || {
                    for w in r {
                        let ok = w.ev.wait().is_ok();
                        let end = Instant::now();
                        let ns = match (&w.first, ok) {
                            (_, false) => 0,
                            (None, true) => duration_ns(&w.ev),
                            (Some(f), true) => span_ns(f, &w.ev),
                        };
                        let start = end.checked_sub(Duration::from_nanos(ns)).unwrap_or(end);
                        (w.done)(KernelReport {
                            start,
                            end,
                            modelled_us: None,
                        });
                        let (m, cv) = &*progress;
                        if let Ok(mut p) = m.lock() {
                            p.delivered = p.delivered.max(w.seq);
                        }
                        cv.notify_all();
                    }
                })
                .ok()?;
            *tx = Some(s);
        }
        let seq = {
            let mut p = self.progress.0.lock().ok()?;
            p.issued += 1;
            p.issued
        };
        tx.as_ref()?
            .send(Watch {
                seq,
                ev,
                first,
                done,
            })
            .ok()?;
        Some(seq)
    }

    /// Blocks until report `seq` has been delivered (at most 60 s, so a
    /// watcher that died cannot hang a download; its report is then
    /// missing).
    pub fn wait_for(&self, seq: u64) {
        let (m, cv) = &*self.progress;
        let deadline = Instant::now() + Duration::from_secs(60);
        let Ok(mut p) = m.lock() else { return };
        while p.delivered < seq && Instant::now() < deadline {
            match cv.wait_timeout(p, Duration::from_millis(100)) {
                Ok((g, _)) => p = g,
                Err(_) => return,
            }
        }
    }
}
