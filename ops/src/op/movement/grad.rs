//! Gradients of the shape and data-movement ops (from
//! [`crate::autodiff`]), and two ops of the family that training adds:
//! [`Op::GatherGrad`] (Gather's backward, a scatter-add) and
//! [`Op::DropoutTrain`] (seeded training-mode dropout), with their
//! inference and host kernels.
//!
//! Views (Reshape, Flatten, Squeeze, Unsqueeze) reshape the gradient back;
//! Transpose applies the inverse permutation; Concat splits the gradient,
//! Split concatenates the pieces' gradients (zeros for unused pieces);
//! Slice pads it with zeros (unit steps; the bounds must be constants);
//! Expand sums it over the broadcast dims.

use crate::autodiff::{gy0, input, no_rule, Grad, Grads};
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Dim, Fact, Node, ValueId};
use crate::kernels::util::{input as tin, opt_input};
use crate::op::common::{input as fin, one, with_dtype};
use crate::op::{BinaryOp, Op, PadMode};
use crate::shape::{dim_axis, norm_axis, numel, transpose_perm};
use crate::tensor::Tensor;

/// The input gradients of a movement node.
pub(crate) fn grad(
    cx: &mut Grads,
    node: &Node,
    gys: &[Option<ValueId>],
    want: &[bool],
) -> Result<Grad> {
    let x = input(node, 0)?;
    let xs = cx.shape(x)?;
    let first = |g: ValueId| -> Grad {
        let mut v = vec![None; node.inputs.len()];
        v[0] = Some(g);
        v
    };
    match &node.op {
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout => {
            let gy = gy0(gys)?;
            Ok(first(cx.reshape(gy, &xs)?))
        }
        Op::Transpose { perm } => {
            let gy = gy0(gys)?;
            let p = transpose_perm(perm.as_deref(), xs.len())?;
            let mut inv = vec![0; p.len()];
            for (i, &d) in p.iter().enumerate() {
                inv[d] = i;
            }
            Ok(first(cx.transpose(gy, inv)?))
        }
        Op::Expand => {
            let gy = gy0(gys)?;
            Ok(first(cx.sum_to(gy, &xs)?))
        }
        Op::Concat { axis } => {
            let gy = gy0(gys)?;
            let a = norm_axis(*axis, xs.len())?;
            let mut sizes = Vec::new();
            for k in 0..node.inputs.len() {
                sizes.push(cx.in_shape(node, k)?[a] as i64);
            }
            let op = Op::Split {
                axis: a as i64,
                split: Some(sizes),
            };
            let parts = cx.node("d_concat", op, &[Some(gy)], node.inputs.len())?;
            Ok(parts
                .into_iter()
                .zip(want)
                .map(|(p, &w)| w.then_some(p))
                .collect())
        }
        Op::Split { axis, .. } => {
            let a = norm_axis(*axis, xs.len())?;
            let mut parts = Vec::new();
            for (k, o) in node.outputs.iter().enumerate() {
                parts.push(match gys.get(k).copied().flatten() {
                    Some(g) => g,
                    None => {
                        let s = cx.shape(*o)?;
                        let dt = cx.dtype(x).unwrap_or(DType::F32);
                        cx.constant("zeros", Tensor::zeros(dt, s))
                    }
                });
            }
            let ins: Vec<Option<ValueId>> = parts.into_iter().map(Some).collect();
            let g = cx.node("d_split", Op::Concat { axis: a as i64 }, &ins, 1)?[0];
            Ok(first(g))
        }
        Op::Slice { starts, ends, axes } => {
            let gy = gy0(gys)?;
            let consts = |cx: &Grads, k: usize| -> Option<Vec<i64>> {
                let v = node.inputs.get(k).copied().flatten()?;
                Some(cx.const_value(v)?.to_i64_vec())
            };
            let (st, en, ax, sp) = match starts {
                Some(s) => (Some(s.clone()), ends.clone(), axes.clone(), None),
                None => (consts(cx, 1), consts(cx, 2), consts(cx, 3), consts(cx, 4)),
            };
            let (Some(st), Some(en)) = (st, en) else {
                crate::bail!("Slice's gradient needs constant starts and ends");
            };
            if node.inputs.get(3).copied().flatten().is_some() && ax.is_none()
                || node.inputs.get(4).copied().flatten().is_some() && sp.is_none()
            {
                crate::bail!("Slice's gradient needs constant axes and steps");
            }
            let ax = ax.unwrap_or_else(|| (0..st.len() as i64).collect());
            let sp = sp.unwrap_or_else(|| vec![1; st.len()]);
            let r = xs.len();
            let mut pads = vec![0i64; 2 * r];
            for i in 0..st.len() {
                if sp[i] != 1 {
                    crate::bail!("Slice's gradient supports unit steps only, got {}", sp[i]);
                }
                let a = dim_axis(ax[i], r)?;
                let (lo, hi) = crate::shape::slice_range(st[i], en[i], 1, xs[a]);
                let hi = hi.max(lo);
                pads[a] = lo;
                pads[r + a] = xs[a] as i64 - hi;
            }
            let pv = cx.ints("pads", &pads)?;
            let op = Op::Pad {
                mode: PadMode::Constant,
                pads: None,
                value: 0.0,
            };
            Ok(first(cx.node1("d_slice", op, &[gy, pv])?))
        }
        Op::Gather { axis } => {
            let gy = gy0(gys)?;
            let op = Op::GatherGrad {
                axis: *axis,
                data_shape: xs,
            };
            Ok(first(cx.node1("d_gather", op, &[input(node, 1)?, gy])?))
        }
        Op::DropoutTrain { .. } => {
            let gy = gy0(gys)?;
            let Some(&mask) = node.outputs.get(1) else {
                crate::bail!("training-mode dropout needs its mask output");
            };
            Ok(first(cx.binary(BinaryOp::Mul, gy, mask)?))
        }
        _ => Err(no_rule(&node.op)),
    }
}

