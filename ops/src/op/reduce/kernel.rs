//! ReduceSum / Mean / Max / Min / Prod over axes from the attribute or
//! input 1.

use crate::dtype::Element;
use crate::error::Result;
use crate::kernels::util::{arith_dispatch, input, opt_input, out, par_map, typed, Arith, Walk};
use crate::op::ReduceKind;
use crate::shape::{norm_axis, numel, strides};
use crate::tensor::Tensor;

/// Reduction. With no axes (attribute `None` and input 1 absent or empty)
/// every axis is reduced, unless `noop` (noop_with_empty_axes) makes it the
/// identity.
pub(crate) fn reduce(
    kind: ReduceKind,
    axes: Option<&[i64]>,
    keepdims: bool,
    noop: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let axes: Vec<i64> = match axes {
        Some(a) => a.to_vec(),
        None => match opt_input(inputs, 1) {
            Some(t) => {
                if t.dtype().is_float() || t.dtype() == crate::DType::Bool {
                    crate::bail!(
                        "input 1 (axes) must be an integer tensor, got {}",
                        t.dtype()
                    );
                }
                t.to_i64_vec()
            }
            None => vec![],
        },
    };
    if axes.is_empty() && noop {
        return Ok(x.clone());
    }
    if x.dtype() == crate::DType::Bool && matches!(kind, ReduceKind::Max | ReduceKind::Min) {
        // Any / all: through u8 (an empty max is false, an empty min true).
        let wide = x.cast(crate::DType::U8);
        let r = reduce(kind, Some(&axes), keepdims, noop, &[Some(&wide)])?;
        return Ok(r.cast(crate::DType::Bool));
    }
    let s = x.shape();
    let r = s.len();
    let mut red = vec![axes.is_empty(); r];
    for &a in &axes {
        red[norm_axis(a, r)?] = true;
    }
    // Output strides over the input's dims (0 on reduced dims).
    let kept: Vec<usize> = s
        .iter()
        .zip(&red)
        .map(|(&d, &rd)| if rd { 1 } else { d })
        .collect();
    let ost = strides(&kept);
    let ost: Vec<isize> = ost
        .iter()
        .zip(&red)
        .map(|(&st, &rd)| if rd { 0 } else { st as isize })
        .collect();
    let oshape: Vec<usize> = if keepdims {
        kept.clone()
    } else {
        s.iter()
            .zip(&red)
            .filter(|(_, &rd)| !rd)
            .map(|(&d, _)| d)
            .collect()
    };
    let count = numel(s) / numel(&kept).max(1);
    let count = if numel(&kept) == 0 { 0 } else { count };
    let n_out = numel(&kept);
    match kind {
        ReduceKind::L1 | ReduceKind::L2 | ReduceKind::SumSquare | ReduceKind::LogSum => {
            arith_dispatch!(x.dtype(), format!("Reduce{kind:?}"), T => {
                let xv = typed::<T>(x, "input 0 (data)")?;
                let pre: Vec<T> = match kind {
                    ReduceKind::L1 => par_map(xv, |v: T| v.abs()),
                    ReduceKind::LogSum => xv.to_vec(),
                    _ => par_map(xv, |v: T| v.mul(v)),
                };
                let mut acc = reduce_t::<T>(ReduceKind::Sum, &pre, s, &ost, n_out, count);
                match kind {
                    ReduceKind::L2 => acc.iter_mut().for_each(|a| *a = T::from_f64(a.to_f64().sqrt())),
                    ReduceKind::LogSum => acc.iter_mut().for_each(|a| *a = T::from_f64(a.to_f64().ln())),
                    _ => {}
                }
                out(oshape, acc)
            })
        }
        ReduceKind::LogSumExp => {
            if x.dtype() == crate::DType::Bool {
                crate::bail!("ReduceLogSumExp does not support bool tensors");
            }
            // Computed in f64 whatever the dtype, then narrowed.
            let wide = x.cast(crate::DType::F64);
            let xv = typed::<f64>(&wide, "input 0 (data)")?;
            let acc = log_sum_exp(xv, s, &ost, n_out);
            Ok(out(oshape, acc)?.cast(x.dtype()))
        }
        _ => arith_dispatch!(x.dtype(), format!("Reduce{kind:?}"), T => {
            let xv = typed::<T>(x, "input 0 (data)")?;
            out(oshape, reduce_t::<T>(kind, xv, s, &ost, n_out, count))
        }),
    }
}

