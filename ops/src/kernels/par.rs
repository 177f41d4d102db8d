//! The kernels' parallel plumbing: the thread count a kernel may use, a
//! buffer that parallel pieces write in disjoint parts, and the loops that
//! split work over the current [`super::team::Team`] (the CPU device's
//! threads) or, without one, the current rayon pool (the TPU device's
//! host threads, the tests' pools): [`par_for`] and what is built on it.
//! Every parallel loop of the kernels goes through [`par_for`]. Kernels
//! reach these through `kernels::util`.

use rayon::prelude::*;

/// Element count above which element-wise kernels go parallel.
pub(crate) const PAR_MIN: usize = 1 << 16;

/// A mutable buffer that parallel tasks write through in disjoint parts,
/// including interleaved ones (column blocks of a row-major matrix) that
/// `split_at_mut` cannot express. Creating it borrows the buffer for `'a`.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<'a, F> {
    ptr: *mut F,
    len: usize,
    _buf: std::marker::PhantomData<&'a mut [F]>,
}

// SAFETY: the handle only hands out raw pointers and, through the unsafe
// `slice`, views whose callers guarantee disjointness.
unsafe impl<F: Send> Send for SharedMut<'_, F> {}
unsafe impl<F: Send> Sync for SharedMut<'_, F> {}

impl<'a, F> SharedMut<'a, F> {
    pub(crate) fn new(buf: &'a mut [F]) -> Self {
        SharedMut {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: std::marker::PhantomData,
        }
    }
    /// A handle over `len` elements at `ptr`, which need not be
    /// initialised: writers use [`SharedMut::ptr_at`] (never `slice`)
    /// until each element is written.
    ///
    /// # Safety
    /// `ptr` is valid for writes of `len` elements for `'a`, and nothing
    /// else accesses them meanwhile except through this handle.
    pub(crate) unsafe fn from_raw(ptr: *mut F, len: usize) -> Self {
        SharedMut {
            ptr,
            len,
            _buf: std::marker::PhantomData,
        }
    }
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    /// Pointer to element `off` (at most one past the end).
    pub(crate) fn ptr_at(&self, off: usize) -> *mut F {
        assert!(
            off <= self.len,
            "offset {off} past a buffer of {}",
            self.len
        );
        // SAFETY: in bounds (or one past the end), checked above.
        unsafe { self.ptr.add(off) }
    }
    /// The `n` elements from `off`.
    ///
    /// # Safety
    /// Nothing else reads or writes them while the view lives.
    pub(crate) unsafe fn slice(&self, off: usize, n: usize) -> &'a mut [F] {
        assert!(
            off + n <= self.len,
            "{off}+{n} past a buffer of {}",
            self.len
        );
        std::slice::from_raw_parts_mut(self.ptr.add(off), n)
    }
}

/// Threads a kernel may use: those of the team current on this thread
/// (1 inside a piece of a parallel loop), else those of the rayon pool it
/// runs in, and 1 outside both. Kernels never spill onto rayon's global
/// pool, so a device's thread count is the whole of its parallelism.
pub(crate) fn threads() -> usize {
    if let Some(n) = super::team::current_threads() {
        n
    } else if super::team::in_piece() {
        1
    } else if rayon::current_thread_index().is_some() {
        rayon::current_num_threads()
    } else {
        1
    }
}

/// Runs `f` on disjoint pieces covering `0..n` (none shorter than
/// `min_len` but the last; one per thread on a team, at most eight per
/// thread in a rayon pool) on the current team or pool, and returns when
/// every piece has run.
///
/// The crate's parallel loops go through here, and it is not generic, so
/// rayon's splitting and job code is compiled once rather than once per
/// kernel closure: before this, those copies (2,331 of rayon's `join`
/// alone) were over half of the crate's LLVM IR and of its build time
/// (`cargo llvm-lines -p hetflow-ops --lib --release`, 2026-12-03). The
/// price is one indirect call per piece.
pub(crate) fn par_for(n: usize, min_len: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    if n == 0 {
        return;
    }
    let t = threads();
    let team = super::team::current_threads().is_some();
    // On a team, one contiguous piece per thread: each core then works on
    // its own part of the data, op after op. Eight pieces per thread,
    // claimed as they come, interleaved the two cores' parts and ran
    // SqueezeNet's convs slower on two threads than on one (8.7 → 10.7 ms
    // a run; one piece per thread: 5.5 ms). Rayon's splitting in halves
    // keeps parts contiguous by itself.
    let pieces = (n / min_len.max(1)).clamp(1, if team { t } else { 8 * t });
    let per = n.div_ceil(pieces);
    let count = n.div_ceil(per);
    let piece = |p: usize| f(p * per..((p + 1) * per).min(n));
    if t == 1 || count == 1 {
        (0..count).for_each(piece);
    } else if team {
        super::team::broadcast(count, &piece);
    } else {
        (0..count).into_par_iter().for_each(piece);
    }
}

/// [`par_for`] with one piece per thread: `0..n` cut into
/// `min(n, threads)` contiguous ranges. (The natural-looking
/// `par_for(n, n.div_ceil(t), ..)` asks for pieces of at least
/// `ceil(n / t)` items, which an odd `n` cannot give twice on two
/// threads: it ran as one piece, on one thread.)
pub(crate) fn par_split(n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    par_for(n, (n / threads()).max(1), f)
}

