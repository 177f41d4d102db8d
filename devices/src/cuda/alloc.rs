//! The caching device allocator and the pinned host staging pool.
//!
//! Device memory comes in size classes (powers of two from 512 B to 1 MiB,
//! then multiples of 2 MiB) so freed blocks are reused without a driver
//! call. A freed block keeps the events of its last uses (the kernel or
//! copy that produced it and every later reader); whoever reuses it makes
//! its own stream wait on those events first, so reuse never races with
//! work still queued on another stream (PyTorch's caching allocator does
//! the same with `recordStream`). When the driver reports out of memory
//! the cache is flushed and the allocation retried once.
//!
//! Host staging buffers are page-locked (`cuMemHostAlloc`) so copies are
//! truly asynchronous DMA; each keeps the event of the copy that used it
//! and is only rewritten after that event completes.

use cudarc::driver::{result, sys, CudaContext, CudaEvent, CudaStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Rounds a request up to its size class.
pub(crate) fn size_class(bytes: usize) -> usize {
    const MIB: usize = 1 << 20;
    if bytes <= MIB {
        bytes.max(512).next_power_of_two()
    } else {
        bytes.div_ceil(2 * MIB) * 2 * MIB
    }
}

/// A device allocation owned by the pool.
pub(crate) struct Block {
    pub ptr: sys::CUdeviceptr,
    pub class: usize,
}

type Pending = Vec<Arc<CudaEvent>>;

/// Caching allocator of one GPU.
pub(crate) struct DevicePool {
    ctx: Arc<CudaContext>,
    free: Mutex<HashMap<usize, Vec<(sys::CUdeviceptr, Pending)>>>,
}

impl DevicePool {
    /// The context the blocks belong to.
    pub fn ctx(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn new(ctx: Arc<CudaContext>) -> Self {
        DevicePool {
            ctx,
            free: Mutex::new(HashMap::new()),
        }
    }

    /// A block of at least `bytes`, safe to write from `stream`.
    pub fn alloc(&self, bytes: usize, stream: &CudaStream) -> Result<Block, String> {
        let class = size_class(bytes);
        let cached = self
            .free
            .lock()
            .map_err(|_| "allocator lock poisoned")?
            .get_mut(&class)
            .and_then(Vec::pop);
        if let Some((ptr, pending)) = cached {
            for ev in &pending {
                stream
                    .wait(ev)
                    .map_err(|e| format!("cuStreamWaitEvent: {e}"))?;
            }
            return Ok(Block { ptr, class });
        }
        self.ctx
            .bind_to_thread()
            .map_err(|e| format!("bind context: {e}"))?;
        // SAFETY: plain allocation in the bound context; freed in `Drop`.
        match unsafe { result::malloc_sync(class) } {
            Ok(ptr) => Ok(Block { ptr, class }),
            Err(first) => {
                self.flush()?;
                // SAFETY: as above.
                unsafe { result::malloc_sync(class) }
                    .map(|ptr| Block { ptr, class })
                    .map_err(|e| {
                        format!(
                            "allocating {class} bytes: {e} (before flushing the cache: {first})"
                        )
                    })
            }
        }
    }

    /// Returns a block; `pending` are the events of its last uses.
    pub fn release(&self, block: Block, pending: Pending) {
        if let Ok(mut free) = self.free.lock() {
            free.entry(block.class)
                .or_default()
                .push((block.ptr, pending));
        }
    }

    /// Frees every cached block (after the work using them is done).
    fn flush(&self) -> Result<(), String> {
        let blocks: Vec<_> = match self.free.lock() {
            Ok(mut f) => f.drain().flat_map(|(_, v)| v).collect(),
            Err(_) => return Err("allocator lock poisoned".into()),
        };
        self.ctx
            .bind_to_thread()
            .map_err(|e| format!("bind context: {e}"))?;
        for (ptr, pending) in blocks {
            for ev in pending {
                ev.synchronize()
                    .map_err(|e| format!("cuEventSynchronize: {e}"))?;
            }
            // SAFETY: the block came from malloc_sync and no work uses it.
            unsafe { result::free_sync(ptr) }.map_err(|e| format!("cuMemFree: {e}"))?;
        }
        Ok(())
    }
}

impl Drop for DevicePool {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!("cuda allocator: freeing cached blocks: {e}");
        }
    }
}

