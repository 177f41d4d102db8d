//! The caching buffer pool for host tensors.
//!
//! Inference runs the same shapes again and again, and every kernel output
//! is a fresh buffer. Left to the system allocator, large buffers are
//! mapped and unmapped on every run and each page is faulted in anew
//! (about 3,000 page faults per ResNet-50 run, a tenth of its time). The
//! pool keeps the storage of dropped tensors instead and hands it back to
//! the next kernel that asks for that many elements of that type:
//!
//! * [`Tensor`](crate::Tensor)'s `Drop` gives its storage back ([`give`]);
//!   kernels take output and scratch buffers with [`take`] / [`filled`].
//! * One bucket per element type, keyed by capacity; a request for `n`
//!   elements takes the smallest cached buffer of capacity `n ..= n + n/8`,
//!   so a buffer is never much larger than asked for.
//! * The pool keeps only what it lent. Each bucket counts the buffers of
//!   each capacity it has handed out and not had back; a buffer given back
//!   is cached only while that count is above zero, and anything else (the
//!   storage of a tensor a kernel built with `collect()` or `to_vec()`, a
//!   caller's input tensor) is freed. Without this rule a kernel that
//!   allocates its output outside the pool fed the pool one buffer per run
//!   that no request ever took back: a one-Softmax model grew by one output
//!   per run, to 551 MB after 4,200 runs (issue 18). With it, the bytes
//!   cached for a capacity never exceed what the pool itself allocated for
//!   it, which in steady state is the peak number of such buffers alive at
//!   once.
//! * Only buffers of at least [`MIN_BYTES`] are cached (the allocator's
//!   own free lists serve small ones well), and the pool holds at most
//!   [`limit_bytes`] in all (default 1 GiB, or `HETFLOW_POOL_MB`); buffers
//!   over the limit are freed.
//!
//! The pool is process-wide: all CPU devices share it (a per-NUMA-node pool
//! is the next step for multi-socket hosts). [`stats`] tells how well it
//! works; [`clear`] frees everything cached.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Buffers smaller than this are not cached.
pub const MIN_BYTES: usize = 16 * 1024;

/// Cached buffers of one element type, by capacity, and the count of
/// buffers lent out.
pub struct Bucket<T> {
    inner: Mutex<Lists<T>>,
}

struct Lists<T> {
    /// Cached buffers by capacity.
    free: BTreeMap<usize, Vec<Vec<T>>>,
    /// Buffers handed out and not given back, by capacity.
    lent: BTreeMap<usize, usize>,
}

impl<T> Lists<T> {
    fn lend(&mut self, cap: usize) {
        *self.lent.entry(cap).or_default() += 1;
    }
    /// Counts a buffer of `cap` back; false when the pool lent none.
    fn unlend(&mut self, cap: usize) -> bool {
        match self.lent.get_mut(&cap) {
            Some(c) if *c > 1 => {
                *c -= 1;
                true
            }
            Some(_) => {
                self.lent.remove(&cap);
                true
            }
            None => false,
        }
    }
}

impl<T> Bucket<T> {
    /// An empty bucket (usable in a `static`).
    pub const fn new() -> Bucket<T> {
        Bucket {
            inner: Mutex::new(Lists {
                free: BTreeMap::new(),
                lent: BTreeMap::new(),
            }),
        }
    }

    /// The lists (a panic elsewhere cannot leave them inconsistent: every
    /// update is a single push, pop or count).
    fn lock(&self) -> MutexGuard<'_, Lists<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T> Default for Bucket<T> {
    fn default() -> Self {
        Bucket::new()
    }
}

/// Element types with a pool bucket.
pub trait Poolable: Sized + Clone + Send + 'static {
    /// This type's bucket.
    fn bucket() -> &'static Bucket<Self>;
}

static CACHED_BYTES: AtomicUsize = AtomicUsize::new(0);
static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);
static RETURNED: AtomicU64 = AtomicU64::new(0);
static LIMIT: OnceLock<AtomicUsize> = OnceLock::new();

fn limit() -> &'static AtomicUsize {
    LIMIT.get_or_init(|| {
        let mb = std::env::var("HETFLOW_POOL_MB")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1024);
        AtomicUsize::new(mb.saturating_mul(1 << 20))
    })
}

/// The most bytes the pool keeps cached.
pub fn limit_bytes() -> usize {
    limit().load(Ordering::Relaxed)
}

/// Sets the most bytes the pool keeps (0 turns caching off); buffers
/// already cached stay until taken or [`clear`]ed.
pub fn set_limit_bytes(bytes: usize) {
    limit().store(bytes, Ordering::Relaxed);
}

