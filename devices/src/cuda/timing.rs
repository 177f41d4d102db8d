//! GPU-timed kernels for the shared [`crate::watcher::Watcher`]: each
//! kernel launch is bracketed by two timing events on the compute stream;
//! the watcher waits for the end event and takes the GPU-measured time
//! between the two.

use crate::watcher::Measure;
use cudarc::driver::CudaEvent;
use std::sync::Arc;
use std::time::Duration;

/// Waits for `end` and measures the kernel between `start` and `end`.
pub(crate) fn measure(start: Arc<CudaEvent>, end: Arc<CudaEvent>) -> Measure {
    Box::new(move || {
        if end.synchronize().is_err() {
            return Duration::ZERO;
        }
        let ms = start.elapsed_ms(&end).unwrap_or(0.0);
        Duration::from_secs_f64(ms.max(0.0) as f64 / 1e3)
    })
}
