//! Kernel times from OpenCL profiling events (the compute queue is created
//! with `CL_QUEUE_PROFILING_ENABLE`), for the shared
//! [`crate::watcher::Watcher`]: it waits for the event and reads
//! `CL_PROFILING_COMMAND_START` and `_END` (device nanoseconds).

use crate::watcher::Measure;
use opencl3::event::Event;
use std::sync::Arc;
use std::time::Duration;

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

/// Waits for the command behind `ev` and measures it (with `first`: the
/// commands from `first`'s start to `ev`'s end, on an in-order queue).
pub(crate) fn measure(ev: Arc<Event>, first: Option<Arc<Event>>) -> Measure {
    Box::new(move || {
        if ev.wait().is_err() {
            return Duration::ZERO;
        }
        Duration::from_nanos(match &first {
            None => duration_ns(&ev),
            Some(f) => span_ns(f, &ev),
        })
    })
}
