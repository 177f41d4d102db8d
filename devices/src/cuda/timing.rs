//! GPU-timed kernel reports for the tracer ([`crate::Device::on_kernel_done`]).
//!
//! Each kernel launch is bracketed by two timing events on the compute
//! stream. When the runtime asks to be told about a kernel, the pair goes
//! to this device's watcher thread, which waits for the end event (so the
//! executor never blocks), takes the GPU-measured duration between the
//! two events, and reports the span ending now and lasting that long.
//! Reports are numbered; `download` waits until the producer of what it
//! reads has been reported, which keeps the contract that the report
//! comes before anyone waiting on the output wakes.

use crate::KernelReport;
use cudarc::driver::CudaEvent;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

struct Watch {
    seq: u64,
    start: Arc<CudaEvent>,
    end: Arc<CudaEvent>,
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
    /// Queues a report of the kernel between `start` and `end`; returns its
    /// number, or `None` when the watcher thread cannot be started.
    pub fn watch(
        &self,
        start: Arc<CudaEvent>,
        end: Arc<CudaEvent>,
        done: Box<dyn FnOnce(KernelReport) + Send>,
    ) -> Option<u64> {
        let mut tx = self.tx.lock().ok()?;
        if tx.is_none() {
            let (s, r) = channel::<Watch>();
            let progress = self.progress.clone();
            std::thread::Builder::new()
                .name("cuda-watcher".into())
                .spawn(move || {
                    for w in r {
                        let ok = w.end.synchronize().is_ok();
                        let end = Instant::now();
                        let ms = if ok {
                            w.start.elapsed_ms(&w.end).unwrap_or(0.0)
                        } else {
                            0.0
                        };
                        let start = end
                            .checked_sub(Duration::from_secs_f64(ms.max(0.0) as f64 / 1e3))
                            .unwrap_or(end);
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
                start,
                end,
                done,
            })
            .ok()?;
        Some(seq)
    }

    /// Blocks until report `seq` has been delivered.
    pub fn wait_for(&self, seq: u64) {
        let (m, cv) = &*self.progress;
        // Bounded, so a watcher that died (a panicking callback) cannot
        // hang a download; its report is then simply missing.
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
