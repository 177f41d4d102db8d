//! Datasets for training: a folder with `x.npy` (samples along axis 0)
//! and `y.npy` (int64 class labels, or float targets for MSE), and the
//! seeded shuffle that orders each epoch's batches.

use crate::Error;
use hetflow_ops::{DType, Tensor};
use std::path::Path;

/// Samples and their labels or targets.
pub struct Dataset {
    /// Samples along axis 0.
    pub x: Tensor,
    /// Labels or targets along axis 0.
    pub y: Tensor,
}

impl Dataset {
    /// Reads `DIR/x.npy` and `DIR/y.npy`; labels stored as other integer
    /// types become i64, float samples f32.
    pub fn load(dir: impl AsRef<Path>) -> Result<Dataset, Error> {
        let dir = dir.as_ref();
        let read = |f: &str| -> Result<Tensor, Error> {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(Error::Setting(format!(
                    "{}: not found (a dataset folder holds x.npy and y.npy)",
                    p.display()
                )));
            }
            Ok(hetflow_ops::npy::read_npy(&p)?)
        };
        let mut x = read("x.npy")?;
        let mut y = read("y.npy")?;
        if x.dtype().is_float() && x.dtype() != DType::F32 {
            x = x.cast(DType::F32);
        }
        if y.dtype().is_int() && y.dtype() != DType::I64 {
            y = y.cast(DType::I64);
        } else if y.dtype().is_float() && y.dtype() != DType::F32 {
            y = y.cast(DType::F32);
        }
        let (nx, ny) = (x.shape().first().copied(), y.shape().first().copied());
        if nx.is_none() || nx != ny {
            return Err(Error::Setting(format!(
                "{}: x.npy has {} samples, y.npy {}",
                dir.display(),
                nx.unwrap_or(0),
                ny.unwrap_or(0)
            )));
        }
        Ok(Dataset { x, y })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x.shape().first().copied().unwrap_or(0)
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples in `order`, as a new dataset.
    pub fn take(&self, order: &[usize]) -> Result<Dataset, Error> {
        Ok(Dataset {
            x: gather_rows(&self.x, order)?,
            y: gather_rows(&self.y, order)?,
        })
    }
}

fn gather_rows(t: &Tensor, order: &[usize]) -> Result<Tensor, Error> {
    let n = t.shape().first().copied().unwrap_or(0);
    let es = t.dtype().size();
    let per = t.len().checked_div(n).unwrap_or(0) * es;
    let bytes = t.to_le_bytes();
    let mut out = Vec::with_capacity(order.len() * per);
    for &i in order {
        if i >= n {
            return Err(Error::Setting(format!("sample {i} past the {n} there are")));
        }
        out.extend_from_slice(&bytes[i * per..(i + 1) * per]);
    }
    let mut shape = t.shape().to_vec();
    shape[0] = order.len();
    Ok(Tensor::from_le_bytes(t.dtype(), shape, &out)?)
}

/// A permutation of `0..n` from `seed` (Fisher–Yates over splitmix64).
pub fn shuffle(n: usize, seed: u64) -> Vec<usize> {
    let mut r = hetflow_ops::rng::Rng::new(seed ^ 0x5851_F42D_4C95_7F2D);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, r.range(0, i + 1));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_are_permutations_and_depend_on_the_seed() {
        let a = shuffle(100, 1);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(a, shuffle(100, 2));
        assert_eq!(a, shuffle(100, 1));
    }

    #[test]
    fn take_reorders_samples_with_their_labels() {
        let d = Dataset {
            x: Tensor::from_vec(vec![3, 2], vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap(),
            y: Tensor::from_vec(vec![3], vec![7i64, 8, 9]).unwrap(),
        };
        let t = d.take(&[2, 0]).unwrap();
        assert_eq!(t.x.to_f32_vec(), vec![4.0, 5.0, 0.0, 1.0]);
        assert_eq!(t.y.to_i64_vec(), vec![9, 7]);
        assert!(d.take(&[3]).is_err());
    }
}