/// `ln(sum(exp(x)))` per output, shifted by the maximum for stability.
fn log_sum_exp(x: &[f64], shape: &[usize], ost: &[isize], n_out: usize) -> Vec<f64> {
    let mx = reduce_t::<f64>(ReduceKind::Max, x, shape, ost, n_out, 0);
    let shift: Vec<f64> = mx
        .iter()
        .map(|&m| if m.is_finite() { m } else { 0.0 })
        .collect();
    let mut acc = vec![0f64; n_out];
    let walk = Walk::new(shape, [ost]);
    walk.run([0], 0, walk.rows(), |start, [o], n, [os]| {
        for (j, &v) in x[start..start + n].iter().enumerate() {
            let oi = (o + j as isize * os) as usize;
            acc[oi] += (v - shift[oi]).exp();
        }
    });
    acc.iter().zip(&shift).map(|(&a, &m)| a.ln() + m).collect()
}

/// True for NaN (the only value not comparable with itself).
fn is_nan<T: PartialOrd>(v: T) -> bool {
    v.partial_cmp(&v).is_none()
}

fn reduce_t<T: Arith>(
    kind: ReduceKind,
    x: &[T],
    shape: &[usize],
    ost: &[isize],
    n_out: usize,
    count: usize,
) -> Vec<T> {
    let init = match kind {
        ReduceKind::Prod => T::ONE,
        ReduceKind::Max => T::lowest(),
        ReduceKind::Min => T::highest(),
        _ => T::ZERO,
    };
    let f = |a: T, v: T| match kind {
        ReduceKind::Prod => a.mul(v),
        ReduceKind::Max => {
            if v > a || is_nan(v) {
                v
            } else {
                a
            }
        }
        ReduceKind::Min => {
            if v < a || is_nan(v) {
                v
            } else {
                a
            }
        }
        // Sum and Mean; the other kinds are sums of mapped inputs.
        _ => a.add(v),
    };
    let mut acc = vec![init; n_out];
    let walk = Walk::new(shape, [ost]);
    walk.run([0], 0, walk.rows(), |start, [o], n, [os]| {
        let src = &x[start..start + n];
        if os == 0 {
            let a = &mut acc[o as usize];
            *a = src.iter().fold(*a, |a, &v| f(a, v));
        } else {
            for (j, &v) in src.iter().enumerate() {
                let a = &mut acc[(o + j as isize * os) as usize];
                *a = f(*a, v);
            }
        }
    });
    if kind == ReduceKind::Mean {
        let c = T::from_f64(count as f64);
        for a in acc.iter_mut() {
            *a = a.div(c);
        }
    }
    acc
}

