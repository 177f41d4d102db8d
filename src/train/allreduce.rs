//! Data-parallel gradient averaging: a ring all-reduce per bucket of
//! gradients, started as soon as every replica has delivered the
//! bucket, while the replicas' backward passes go on.
//!
//! ## The ring
//! [`ring_mean`] is a reduce-scatter then an all-gather around the ring
//! of replicas, each step moving one chunk per replica to its successor,
//! so each replica sends and receives `2 (K - 1) / K` of the buffer
//! whatever `K` is (the bandwidth-optimal schedule NCCL and Horovod use).
//! Here the replicas are sessions of one process, so a "send" is a copy
//! between their host buffers; the steps, chunks and order of additions
//! are those of the distributed algorithm.
//!
//! ## Buckets, their order and the communication thread
//! Like PyTorch's DistributedDataParallel, the gradients are grouped into
//! [`Buckets`] so that the reduction of the gradients the backward pass
//! produced first overlaps the rest of the backward pass:
//! - **Size.** A bucket closes at [`BucketCap::bytes`] of f32 (1 MiB, as
//!   DDP's first bucket) or at [`BucketCap::params`] parameter tensors (4),
//!   whichever comes first; a parameter larger than the cap has a bucket
//!   of its own. The tensor cap matters for small models (the digits CNN
//!   holds 150 KiB of weights in 10 tensors): on bytes alone they would
//!   make one bucket, which cannot start before the backward pass ends.
//! - **Order.** The first step fills the buckets in reverse parameter
//!   order (the training graph lists the weights roughly as the forward
//!   pass reads them, and the backward pass produces the last layers'
//!   gradients first). That step records the order in which each
//!   parameter's gradient was complete on every replica, and later steps
//!   fill the buckets in that order (DDP rebuilds its buckets once, after
//!   the first iteration, the same way). Each bucket's gradients lie next
//!   to each other in one flat buffer per replica, so a bucket is one
//!   contiguous range to reduce.
//! - **Threads.** Each replica's session runs on its own thread with
//!   [`Session::run_stream_each_output`], which hands over every output
//!   as the session's sink receives it; gradients go down a channel to one
//!   communication thread, the rest (loss, predictions, statistics) stays
//!   with the replica. The communication thread adds each gradient into
//!   its replica's buffer (divided by the micro-batches per replica, so a
//!   replica's buffer is the mean over its micro-batches) and counts, per
//!   bucket, the contributions still missing (`replicas × micro-batches ×
//!   parameters`). When a bucket's count reaches zero it runs the ring on
//!   that bucket at once; the sessions keep computing meanwhile.
//! - **Numerics.** Each element is added in the same order as when the
//!   whole gradient was reduced after the backward pass (micro-batches in
//!   order per replica, then the ring), except that chunk boundaries
//!   follow the buckets; with two replicas the result is bit-identical.
//!
//! ## What is measured
//! [`AllReduceStats`], per step: when each bucket's reduction started and
//! ended, how many gradients the replicas had delivered when it started,
//! and when the last gradient arrived (the end of the slowest replica's
//! backward pass). `hidden_ms` is the reduction time spent before that
//! moment, which the backward pass hid.
//!
//! MPI's Allreduce across hosts is not done yet (docs/training.md).

use crate::runtime::RuntimeError;
use crate::{Error, Session};
use hetflow_ops::Tensor;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

