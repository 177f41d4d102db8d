//! Batches on the host: slicing samples out of a dataset's tensors and
//! counting correct predictions.

use crate::Error;
use hetflow_ops::Tensor;

fn err(m: impl Into<String>) -> Error {
    Error::Setting(m.into())
}

pub(super) fn check_batch(x: &Tensor, y: &Tensor) -> Result<usize, Error> {
    let n = x.shape().first().copied().unwrap_or(0);
    if n == 0 || y.shape().first() != Some(&n) {
        return Err(err(format!(
            "x has {} samples and y {}; both need the same number, at least 1",
            n,
            y.shape().first().copied().unwrap_or(0)
        )));
    }
    Ok(n)
}

/// Samples `from..from + n` of `t` (along axis 0), reshaped to `shape`
/// (same element count per sample).
pub fn rows(t: &Tensor, from: usize, n: usize, shape: &[usize]) -> Result<Tensor, Error> {
    let total = t.shape().first().copied().unwrap_or(0);
    if from + n > total {
        return Err(err(format!(
            "samples {from}..{} past the {total} there are",
            from + n
        )));
    }
    let per = t.len().checked_div(total).unwrap_or(0);
    let want: usize = shape.iter().product();
    if per * n != want {
        return Err(err(format!(
            "a sample of shape {:?} does not fit the model's {:?}",
            &t.shape()[1..],
            &shape[1.min(shape.len())..]
        )));
    }
    let bytes = t.to_le_bytes();
    let es = t.dtype().size();
    let slice = &bytes[from * per * es..(from + n) * per * es];
    Ok(Tensor::from_le_bytes(t.dtype(), shape.to_vec(), slice)?)
}

/// Arg-max along axis 1 of each sample's prediction.
fn argmax_rows(pred: &Tensor) -> Vec<usize> {
    let n = pred.shape().first().copied().unwrap_or(0);
    let v = pred.to_f32_vec();
    let per = v.len().checked_div(n).unwrap_or(0);
    (0..n)
        .map(|i| {
            let r = &v[i * per..(i + 1) * per];
            let mut best = 0;
            for (k, &x) in r.iter().enumerate() {
                if x > r[best] {
                    best = k;
                }
            }
            best
        })
        .collect()
}

pub(super) fn count_correct(pred: &Tensor, labels: &Tensor) -> Result<usize, Error> {
    let l = labels.to_i64_vec();
    Ok(argmax_rows(pred)
        .into_iter()
        .zip(l)
        .filter(|(p, l)| *p as i64 == *l)
        .count())
}
