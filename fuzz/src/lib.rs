//! Shared pieces of the fuzz targets.
//!
//! libFuzzer's `-malloc_limit_mb` needs a sanitizer's malloc hooks, which
//! a build without sanitizer (stable Rust) does not have; [`CappedAlloc`]
//! stands in for it: one allocation above [`MALLOC_LIMIT`] aborts, so
//! libFuzzer records it as a crash with the input that asked for it,
//! whether or not the pages would ever be touched (`-rss_limit_mb` only
//! sees touched pages).

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest single allocation a target may make: the same 2 GiB as the
/// `-rss_limit_mb=2048` scripts/fuzz.sh runs with. Inputs are a few KiB,
/// so anything near this is a size taken from the input unchecked.
pub const MALLOC_LIMIT: usize = 2048 << 20;

/// The system allocator, aborting on any allocation over [`MALLOC_LIMIT`].
pub struct CappedAlloc;

fn too_big(size: usize) -> ! {
    // No allocation here: the message is built on the stack.
    let mut buf =
        *b"==fuzz== allocation of 00000000000000000000 bytes exceeds MALLOC_LIMIT (2 GiB)\n";
    let mut n = size;
    for b in buf[23..43].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // SAFETY: a valid buffer written to stderr.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), buf.len());
    }
    std::process::abort();
}

// SAFETY: forwards to `System` unchanged below the limit.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MALLOC_LIMIT {
            too_big(layout.size());
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MALLOC_LIMIT {
            too_big(layout.size());
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MALLOC_LIMIT {
            too_big(new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}