/// Replaces each of `bufs` (one per replica, equal lengths) by the
/// element-wise mean of all of them.
pub fn ring_mean<B: AsMut<[f32]>>(bufs: &mut [B]) {
    let k = bufs.len();
    if k <= 1 {
        return;
    }
    let n = bufs[0].as_mut().len();
    debug_assert!(bufs.iter_mut().all(|b| b.as_mut().len() == n));
    let bounds: Vec<(usize, usize)> = (0..k).map(|c| (c * n / k, (c + 1) * n / k)).collect();
    // Reduce-scatter: at step s, replica r sends chunk (r - s) mod k to
    // r + 1, which adds it to its own. After k - 1 steps replica r holds
    // the sum of chunk (r + 1) mod k.
    for s in 0..k - 1 {
        let sent: Vec<Vec<f32>> = (0..k)
            .map(|r| {
                let (lo, hi) = bounds[(r + k - s) % k];
                bufs[r].as_mut()[lo..hi].to_vec()
            })
            .collect();
        for (r, chunk) in sent.into_iter().enumerate() {
            let dst = (r + 1) % k;
            let (lo, hi) = bounds[(r + k - s) % k];
            for (a, b) in bufs[dst].as_mut()[lo..hi].iter_mut().zip(chunk) {
                *a += b;
            }
        }
    }
    // All-gather: at step s, replica r sends its complete chunk
    // (r + 1 - s) mod k to r + 1, which overwrites its own.
    for s in 0..k - 1 {
        let sent: Vec<Vec<f32>> = (0..k)
            .map(|r| {
                let (lo, hi) = bounds[(r + 1 + k - s) % k];
                bufs[r].as_mut()[lo..hi].to_vec()
            })
            .collect();
        for (r, chunk) in sent.into_iter().enumerate() {
            let dst = (r + 1) % k;
            let (lo, hi) = bounds[(r + 1 + k - s) % k];
            bufs[dst].as_mut()[lo..hi].copy_from_slice(&chunk);
        }
    }
    let inv = 1.0 / k as f32;
    for b in bufs.iter_mut() {
        b.as_mut().iter_mut().for_each(|v| *v *= inv);
    }
}

/// When a bucket closes (module docs, "Size").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketCap {
    /// Most bytes of f32 gradients in a bucket (a larger parameter gets a
    /// bucket of its own).
    pub bytes: usize,
    /// Most parameter tensors in a bucket (at least 1).
    pub params: usize,
}

impl Default for BucketCap {
    fn default() -> Self {
        BucketCap {
            bytes: 1 << 20,
            params: 4,
        }
    }
}

/// The parameters' gradients grouped into buckets, laid out in one flat
/// buffer bucket after bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    /// Each bucket's parameters (indices into the trainer's weights), in
    /// the order they lie in the buffer.
    pub params: Vec<Vec<usize>>,
    /// Each bucket's elements in the flat buffer.
    pub elements: Vec<Range<usize>>,
    /// Each parameter's offset in the flat buffer, and its bucket.
    at: Vec<(usize, usize)>,
}

impl Buckets {
    /// Fills buckets with the parameters of `sizes` (elements each) taken
    /// in `order` (a permutation of the indices), closing a bucket when
    /// the next parameter would break `cap`.
    pub fn new(sizes: &[usize], order: &[usize], cap: BucketCap) -> Buckets {
        debug_assert_eq!(order.len(), sizes.len());
        let mut b = Buckets {
            params: Vec::new(),
            elements: Vec::new(),
            at: vec![(0, 0); sizes.len()],
        };
        let (mut cur, mut start, mut end) = (Vec::new(), 0, 0);
        for &p in order {
            let full = cur.len() >= cap.params.max(1)
                || (end - start + sizes[p]) * std::mem::size_of::<f32>() > cap.bytes;
            if !cur.is_empty() && full {
                b.params.push(std::mem::take(&mut cur));
                b.elements.push(start..end);
                start = end;
            }
            b.at[p] = (end, b.params.len());
            cur.push(p);
            end += sizes[p];
        }
        if !cur.is_empty() {
            b.params.push(cur);
            b.elements.push(start..end);
        }
        b
    }

    /// How many buckets.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there is no bucket (no parameter).
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Elements of the flat buffer.
    pub fn total(&self) -> usize {
        self.elements.last().map(|r| r.end).unwrap_or(0)
    }
}

/// One bucket's reduction in a step (times in ms from the step's start).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BucketStats {
    /// Its parameters.
    pub params: Vec<usize>,
    /// Its gradient elements.
    pub elements: usize,
    /// When its ring all-reduce started.
    pub start_ms: f64,
    /// When it ended.
    pub end_ms: f64,
    /// Gradient tensors the replicas' sessions had delivered when it
    /// started; below [`AllReduceStats::gradients`], the reduction began
    /// before the last gradient of the step existed.
    pub delivered_at_start: usize,
}

/// What one data-parallel step's exchange measured (times in ms from the
/// step's start).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllReduceStats {
    /// Replicas.
    pub replicas: usize,
    /// Micro-batches per replica.
    pub microbatches: usize,
    /// The buckets, in the order they were reduced.
    pub buckets: Vec<BucketStats>,
    /// Gradient tensors a step delivers (replicas × micro-batches ×
    /// parameters).
    pub gradients: usize,
    /// When the last gradient arrived: the end of the slowest replica's
    /// backward pass.
    pub backward_end_ms: f64,
    /// When the last reduction ended.
    pub end_ms: f64,
    /// Time spent in reductions.
    pub reduce_ms: f64,
    /// The part of `reduce_ms` before `backward_end_ms`: hidden behind the
    /// backward pass.
    pub hidden_ms: f64,
}

