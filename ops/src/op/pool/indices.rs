//! MaxPool with its second output, Indices: the flat index into X of each
//! window's maximum (the first one in window order, as the ONNX
//! reference), counting every dim of X and no padding; with
//! `storage_order` 1 the spatial part of the index is column-major.

use super::kernel::Win3;
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::input;
use crate::op::PoolAttrs;
use crate::tensor::Tensor;

/// Y (X's dtype) and Indices (i64).
pub(crate) fn max_pool_indices(
    p: &PoolAttrs,
    column_major: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>> {
    let x = input(inputs, 0, "X")?;
    if !x.dtype().is_float() && !x.dtype().is_int() {
        crate::bail!("MaxPool: X must be a numeric tensor, got {}", x.dtype());
    }
    let xs = x.shape();
    let w = p.window(xs)?;
    let w3 = Win3::lift(&xs[2..], &w);
    let planes = xs[0] * xs[1];
    let isz: usize = w3.input.iter().product();
    let osz: usize = w3.output.iter().product();
    let xv = x.cast(DType::F64).into_vec::<f64>()?;
    let (mut y, mut idx) = (vec![0f64; planes * osz], vec![0i64; planes * osz]);
    let [_, i1, i2] = w3.input;
    // The flat spatial index of input cell (a, b, c) of the lifted dims.
    let spatial = |a: usize, b: usize, c: usize| -> usize {
        if !column_major {
            (a * i1 + b) * i2 + c
        } else {
            // Reverse the real (unlifted) spatial dims.
            let real = xs.len() - 2;
            let dims = [w3.input[0], i1, i2];
            let pos = [a, b, c];
            let mut k = 0;
            for d in (3 - real..3).rev() {
                k = k * dims[d] + pos[d];
            }
            k
        }
    };
    let ow = w3.output;
    for plane in 0..planes {
        let src = &xv[plane * isz..(plane + 1) * isz];
        for o0 in 0..ow[0] {
            let ((a0, a1), _) = w3.range(0, o0);
            for o1 in 0..ow[1] {
                let ((b0, b1), _) = w3.range(1, o1);
                for o2 in 0..ow[2] {
                    let ((c0, c1), _) = w3.range(2, o2);
                    let mut best: Option<(f64, usize)> = None;
                    for ka in a0..a1 {
                        let ia = o0 * w3.strides[0] + ka * w3.dil[0] - w3.pb[0];
                        for kb in b0..b1 {
                            let ib = o1 * w3.strides[1] + kb * w3.dil[1] - w3.pb[1];
                            for kc in c0..c1 {
                                let ic = o2 * w3.strides[2] + kc * w3.dil[2] - w3.pb[2];
                                let v = src[(ia * i1 + ib) * i2 + ic];
                                if best.is_none_or(|(m, _)| v > m) {
                                    best = Some((v, spatial(ia, ib, ic)));
                                }
                            }
                        }
                    }
                    let at = plane * osz + (o0 * ow[1] + o1) * ow[2] + o2;
                    let (v, k) = best.unwrap_or((f64::NAN, 0));
                    y[at] = v;
                    idx[at] = (plane * isz + k) as i64;
                }
            }
        }
    }
    let mut shape = xs[..2].to_vec();
    shape.extend_from_slice(&w.output);
    Ok(vec![
        Tensor::from_vec(shape.clone(), y)?.cast(x.dtype()),
        Tensor::from_vec(shape, idx)?,
    ])
}
