//! Tests of the element-wise ops' host kernels, through [`crate::kernels::eval`]
//! against independent references and worked examples.

use crate::dtype::DType;
use crate::kernels::eval;
use crate::kernels::util::testutil::t;
use crate::op::Op;
use crate::op::{BinaryOp, UnaryOp};
use crate::tensor::Tensor;

fn run(op: Op, ins: &[&Tensor]) -> Tensor {
    let ins: Vec<Option<&Tensor>> = ins.iter().map(|t| Some(*t)).collect();
    eval(&op, &ins, 1).expect("eval").remove(0)
}

#[test]
fn broadcast_add_general_and_fast_paths() {
    // [2,3,1] + [1,4] -> [2,3,4]; reference by explicit indexing.
    let a: Vec<f32> = (0..6).map(|v| v as f32).collect();
    let b: Vec<f32> = (0..4).map(|v| 10.0 * v as f32).collect();
    let r = run(
        Op::Binary(BinaryOp::Add),
        &[&t(&[2, 3, 1], a.clone()), &t(&[1, 4], b.clone())],
    );
    assert_eq!(r.shape(), &[2, 3, 4]);
    let mut want = vec![];
    for x in &a {
        for y in &b {
            want.push(x + y);
        }
    }
    assert_eq!(r.as_slice::<f32>().unwrap(), &want[..]);
    // Scalar and same-shape.
    let r = run(
        Op::Binary(BinaryOp::Mul),
        &[&t(&[3], vec![1f64, 2., 3.]), &t(&[], vec![2f64])],
    );
    assert_eq!(r.as_slice::<f64>().unwrap(), &[2., 4., 6.]);
    // Channel bias [1,C,1,1] on [N,C,H,W] with integers.
    let x: Vec<i32> = (0..2 * 3 * 2 * 2).collect();
    let r = run(
        Op::Binary(BinaryOp::Sub),
        &[
            &t(&[2, 3, 2, 2], x.clone()),
            &t(&[1, 3, 1, 1], vec![0, 100, 200]),
        ],
    );
    let got = r.as_slice::<i32>().unwrap();
    for (i, &g) in got.iter().enumerate() {
        assert_eq!(g, x[i] - 100 * ((i / 4) % 3) as i32);
    }
}

#[test]
fn big_broadcast_parallel_matches() {
    crate::kernels::util::testutil::in_team(big_broadcast_case);
    crate::kernels::util::testutil::in_pool(big_broadcast_case);
}

fn big_broadcast_case() {
    {
        let n = 70_000;
        let a: Vec<f32> = (0..n).map(|v| v as f32).collect();
        let r = run(
            Op::Binary(BinaryOp::Add),
            &[&t(&[n / 7, 7], a.clone()), &t(&[7], vec![1f32; 7])],
        );
        let got = r.as_slice::<f32>().unwrap();
        assert!(got.iter().zip(&a).all(|(g, x)| *g == x + 1.0));
    }
}

#[test]
fn int_div_truncates_and_comparisons_are_bool() {
    let r = run(
        Op::Binary(BinaryOp::Div),
        &[
            &t(&[4], vec![7i64, -7, 7, 1]),
            &t(&[4], vec![2i64, 2, 0, 1]),
        ],
    );
    assert_eq!(r.as_slice::<i64>().unwrap(), &[3, -3, 0, 1]);
    let r = run(
        Op::Binary(BinaryOp::Less),
        &[&t(&[3], vec![1i32, 5, 3]), &t(&[1], vec![3i32])],
    );
    assert_eq!(r.as_slice::<bool>().unwrap(), &[true, false, false]);
    let r = run(
        Op::Binary(BinaryOp::Xor),
        &[&t(&[2], vec![true, false]), &t(&[], vec![true])],
    );
    assert_eq!(r.as_slice::<bool>().unwrap(), &[false, true]);
    let r = run(Op::Unary(UnaryOp::Not), &[&t(&[2], vec![true, false])]);
    assert_eq!(r.as_slice::<bool>().unwrap(), &[false, true]);
}

#[test]
fn pow_with_int_exponent() {
    let r = run(
        Op::Binary(BinaryOp::Pow),
        &[&t(&[3], vec![2f32, 3., 4.]), &t(&[], vec![2i64])],
    );
    assert_eq!(r.as_slice::<f32>().unwrap(), &[4., 9., 16.]);
}