impl AllReduceStats {
    /// Share of the reduction time hidden behind the backward pass.
    pub fn hidden_fraction(&self) -> f64 {
        if self.reduce_ms > 0.0 {
            self.hidden_ms / self.reduce_ms
        } else {
            0.0
        }
    }

    /// Whether some bucket's reduction began before the last gradient
    /// arrived.
    pub fn overlapped(&self) -> bool {
        self.buckets
            .iter()
            .any(|b| b.delivered_at_start < self.gradients)
    }
}

/// Sums over the data-parallel steps so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AllReduceTotals {
    /// Steps.
    pub steps: u64,
    /// Summed [`AllReduceStats::reduce_ms`].
    pub reduce_ms: f64,
    /// Summed [`AllReduceStats::hidden_ms`].
    pub hidden_ms: f64,
}

/// What a data-parallel step hands back to the trainer.
pub struct Replicated {
    /// Per micro-batch (replica after replica), the training graph's
    /// outputs other than the gradients (None at the gradients).
    pub per_mb: Vec<Vec<Option<Arc<Tensor>>>>,
    /// Per parameter, its gradient averaged over every micro-batch of
    /// every replica.
    pub means: Vec<Vec<f32>>,
}

/// The data-parallel exchange a trainer keeps across steps: the bucket
/// cap, the bucket order learned from the first step, and what the steps
/// measured (module docs).
#[derive(Clone, Debug, Default)]
pub struct DataParallel {
    /// When a bucket closes.
    pub cap: BucketCap,
    /// The order the buckets are filled in, once learned.
    order: Option<Vec<usize>>,
    last: Option<AllReduceStats>,
    totals: AllReduceTotals,
}

/// One gradient from a replica's sink.
struct Grad {
    replica: usize,
    param: usize,
    values: Arc<Tensor>,
    at: Instant,
}

/// What the communication thread hands back.
struct Exchanged {
    /// Replica 0's flat buffer (every replica's holds the same means).
    flat: Vec<f32>,
    /// Parameters in the order their gradients were complete.
    arrival: Vec<usize>,
    stats: AllReduceStats,
    /// Gradients that never came (a replica failed).
    missing: usize,
}

fn err(m: impl Into<String>) -> Error {
    Error::Setting(m.into())
}

impl DataParallel {
    /// What the last step measured.
    pub fn last(&self) -> Option<&AllReduceStats> {
        self.last.as_ref()
    }

    /// Sums over the steps so far.
    pub fn totals(&self) -> AllReduceTotals {
        self.totals
    }

    /// The buckets the next step uses for parameters of `sizes`.
    pub fn buckets(&self, sizes: &[usize]) -> Buckets {
        let order = match &self.order {
            Some(o) if o.len() == sizes.len() => o.clone(),
            _ => (0..sizes.len()).rev().collect(),
        };
        Buckets::new(sizes, &order, self.cap)
    }

