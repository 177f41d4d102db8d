//! The kernel-report watcher shared by the asynchronous backends (CUDA,
//! OpenCL): reports for the tracer ([`crate::Device::on_kernel_done`])
//! whose kernel time comes from the device's own clock.
//!
//! When the runtime asks to be told about a kernel, the backend hands this
//! device's watcher thread a *measure* closure that waits for the kernel's
//! completion (so the executor never blocks) and returns the
//! device-measured duration; the report is the span ending when the wait
//! returned and lasting that long. Reports are numbered and delivered in
//! order; a download first waits ([`Watcher::wait_for`]) until the producer
//! of what it reads has been reported, so the report comes before anyone
//! waiting on the output on the host wakes.

use crate::KernelReport;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Waits for a kernel and returns its device-measured duration (zero when
/// the wait failed).
pub(crate) type Measure = Box<dyn FnOnce() -> Duration + Send>;

struct Watch {
    seq: u64,
    measure: Measure,
    done: Box<dyn FnOnce(KernelReport) + Send>,
}

/// Reports handed out and reports delivered, in order.
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

impl Watcher {
    /// Queues a report measured by `measure` and writes its number into
    /// `report` (the output buffer's slot, which downloads wait on);
    /// false when the watcher thread cannot be started.
    pub fn watch(
        &self,
        measure: Measure,
        done: Box<dyn FnOnce(KernelReport) + Send>,
        report: &Mutex<Option<u64>>,
    ) -> bool {
        match self.queue(measure, done) {
            Some(seq) => {
                if let Ok(mut r) = report.lock() {
                    *r = Some(seq);
                }
                true
            }
            None => false,
        }
    }

    fn queue(&self, measure: Measure, done: Box<dyn FnOnce(KernelReport) + Send>) -> Option<u64> {
        let mut tx = self.tx.lock().ok()?;
        if tx.is_none() {
            let (s, r) = channel::<Watch>();
            let progress = self.progress.clone();
            std::thread::Builder::new()
                .name("hetflow-kernel-watcher".into())
                .spawn(move || {
                    for w in r {
                        let took = (w.measure)();
                        let end = Instant::now();
                        let start = end.checked_sub(took).unwrap_or(end);
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
        tx.as_ref()?.send(Watch { seq, measure, done }).ok()?;
        Some(seq)
    }

    /// Blocks until report `seq` has been delivered (at most 60 s, so a
    /// watcher that died, e.g. in a panicking callback, cannot hang a
    /// download; its report is then missing).
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