/// ArgMax / ArgMin along `axis` (i64 indices; the first extreme, or the
/// last with `last`). Any dtype with an order; NaN compares as neither
/// larger nor smaller, so a leading NaN is kept.
pub(crate) fn arg_extreme(
    max: bool,
    axis: i64,
    keepdims: bool,
    last: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let name = if max { "ArgMax" } else { "ArgMin" };
    let x = crate::kernels::util::input(inputs, 0, "data")?;
    let s = x.shape();
    if s.is_empty() {
        crate::bail!("{name} needs a tensor of rank >= 1");
    }
    let ax = crate::shape::norm_axis(axis, s.len())?;
    let n = s[ax];
    let (outer, inner): (usize, usize) = (s[..ax].iter().product(), s[ax + 1..].iter().product());
    let mut oshape = s.to_vec();
    if keepdims {
        oshape[ax] = 1;
    } else {
        oshape.remove(ax);
    }
    if n == 0 && outer * inner > 0 {
        crate::bail!("{name}: axis {ax} of {:?} is empty", s);
    }
    let mut o = vec![0i64; outer * inner];
    crate::dispatch_data!(x.data(), v, T => {
        for oi in 0..outer {
            for ii in 0..inner {
                let base = oi * n * inner + ii;
                let (mut best, mut bi): (T, usize) = (v[base], 0);
                for k in 1..n {
                    let c = v[base + k * inner];
                    #[allow(clippy::bool_comparison)]
                    let better = match (max, last) {
                        (true, false) => c > best,
                        (true, true) => c >= best,
                        (false, false) => c < best,
                        (false, true) => c <= best,
                    };
                    if better {
                        best = c;
                        bi = k;
                    }
                }
                o[oi * inner + ii] = bi as i64;
            }
        }
    });
    Tensor::from_vec(oshape, o)
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::t;
    use crate::op::{Op, ReduceKind};

    #[test]
    fn reduce_axes_attr_and_input() {
        // ONNX reduce_sum_keepdims example: shape [3,2,2], axes [1].
        let x = t(&[3, 2, 2], (1..=12).map(|v| v as f32).collect());
        let op = Op::Reduce {
            kind: ReduceKind::Sum,
            axes: Some(vec![1]),
            keepdims: true,
            noop_with_empty_axes: false,
        };
        let r = eval(&op, &[Some(&x)], 1).unwrap();
        assert_eq!(r[0].shape(), &[3, 1, 2]);
        assert_eq!(
            r[0].as_slice::<f32>().unwrap(),
            &[4., 6., 12., 14., 20., 22.]
        );
        // Axes from input 1, negative, no keepdims; Mean.
        let ax = t(&[1], vec![-1i64]);
        let op = Op::Reduce {
            kind: ReduceKind::Mean,
            axes: None,
            keepdims: false,
            noop_with_empty_axes: false,
        };
        let r = eval(&op, &[Some(&x), Some(&ax)], 1).unwrap();
        assert_eq!(r[0].shape(), &[3, 2]);
        assert_eq!(
            r[0].as_slice::<f32>().unwrap(),
            &[1.5, 3.5, 5.5, 7.5, 9.5, 11.5]
        );
        // Absent axes: reduce all, or identity with noop.
        let op = Op::Reduce {
            kind: ReduceKind::Max,
            axes: None,
            keepdims: true,
            noop_with_empty_axes: false,
        };
        let r = eval(&op, &[Some(&x), None], 1).unwrap();
        assert_eq!(r[0].shape(), &[1, 1, 1]);
        assert_eq!(r[0].as_slice::<f32>().unwrap(), &[12.]);
        let op = Op::Reduce {
            kind: ReduceKind::Max,
            axes: None,
            keepdims: true,
            noop_with_empty_axes: true,
        };
        assert_eq!(eval(&op, &[Some(&x)], 1).unwrap()[0], x);
    }

    #[test]
    fn reduce_ints_and_multi_axes() {
        let x = t(&[2, 3, 2], (1..=12).collect::<Vec<i64>>());
        let op = Op::Reduce {
            kind: ReduceKind::Prod,
            axes: Some(vec![0, 2]),
            keepdims: false,
            noop_with_empty_axes: false,
        };
        let r = eval(&op, &[Some(&x)], 1).unwrap();
        assert_eq!(
            r[0].as_slice::<i64>().unwrap(),
            &[2 * 7 * 8, 3 * 4 * 9 * 10, 5 * 6 * 11 * 12]
        );
        let op = Op::Reduce {
            kind: ReduceKind::Min,
            axes: Some(vec![1]),
            keepdims: false,
            noop_with_empty_axes: false,
        };
        let r = eval(&op, &[Some(&x)], 1).unwrap();
        assert_eq!(r[0].as_slice::<i64>().unwrap(), &[1, 2, 7, 8]);
        let op = Op::Reduce {
            kind: ReduceKind::Sum,
            axes: Some(vec![3]),
            keepdims: false,
            noop_with_empty_axes: false,
        };
        assert!(eval(&op, &[Some(&x)], 1).is_err());
    }
}