/// [`par_for`] over `0..n` in pieces of at least `min_len` for a function
/// that can fail: the first error (of the pieces that ran) is returned.
pub(crate) fn par_try_for(
    n: usize,
    min_len: usize,
    f: &(dyn Fn(std::ops::Range<usize>) -> crate::error::Result<()> + Sync),
) -> crate::error::Result<()> {
    let failed = std::sync::Mutex::new(None);
    par_for(n, min_len, &|r| {
        if let Err(e) = f(r) {
            failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        }
    });
    match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `f` of every element of `a` (and of `b`, when given, element by
/// element) into a pooled vector, in parallel when large.
fn par_map_into<A, B, O>(
    a: &[A],
    b: &[B],
    f: impl Fn(&[A], &[B], &mut [std::mem::MaybeUninit<O>]) + Sync,
) -> Vec<O>
where
    A: Sync,
    B: Sync,
    O: Send + crate::pool::Poolable,
{
    let n = a.len();
    // Empty, with room for `n` (`pool::take`'s contract).
    let mut v: Vec<O> = crate::pool::take(n);
    let dst = &mut v.spare_capacity_mut()[..n];
    let two = !b.is_empty();
    if n >= PAR_MIN && threads() > 1 {
        let shared = SharedMut::new(dst);
        par_for(n, PAR_MIN / 4, &|r| {
            // SAFETY: `par_for`'s pieces are disjoint.
            let d = unsafe { shared.slice(r.start, r.len()) };
            let bs = if two { &b[r.clone()] } else { b };
            f(&a[r], bs, d)
        });
    } else {
        f(a, b, dst);
    }
    // SAFETY: every piece of `0..n` was written (`f` writes all of `d`, and
    // a panic in it would have propagated out of `par_for` before here).
    unsafe { v.set_len(n) };
    v
}

/// `f(src, dst)` over pieces of `a` and of a new vector of its length,
/// in parallel when large; `f` writes every element of `dst` (the
/// slice-at-a-time form of [`par_map`], for loops compiled per ISA).
pub(crate) fn par_map_slices<A: Sync, O: Send + crate::pool::Poolable>(
    a: &[A],
    f: impl Fn(&[A], &mut [std::mem::MaybeUninit<O>]) + Sync,
) -> Vec<O> {
    par_map_into(a, &[] as &[A], |a, _, d| f(a, d))
}

/// Applies `f` to every element, in parallel when large.
pub(crate) fn par_map<A: Copy + Sync, O: Send + crate::pool::Poolable>(
    a: &[A],
    f: impl Fn(A) -> O + Sync + Send,
) -> Vec<O> {
    par_map_into(a, &[] as &[A], |a, _, d| {
        for (d, &x) in d.iter_mut().zip(a) {
            d.write(f(x));
        }
    })
}

/// `f(a[i], b[i])` for every `i` (`a` and `b` of one length), in parallel
/// when large.
pub(crate) fn par_map2<A: Copy + Sync, B: Copy + Sync, O: Send + crate::pool::Poolable>(
    a: &[A],
    b: &[B],
    f: impl Fn(A, B) -> O + Sync + Send,
) -> Vec<O> {
    assert_eq!(a.len(), b.len(), "par_map2 operands of unlike lengths");
    par_map_into(a, b, |a, b, d| {
        for ((d, &x), &y) in d.iter_mut().zip(a).zip(b) {
            d.write(f(x, y));
        }
    })
}

/// Runs `f` over disjoint `chunk`-sized pieces of `out` (with the piece
/// index), in parallel when `work` (an element count) is large.
pub(crate) fn par_chunks<O: Send>(
    out: &mut [O],
    chunk: usize,
    work: usize,
    f: impl Fn(usize, &mut [O]) + Sync + Send,
) {
    if chunk == 0 {
        return;
    }
    if work >= PAR_MIN && threads() > 1 {
        let len = out.len();
        let shared = SharedMut::new(out);
        par_for(len.div_ceil(chunk), 1, &|r| {
            for i in r {
                let lo = i * chunk;
                // SAFETY: piece `i` is `lo..lo + chunk` (clipped), disjoint
                // from every other piece.
                f(i, unsafe { shared.slice(lo, chunk.min(len - lo)) })
            }
        });
    } else {
        out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// One piece per team member, for odd and even counts, and never an
    /// empty piece.
    #[test]
    fn par_split_gives_each_thread_a_piece() {
        let team = crate::kernels::team::Team::new(2, |i| format!("s{i}"), |_| {}).expect("team");
        for (n, want) in [(95usize, 2usize), (98, 2), (3, 2), (1, 1), (0, 0)] {
            let got = Mutex::new(Vec::new());
            team.run(|| par_split(n, &|r| got.lock().unwrap().push(r)));
            let mut got = got.into_inner().unwrap();
            got.sort_by_key(|r| r.start);
            assert_eq!(got.len(), want, "{n} items: {got:?}");
            assert!(got.iter().all(|r| !r.is_empty()));
            let covered: Vec<usize> = got.into_iter().flatten().collect();
            assert_eq!(covered, (0..n).collect::<Vec<_>>());
        }
    }
}
