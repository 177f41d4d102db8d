//! Tests of Gemm with a fused activation (`kernel.rs`'s `gemm_op`),
//! against an f64 reference.

use crate::kernels::eval;
use crate::kernels::util::testutil::{close, rnd, t};
use crate::op::Op;
use crate::tensor::Tensor;

fn run(op: Op, ins: &[Option<&Tensor>]) -> Tensor {
    eval(&op, ins, 1).expect("eval").remove(0)
}

/// f64 reference of row-major `[m, k] x [k, n]`.
fn mm_ref(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut o = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            o[i * n + j] = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum();
        }
    }
    o
}

/// A fused activation (set by `optimize::fuse_gemm_activations`) on
/// each path: the packed small-M product, the general f32 and f64
/// products; C as a bias row, a `[1, N]` row and a full `[M, N]`;
/// against the f64 reference with the activation applied after.
#[test]
fn gemm_fused_activation_every_path() {
    use crate::kernels::prepare;
    use crate::op::Activation;
    let (n, k) = (21, 9);
    let b = rnd(n * k, 31);
    // op(B) = B^T, row-major [k, n].
    let bt: Vec<f32> = (0..k * n).map(|i| b[(i % n) * k + i / n]).collect();
    for (m, packed) in [(3, true), (32, true), (3, false), (40, false)] {
        let a = rnd(m * k, 32 + m as u64);
        let cs: [(Vec<usize>, Vec<f32>); 3] = [
            (vec![n], rnd(n, 33)),
            (vec![1, n], rnd(n, 34)),
            (vec![m, n], rnd(m * n, 35)),
        ];
        for (cshape, c) in cs {
            for act in [Activation::Relu, Activation::Clip { lo: -0.4, hi: 0.5 }] {
                let op = Op::Gemm {
                    alpha: 0.5,
                    beta: 2.0,
                    trans_a: false,
                    trans_b: true,
                    act,
                };
                let w = t(&[n, k], b.clone());
                if packed {
                    assert!(prepare(&op, 1, &w, Some(&[m, k])).unwrap());
                }
                let x = t(&[m, k], a.clone());
                let ct = t(&cshape, c.clone());
                let r = run(op, &[Some(&x), Some(&w), Some(&ct)]);
                let want: Vec<f64> = mm_ref(&a, &bt, m, n, k)
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let cv = c[if c.len() == n { i % n } else { i }] as f64;
                        let y = 0.5 * v + 2.0 * cv;
                        match act {
                            Activation::Relu => y.max(0.0),
                            Activation::Clip { lo, hi } => y.clamp(lo as f64, hi as f64),
                            Activation::None => y,
                        }
                    })
                    .collect();
                let got = r.as_slice::<f32>().unwrap();
                assert!(got.contains(&0.0) || matches!(act, Activation::Clip { .. }));
                close(got, &want, 1e-5);
            }
        }
    }
    // f64 runs the general product with the same epilogue.
    let op = Op::Gemm {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
        act: Activation::Relu,
    };
    let x = t(&[1, 2], vec![1.0f64, -2.0]);
    let w = t(&[2, 2], vec![1.0f64, 1.0, 1.0, -1.0]);
    let c = t(&[2], vec![0.5f64, 0.0]);
    let r = run(op.clone(), &[Some(&x), Some(&w), Some(&c)]);
    assert_eq!(r.as_slice::<f64>().unwrap(), &[0.0, 3.0]);
    // Integers have no fused activation: a clear error.
    let xi = t(&[1, 2], vec![1i32, 2]);
    let wi = t(&[2, 2], vec![1i32, 0, 0, 1]);
    let e = eval(&op, &[Some(&xi), Some(&wi), None], 1).unwrap_err();
    assert!(e.to_string().contains("fused activation"), "{e}");
}
