//! What a simulation reports ([`SimReport`]: per-device statistics, the
//! critical path, every kernel and copy) and its text summary. A leaf of
//! `sim`: the engine fills it and the renderers draw it, so it lives below
//! both rather than in `sim/mod.rs`, which imports them.

/// One kernel or copy of a simulated run, in the workload's time unit.
#[derive(Clone, Debug, PartialEq)]
pub struct SimEvent {
    /// Node name (kernels; `<name> (bwd)` for backward) or `copy <value>`.
    pub name: String,
    /// Op type, `copy` or `comm`.
    pub op: String,
    /// `kernel` or `copy` (as the runtime's trace).
    pub cat: &'static str,
    /// Device index.
    pub device: usize,
    /// `compute` or `copy`.
    pub queue: &'static str,
    /// Micro-batch.
    pub mb: u64,
    /// Start.
    pub start: f64,
    /// Duration.
    pub dur: f64,
}

/// Per-device results.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceStats {
    /// Device name.
    pub name: String,
    /// Time the compute queue was busy.
    pub busy: f64,
    /// `busy / makespan`.
    pub busy_frac: f64,
    /// Idle fraction of the compute queue over the makespan, `1 -
    /// busy_frac` (the GPipe definition of the bubble).
    pub bubble_frac: f64,
    /// Time the inbound copy queue was busy.
    pub copy_busy: f64,
    /// Peak memory, bytes (constants plus live buffers).
    pub peak_memory: f64,
}

/// One step of the critical path.
#[derive(Clone, Debug, PartialEq)]
pub struct PathStep {
    /// Event name.
    pub name: String,
    /// Device index.
    pub device: usize,
    /// `kernel` or `copy`.
    pub cat: &'static str,
    /// Micro-batch.
    pub mb: u64,
    /// Start.
    pub start: f64,
    /// Finish.
    pub finish: f64,
    /// Why it started then: `data` (its last input arrived), `queue` (its
    /// queue became free) or `start`.
    pub waited_for: &'static str,
}

/// What a simulation reports.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReport {
    /// The time unit (`ms` for plans, the DAG's own unit otherwise).
    pub unit: String,
    /// Microseconds per unit (for traces).
    pub us_per_unit: f64,
    /// Finish of the last task.
    pub makespan: f64,
    /// Micro-batches simulated.
    pub microbatches: usize,
    /// Micro-batches per unit of time.
    pub throughput: f64,
    /// Per device, in workload order.
    pub devices: Vec<DeviceStats>,
    /// Mean bubble fraction over the devices that run something.
    pub bubble_frac: f64,
    /// The chain of tasks that determined the makespan, first to last.
    pub critical_path: Vec<PathStep>,
    /// Every kernel and copy.
    pub events: Vec<SimEvent>,
    /// Device names (for the renderers).
    pub device_names: Vec<String>,
}

impl SimReport {
    /// The events as the runtime records them: device names, times in
    /// microseconds.
    pub fn trace_events(&self) -> Vec<crate::trace::TraceEvent> {
        self.events
            .iter()
            .map(|e| crate::trace::TraceEvent {
                name: e.name.clone(),
                op: e.op.clone(),
                cat: e.cat,
                device: self.device_names[e.device].clone(),
                queue: e.queue,
                mb: e.mb,
                start_us: e.start * self.us_per_unit,
                dur_us: e.dur * self.us_per_unit,
                modelled_us: None,
            })
            .collect()
    }

    /// A human summary: one line per device, the critical path, throughput.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let u = &self.unit;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12} {:>12} {:>7} {:>8} {:>12} {:>10}",
            "device",
            format!("busy_{u}"),
            "busy%",
            "bubble%",
            format!("copy_{u}"),
            "peak_MiB"
        );
        for d in &self.devices {
            let _ = writeln!(
                s,
                "{:<12} {:>12.4} {:>6.1}% {:>7.1}% {:>12.4} {:>10.2}",
                d.name,
                d.busy,
                100.0 * d.busy_frac,
                100.0 * d.bubble_frac,
                d.copy_busy,
                d.peak_memory / (1u64 << 20) as f64
            );
        }
        let on_path: f64 = self.critical_path.iter().map(|p| p.finish - p.start).sum();
        let _ = writeln!(
            s,
            "critical path: {} tasks, {:.4} {u} of work, {:.4} {u} of waiting",
            self.critical_path.len(),
            on_path,
            (self.makespan - on_path).max(0.0)
        );
        for p in self.critical_path.iter().take(12) {
            let _ = writeln!(
                s,
                "  {:<32} {:<10} mb {:<3} {:>12.4} .. {:<12.4} ({})",
                p.name,
                self.device_names
                    .get(p.device)
                    .map(String::as_str)
                    .unwrap_or("?"),
                p.mb,
                p.start,
                p.finish,
                p.waited_for
            );
        }
        if self.critical_path.len() > 12 {
            let _ = writeln!(s, "  ... {} more", self.critical_path.len() - 12);
        }
        let _ = writeln!(
            s,
            "microbatches={} throughput={:.4}/{u} bubble={:.1}%",
            self.microbatches,
            self.throughput,
            100.0 * self.bubble_frac
        );
        s
    }
}