/// Counters since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Requests served from the cache.
    pub hits: u64,
    /// Requests (of cacheable size) the system allocator served.
    pub misses: u64,
    /// Buffers given back and kept.
    pub returned: u64,
    /// Bytes cached now.
    pub cached_bytes: usize,
}

/// The pool's counters.
pub fn stats() -> PoolStats {
    PoolStats {
        hits: HITS.load(Ordering::Relaxed),
        misses: MISSES.load(Ordering::Relaxed),
        returned: RETURNED.load(Ordering::Relaxed),
        cached_bytes: CACHED_BYTES.load(Ordering::Relaxed),
    }
}

/// An empty vector with room for at least `n` elements, from the cache
/// when it has one of fitting capacity.
pub fn take<T: Poolable>(n: usize) -> Vec<T> {
    let mut v = take_kept(n);
    v.clear();
    v
}

/// A vector of `n` elements for a kernel that writes every element before
/// it reads any (an output the kernel overwrites, an im2col buffer): the
/// storage comes from the cache with the values its last user left in it,
/// and only elements no earlier user wrote are set, to `poison`. This
/// saves [`filled`]'s pass over the buffer, and the cache it evicts: with
/// the zero fills of ResNet-50's stem (its output and im2col buffers), the
/// MaxPool and 1x1 conv after it took 470 + 530 µs; without, 214-223 +
/// 313-327 µs, as fast as the pair alone (`hetflow bench --trace` on the
/// model's first seven nodes, an hour apart on the same machine).
///
/// Pass a value a kernel cannot mistake for a starting zero (NaN for
/// floats): a buffer is fresh, so poisoned, on the first run of every
/// shape, and a kernel that wrongly accumulated onto its output then
/// gives NaN in the tests.
pub fn stale<T: Poolable + Copy>(n: usize, poison: T) -> Vec<T> {
    let mut v = take_kept(n);
    v.truncate(n);
    v.resize(n, poison);
    v
}

/// [`take`] without clearing: the cached vector keeps the length (the
/// initialised elements) it was given back with.
fn take_kept<T: Poolable>(n: usize) -> Vec<T> {
    let size = std::mem::size_of::<T>().max(1);
    if n.saturating_mul(size) < MIN_BYTES {
        return Vec::with_capacity(n);
    }
    let mut lists = T::bucket().lock();
    let cap = lists
        .free
        .range(n..=n.saturating_add(n / 8))
        .find(|(_, v)| !v.is_empty())
        .map(|(c, _)| *c);
    let found = cap.and_then(|c| {
        let list = lists.free.get_mut(&c)?;
        let v = list.pop();
        if list.is_empty() {
            lists.free.remove(&c);
        }
        v
    });
    let v = match found {
        Some(v) => {
            HITS.fetch_add(1, Ordering::Relaxed);
            CACHED_BYTES.fetch_sub(v.capacity() * size, Ordering::Relaxed);
            v
        }
        None => {
            MISSES.fetch_add(1, Ordering::Relaxed);
            Vec::with_capacity(n)
        }
    };
    lists.lend(v.capacity());
    v
}

/// A vector of `n` copies of `value`, its storage from the cache.
pub fn filled<T: Poolable>(n: usize, value: T) -> Vec<T> {
    let mut v = take(n);
    v.resize(n, value);
    v
}

/// Gives a vector's storage to the cache (or frees it when it is small,
/// the cache is full, or the pool lent no buffer of its capacity).
pub fn give<T: Poolable>(v: Vec<T>) {
    keep(v);
}

/// [`give`], telling whether the storage was kept.
fn keep<T: Poolable>(v: Vec<T>) -> bool {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < MIN_BYTES {
        return false;
    }
    let mut lists = T::bucket().lock();
    if !lists.unlend(v.capacity()) {
        return false; // not the pool's: caching it would grow the pool by one buffer per run
    }
    let lim = limit_bytes();
    // Reserve room first so concurrent givers never overshoot the limit.
    let mut cur = CACHED_BYTES.load(Ordering::Relaxed);
    loop {
        if cur + bytes > lim {
            return false;
        }
        match CACHED_BYTES.compare_exchange_weak(
            cur,
            cur + bytes,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(now) => cur = now,
        }
    }
    // Kept with its length: those elements are initialised, which
    // `stale` relies on (`take` clears).
    lists.free.entry(v.capacity()).or_default().push(v);
    RETURNED.fetch_add(1, Ordering::Relaxed);
    true
}

fn clear_bucket<T: Poolable>() {
    let drained = std::mem::take(&mut T::bucket().lock().free);
    let bytes: usize = drained
        .values()
        .flatten()
        .map(|v| v.capacity() * std::mem::size_of::<T>())
        .sum();
    CACHED_BYTES.fetch_sub(bytes, Ordering::Relaxed);
}

