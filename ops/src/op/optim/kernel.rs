//! Host kernels of the optimizers: the update of each optimized tensor is
//! element-wise, computed in f64 and returned in the dtype of the tensor
//! (or state) it replaces.

use super::infer::tensor_count;
use super::Optimizer;
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::input;
use crate::tensor::Tensor;

/// One float scalar input as f64.
fn scalar(t: &Tensor, what: &str) -> Result<f64> {
    if t.len() != 1 {
        crate::bail!("{what} must be a scalar, got shape {:?}", t.shape());
    }
    Ok(t.cast(DType::F64).as_slice::<f64>()?[0])
}

/// A float tensor as f64, checked to have `shape`.
fn values(t: &Tensor, shape: &[usize], what: &str) -> Result<Vec<f64>> {
    if !t.dtype().is_float() {
        crate::bail!("{what} must be a float tensor, got {}", t.dtype());
    }
    if t.shape() != shape {
        crate::bail!("{what} has shape {:?}, expected {shape:?} (X's)", t.shape());
    }
    t.cast(DType::F64).into_vec::<f64>()
}

/// Runs `o` on R, T, X.., G.., states..; outputs X_new.., then each
/// state's new values.
pub(crate) fn optimize(
    o: &Optimizer,
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
) -> Result<Vec<Tensor>> {
    let n = tensor_count(inputs.len(), n_outputs, o.states())?;
    let r = scalar(input(inputs, 0, "R")?, "R")?;
    let tt = input(inputs, 1, "T")?;
    if tt.dtype() != DType::I64 {
        crate::bail!("T must be an i64 scalar, got {}", tt.dtype());
    }
    let t = scalar(tt, "T")?;
    let mut xs = Vec::with_capacity(n);
    let mut states: Vec<Vec<Tensor>> = vec![Vec::with_capacity(n); o.states()];
    for i in 0..n {
        let xt = input(inputs, 2 + i, "X")?;
        let shape = xt.shape();
        let x = values(xt, shape, "X")?;
        let g = values(input(inputs, 2 + n + i, "G")?, shape, "G")?;
        let st: Vec<&Tensor> = (0..o.states())
            .map(|s| input(inputs, 2 + (2 + s) * n + i, "state"))
            .collect::<Result<_>>()?;
        let mut sv: Vec<Vec<f64>> = st
            .iter()
            .map(|s| values(s, shape, "state"))
            .collect::<Result<_>>()?;
        let mut xn = x.clone();
        step(o, r, t, &mut xn, &g, &mut sv);
        xs.push(Tensor::from_vec(shape.to_vec(), xn)?.cast(xt.dtype()));
        for (k, (v, s)) in sv.into_iter().zip(&st).enumerate() {
            states[k].push(Tensor::from_vec(shape.to_vec(), v)?.cast(s.dtype()));
        }
    }
    xs.extend(states.into_iter().flatten());
    Ok(xs)
}

/// One update of `x` (in place) with gradient `g` and states `s` (V and
/// H for Adam, V for Momentum, H for Adagrad), as the ONNX definitions.
fn step(o: &Optimizer, r: f64, t: f64, x: &mut [f64], g: &[f64], s: &mut [Vec<f64>]) {
    match *o {
        Optimizer::Adagrad {
            decay_factor,
            epsilon,
            norm_coefficient,
        } => {
            let rate = r / (1.0 + t * f64::from(decay_factor));
            let h = &mut s[0];
            for i in 0..x.len() {
                let gr = f64::from(norm_coefficient) * x[i] + g[i];
                h[i] += gr * gr;
                x[i] -= rate * gr / (h[i].sqrt() + f64::from(epsilon));
            }
        }
        Optimizer::Adam {
            alpha,
            beta,
            epsilon,
            norm_coefficient,
            norm_coefficient_post,
        } => {
            let (a, b) = (f64::from(alpha), f64::from(beta));
            let rate = if t > 0.0 {
                r * (1.0 - b.powf(t)).sqrt() / (1.0 - a.powf(t))
            } else {
                r
            };
            let (v, h) = s.split_at_mut(1);
            let (v, h) = (&mut v[0], &mut h[0]);
            for i in 0..x.len() {
                let gr = f64::from(norm_coefficient) * x[i] + g[i];
                v[i] = a * v[i] + (1.0 - a) * gr;
                h[i] = b * h[i] + (1.0 - b) * gr * gr;
                let xn = x[i] - rate * v[i] / (h[i].sqrt() + f64::from(epsilon));
                x[i] = (1.0 - f64::from(norm_coefficient_post)) * xn;
            }
        }
        Optimizer::Momentum {
            alpha,
            beta,
            nesterov,
            norm_coefficient,
        } => {
            let a = f64::from(alpha);
            let b = if t > 0.0 { f64::from(beta) } else { 1.0 };
            let v = &mut s[0];
            for i in 0..x.len() {
                let gr = f64::from(norm_coefficient) * x[i] + g[i];
                v[i] = a * v[i] + b * gr;
                x[i] -= if nesterov {
                    r * (gr + a * v[i])
                } else {
                    r * v[i]
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the ONNX Adagrad test: r 0.1, t 0, decay
    /// 0.1, epsilon 1e-5, norm 0.001, x 1.0, g -1.0, h 2.0; the expected
    /// H and X from NumPy in float64 (the attributes are f32 here, so
    /// within 1e-9).
    #[test]
    fn adagrad_worked_example() {
        let o = Optimizer::Adagrad {
            decay_factor: 0.1,
            epsilon: 1e-5,
            norm_coefficient: 0.001,
        };
        let (mut x, mut s) = (vec![1.0], vec![vec![2.0]]);
        step(&o, 0.1, 0.0, &mut x, &[-1.0], &mut s);
        assert!((s[0][0] - 2.998001).abs() < 1e-9, "{}", s[0][0]);
        assert!((x[0] - 1.0576961844316204).abs() < 1e-9, "{}", x[0]);
    }
}