#[test]
fn unary_and_activations_match_f64() {
    let x = vec![-2.0f32, -0.5, 0.0, 0.7, 3.0];
    let xs = t(&[5], x.clone());
    let erf_ref = |v: f64| libm::erf(v);
    let g = run(Op::Gelu { tanh: false }, &[&xs]);
    let want: Vec<f64> = x
        .iter()
        .map(|&v| 0.5 * v as f64 * (1.0 + erf_ref(v as f64 / 2f64.sqrt())))
        .collect();
    crate::kernels::util::testutil::close(g.as_slice::<f32>().unwrap(), &want, 1e-6);
    let s = run(Op::Unary(UnaryOp::Sigmoid), &[&xs]);
    let want: Vec<f64> = x
        .iter()
        .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
        .collect();
    crate::kernels::util::testutil::close(s.as_slice::<f32>().unwrap(), &want, 1e-6);
    let l = run(Op::LeakyRelu { alpha: 0.1 }, &[&xs]);
    assert_eq!(l.as_slice::<f32>().unwrap(), &[-0.2, -0.05, 0.0, 0.7, 3.0]);
    let r = run(Op::Unary(UnaryOp::Relu), &[&t(&[3], vec![-1i64, 0, 5])]);
    assert_eq!(r.as_slice::<i64>().unwrap(), &[0, 0, 5]);
}

#[test]
fn f16_computes_via_f32() {
    use half::f16;
    let x = t(&[2], vec![f16::from_f32(1.5), f16::from_f32(-2.0)]);
    let r = run(Op::Unary(UnaryOp::Abs), &[&x]);
    assert_eq!(r.dtype(), DType::F16);
    assert_eq!(r.to_f32_vec(), vec![1.5, 2.0]);
}

#[test]
fn clip_attr_and_inputs() {
    let x = t(&[4], vec![-3f32, 0.5, 2.0, 9.0]);
    let r = run(
        Op::Clip {
            min: Some(0.0),
            max: Some(1.0),
        },
        &[&x],
    );
    assert_eq!(r.as_slice::<f32>().unwrap(), &[0.0, 0.5, 1.0, 1.0]);
    // min from input 1, max absent.
    let lo = Tensor::scalar(1.0f32);
    let r = eval(
        &Op::Clip {
            min: None,
            max: None,
        },
        &[Some(&x), Some(&lo), None],
        1,
    )
    .unwrap();
    assert_eq!(r[0].as_slice::<f32>().unwrap(), &[1.0, 1.0, 2.0, 9.0]);
}

#[test]
fn where_and_sum_broadcast() {
    let c = t(&[2, 1], vec![true, false]);
    let r = run(
        Op::Where,
        &[&c, &t(&[3], vec![1i64, 2, 3]), &t(&[], vec![0i64])],
    );
    assert_eq!(r.shape(), &[2, 3]);
    assert_eq!(r.as_slice::<i64>().unwrap(), &[1, 2, 3, 0, 0, 0]);
    let r = run(
        Op::Sum,
        &[
            &t(&[2], vec![1f32, 2.]),
            &t(&[2, 1], vec![10f32, 20.]),
            &t(&[], vec![100f32]),
        ],
    );
    assert_eq!(r.as_slice::<f32>().unwrap(), &[111., 112., 121., 122.]);
}

#[test]
fn mismatched_shapes_error() {
    let e = eval(
        &Op::Binary(BinaryOp::Add),
        &[
            Some(&t(&[2], vec![1f32, 2.])),
            Some(&t(&[3], vec![1f32, 2., 3.])),
        ],
        1,
    );
    assert!(e.is_err());
    let e = eval(
        &Op::Binary(BinaryOp::Add),
        &[Some(&t(&[2], vec![1f32, 2.])), None],
        1,
    );
    assert_eq!(e.unwrap_err().to_string(), "input 1 (B) is missing");
}

#[test]
fn variadic_max_min_broadcast_and_propagate_nan() {
    use crate::op::BinaryOp;
    let a = t(&[3], vec![1f32, f32::NAN, 3.0]);
    let b = t(&[3], vec![2f32, 0.0, f32::NAN]);
    let c = t(&[], vec![2.5f32]);
    let mx = run(Op::Extremum(BinaryOp::Max), &[&a, &b, &c]);
    let v = mx.as_slice::<f32>().unwrap();
    assert_eq!(v[0], 2.5);
    assert!(v[1].is_nan() && v[2].is_nan());
    let mn = run(
        Op::Extremum(BinaryOp::Min),
        &[&t(&[2], vec![4i64, -1]), &t(&[1], vec![0i64])],
    );
    assert_eq!(mn.as_slice::<i64>().unwrap(), &[0, -1]);
    let one = run(Op::Extremum(BinaryOp::Max), &[&a]);
    assert_eq!(one.shape(), &[3]);
}
