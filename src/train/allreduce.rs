//! The ring all-reduce that averages data-parallel replicas' gradients:
//! a reduce-scatter then an all-gather around the ring of replicas, each
//! step moving one chunk per replica to its successor, so each replica
//! sends and receives `2 (K - 1) / K` of the buffer whatever `K` is (the
//! bandwidth-optimal schedule NCCL and Horovod use).
//!
//! Here the replicas are sessions of one process, so a "send" is a copy
//! between their host buffers; the steps, chunks and order of additions
//! are those of the distributed algorithm. It runs after the backward
//! pass, on the whole gradient (one bucket): starting buckets while the
//! backward pass still runs, and MPI's Allreduce across hosts, are not
//! done yet (docs/training.md).

/// Replaces each of `bufs` (one per replica, equal lengths) by the
/// element-wise mean of all of them.
pub fn ring_mean(bufs: &mut [Vec<f32>]) {
    let k = bufs.len();
    if k <= 1 {
        return;
    }
    let n = bufs[0].len();
    debug_assert!(bufs.iter().all(|b| b.len() == n));
    let bounds: Vec<(usize, usize)> = (0..k).map(|c| (c * n / k, (c + 1) * n / k)).collect();
    // Reduce-scatter: at step s, replica r sends chunk (r - s) mod k to
    // r + 1, which adds it to its own. After k - 1 steps replica r holds
    // the sum of chunk (r + 1) mod k.
    for s in 0..k - 1 {
        let sent: Vec<Vec<f32>> = (0..k)
            .map(|r| {
                let (lo, hi) = bounds[(r + k - s) % k];
                bufs[r][lo..hi].to_vec()
            })
            .collect();
        for (r, chunk) in sent.into_iter().enumerate() {
            let dst = (r + 1) % k;
            let (lo, hi) = bounds[(r + k - s) % k];
            for (a, b) in bufs[dst][lo..hi].iter_mut().zip(chunk) {
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
                bufs[r][lo..hi].to_vec()
            })
            .collect();
        for (r, chunk) in sent.into_iter().enumerate() {
            let dst = (r + 1) % k;
            let (lo, hi) = bounds[(r + 1 + k - s) % k];
            bufs[dst][lo..hi].copy_from_slice(&chunk);
        }
    }
    let inv = 1.0 / k as f32;
    for b in bufs.iter_mut() {
        b.iter_mut().for_each(|v| *v *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::ring_mean;

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
}
