//! A caching buffer pool: freed buffers are kept by byte size and handed
//! out again for the next request of the same size (tensors of one model
//! repeat a few sizes per micro-batch), up to a cap on cached bytes.

use opencl3::context::Context;
use opencl3::memory::{Buffer, CL_MEM_READ_WRITE};
use std::collections::HashMap;
use std::ptr;
use std::sync::{Arc, Mutex};

/// Buffers cached per size, with their total.
#[derive(Default)]
struct Cached {
    by_size: HashMap<usize, Vec<Buffer<u8>>>,
    bytes: usize,
}

/// The pool of one device.
pub struct BufferPool {
    ctx: Arc<Context>,
    cached: Mutex<Cached>,
    cap_bytes: usize,
    stats: Mutex<PoolStats>,
}

/// Counters, for tests and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// `clCreateBuffer` calls.
    pub created: usize,
    /// Requests served from the cache.
    pub reused: usize,
}

/// A buffer from the pool; returns to it when dropped.
pub struct PooledBuffer {
    buf: Option<Buffer<u8>>,
    bytes: usize,
    pool: Arc<BufferPool>,
}

impl PooledBuffer {
    /// The OpenCL buffer.
    pub fn buffer(&self) -> &Buffer<u8> {
        self.buf.as_ref().expect("buffer present until drop")
    }
    /// The OpenCL buffer, for writing before it is shared.
    pub fn buffer_mut(&mut self) -> &mut Buffer<u8> {
        self.buf.as_mut().expect("buffer present until drop")
    }
    /// Its size in bytes (at least 4: OpenCL has no empty buffers).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.give_back(self.bytes, b);
        }
    }
}

impl BufferPool {
    /// A pool on `ctx` keeping at most `cap_bytes` of freed buffers.
    pub fn new(ctx: Arc<Context>, cap_bytes: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            ctx,
            cached: Mutex::new(Cached::default()),
            cap_bytes,
            stats: Mutex::new(PoolStats::default()),
        })
    }

    /// A buffer of at least `bytes` bytes (exactly `max(bytes, 4)`).
    pub fn get(self: &Arc<Self>, bytes: usize) -> Result<PooledBuffer, String> {
        let bytes = bytes.max(4);
        let hit = self.cached.lock().ok().and_then(|mut c| {
            let b = c.by_size.get_mut(&bytes).and_then(Vec::pop);
            if b.is_some() {
                c.bytes -= bytes;
            }
            b
        });
        let buf = match hit {
            Some(b) => {
                if let Ok(mut s) = self.stats.lock() {
                    s.reused += 1;
                }
                b
            }
            None => {
                // SAFETY: no host pointer is passed.
                let b = unsafe {
                    Buffer::<u8>::create(&self.ctx, CL_MEM_READ_WRITE, bytes, ptr::null_mut())
                }
                .map_err(|e| format!("clCreateBuffer({bytes} bytes): {e}"))?;
                if let Ok(mut s) = self.stats.lock() {
                    s.created += 1;
                }
                b
            }
        };
        Ok(PooledBuffer {
            buf: Some(buf),
            bytes,
            pool: self.clone(),
        })
    }

    fn give_back(&self, bytes: usize, b: Buffer<u8>) {
        if let Ok(mut c) = self.cached.lock() {
            if c.bytes + bytes <= self.cap_bytes {
                c.bytes += bytes;
                c.by_size.entry(bytes).or_default().push(b);
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> PoolStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }
}
