//! Gradients of the normalisation ops (from [`crate::autodiff`]), and the
//! backward and training-mode ops of the family: [`Op::SoftmaxGrad`],
//! [`Op::LayerNormGrad`], [`Op::BatchNormTrain`], [`Op::BatchNormGrad`]
//! (inference and host kernels).
//!
//! The kernels compute in f64 whatever the tensor's float type (the
//! reductions of a backward pass lose the most to f32 accumulation) and
//! write the result in the input's type.

use crate::autodiff::{gy0, input, no_rule, Grad, Grads};
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Dim, Fact, Node, ValueId};
use crate::kernels::util::input as tin;
use crate::op::common::{input as fin, same, with_dtype};
use crate::op::Op;
use crate::shape::{norm_axis, numel};
use crate::tensor::Tensor;

/// The input gradients of a normalisation node.
pub(crate) fn grad(
    cx: &mut Grads,
    node: &Node,
    gys: &[Option<ValueId>],
    want: &[bool],
) -> Result<Grad> {
    let gy = gy0(gys)?;
    let x = input(node, 0)?;
    let y = node.outputs[0];
    match &node.op {
        Op::Softmax { axis, legacy } | Op::LogSoftmax { axis, legacy } => {
            let log = matches!(node.op, Op::LogSoftmax { .. });
            let xs = cx.shape(x)?;
            let a = norm_axis(*axis, xs.len())?;
            if *legacy && a + 1 < xs.len() {
                // Opset < 13: softmax over the flattened trailing dims.
                let flat = [numel(&xs[..a]), numel(&xs[a..])];
                let y2 = cx.reshape(y, &flat)?;
                let g2 = cx.reshape(gy, &flat)?;
                let d = cx.node1("d_softmax", Op::SoftmaxGrad { axis: 1, log }, &[y2, g2])?;
                return Ok(vec![Some(cx.reshape(d, &xs)?)]);
            }
            let op = Op::SoftmaxGrad {
                axis: a as i64,
                log,
            };
            Ok(vec![Some(cx.node1("d_softmax", op, &[y, gy])?)])
        }
        Op::LayerNorm { axis, epsilon } => {
            let xs = cx.shape(x)?;
            let a = norm_axis(*axis, xs.len())?;
            let scale = input(node, 1)?;
            let op = Op::LayerNormGrad {
                axis: a as i64,
                epsilon: *epsilon,
            };
            let d = cx.node("d_layernorm", op, &[Some(x), Some(scale), Some(gy)], 3)?;
            let mut g = vec![Some(d[0]), None, None];
            if want[1] {
                let s = cx.shape(scale)?;
                g[1] = Some(cx.sum_to(d[1], &s)?);
            }
            if want.get(2).copied().unwrap_or(false) {
                let s = cx.in_shape(node, 2)?;
                g[2] = Some(cx.sum_to(d[2], &s)?);
            }
            Ok(g)
        }
        Op::BatchNormTrain { .. } => {
            let scale = input(node, 1)?;
            let (mean, inv) = (node.outputs[3], node.outputs[4]);
            let d = cx.node(
                "d_batchnorm",
                Op::BatchNormGrad,
                &[Some(x), Some(scale), Some(mean), Some(inv), Some(gy)],
                3,
            )?;
            Ok(vec![Some(d[0]), Some(d[1]), Some(d[2]), None, None])
        }
        Op::BatchNorm { .. } => crate::bail!(
            "BatchNormalization in inference mode has no gradient rule \
             (training replaces it by its training form)"
        ),
        _ => Err(no_rule(&node.op)),
    }
}

