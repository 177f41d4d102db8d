//! The timeline format shared by the runtime (`hetflow run --trace`) and
//! the simulator (`hetflow simulate --trace`), so predicted and measured
//! timelines load side by side: the Chrome trace event format (Perfetto,
//! chrome://tracing) with one process per device (pid = 1 + the device's
//! rank in name order, named by `process_name` metadata), thread 1
//! `compute` and thread 2 `copy` (named by `thread_name` metadata), and one
//! complete (`"X"`) event per kernel or copy with `ts`/`dur` in
//! microseconds and `args.mb`, `args.op` (and `args.modelled_us` where a
//! device model gave one). It lives here, the lowest crate both writers
//! depend on.

/// One kernel or copy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TraceEvent {
    /// Node name (kernels) or `copy <value>` (transfers).
    pub name: String,
    /// Op type (`Conv`, ...) or `copy`.
    pub op: String,
    /// `kernel` or `copy`.
    pub cat: &'static str,
    /// Device name, e.g. `cpu:1`.
    pub device: String,
    /// Queue on the device: `compute` or `copy`.
    pub queue: &'static str,
    /// Micro-batch index.
    pub mb: u64,
    /// Start, microseconds since the session started.
    pub start_us: f64,
    /// Duration in microseconds.
    pub dur_us: f64,
    /// The device cost model's duration (kernels of emulated devices, and
    /// copies to or from them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modelled_us: Option<f64>,
}

/// Renders events as Chrome trace JSON; the processes are the devices the
/// events name.
pub fn chrome_trace_json(events: &[TraceEvent]) -> String {
    let mut devices: Vec<&str> = events.iter().map(|e| e.device.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    chrome_trace_json_for(&devices, events)
}

/// Renders events as Chrome trace JSON with one process per name in
/// `devices` (sorted and deduplicated here), whether or not it has events.
pub fn chrome_trace_json_for(devices: &[&str], events: &[TraceEvent]) -> String {
    let mut devices: Vec<&str> = devices.to_vec();
    devices.sort_unstable();
    devices.dedup();
    let pid = |d: &str| devices.iter().position(|x| *x == d).unwrap_or(0) + 1;
    let tid = |q: &str| if q == "compute" { 1 } else { 2 };
    let mut out = Vec::with_capacity(events.len() + 3 * devices.len());
    for d in &devices {
        out.push(serde_json::json!({"name": "process_name", "ph": "M", "pid": pid(d), "args": {"name": d}}));
        for q in ["compute", "copy"] {
            out.push(serde_json::json!({"name": "thread_name", "ph": "M", "pid": pid(d), "tid": tid(q), "args": {"name": q}}));
        }
    }
    for e in events {
        let mut args = serde_json::json!({"mb": e.mb, "op": e.op});
        if let Some(m) = e.modelled_us {
            args["modelled_us"] = serde_json::json!(m);
        }
        out.push(serde_json::json!({
            "name": e.name, "cat": e.cat, "ph": "X", "ts": e.start_us, "dur": e.dur_us,
            "pid": pid(&e.device), "tid": tid(e.queue), "args": args
        }));
    }
    serde_json::to_string(&serde_json::json!({"traceEvents": out, "displayTimeUnit": "ms"}))
        .unwrap_or_default()
}