/// Frees every cached buffer.
pub fn clear() {
    use half::{bf16, f16};
    clear_bucket::<f32>();
    clear_bucket::<f64>();
    clear_bucket::<f16>();
    clear_bucket::<bf16>();
    clear_bucket::<i8>();
    clear_bucket::<i16>();
    clear_bucket::<i32>();
    clear_bucket::<i64>();
    clear_bucket::<u8>();
    clear_bucket::<u16>();
    clear_bucket::<u32>();
    clear_bucket::<u64>();
    clear_bucket::<bool>();
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test so counters are not raced by other pool tests; other tests
    // in the crate may allocate through the pool concurrently, so only
    // properties of this test's own buffers are asserted.
    #[test]
    fn reuses_storage_and_respects_limits() {
        // A distinctive size no other test uses.
        let n = 123_457usize;
        let v: Vec<u64> = filled(n, 7u64);
        assert_eq!(v.len(), n);
        let ptr = v.as_ptr();
        give(v);
        // A slightly smaller request reuses the same storage, emptied.
        let w: Vec<u64> = take(n - 100);
        assert_eq!(w.as_ptr(), ptr, "storage was not reused");
        assert!(w.is_empty() && w.capacity() >= n - 100);
        give(w);
        // A much smaller request does not take the big buffer.
        let small: Vec<u64> = take(n / 2);
        assert_ne!(small.as_ptr(), ptr);
        drop(small);
        // Small buffers are never cached; a big one the pool lent is.
        assert!(!keep(Vec::<u64>::with_capacity(MIN_BYTES / 8 - 1)));
        let lent: Vec<u64> = take(n + 1);
        assert!(keep(lent));
        // Tensors give their storage back on drop.
        let t = crate::Tensor::from_vec(vec![n], vec![1u64; n]).unwrap();
        let tp = t.as_slice::<u64>().unwrap().as_ptr();
        // The earlier buffer is still cached; take it out of the way.
        let held: Vec<u64> = take(n);
        drop(t);
        let again: Vec<u64> = take(n);
        assert_eq!(again.as_ptr(), tp, "tensor storage was not recycled");
        drop((held, again));
        clear();
    }

    /// The leak of issue 18: storage the pool never lent (a kernel output
    /// built with `to_vec()`) is freed on give, so a run of such drops
    /// leaves nothing cached; storage it lent comes back.
    #[test]
    fn keeps_only_what_it_lent() {
        let n = 54_321usize; // a size no other test uses
        for _ in 0..100 {
            let foreign: Vec<u32> = vec![7; n];
            assert!(!keep(foreign), "a buffer the pool never lent was cached");
        }
        let cached = |c: usize| u32::bucket().lock().free.get(&c).map_or(0, |l| l.len());
        assert_eq!(cached(n), 0);
        // Two lent, two back; a third (foreign) one of the same size is freed.
        let (a, b): (Vec<u32>, Vec<u32>) = (take(n), take(n));
        let cap = a.capacity();
        assert!(keep(a) && keep(b));
        assert!(!keep(Vec::<u32>::with_capacity(cap)));
        assert_eq!(cached(cap), 2);
        // Tensors built from foreign storage free it on drop.
        for _ in 0..10 {
            drop(crate::Tensor::from_vec(vec![cap], vec![1u32; cap]).unwrap());
        }
        assert_eq!(cached(cap), 2);
        let (a, b): (Vec<u32>, Vec<u32>) = (take(n), take(n));
        assert_eq!(cached(cap), 0);
        drop((a, b));
    }

    /// `stale` poisons what no earlier user wrote and keeps what one did;
    /// `take` still hands out an empty vector.
    #[test]
    fn stale_poisons_only_unwritten_storage() {
        let n = 43_210usize; // a size no other test uses
        let v: Vec<i16> = stale(n, -1);
        assert_eq!(v.len(), n);
        assert!(v.iter().all(|&x| x == -1), "fresh storage not poisoned");
        // Written in part, given back: a later request sees those values
        // and the poison beyond them.
        let mut w: Vec<i16> = take(n);
        w.extend((0..n / 2).map(|i| (i % 100) as i16));
        let p = w.as_ptr();
        give(w);
        let again: Vec<i16> = stale(n, -1);
        assert_eq!(again.as_ptr(), p, "storage was not recycled");
        assert!(again[..n / 2]
            .iter()
            .enumerate()
            .all(|(i, &x)| x == (i % 100) as i16));
        assert!(again[n / 2..].iter().all(|&x| x == -1));
        give(again);
        // A shorter request from the same storage: truncated.
        let short: Vec<i16> = stale(n - n / 9, -1);
        assert_eq!(short.len(), n - n / 9);
        give(short);
        let empty: Vec<i16> = take(n);
        assert!(empty.is_empty() && empty.capacity() >= n);
        drop(empty);
    }
}