/// Facts of [`Op::GatherGrad`] and [`Op::DropoutTrain`].
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>> {
    match op {
        Op::GatherGrad { data_shape, .. } => {
            let gy = fin(inputs, 1)?;
            let s = data_shape.iter().map(|&d| Dim::Known(d)).collect();
            one(with_dtype(gy.dtype, Some(s)))
        }
        Op::DropoutTrain { ratio } => {
            if !(0.0..1.0).contains(ratio) {
                crate::bail!("dropout ratio must be in [0, 1), got {ratio}");
            }
            let x = fin(inputs, 0)?;
            let f = with_dtype(x.dtype, x.shape.clone());
            Ok(vec![f.clone(), f])
        }
        _ => Err(crate::op::common::other_family(op, "movement")),
    }
}

/// Host kernel of [`Op::GatherGrad`]: inputs indices and dY.
pub(crate) fn gather_grad(
    axis: i64,
    data_shape: &[usize],
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let idx = tin(inputs, 0, "indices")?;
    let gy = tin(inputs, 1, "dY")?;
    if !matches!(idx.dtype(), DType::I32 | DType::I64) || !gy.dtype().is_float() {
        crate::bail!("GatherGrad takes integer indices and a float dY");
    }
    let a = norm_axis(axis, data_shape.len())?;
    let mut ys = data_shape[..a].to_vec();
    ys.extend(idx.shape());
    ys.extend(&data_shape[a + 1..]);
    if gy.shape() != ys.as_slice() {
        crate::bail!("dY has shape {:?}, Gather's output {:?}", gy.shape(), ys);
    }
    let d = data_shape[a] as i64;
    let (outer, inner) = (numel(&data_shape[..a]), numel(&data_shape[a + 1..]));
    let iv = idx.to_i64_vec();
    let g = gy.cast(DType::F64).into_vec::<f64>()?;
    let mut gx = vec![0.0; numel(data_shape)];
    for o in 0..outer {
        for (j, &i) in iv.iter().enumerate() {
            let r = if i < 0 { i + d } else { i };
            if r < 0 || r >= d {
                crate::bail!("index {i} out of range for axis {a} of size {d}");
            }
            let src = &g[(o * iv.len() + j) * inner..][..inner];
            let dst = &mut gx[(o * d as usize + r as usize) * inner..][..inner];
            dst.iter_mut().zip(src).for_each(|(x, y)| *x += y);
        }
    }
    Ok(Tensor::from_vec(data_shape.to_vec(), gx)?.cast(gy.dtype()))
}

/// A uniform draw in [0, 1) for element `i` under `seed` (SplitMix64's
/// output function of the pair), the same on every device.
pub fn dropout_draw(seed: u64, i: u64) -> f64 {
    use crate::rng::{mix64, unit_f64, GOLDEN};
    let z = seed
        .wrapping_mul(GOLDEN)
        .wrapping_add(i.wrapping_mul(0xD1B5_4A32_D192_ED03));
    unit_f64(mix64(z))
}