    /// One step: replica `r` runs `feeds`' `r`-th share (the feeds split
    /// evenly, in order) on `sessions[r]`, all at once; the outputs in
    /// `grads` are the gradients of parameters of `sizes`, reduced bucket
    /// by bucket as they arrive (module docs). An error of any replica is
    /// returned after every replica has stopped.
    pub fn step(
        &mut self,
        sessions: Vec<&mut Session>,
        feeds: Vec<Vec<Arc<Tensor>>>,
        grads: Range<usize>,
        sizes: &[usize],
    ) -> Result<Replicated, Error> {
        let k = sessions.len();
        if k == 0 || feeds.is_empty() || !feeds.len().is_multiple_of(k) {
            return Err(err(format!(
                "{} micro-batches do not split over {k} replica(s)",
                feeds.len()
            )));
        }
        let per = feeds.len() / k;
        let buckets = self.buckets(sizes);
        let start = Instant::now();
        let delivered = AtomicUsize::new(0);
        let (tx, rx) = mpsc::channel::<Grad>();
        let mut rest = feeds.into_iter();
        let shards: Vec<Vec<Vec<Arc<Tensor>>>> =
            (0..k).map(|_| rest.by_ref().take(per).collect()).collect();
        let (results, exchanged) = std::thread::scope(|s| {
            let (buckets, delivered) = (&buckets, &delivered);
            let comm = s.spawn(move || exchange(rx, buckets, sizes, k, per, delivered, start));
            let replicas: Vec<_> = sessions
                .into_iter()
                .zip(shards)
                .enumerate()
                .map(|(r, (session, f))| {
                    let (tx, grads) = (tx.clone(), grads.clone());
                    s.spawn(move || replica(session, f, r, grads, tx, delivered))
                })
                .collect();
            drop(tx);
            let results: Vec<Result<_, Error>> = replicas
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(err("a replica's thread panicked")))
                })
                .collect();
            let exchanged = comm
                .join()
                .unwrap_or_else(|_| Err(err("the all-reduce thread panicked")));
            (results, exchanged)
        });
        // The exchange's own error first (the replicas then only saw it
        // stop), then a replica's (the exchange then only missed its
        // gradients).
        let done = exchanged?;
        let mut per_mb = Vec::with_capacity(k * per);
        for r in results {
            per_mb.extend(r?);
        }
        if done.missing > 0 {
            return Err(err(format!(
                "the replicas delivered {} of {} gradients",
                done.stats.gradients - done.missing,
                done.stats.gradients
            )));
        }
        let means = (0..sizes.len())
            .map(|p| {
                let at = buckets.at[p].0;
                done.flat[at..at + sizes[p]].to_vec()
            })
            .collect();
        if self.order.is_none() {
            self.order = Some(done.arrival);
        }
        self.totals.steps += 1;
        self.totals.reduce_ms += done.stats.reduce_ms;
        self.totals.hidden_ms += done.stats.hidden_ms;
        self.last = Some(done.stats);
        Ok(Replicated { per_mb, means })
    }
}

/// Runs one replica's micro-batches, sending each gradient to the
/// communication thread as its session's sink receives it; returns the
/// other outputs per micro-batch.
fn replica(
    session: &mut Session,
    feeds: Vec<Vec<Arc<Tensor>>>,
    r: usize,
    grads: Range<usize>,
    tx: mpsc::Sender<Grad>,
    delivered: &AtomicUsize,
) -> Result<Vec<Vec<Option<Arc<Tensor>>>>, Error> {
    let n = session.graph().outputs.len();
    let mut per_mb = vec![vec![None; n]; feeds.len()];
    session.run_stream_each_output(feeds, |mb, slot, values| {
        if grads.contains(&slot) {
            delivered.fetch_add(1, Ordering::SeqCst);
            let g = Grad {
                replica: r,
                param: slot - grads.start,
                values,
                at: Instant::now(),
            };
            tx.send(g)
                .map_err(|_| RuntimeError::Stopped("the all-reduce thread stopped".into()))?;
        } else if let Some(o) = per_mb.get_mut(mb).and_then(|o| o.get_mut(slot)) {
            *o = Some(values);
        }
        Ok(())
    })?;
    Ok(per_mb)
}

