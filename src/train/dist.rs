//! Data parallelism across the ranks of a job: `hetflow launch --np N --
//! train ...` (or a hostfile), one process per host, each a replica.
//!
//! Every rank holds the same model and weights and walks the same shuffled
//! batches (same seed). Of each global batch of `B` samples, rank `r` of
//! `W` takes rows `r·B/W .. (r+1)·B/W` (so `B` must split evenly; within
//! a rank, `--replicas` and `--microbatches` split the shard further).
//! After its backward pass a rank has the mean gradient of its shard; one
//! all-reduce over the job ([`Ranks::sum`]: MPI's `Iallreduce` under
//! `mpirun`, run on the hub's communication thread) sums, in one buffer,
//! the gradients, the running statistics (BatchNorm), the loss and the
//! accuracy; each rank divides by `W` and applies the same optimizer step,
//! so the weights stay identical on every rank without ever being sent.
//! The result equals one process training the whole batch with `W`
//! replicas (tests/mpi.rs, tests/train.rs).
//!
//! One all-reduce per step, after the local backward pass: the buckets
//! that overlap the backward pass run between the replicas of one host
//! (`allreduce.rs`); across hosts the step waits for the sum.

use crate::Error;
use hetflow_ops::Tensor;

/// The ranks of a data-parallel job, as the trainer sees them.
pub trait Ranks: Send + Sync {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// The element-wise sum of `v` over all ranks (a collective: every
    /// rank calls it, in the same order, with one length).
    fn sum(&self, v: Vec<f32>) -> Result<Vec<f32>, Error>;
}

impl Ranks for hetflow_runtime::net::Hub {
    fn rank(&self) -> usize {
        hetflow_runtime::net::Hub::rank(self)
    }
    fn size(&self) -> usize {
        hetflow_runtime::net::Hub::size(self)
    }
    fn sum(&self, v: Vec<f32>) -> Result<Vec<f32>, Error> {
        Ok(self.allreduce_sum(v)?)
    }
}

/// A rank's share of a global batch: rows `r·n/W .. (r+1)·n/W` of `x` and
/// `y`; `None` outside a job (or in a job of one rank).
pub fn shard(
    ranks: Option<&dyn Ranks>,
    x: &Tensor,
    y: &Tensor,
) -> Result<Option<(Tensor, Tensor)>, Error> {
    let Some(r) = ranks.filter(|r| r.size() > 1) else {
        return Ok(None);
    };
    let n = x.shape().first().copied().unwrap_or(0);
    let w = r.size();
    if n % w != 0 {
        return Err(Error::Setting(format!(
            "a batch of {n} does not split evenly over {w} ranks (pick --batch as a multiple of {w})"
        )));
    }
    let part = n / w;
    let rows = |t: &Tensor| -> Result<Tensor, Error> {
        let mut shape = t.shape().to_vec();
        shape[0] = part;
        super::batch::rows(t, r.rank() * part, part, &shape)
    };
    Ok(Some((rows(x)?, rows(y)?)))
}

/// What a rank computed on its shard, and what the job agrees on.
pub struct StepSums {
    /// The flat gradient (mean over the samples).
    pub grads: Vec<f32>,
    /// The running statistics, each flattened.
    pub stats: Vec<Vec<f64>>,
    /// Mean loss.
    pub loss: f64,
    /// Accuracy (NaN when the loss has none).
    pub accuracy: f64,
    /// Samples.
    pub samples: usize,
}

/// Averages a rank's step over the job: one all-reduce of gradients,
/// statistics, loss and accuracy (equal shards, so the mean of the ranks'
/// means is the global mean). Unchanged outside a job.
pub fn combine(ranks: Option<&dyn Ranks>, mine: StepSums) -> Result<StepSums, Error> {
    let Some(r) = ranks.filter(|r| r.size() > 1) else {
        return Ok(mine);
    };
    let w = r.size();
    let (ng, stat_lens) = (
        mine.grads.len(),
        mine.stats.iter().map(Vec::len).collect::<Vec<_>>(),
    );
    let mut buf = mine.grads;
    for s in &mine.stats {
        buf.extend(s.iter().map(|&v| v as f32));
    }
    let has_acc = mine.accuracy.is_finite();
    buf.push(mine.loss as f32);
    buf.push(if has_acc { mine.accuracy as f32 } else { 0.0 });
    let expect = buf.len();
    let sum = r.sum(buf)?;
    if sum.len() != expect {
        return Err(Error::Setting(format!(
            "all-reduce returned {} values for {expect}",
            sum.len()
        )));
    }
    let inv = 1.0 / w as f32;
    let grads: Vec<f32> = sum[..ng].iter().map(|v| v * inv).collect();
    let mut at = ng;
    let mut stats = Vec::with_capacity(stat_lens.len());
    for len in stat_lens {
        stats.push(
            sum[at..at + len]
                .iter()
                .map(|&v| f64::from(v) / w as f64)
                .collect(),
        );
        at += len;
    }
    Ok(StepSums {
        grads,
        stats,
        loss: f64::from(sum[at]) / w as f64,
        accuracy: if has_acc {
            f64::from(sum[at + 1]) / w as f64
        } else {
            f64::NAN
        },
        samples: mine.samples * w,
    })
}
