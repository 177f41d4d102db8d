//! Gradients of the element-wise ops (from [`crate::autodiff`]), and the
//! [`Op::UnaryGrad`] backward op's inference and host kernel.
//!
//! Broadcast inputs get the output gradient summed back to their shape
//! ([`Grads::sum_to`]). Derivatives that are a product with a forward
//! value already in the graph (Exp, Log, Mul, Div) are built from Mul and
//! Div nodes; the others go through one [`Op::UnaryGrad`] node that reads
//! the saved input or output ([`GradFn::reads_output`]).

use crate::autodiff::{gy0, input, no_rule, Grad, Grads};
use crate::error::Result;
use crate::graph::{Fact, Node, ValueId};
use crate::kernels::util::{float_dispatch, input as tin, out, typed, Float};
use crate::op::common::{check_same_dtype, input as fin, one, same};
use crate::op::{BinaryOp, GradFn, Op, UnaryOp};
use crate::tensor::Tensor;

/// The input gradients of an element-wise node.
pub(crate) fn grad(
    cx: &mut Grads,
    node: &Node,
    gys: &[Option<ValueId>],
    want: &[bool],
) -> Result<Grad> {
    let gy = gy0(gys)?;
    let x = input(node, 0)?;
    let y = node.outputs[0];
    let via = |cx: &mut Grads, f: GradFn| -> Result<Grad> {
        let saved = if f.reads_output() { y } else { x };
        Ok(vec![Some(cx.node1(
            "d_act",
            Op::UnaryGrad(f),
            &[saved, gy],
        )?)])
    };
    match &node.op {
        Op::Unary(u) => match u {
            UnaryOp::Neg => Ok(vec![Some(cx.unary(UnaryOp::Neg, gy)?)]),
            UnaryOp::Relu => via(cx, GradFn::Relu),
            UnaryOp::Sigmoid => via(cx, GradFn::Sigmoid),
            UnaryOp::Tanh => via(cx, GradFn::Tanh),
            UnaryOp::Erf => via(cx, GradFn::Erf),
            UnaryOp::Sqrt => via(cx, GradFn::Sqrt),
            UnaryOp::Exp => Ok(vec![Some(cx.binary(BinaryOp::Mul, gy, y)?)]),
            UnaryOp::Log => Ok(vec![Some(cx.binary(BinaryOp::Div, gy, x)?)]),
            _ => Err(no_rule(&node.op)),
        },
        Op::LeakyRelu { alpha } => via(cx, GradFn::LeakyRelu { alpha: *alpha }),
        Op::Gelu { tanh } => via(cx, GradFn::Gelu { tanh: *tanh }),
        Op::Binary(b) => binary(cx, node, *b, gy, want),
        Op::Sum => {
            let mut g = Vec::with_capacity(node.inputs.len());
            for (k, i) in node.inputs.iter().enumerate() {
                g.push(match i {
                    Some(_) if want[k] => {
                        let s = cx.in_shape(node, k)?;
                        Some(cx.sum_to(gy, &s)?)
                    }
                    _ => None,
                });
            }
            Ok(g)
        }
        Op::Where => {
            // Input 0 is the condition; x where it holds, y elsewhere.
            let c = input(node, 0)?;
            let zero = cx.scalar_like(gy, 0.0)?;
            let mut g = vec![None; 3];
            for (k, (a, b)) in [(1, (gy, zero)), (2, (zero, gy))] {
                if want[k] {
                    let w = cx.node1("d_where", Op::Where, &[c, a, b])?;
                    let s = cx.in_shape(node, k)?;
                    g[k] = Some(cx.sum_to(w, &s)?);
                }
            }
            Ok(g)
        }
        // A cast between float types is the identity on values up to
        // rounding: its gradient is the incoming one cast back to the
        // input's type (mixed-precision training casts f32 weights to
        // bf16, so their gradients arrive as f32).
        Op::Cast { to, .. } if to.is_float() => match cx.dtype(x) {
            Some(from) if from == *to => Ok(vec![Some(gy)]),
            Some(from) if from.is_float() => Ok(vec![Some(cx.node1(
                "d_cast",
                Op::Cast {
                    to: from,
                    saturate: true,
                    round: crate::narrow::RoundMode::Up,
                },
                &[gy],
            )?)]),
            _ => Err(no_rule(&node.op)),
        },
        _ => Err(no_rule(&node.op)),
    }
}