/// Facts of the family's backward and training ops.
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    let x = fin(inputs, 0)?;
    match op {
        Op::SoftmaxGrad { .. } => Ok(vec![same(fin(inputs, 1)?)]),
        Op::LayerNormGrad { axis, .. } => {
            let inner = x
                .shape
                .as_ref()
                .map(|s| -> Result<Vec<Dim>> { Ok(s[norm_axis(*axis, s.len())?..].to_vec()) });
            let inner = inner.transpose()?;
            let part = with_dtype(x.dtype, inner);
            Ok(vec![same(x), part.clone(), part])
        }
        Op::BatchNormTrain { .. } | Op::BatchNormGrad => {
            let c = x
                .shape
                .as_ref()
                .map(|s| -> Result<Vec<Dim>> {
                    match s.get(1) {
                        Some(c) => Ok(vec![c.clone()]),
                        None => crate::bail!("BatchNormalization needs X of rank >= 2"),
                    }
                })
                .transpose()?;
            let per_c = with_dtype(x.dtype, c);
            if matches!(op, Op::BatchNormGrad) {
                Ok(vec![same(x), per_c.clone(), per_c])
            } else {
                // The ONNX node (training_mode) asks for the first three.
                let mut outs = vec![same(x), per_c.clone(), per_c.clone(), per_c.clone(), per_c];
                outs.truncate(n_out.clamp(1, 5));
                Ok(outs)
            }
        }
        _ => Err(crate::op::common::other_family(op, "norm")),
    }
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.cast(DType::F64).into_vec::<f64>().unwrap_or_default()
}

fn back(dt: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor> {
    Ok(Tensor::from_vec(shape, v)?.cast(dt))
}

fn float_in<'a>(inputs: &[Option<&'a Tensor>], i: usize, name: &str) -> Result<&'a Tensor> {
    let t = tin(inputs, i, name)?;
    if !t.dtype().is_float() {
        crate::bail!(
            "input {i} ({name}) must be a float tensor, got {}",
            t.dtype()
        );
    }
    Ok(t)
}

/// Host kernel of [`Op::SoftmaxGrad`]: inputs Y (the softmax, or the log
/// softmax when `log`) and dY; output dX.
pub(crate) fn softmax_grad(axis: i64, log: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let y = float_in(inputs, 0, "Y")?;
    let gy = float_in(inputs, 1, "dY")?;
    if y.shape() != gy.shape() {
        crate::bail!("Y {:?} and dY {:?} differ in shape", y.shape(), gy.shape());
    }
    let s = y.shape();
    let a = norm_axis(axis, s.len())?;
    let (len, inner) = if s.is_empty() {
        (1, 1)
    } else {
        (s[a], numel(&s[a + 1..]))
    };
    let (yv, gv) = (f64s(y), f64s(gy));
    let mut gx = vec![0.0; yv.len()];
    let block = (len * inner).max(1);
    for (b, dst) in gx.chunks_mut(block).enumerate() {
        let base = b * block;
        for i in 0..inner {
            let at = |j: usize| base + j * inner + i;
            if log {
                // dx = dy - softmax * sum(dy)
                let sum: f64 = (0..len).map(|j| gv[at(j)]).sum();
                for j in 0..len {
                    dst[j * inner + i] = gv[at(j)] - yv[at(j)].exp() * sum;
                }
            } else {
                // dx = y * (dy - sum(dy * y))
                let dot: f64 = (0..len).map(|j| gv[at(j)] * yv[at(j)]).sum();
                for j in 0..len {
                    dst[j * inner + i] = yv[at(j)] * (gv[at(j)] - dot);
                }
            }
        }
    }
    back(y.dtype(), s.to_vec(), gx)
}

