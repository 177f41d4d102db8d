//! Run timelines in the Chrome trace event format (loads in Perfetto and
//! chrome://tracing): one process per device, one thread per device queue
//! (compute, copy), one complete ("X") event per kernel or copy.
//!
//! Kernels of asynchronous devices (the emulated TPU) are recorded when the
//! device reports them done ([`hetflow_devices::Device::on_kernel_done`]):
//! their span is the device's own start and end (for the TPU, the
//! emulation's wall time) and `modelled_us` carries the device cost
//! model's estimate, shown in the Chrome trace as `args.modelled_us`.
//! Copies to or from such a device carry its modelled link time
//! ([`hetflow_devices::Device::transfer_modelled_us`]).

pub use hetflow_scheduler::trace::{chrome_trace_json, TraceEvent};
use std::sync::Mutex;
use std::time::Instant;

/// A thread-safe recorder; disabled recorders cost one branch per event.
pub struct Recorder {
    enabled: bool,
    origin: Instant,
    /// The origin on the wall clock (µs since the Unix epoch), to line up
    /// the timelines of several processes.
    origin_unix_us: f64,
    events: Mutex<Vec<TraceEvent>>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new(enabled: bool) -> Recorder {
        Recorder {
            enabled,
            origin: Instant::now(),
            origin_unix_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64() * 1e6)
                .unwrap_or(0.0),
            events: Mutex::new(Vec::new()),
        }
    }
    /// The origin of this recorder's times on the wall clock, µs since the
    /// Unix epoch.
    pub fn origin_unix_us(&self) -> f64 {
        self.origin_unix_us
    }
    /// Whether events are kept.
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// Microseconds since the origin.
    pub fn now_us(&self, t: Instant) -> f64 {
        t.duration_since(self.origin).as_secs_f64() * 1e6
    }
    /// Records an event that ran from `start` to now.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        name: &str,
        op: &str,
        cat: &'static str,
        device: &str,
        queue: &'static str,
        mb: u64,
        start: Instant,
    ) {
        self.record_span(
            name,
            op,
            cat,
            device,
            queue,
            mb,
            (start, Instant::now()),
            None,
        );
    }
    /// Records an event that ran over `span` (start, end), with the
    /// device's modelled duration when it has one.
    #[allow(clippy::too_many_arguments)]
    pub fn record_span(
        &self,
        name: &str,
        op: &str,
        cat: &'static str,
        device: &str,
        queue: &'static str,
        mb: u64,
        span: (Instant, Instant),
        modelled_us: Option<f64>,
    ) {
        if !self.enabled {
            return;
        }
        let (start, end) = span;
        let ev = TraceEvent {
            name: name.to_string(),
            op: op.to_string(),
            cat,
            device: device.to_string(),
            queue,
            mb,
            start_us: self.now_us(start),
            dur_us: end.saturating_duration_since(start).as_secs_f64() * 1e6,
            modelled_us,
        };
        if let Ok(mut v) = self.events.lock() {
            v.push(ev);
        }
    }
    /// A copy of the events so far.
    pub fn events(&self) -> Vec<TraceEvent> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }
    /// Removes and returns the events so far (e.g. to drop warm-up runs).
    pub fn take(&self) -> Vec<TraceEvent> {
        self.events
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Per-op-type totals of compute events: `(op, events, total µs)`, the
/// most expensive first.
pub fn op_profile(events: &[TraceEvent]) -> Vec<(String, usize, f64)> {
    let mut by: std::collections::HashMap<&str, (usize, f64)> = std::collections::HashMap::new();
    for e in events.iter().filter(|e| e.cat == "kernel") {
        let k = if e.op.is_empty() {
            e.name.as_str()
        } else {
            e.op.as_str()
        };
        let t = by.entry(k).or_default();
        t.0 += 1;
        t.1 += e.dur_us;
    }
    let mut v: Vec<(String, usize, f64)> = by
        .into_iter()
        .map(|(k, (n, t))| (k.to_string(), n, t))
        .collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    v
}
