//! Concat: the inputs' pieces copied into one output from the pool, the
//! copy split over the threads when large.

use crate::error::{Error, Result};
use crate::kernels::util::{input, par_split, threads, SharedMut};
use crate::shape::{norm_axis, numel};
use crate::tensor::{Storable, Tensor};

/// Join along `axis`.
pub(crate) fn concat(axis: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let ts: Vec<&Tensor> = (0..inputs.len())
        .map(|i| input(inputs, i, &format!("inputs[{i}]")))
        .collect::<Result<_>>()?;
    let first = *ts
        .first()
        .ok_or_else(|| Error::msg("Concat needs at least one input"))?;
    let r = first.rank();
    let a = norm_axis(axis, r)?;
    let mut oshape = first.shape().to_vec();
    oshape[a] = 0;
    for (i, t) in ts.iter().enumerate() {
        if t.dtype() != first.dtype() {
            crate::bail!(
                "Concat: input {i} is {}, input 0 is {}",
                t.dtype(),
                first.dtype()
            );
        }
        let ok = t.rank() == r && (0..r).all(|d| d == a || t.shape()[d] == first.shape()[d]);
        if !ok {
            crate::bail!(
                "Concat: input {i} shape {:?} does not fit {:?} on axis {a}",
                t.shape(),
                first.shape()
            );
        }
        oshape[a] += t.shape()[a];
    }
    let outer = numel(&first.shape()[..a]);
    let inner = numel(&first.shape()[a + 1..]);
    let data = crate::dispatch_data!(first.data(), _v, T => {
        let parts: Vec<&[T]> = ts.iter().map(|t| <T as Storable>::slice(t.data()).unwrap_or(&[])).collect();
        let mut segs = Vec::with_capacity(outer * ts.len());
        let mut off = 0;
        for k in 0..outer {
            for (t, p) in ts.iter().zip(&parts) {
                let len = t.shape()[a] * inner;
                segs.push((&p[k * len..(k + 1) * len], off));
                off += len;
            }
        }
        <T as Storable>::wrap(gather_segments(&segs, off))
    });
    Tensor::new(oshape, data)
}

/// Elements per block of a split copy.
const COPY_BLOCK: usize = 4096;

/// A new vector of `total` elements made of `segs` (each a source and
/// where it goes; together they cover `0..total` once), its storage from
/// the pool. Copies of 256 KiB or more are split over the threads in
/// contiguous ranges of the output: SqueezeNet's 55x55 Concats (1.5 MB)
/// took as long on two threads as on one.
fn gather_segments<T: Storable>(segs: &[(&[T], usize)], total: usize) -> Vec<T> {
    // Every element is written below: no fill beyond a fresh buffer's.
    let mut o = crate::pool::stale(total, T::default());
    let out = SharedMut::new(&mut o);
    let copy = |r: std::ops::Range<usize>| {
        for &(src, off) in segs {
            let (a, b) = (off.max(r.start), (off + src.len()).min(r.end));
            if a < b {
                // SAFETY: the pieces' ranges are disjoint, so no other
                // piece writes `a..b`.
                unsafe { out.slice(a, b - a) }.copy_from_slice(&src[a - off..b - off]);
            }
        }
    };
    if total * std::mem::size_of::<T>() >= 256 * 1024 && threads() > 1 {
        par_split(total.div_ceil(COPY_BLOCK), &|blocks| {
            copy(blocks.start * COPY_BLOCK..(blocks.end * COPY_BLOCK).min(total))
        });
    } else {
        copy(0..total);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::super::kernel::tests::{range, run};
    use crate::kernels::util::testutil::t;
    use crate::op::Op;

    /// Concats large enough to split their copy over a team's threads,
    /// on an outer axis (few long segments) and the last axis (many
    /// short ones), against the element-by-element definition.
    #[test]
    fn large_concats_split_over_threads() {
        let team = crate::kernels::team::Team::new(2, |i| format!("c{i}"), |_| {}).expect("team");
        let a = range(&[2, 30, 40, 41]); // 786 KB of i64
        let b = t(
            &[2, 30, 40, 7],
            (0..2 * 30 * 40 * 7).map(|v| -v as i64).collect(),
        );
        let c = range(&[2, 11, 40, 41]);
        for (axis, x, y) in [(3i64, &a, &b), (1, &a, &c)] {
            let r = team.run(|| run(Op::Concat { axis }, &[Some(x), Some(y)]));
            let (xs, ys) = (x.shape(), y.shape());
            let ax = axis as usize;
            assert_eq!(r.shape()[ax], xs[ax] + ys[ax]);
            let (xv, yv) = (x.as_slice::<i64>().unwrap(), y.as_slice::<i64>().unwrap());
            let got = r.as_slice::<i64>().unwrap();
            let rs = r.shape().to_vec();
            let mut idx = vec![0usize; 4];
            for (flat, &g) in got.iter().enumerate() {
                let mut rem = flat;
                for d in (0..4).rev() {
                    idx[d] = rem % rs[d];
                    rem /= rs[d];
                }
                let at = |sh: &[usize], i: &[usize]| {
                    i.iter().zip(sh).fold(0, |acc, (&i, &n)| acc * n + i)
                };
                let want = if idx[ax] < xs[ax] {
                    xv[at(xs, &idx)]
                } else {
                    let mut j = idx.clone();
                    j[ax] -= xs[ax];
                    yv[at(ys, &j)]
                };
                assert_eq!(g, want, "axis {axis}, element {flat}");
            }
        }
    }
}
