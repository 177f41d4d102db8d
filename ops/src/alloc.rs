//! [`AlignedAlloc`]: a global allocator that aligns large blocks for the
//! kernels.
//!
//! Host tensors are plain `Vec`s, so their storage is as aligned as the
//! element type asks: 4 bytes for f32, which glibc's `malloc` rounds up to
//! 16. A 64-byte vector load from such a buffer straddles two cache lines
//! three times in four, and where a buffer starts depends on what the heap
//! held before. onnxruntime aligns its buffers to 64 bytes.
//!
//! `AlignedAlloc` wraps the system allocator and starts every block of at
//! least [`LINE_FROM`] bytes on a 64-byte cache line. Smaller blocks go to
//! the system allocator unchanged. The alignment is a function of the
//! block's size and requested alignment alone, so `dealloc` and `realloc`
//! rebuild the layout `alloc` used.
//!
//! Why not 4 KiB pages: page-aligned activations all start at the same
//! offset within a page, and a kernel that reads one while it writes
//! another at the same index then stalls on false store-to-load
//! dependencies (4K aliasing). With large blocks on pages, the ResNet
//! basic block of the small-model set went from 1.9 to 2.6 ms at two
//! threads. Measured (docs/benchmarks.md, "Aligned buffers"): ResNet-50
//! at one thread 80.3 -> 77.6 ms, at two 39.0-40.1 -> 38.0-38.7 ms.
//!
//! The `hetflow` binary installs it. A program that embeds hetflow opts in
//! with one line (a library cannot choose the global allocator for its
//! users):
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: hetflow::AlignedAlloc = hetflow::AlignedAlloc;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this many bytes are aligned to a 64-byte line.
pub const LINE_FROM: usize = 4 * 1024;

/// The system allocator with large blocks aligned (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlignedAlloc;

/// The layout a block of `l` is allocated with.
#[inline]
fn widen(l: Layout) -> Layout {
    if l.size() < LINE_FROM || l.align() >= 64 {
        return l;
    }
    // A size too large to round up to 64 keeps its layout (the system
    // allocator refuses it anyway).
    Layout::from_size_align(l.size(), 64).unwrap_or(l)
}

// SAFETY: every call goes to `System` with the layout `widen` gives, which
// is a pure function of the caller's layout, so each block is freed or
// resized with the layout it was allocated with; a widened layout only
// asks for more alignment, which satisfies the caller's.
unsafe impl GlobalAlloc for AlignedAlloc {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, with a stricter alignment.
        unsafe { System.alloc(widen(l)) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(widen(l)) }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` with `widen(l)`.
        unsafe { System.dealloc(p, widen(l)) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `l.align()` is a
        // valid layout.
        let nl = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        let (old, new) = (widen(l), widen(nl));
        if old.align() == new.align() {
            // SAFETY: `p` was allocated with `old`; the new size keeps its
            // alignment class.
            return unsafe { System.realloc(p, old, new_size) };
        }
        // The block changes alignment class: move it.
        // SAFETY: `nl` is valid (above).
        let q = unsafe { self.alloc(nl) };
        if !q.is_null() {
            // SAFETY: both blocks hold at least the smaller size and are
            // distinct; `p` is freed with its own layout.
            unsafe {
                std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                self.dealloc(p, l);
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<T>(size: usize, align: usize, f: impl FnOnce(*mut u8) -> T) -> T {
        let l = Layout::from_size_align(size, align).expect("layout");
        // SAFETY: a non-zero size; freed with the same layout.
        let p = unsafe { AlignedAlloc.alloc(l) };
        assert!(!p.is_null(), "{size} bytes");
        let r = f(p);
        unsafe { AlignedAlloc.dealloc(p, l) };
        r
    }

    #[test]
    fn large_blocks_are_aligned_and_small_ones_as_asked() {
        for (size, want) in [
            (8, 4),
            (LINE_FROM - 1, 4),
            (LINE_FROM, 64),
            (100_000, 64),
            (5 << 20, 64),
        ] {
            for _ in 0..8 {
                with(size, 4, |p| {
                    assert_eq!(p as usize % want, 0, "{size} bytes at {p:p}");
                });
            }
        }
        // A stricter alignment asked for is kept.
        with(LINE_FROM, 8192, |p| assert_eq!(p as usize % 8192, 0));
    }

    #[test]
    fn realloc_keeps_contents_across_alignment_classes() {
        let sizes = [100, LINE_FROM + 8, 3 * LINE_FROM, 1 << 20, 64, 5 << 20];
        let l = Layout::from_size_align(16, 4).expect("layout");
        // SAFETY: sizes are non-zero; each block is resized with the layout
        // it has and freed with its last one.
        unsafe {
            let mut p = AlignedAlloc.alloc(l);
            for i in 0..16 {
                *p.add(i) = i as u8;
            }
            let mut size = 16;
            for &n in &sizes {
                p = AlignedAlloc.realloc(p, Layout::from_size_align(size, 4).unwrap(), n);
                assert!(!p.is_null());
                for i in 0..16 {
                    assert_eq!(*p.add(i), i as u8, "byte {i} after {size} -> {n}");
                }
                let want = widen(Layout::from_size_align(n, 4).unwrap()).align();
                assert_eq!(p as usize % want, 0, "{n} bytes");
                size = n;
            }
            AlignedAlloc.dealloc(p, Layout::from_size_align(size, 4).unwrap());
        }
    }

    #[test]
    fn zeroed_blocks_are_zero() {
        let l = Layout::from_size_align(1 << 20, 4).expect("layout");
        // SAFETY: as in `with`.
        unsafe {
            let p = AlignedAlloc.alloc_zeroed(l);
            assert!(!p.is_null());
            assert!(std::slice::from_raw_parts(p, 1 << 20)
                .iter()
                .all(|&b| b == 0));
            assert_eq!(p as usize % 64, 0);
            AlignedAlloc.dealloc(p, l);
        }
    }
}