/// A page-locked host buffer.
pub(crate) struct Staging {
    ptr: *mut u8,
    cap: usize,
    /// The copy that last used it.
    pub inflight: Option<Arc<CudaEvent>>,
}

// SAFETY: the pointer is owned page-locked memory, used by one holder at a
// time (the pool hands it out by value).
unsafe impl Send for Staging {}

impl Staging {
    /// The first `n` bytes (n <= capacity).
    pub fn bytes_mut(&mut self, n: usize) -> &mut [u8] {
        assert!(n <= self.cap);
        // SAFETY: `ptr` owns `cap` bytes and we hold the only handle.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, n) }
    }
}

/// Pool of pinned staging buffers shared by the two copy streams.
pub(crate) struct StagingPool {
    ctx: Arc<CudaContext>,
    free: Mutex<Vec<Staging>>,
}

/// Buffers kept before a caller waits on an in-flight one.
const MAX_STAGING: usize = 8;

impl StagingPool {
    pub fn new(ctx: Arc<CudaContext>) -> Self {
        StagingPool {
            ctx,
            free: Mutex::new(Vec::new()),
        }
    }

    /// A buffer of at least `n` bytes whose previous copy has finished.
    pub fn take(&self, n: usize) -> Result<Staging, String> {
        let mut free = self.free.lock().map_err(|_| "staging lock poisoned")?;
        let idle = |s: &Staging| s.inflight.as_ref().is_none_or(|e| e.is_complete());
        let pick = free.iter().position(|s| s.cap >= n && idle(s)).or_else(|| {
            (free.len() >= MAX_STAGING)
                .then(|| free.iter().position(|s| s.cap >= n))
                .flatten()
        });
        if let Some(i) = pick {
            let mut s = free.swap_remove(i);
            drop(free);
            if let Some(ev) = s.inflight.take() {
                ev.synchronize()
                    .map_err(|e| format!("cuEventSynchronize: {e}"))?;
            }
            return Ok(s);
        }
        drop(free);
        let cap = size_class(n.max(4096));
        self.ctx
            .bind_to_thread()
            .map_err(|e| format!("bind context: {e}"))?;
        // SAFETY: plain page-locked allocation, freed in `Drop`.
        let ptr = unsafe { result::malloc_host(cap, 0) }
            .map_err(|e| format!("cuMemHostAlloc {cap} bytes: {e}"))?;
        Ok(Staging {
            ptr: ptr as *mut u8,
            cap,
            inflight: None,
        })
    }

    /// Hands a buffer back.
    pub fn give(&self, s: Staging) {
        if let Ok(mut f) = self.free.lock() {
            f.push(s);
        }
    }
}

impl Drop for StagingPool {
    fn drop(&mut self) {
        let Ok(free) = self.free.get_mut() else {
            return;
        };
        if self.ctx.bind_to_thread().is_err() {
            return;
        }
        for s in free.drain(..) {
            if let Some(ev) = &s.inflight {
                let _ = ev.synchronize();
            }
            // SAFETY: allocated by malloc_host; its last copy has finished.
            let _ = unsafe { result::free_host(s.ptr as *mut _) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes() {
        assert_eq!(size_class(0), 512);
        assert_eq!(size_class(513), 1024);
        assert_eq!(size_class(1 << 20), 1 << 20);
        assert_eq!(size_class((1 << 20) + 1), 2 << 20);
        assert_eq!(size_class((5 << 20) + 3), 6 << 20);
    }
}