/// The communication thread: accumulates the gradients into one flat
/// buffer per replica and reduces each bucket once it is complete.
fn exchange(
    rx: mpsc::Receiver<Grad>,
    buckets: &Buckets,
    sizes: &[usize],
    k: usize,
    per: usize,
    delivered: &AtomicUsize,
    start: Instant,
) -> Result<Exchanged, Error> {
    let ms = |t: Instant| t.saturating_duration_since(start).as_secs_f64() * 1e3;
    let mut bufs = vec![vec![0f32; buckets.total()]; k];
    let mut param_left = vec![k * per; sizes.len()];
    let mut bucket_left: Vec<usize> = buckets.params.iter().map(|p| p.len() * k * per).collect();
    let mut arrival = Vec::with_capacity(sizes.len());
    let mut stats = AllReduceStats {
        replicas: k,
        microbatches: per,
        gradients: k * per * sizes.len(),
        ..AllReduceStats::default()
    };
    let mut last = start;
    for g in rx {
        last = last.max(g.at);
        let (at, b) = buckets.at[g.param];
        let dst = &mut bufs[g.replica][at..at + sizes[g.param]];
        let add = |src: &[f32], dst: &mut [f32]| {
            for (a, v) in dst.iter_mut().zip(src) {
                *a += v / per as f32;
            }
        };
        match g.values.as_slice::<f32>() {
            Ok(v) if v.len() == dst.len() => add(v, dst),
            Err(_) if g.values.len() == dst.len() => add(&g.values.to_f32_vec(), dst),
            _ => {
                return Err(err(format!(
                    "the gradient of parameter {} has {} elements, its weight {}",
                    g.param,
                    g.values.len(),
                    dst.len()
                )))
            }
        }
        if param_left[g.param] == 0 {
            return Err(err(format!(
                "parameter {}'s gradient arrived too often",
                g.param
            )));
        }
        param_left[g.param] -= 1;
        if param_left[g.param] == 0 {
            arrival.push(g.param);
        }
        bucket_left[b] -= 1;
        if bucket_left[b] == 0 {
            let (t0, seen) = (Instant::now(), delivered.load(Ordering::SeqCst));
            let range = buckets.elements[b].clone();
            let mut views: Vec<&mut [f32]> =
                bufs.iter_mut().map(|v| &mut v[range.clone()]).collect();
            ring_mean(&mut views);
            stats.buckets.push(BucketStats {
                params: buckets.params[b].clone(),
                elements: range.len(),
                start_ms: ms(t0),
                end_ms: ms(Instant::now()),
                delivered_at_start: seen,
            });
        }
    }
    stats.backward_end_ms = ms(last);
    for b in &stats.buckets {
        stats.reduce_ms += b.end_ms - b.start_ms;
        stats.hidden_ms += (b.end_ms.min(stats.backward_end_ms) - b.start_ms).max(0.0);
        stats.end_ms = stats.end_ms.max(b.end_ms);
    }
    Ok(Exchanged {
        flat: bufs.swap_remove(0),
        arrival,
        stats,
        missing: bucket_left.iter().sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::{ring_mean, BucketCap, Buckets};

    #[test]
    fn every_replica_ends_with_the_mean() {
        for k in 1..=5 {
            for n in [0, 1, 3, 7, 64] {
                let mut bufs: Vec<Vec<f32>> = (0..k)
                    .map(|r| (0..n).map(|i| (r * 100 + i) as f32).collect())
                    .collect();
                let want: Vec<f64> = (0..n)
                    .map(|i| (0..k).map(|r| (r * 100 + i) as f64).sum::<f64>() / k as f64)
                    .collect();
                ring_mean(&mut bufs);
                for b in &bufs {
                    for (a, w) in b.iter().zip(&want) {
                        assert!((*a as f64 - w).abs() < 1e-3, "k={k} n={n}: {a} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_bucket_of_a_buffer_is_reduced_alone() {
        let mut bufs: Vec<Vec<f32>> = (0..3).map(|r| vec![r as f32; 10]).collect();
        let mut views: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[2..7]).collect();
        ring_mean(&mut views);
        for (r, b) in bufs.iter().enumerate() {
            for (i, v) in b.iter().enumerate() {
                let want = if (2..7).contains(&i) { 1.0 } else { r as f32 };
                assert_eq!(*v, want, "replica {r} element {i}");
            }
        }
    }

    #[test]
    fn buckets_close_at_the_tensor_or_the_byte_cap() {
        let sizes = [10, 1000, 20, 30, 40, 50];
        let order: Vec<usize> = (0..6).rev().collect();
        let cap = |bytes, params| BucketCap { bytes, params };
        // Two tensors a bucket.
        let b = Buckets::new(&sizes, &order, cap(1 << 20, 2));
        assert_eq!(b.params, [vec![5, 4], vec![3, 2], vec![1, 0]]);
        assert_eq!(b.elements, [0..90, 90..140, 140..1150]);
        assert_eq!(b.total(), 1150);
        // 400 bytes: parameter 1 (4000 bytes) alone, the rest by bytes.
        let b = Buckets::new(&sizes, &order, cap(400, 10));
        assert_eq!(b.params, [vec![5, 4], vec![3, 2], vec![1], vec![0]]);
        // The default: 1 MiB or 4 tensors; a learned order is followed.
        let b = Buckets::new(&sizes, &[1, 0, 2, 3, 4, 5], BucketCap::default());
        assert_eq!(b.params, [vec![1, 0, 2, 3], vec![4, 5]]);
        assert_eq!(b.at[1], (0, 0));
        assert_eq!(b.at[0], (1000, 0));
        assert_eq!(b.at[5], (1100, 1));
        // A zero tensor cap still takes one tensor a bucket.
        assert_eq!(Buckets::new(&sizes, &order, cap(1 << 20, 0)).len(), 6);
    }
}