/// Mean and inverse standard deviation of a row.
fn moments(v: impl Iterator<Item = f64> + Clone, n: usize, eps: f64) -> (f64, f64) {
    let n = n.max(1) as f64;
    let mean = v.clone().sum::<f64>() / n;
    let var = v.map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Host kernel of [`Op::LayerNormGrad`]: inputs X, scale (broadcast to the
/// normalised dims), dY; outputs dX, dScale and dBias over the normalised
/// dims.
pub(crate) fn layer_norm_grad(
    axis: i64,
    eps: f32,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>> {
    let x = float_in(inputs, 0, "X")?;
    let scale = float_in(inputs, 1, "Scale")?;
    let gy = float_in(inputs, 2, "dY")?;
    let s = x.shape();
    if gy.shape() != s {
        crate::bail!("X {:?} and dY {:?} differ in shape", s, gy.shape());
    }
    let a = norm_axis(axis, s.len())?;
    let inner_shape = s[a..].to_vec();
    let inner = numel(&inner_shape);
    let sc = f64s(&crate::kernels::util::expand_to(scale, &inner_shape)?);
    let (xv, gv) = (f64s(x), f64s(gy));
    let mut gx = vec![0.0; xv.len()];
    let mut gs = vec![0.0; inner];
    let mut gb = vec![0.0; inner];
    let n = inner as f64;
    for r in 0..numel(&s[..a]) {
        let xr = &xv[r * inner..][..inner];
        let gr = &gv[r * inner..][..inner];
        let (mean, inv) = moments(xr.iter().copied(), inner, eps as f64);
        let mut sum_g = 0.0;
        let mut sum_gx = 0.0;
        for j in 0..inner {
            let xh = (xr[j] - mean) * inv;
            let g = gr[j] * sc[j];
            sum_g += g;
            sum_gx += g * xh;
            gs[j] += gr[j] * xh;
            gb[j] += gr[j];
        }
        for j in 0..inner {
            let xh = (xr[j] - mean) * inv;
            gx[r * inner + j] = inv * (gr[j] * sc[j] - sum_g / n - xh * sum_gx / n);
        }
    }
    let dt = x.dtype();
    Ok(vec![
        back(dt, s.to_vec(), gx)?,
        back(dt, inner_shape.clone(), gs)?,
        back(dt, inner_shape, gb)?,
    ])
}

/// Per-channel values of input `i`.
fn channel(inputs: &[Option<&Tensor>], i: usize, name: &str, c: usize) -> Result<Vec<f64>> {
    let t = float_in(inputs, i, name)?;
    if t.len() != c {
        crate::bail!(
            "input {i} ({name}) has {} elements, expected {c} (channels)",
            t.len()
        );
    }
    Ok(f64s(t))
}

/// (N, C, spatial size) of a BatchNormalization input.
fn ncs(x: &Tensor) -> Result<(usize, usize, usize)> {
    let s = x.shape();
    if s.len() < 2 {
        crate::bail!("BatchNormalization needs X of rank >= 2, got {:?}", s);
    }
    Ok((s[0], s[1], numel(&s[2..])))
}

/// Host kernel of [`Op::BatchNormTrain`].
pub(crate) fn batch_norm_train(
    eps: f32,
    momentum: f32,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>> {
    let x = float_in(inputs, 0, "X")?;
    let (n, c, sp) = ncs(x)?;
    let scale = channel(inputs, 1, "scale", c)?;
    let bias = channel(inputs, 2, "B", c)?;
    let rm = channel(inputs, 3, "input_mean", c)?;
    let rv = channel(inputs, 4, "input_var", c)?;
    let xv = f64s(x);
    let mut y = vec![0.0; xv.len()];
    let (mut mean, mut inv, mut nrm, mut nrv) =
        (vec![0.0; c], vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    let mo = momentum as f64;
    for ch in 0..c {
        let vals = (0..n).flat_map(|b| xv[(b * c + ch) * sp..][..sp].iter().copied());
        let (m, r) = moments(vals, n * sp, eps as f64);
        let var = 1.0 / (r * r) - eps as f64;
        mean[ch] = m;
        inv[ch] = r;
        nrm[ch] = rm[ch] * mo + m * (1.0 - mo);
        nrv[ch] = rv[ch] * mo + var * (1.0 - mo);
        for b in 0..n {
            let o = (b * c + ch) * sp;
            for k in 0..sp {
                y[o + k] = (xv[o + k] - m) * r * scale[ch] + bias[ch];
            }
        }
    }
    let dt = x.dtype();
    Ok(vec![
        back(dt, x.shape().to_vec(), y)?,
        back(dt, vec![c], nrm)?,
        back(dt, vec![c], nrv)?,
        back(dt, vec![c], mean)?,
        back(dt, vec![c], inv)?,
    ])
}

/// Host kernel of [`Op::BatchNormGrad`].
pub(crate) fn batch_norm_grad(inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    let x = float_in(inputs, 0, "X")?;
    let (n, c, sp) = ncs(x)?;
    let scale = channel(inputs, 1, "scale", c)?;
    let mean = channel(inputs, 2, "saved mean", c)?;
    let inv = channel(inputs, 3, "saved inverse std", c)?;
    let gy = float_in(inputs, 4, "dY")?;
    if gy.shape() != x.shape() {
        crate::bail!("X {:?} and dY {:?} differ in shape", x.shape(), gy.shape());
    }
    let (xv, gv) = (f64s(x), f64s(gy));
    let mut gx = vec![0.0; xv.len()];
    let (mut gs, mut gb) = (vec![0.0; c], vec![0.0; c]);
    let m = (n * sp).max(1) as f64;
    for ch in 0..c {
        let (mut sg, mut sgx) = (0.0, 0.0);
        for b in 0..n {
            let o = (b * c + ch) * sp;
            for k in 0..sp {
                sg += gv[o + k];
                sgx += gv[o + k] * (xv[o + k] - mean[ch]) * inv[ch];
            }
        }
        gs[ch] = sgx;
        gb[ch] = sg;
        let f = scale[ch] * inv[ch] / m;
        for b in 0..n {
            let o = (b * c + ch) * sp;
            for k in 0..sp {
                let xh = (xv[o + k] - mean[ch]) * inv[ch];
                gx[o + k] = f * (m * gv[o + k] - sg - xh * sgx);
            }
        }
    }
    let dt = x.dtype();
    Ok(vec![
        back(dt, x.shape().to_vec(), gx)?,
        back(dt, vec![c], gs)?,
        back(dt, vec![c], gb)?,
    ])
}

#[cfg(test)]
mod tests {
    use crate::autodiff::check::{check, check_outputs, diff, vals, Arg};
    use crate::op::Op;

    #[test]
    fn softmax_and_log_softmax_gradients_on_every_axis() {
        for axis in [-1, 0, 1] {
            for legacy in [false, true] {
                check(Op::Softmax { axis, legacy }, vec![diff(&[3, 4, 2], 1)], 1);
                check(
                    Op::LogSoftmax { axis, legacy },
                    vec![diff(&[3, 4, 2], 2)],
                    1,
                );
            }
        }
    }

    #[test]
    fn layer_norm_gradients_for_input_scale_and_bias() {
        let op = Op::LayerNorm {
            axis: -1,
            epsilon: 1e-5,
        };
        check(op, vec![diff(&[3, 5], 1), diff(&[5], 2), diff(&[5], 3)], 1);
        let op = Op::LayerNorm {
            axis: 1,
            epsilon: 1e-3,
        };
        check(
            op,
            vec![diff(&[2, 3, 4], 4), diff(&[3, 4], 5), diff(&[4], 6)],
            1,
        );
    }

    #[test]
    fn training_batch_norm_gradients() {
        let op = Op::BatchNormTrain {
            epsilon: 1e-5,
            momentum: 0.9,
        };
        let fixed = |seed| Arg::Fixed(vec![3], vals(3, seed, 0.5, 1.5));
        check_outputs(
            op,
            vec![
                diff(&[4, 3, 2, 2], 1),
                diff(&[3], 2),
                diff(&[3], 3),
                fixed(4),
                fixed(5),
            ],
            5,
            &[0],
        );
    }

    #[test]
    fn training_batch_norm_uses_batch_statistics_and_updates_running_ones() {
        use crate::kernels::eval;
        use crate::Tensor;
        // Channel 0 holds 1, 2, 3, 6 (mean 3, population variance 3.5).
        let x = Tensor::from_vec(vec![2, 1, 2], vec![1.0f64, 2.0, 3.0, 6.0]).unwrap();
        let one = Tensor::from_vec(vec![1], vec![1.0f64]).unwrap();
        let zero = Tensor::from_vec(vec![1], vec![0.0f64]).unwrap();
        let op = Op::BatchNormTrain {
            epsilon: 0.0,
            momentum: 0.75,
        };
        let o = eval(
            &op,
            &[Some(&x), Some(&one), Some(&zero), Some(&zero), Some(&one)],
            5,
        )
        .unwrap();
        let y = o[0].as_slice::<f64>().unwrap();
        let sd = 3.5f64.sqrt();
        for (yi, xi) in y.iter().zip([1.0, 2.0, 3.0, 6.0]) {
            assert!((yi - (xi - 3.0) / sd).abs() < 1e-12);
        }
        assert!((o[1].as_slice::<f64>().unwrap()[0] - 0.25 * 3.0).abs() < 1e-12);
        assert!((o[2].as_slice::<f64>().unwrap()[0] - (0.75 + 0.25 * 3.5)).abs() < 1e-12);
    }
}