/// Host kernel of [`Op::DropoutTrain`]: inputs X and the i64 seed.
pub(crate) fn dropout_train(ratio: f32, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    let x = tin(inputs, 0, "X")?;
    if !x.dtype().is_float() {
        crate::bail!("dropout needs a float tensor, got {}", x.dtype());
    }
    if !(0.0..1.0).contains(&ratio) {
        crate::bail!("dropout ratio must be in [0, 1), got {ratio}");
    }
    let seed = match opt_input(inputs, 1) {
        Some(s) if s.len() == 1 && s.dtype().is_int() => s.to_i64_vec()[0] as u64,
        Some(s) => crate::bail!(
            "the seed must be an integer scalar, got {} {:?}",
            s.dtype(),
            s.shape()
        ),
        None => crate::bail!("training-mode dropout needs a seed input"),
    };
    let keep = 1.0 - ratio as f64;
    let mask: Vec<f64> = (0..x.len() as u64)
        .map(|i| {
            if dropout_draw(seed, i) < ratio as f64 {
                0.0
            } else {
                1.0 / keep
            }
        })
        .collect();
    let xv = x.cast(DType::F64).into_vec::<f64>()?;
    let y: Vec<f64> = xv.iter().zip(&mask).map(|(a, m)| a * m).collect();
    let s = x.shape().to_vec();
    Ok(vec![
        Tensor::from_vec(s.clone(), y)?.cast(x.dtype()),
        Tensor::from_vec(s, mask)?.cast(x.dtype()),
    ])
}

#[cfg(test)]
mod tests {
    use crate::autodiff::check::{check, check_outputs, diff, Arg};
    use crate::op::Op;
    use crate::Tensor;

    fn ints(v: &[i64]) -> Arg {
        Arg::Const(Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap())
    }

    #[test]
    fn view_and_transpose_gradients() {
        check(
            Op::Reshape {
                allowzero: false,
                shape: None,
            },
            vec![diff(&[2, 3, 4], 1), ints(&[6, -1])],
            1,
        );
        check(Op::Flatten { axis: 2 }, vec![diff(&[2, 3, 2, 2], 2)], 1);
        check(
            Op::Unsqueeze {
                axes: Some(vec![0, 3]),
            },
            vec![diff(&[2, 3], 3)],
            1,
        );
        check(Op::Squeeze { axes: None }, vec![diff(&[2, 1, 3], 4)], 1);
        check(
            Op::Transpose {
                perm: Some(vec![2, 0, 1]),
            },
            vec![diff(&[2, 3, 4], 5)],
            1,
        );
        check(Op::Transpose { perm: None }, vec![diff(&[2, 3, 4], 6)], 1);
        check(Op::Expand, vec![diff(&[3, 1], 7), ints(&[2, 3, 4])], 1);
        check(Op::Identity, vec![diff(&[5], 8)], 1);
    }

    #[test]
    fn concat_split_slice_gradients() {
        check(
            Op::Concat { axis: 1 },
            vec![diff(&[2, 3], 1), diff(&[2, 1], 2), diff(&[2, 2], 3)],
            1,
        );
        check(
            Op::Split {
                axis: 1,
                split: Some(vec![1, 3]),
            },
            vec![diff(&[2, 4], 4)],
            2,
        );
        check(
            Op::Slice {
                starts: None,
                ends: None,
                axes: None,
            },
            vec![
                diff(&[4, 5], 5),
                ints(&[1, -4]),
                ints(&[3, 100]),
                ints(&[0, 1]),
            ],
            1,
        );
        check(
            Op::Slice {
                starts: Some(vec![1]),
                ends: Some(vec![-1]),
                axes: Some(vec![2]),
            },
            vec![diff(&[2, 2, 5], 6)],
            1,
        );
    }

    #[test]
    fn gather_gradient_adds_rows_gathered_twice() {
        let idx = Tensor::from_vec(vec![2, 2], vec![0i64, 2, -1, 0]).unwrap();
        check(
            Op::Gather { axis: 0 },
            vec![diff(&[3, 4], 1), Arg::Const(idx.clone())],
            1,
        );
        check(
            Op::Gather { axis: 1 },
            vec![diff(&[2, 3, 2], 2), Arg::Const(idx)],
            1,
        );
    }

    #[test]
    fn dropout_is_seeded_scaled_and_its_gradient_uses_the_mask() {
        let seed = || Arg::Const(Tensor::from_vec(vec![], vec![7i64]).unwrap());
        check_outputs(
            Op::DropoutTrain { ratio: 0.3 },
            vec![diff(&[4, 25], 1), seed()],
            2,
            &[0],
        );
        let x = Tensor::from_vec(vec![1000], vec![1.0f32; 1000]).unwrap();
        let s = Tensor::from_vec(vec![], vec![7i64]).unwrap();
        let run = |s: &Tensor| {
            crate::kernels::eval(&Op::DropoutTrain { ratio: 0.3 }, &[Some(&x), Some(s)], 2).unwrap()
        };
        let a = run(&s);
        let b = run(&s);
        assert_eq!(a[0], b[0], "same seed, same mask");
        let c = run(&Tensor::from_vec(vec![], vec![8i64]).unwrap());
        assert_ne!(a[0], c[0], "another seed, another mask");
        let y = a[0].as_slice::<f32>().unwrap();
        let dropped = y.iter().filter(|&&v| v == 0.0).count();
        assert!(
            (250..350).contains(&dropped),
            "dropped {dropped} of 1000 at ratio 0.3"
        );
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
    }
}