fn binary(cx: &mut Grads, node: &Node, b: BinaryOp, gy: ValueId, want: &[bool]) -> Result<Grad> {
    let a = input(node, 0)?;
    let c = input(node, 1)?;
    let sa = cx.shape(a)?;
    let sc = cx.shape(c)?;
    let mut ga = None;
    let mut gc = None;
    match b {
        BinaryOp::Add | BinaryOp::Sub => {
            if want[0] {
                ga = Some(cx.sum_to(gy, &sa)?);
            }
            if want[1] {
                let g = if b == BinaryOp::Sub {
                    cx.unary(UnaryOp::Neg, gy)?
                } else {
                    gy
                };
                gc = Some(cx.sum_to(g, &sc)?);
            }
        }
        BinaryOp::Mul => {
            if want[0] {
                let g = cx.binary(BinaryOp::Mul, gy, c)?;
                ga = Some(cx.sum_to(g, &sa)?);
            }
            if want[1] {
                let g = cx.binary(BinaryOp::Mul, gy, a)?;
                gc = Some(cx.sum_to(g, &sc)?);
            }
        }
        BinaryOp::Div => {
            // d(a/c)/da = 1/c; d(a/c)/dc = -(a/c)/c = -y/c.
            let gq = cx.binary(BinaryOp::Div, gy, c)?;
            if want[0] {
                ga = Some(cx.sum_to(gq, &sa)?);
            }
            if want[1] {
                let g = cx.binary(BinaryOp::Mul, gq, node.outputs[0])?;
                let g = cx.unary(UnaryOp::Neg, g)?;
                gc = Some(cx.sum_to(g, &sc)?);
            }
        }
        _ => return Err(no_rule(&node.op)),
    }
    Ok(vec![ga, gc])
}

/// Facts of [`Op::UnaryGrad`]: the gradient's, after checking that the
/// saved value and the gradient agree.
pub(crate) fn infer(_op: &Op, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>> {
    let s = fin(inputs, 0)?;
    let g = fin(inputs, 1)?;
    check_same_dtype(&[s, g], "UnaryGrad")?;
    if let (Some(a), Some(b)) = (&s.shape, &g.shape) {
        if a != b {
            crate::bail!(
                "the saved value {} and the gradient {} differ in shape",
                crate::graph::fmt_shape(a),
                crate::graph::fmt_shape(b)
            );
        }
    }
    one(same(g))
}

/// Host kernel of [`Op::UnaryGrad`]: `dx = dy * f'(saved)`.
pub(crate) fn unary_grad(f: GradFn, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let s = tin(inputs, 0, "saved value")?;
    let g = tin(inputs, 1, "gradient")?;
    if s.shape() != g.shape() || s.dtype() != g.dtype() {
        crate::bail!(
            "saved value {:?} {} and gradient {:?} {} must match",
            s.shape(),
            s.dtype(),
            g.shape(),
            g.dtype()
        );
    }
    float_dispatch!(s.dtype(), "UnaryGrad", F => {
        let sv = typed::<F>(s, "saved value")?;
        let gv = typed::<F>(g, "gradient")?;
        let d = derivative::<F>(f);
        // In the device's pool only: outside one, serially (never on
        // rayon's global pool, which other devices' kernels share).
        let o: Vec<F> = crate::kernels::util::par_map2(sv, gv, |t, gi| gi * d(t));
        out(s.shape().to_vec(), o)
    })
}

fn derivative<F: Float>(f: GradFn) -> impl Fn(F) -> F + Sync + Send {
    let (zero, one, half) = (F::ZERO, F::ONE, F::c(0.5));
    let two_over_sqrt_pi = F::c(std::f64::consts::FRAC_2_SQRT_PI);
    let inv_sqrt2 = F::c(std::f64::consts::FRAC_1_SQRT_2);
    let inv_sqrt_2pi = F::c(1.0 / (2.0 * std::f64::consts::PI).sqrt());
    let (k, c) = (F::c((2.0 / std::f64::consts::PI).sqrt()), F::c(0.044715));
    let three_c = F::c(3.0 * 0.044715);
    move |t: F| match f {
        GradFn::Relu => {
            if t > zero {
                one
            } else {
                zero
            }
        }
        GradFn::LeakyRelu { alpha } => {
            if t < zero {
                F::c(alpha as f64)
            } else {
                one
            }
        }
        GradFn::Sigmoid => t * (one - t),
        GradFn::Tanh => one - t * t,
        GradFn::Erf => two_over_sqrt_pi * (-(t * t)).exp(),
        GradFn::Sqrt => half / t,
        GradFn::Gelu { tanh: false } => {
            // Φ(x) + x φ(x)
            half * (one + Float::erf(t * inv_sqrt2)) + t * inv_sqrt_2pi * (-(half * t * t)).exp()
        }
        GradFn::Gelu { tanh: true } => {
            let u = k * (t + c * t * t * t);
            let th = u.tanh();
            half * (one + th) + half * t * (one - th * th) * k * (one + three_c * t * t)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::autodiff::check::{check, check_bf16, diff, run, vals, Arg};
    use crate::op::{BinaryOp, Op, ReduceKind, UnaryOp};
    use crate::DType;

    /// Values kept away from 0 so the kinks of Relu/LeakyRelu are not
    /// straddled by the finite differences.
    fn off_zero(shape: &[usize], seed: u64) -> Arg {
        let n = shape.iter().product();
        let v = vals(n, seed, 0.1, 1.0)
            .into_iter()
            .zip(vals(n, seed + 7, -1.0, 1.0))
            .map(|(m, s)| if s < 0.0 { -m } else { m })
            .collect();
        Arg::Diff(shape.to_vec(), v)
    }

    #[test]
    fn unary_gradients_match_finite_differences() {
        for u in [
            UnaryOp::Neg,
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
            UnaryOp::Erf,
            UnaryOp::Exp,
        ] {
            check(Op::Unary(u), vec![diff(&[3, 4], 1)], 1);
        }
        check(Op::Unary(UnaryOp::Relu), vec![off_zero(&[3, 5], 2)], 1);
        let pos = Arg::Diff(vec![2, 5], vals(10, 3, 0.5, 2.0));
        check(Op::Unary(UnaryOp::Log), vec![pos], 1);
        let pos = Arg::Diff(vec![2, 5], vals(10, 4, 0.5, 2.0));
        check(Op::Unary(UnaryOp::Sqrt), vec![pos], 1);
        check(Op::LeakyRelu { alpha: 0.1 }, vec![off_zero(&[4, 3], 5)], 1);
        for tanh in [false, true] {
            check(Op::Gelu { tanh }, vec![diff(&[2, 6], 6)], 1);
        }
    }

    #[test]
    fn binary_gradients_reduce_over_broadcast_dims() {
        for b in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
            check(
                Op::Binary(b),
                vec![diff(&[2, 3, 4], 7), diff(&[3, 1], 8)],
                1,
            );
            check(
                Op::Binary(b),
                vec![diff(&[1, 4], 9), diff(&[3, 1, 4], 10)],
                1,
            );
        }
        let den = Arg::Diff(vec![4], vals(4, 11, 0.5, 2.0));
        check(Op::Binary(BinaryOp::Div), vec![diff(&[3, 4], 12), den], 1);
        check(
            Op::Sum,
            vec![diff(&[2, 3], 13), diff(&[3], 14), diff(&[2, 1], 15)],
            1,
        );
    }

    #[test]
    fn where_routes_the_gradient_by_the_condition() {
        let cond = crate::Tensor::from_vec(vec![2, 3], vec![true, false, true, false, false, true])
            .unwrap();
        check(
            Op::Where,
            vec![Arg::Const(cond), diff(&[2, 3], 16), diff(&[3], 17)],
            1,
        );
    }

    #[test]
    fn activation_gradients_on_bf16_tensors() {
        check_bf16(Op::Unary(UnaryOp::Relu), vec![off_zero(&[3, 5], 2)], 1);
        check_bf16(Op::Unary(UnaryOp::Tanh), vec![diff(&[3, 4], 1)], 1);
    }

    #[test]
    fn a_cast_between_floats_casts_its_gradient_back() {
        // L = sum(f32(relu(bf16(x))) * r), x f32: dL/dx = bf16(r) where
        // x > 0, else 0, and it arrives as f32 (through the Cast rule;
        // the Relu backward runs on bf16).
        use crate::graph::{Dim, Graph};
        let x: Vec<f64> = match off_zero(&[3, 4], 3) {
            Arg::Diff(_, v) => v,
            _ => unreachable!(),
        };
        let r = vals(12, 4, -1.0, 1.0);
        let mut g = Graph::default();
        let xi = g.add_input("x", DType::F32, vec![Dim::Known(3), Dim::Known(4)]);
        let cast = |to| Op::Cast {
            to,
            saturate: true,
            round: crate::narrow::RoundMode::Up,
        };
        let h = g.add_node("to_bf16", cast(DType::BF16), &[xi], 1)[0];
        let a = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[h], 1)[0];
        let y = g.add_node("to_f32", cast(DType::F32), &[a], 1)[0];
        let rt = crate::Tensor::from_vec(vec![3, 4], r.clone()).unwrap();
        let rv = g.add_const("r", rt.cast(DType::F32));
        let m = g.add_node("m", Op::Binary(BinaryOp::Mul), &[y, rv], 1)[0];
        let sum = Op::Reduce {
            kind: ReduceKind::Sum,
            axes: None,
            keepdims: false,
            noop_with_empty_axes: false,
        };
        let l = g.add_node("l", sum, &[m], 1)[0];
        let mut g = g.finish().unwrap();
        let gx = crate::autodiff::differentiate(&mut g, l, &[xi]).unwrap()[0].unwrap();
        assert_eq!(g.values[gx.0].fact.dtype, Some(DType::F32));
        let feed = crate::Tensor::from_vec(vec![3, 4], x.clone()).unwrap();
        let v = run(&g, &[feed.cast(DType::F32)]);
        assert_eq!(v[&gx].dtype(), DType::F32);
        let got = v[&gx].to_f32_vec();
        let rb = rt.cast(DType::F32).cast(DType::BF16).to_f32_vec();
        for k in 0..12 {
            let want = if x[k] > 0.0 { rb[k] } else { 0.0 };
            assert_eq!(got[k], want, "element {k}");
        }
    }
}
