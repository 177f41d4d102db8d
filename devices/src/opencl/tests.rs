//! Kernel tests against float64 references computed here, the binary
//! path on the local platform (PoCL in CI), and the error paths. Every
//! test skips, saying so on stderr, when there is no OpenCL platform.

use super::*;
use crate::{Device, DeviceTensor};
use hetflow_ops::op::{BinaryOp, UnaryOp};
use hetflow_ops::{Op, Tensor};
use std::sync::Arc;

fn dev_with(opts: &OpenclOptions) -> Option<OpenclDevice> {
    match list_devices() {
        Ok(_) => Some(OpenclDevice::open(0, opts).expect("opencl:0 opens")),
        Err(why) => {
            eprintln!("SKIPPED (no OpenCL): {why}");
            None
        }
    }
}

fn dev() -> Option<OpenclDevice> {
    dev_with(&OpenclOptions::default())
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn up(d: &OpenclDevice, shape: &[usize], v: Vec<f32>) -> DeviceTensor {
    d.upload(Arc::new(Tensor::from_vec(shape.to_vec(), v).unwrap()))
        .unwrap()
}

fn run(d: &OpenclDevice, op: &Op, ins: &[&DeviceTensor]) -> Tensor {
    let ins: Vec<Option<&DeviceTensor>> = ins.iter().map(|t| Some(*t)).collect();
    let out = crate::testing::exec(d, op, &ins).unwrap_or_else(|e| panic!("{op}: {e}"));
    (*d.download(&out[0]).unwrap()).clone()
}

/// Max |got - want| / (1 + |want|) must stay below `tol`.
fn close(got: &Tensor, want: &[f64], shape: &[usize], tol: f64, what: &str) {
    assert_eq!(got.shape(), shape, "{what}: shape");
    let g = got.as_slice::<f32>().unwrap();
    assert_eq!(g.len(), want.len(), "{what}: length");
    let err = g
        .iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b).abs() / (1.0 + b.abs()))
        .fold(0.0, f64::max);
    assert!(
        err <= tol,
        "{what}: max relative error {err:.3e} > {tol:.0e}"
    );
}

/// float64 reference of a broadcasting binary op.
fn ref_binary(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    f: fn(f64, f64) -> f64,
) -> (Vec<f64>, Vec<usize>) {
    let out = hetflow_ops::shape::broadcast_shapes(sa, sb).unwrap();
    let n: usize = out.iter().product();
    let idx = |i: usize, s: &[usize]| {
        // Index of output element i into an operand of shape s.
        let mut rem = i;
        let mut coords = vec![0; out.len()];
        for k in (0..out.len()).rev() {
            coords[k] = rem % out[k];
            rem /= out[k];
        }
        let pad = out.len() - s.len();
        let mut off = 0;
        for k in 0..s.len() {
            let c = if s[k] == 1 { 0 } else { coords[k + pad] };
            off = off * s[k] + c;
        }
        off
    };
    let v = (0..n)
        .map(|i| f(a[idx(i, sa)] as f64, b[idx(i, sb)] as f64))
        .collect();
    (v, out)
}

fn ref_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum();
        }
    }
    y
}

/// An op with its float64 reference (and whether it needs positive input).
type UnaryCase = (UnaryOp, fn(f64) -> f64, bool);
/// A binary op with its float64 reference.
type BinaryCase = (BinaryOp, fn(f64, f64) -> f64);

#[test]
fn opencl_unary_ops_match_f64() {
    let Some(d) = dev() else { return };
    let x = data(1000, 1);
    let pos: Vec<f32> = x.iter().map(|v| v.abs() + 0.01).collect();
    let cases: [UnaryCase; 8] = [
        (UnaryOp::Relu, |v| v.max(0.0), false),
        (UnaryOp::Neg, |v| -v, false),
        (UnaryOp::Abs, f64::abs, false),
        (UnaryOp::Exp, f64::exp, false),
        (UnaryOp::Log, f64::ln, true),
        (UnaryOp::Sqrt, f64::sqrt, true),
        (UnaryOp::Sigmoid, |v| 1.0 / (1.0 + (-v).exp()), false),
        (UnaryOp::Tanh, f64::tanh, false),
    ];
    for (u, f, positive) in cases {
        let src = if positive { &pos } else { &x };
        let t = up(&d, &[10, 100], src.clone());
        let got = run(&d, &Op::Unary(u), &[&t]);
        let want: Vec<f64> = src.iter().map(|&v| f(v as f64)).collect();
        close(&got, &want, &[10, 100], 1e-5, &format!("{u:?}"));
    }
}

#[test]
fn opencl_binary_broadcasting_matches_f64() {
    let Some(d) = dev() else { return };
    let shapes: [(&[usize], &[usize]); 4] = [
        (&[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 4], &[3, 1]),
        (&[4], &[5, 2, 1]),
        (&[2, 1, 4], &[]),
    ];
    let ops: [BinaryCase; 4] = [
        (BinaryOp::Add, |a, b| a + b),
        (BinaryOp::Sub, |a, b| a - b),
        (BinaryOp::Mul, |a, b| a * b),
        (BinaryOp::Div, |a, b| a / b),
    ];
    for (sa, sb) in shapes {
        let a = data(sa.iter().product(), 2);
        // Keep divisors away from zero.
        let b: Vec<f32> = data(sb.iter().product(), 3)
            .iter()
            .map(|v| v + 2.0)
            .collect();
        let (ta, tb) = (up(&d, sa, a.clone()), up(&d, sb, b.clone()));
        for (op, f) in ops {
            let got = run(&d, &Op::Binary(op), &[&ta, &tb]);
            let (want, shape) = ref_binary(&a, sa, &b, sb, f);
            close(&got, &want, &shape, 1e-6, &format!("{op:?} {sa:?} {sb:?}"));
        }
    }
}

#[test]
fn opencl_matmul_2d_batched_and_vectors() {
    let Some(d) = dev() else { return };
    // Sizes that are not multiples of the tile.
    let (m, k, n) = (37, 19, 45);
    let (a, b) = (data(m * k, 4), data(k * n, 5));
    let got = run(
        &d,
        &Op::MatMul,
        &[&up(&d, &[m, k], a.clone()), &up(&d, &[k, n], b.clone())],
    );
    close(
        &got,
        &ref_matmul(&a, &b, m, k, n),
        &[m, n],
        1e-5,
        "matmul 2-D",
    );
    // Batched with broadcast batch dims: [3,1,m,k] x [2,k,n] -> [3,2,m,n].
    let (a, b) = (data(3 * m * k, 6), data(2 * k * n, 7));
    let got = run(
        &d,
        &Op::MatMul,
        &[
            &up(&d, &[3, 1, m, k], a.clone()),
            &up(&d, &[2, k, n], b.clone()),
        ],
    );
    let mut want = Vec::new();
    for i in 0..3 {
        for j in 0..2 {
            want.extend(ref_matmul(
                &a[i * m * k..(i + 1) * m * k],
                &b[j * k * n..(j + 1) * k * n],
                m,
                k,
                n,
            ));
        }
    }
    close(&got, &want, &[3, 2, m, n], 1e-5, "matmul batched");
    // Vector x matrix: [k] x [k, n] -> [n].
    let v = data(k, 8);
    let b = data(k * n, 9);
    let got = run(
        &d,
        &Op::MatMul,
        &[&up(&d, &[k], v.clone()), &up(&d, &[k, n], b.clone())],
    );
    close(
        &got,
        &ref_matmul(&v, &b, 1, k, n),
        &[n],
        1e-5,
        "matmul vector",
    );
}

#[test]
fn opencl_gemm_transposes_and_bias() {
    let Some(d) = dev() else { return };
    let (m, k, n) = (20, 33, 17);
    let (a, b, c) = (data(m * k, 10), data(k * n, 11), data(n, 12));
    // Stored transposed: A^T is [k, m], B^T is [n, k].
    let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
    let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
    let op = Op::Gemm {
        alpha: 0.5,
        beta: 2.0,
        trans_a: true,
        trans_b: true,
        act: Default::default(),
    };
    let got = run(
        &d,
        &op,
        &[
            &up(&d, &[k, m], at),
            &up(&d, &[n, k], bt),
            &up(&d, &[n], c.clone()),
        ],
    );
    let mm = ref_matmul(&a, &b, m, k, n);
    let want: Vec<f64> = (0..m * n)
        .map(|i| 0.5 * mm[i] + 2.0 * c[i % n] as f64)
        .collect();
    close(&got, &want, &[m, n], 1e-5, "gemm");
}

/// float64 reference of `alpha * op(A) op(B) + beta * C` with A, B stored
/// as given (transposed when `ta` / `tb`) and C of shape `sc` broadcast.
#[allow(clippy::too_many_arguments)]
fn ref_gemm(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    sc: &[usize],
    (m, k, n): (usize, usize, usize),
    (ta, tb): (bool, bool),
    alpha: f64,
    beta: f64,
) -> Vec<f64> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    av as f64 * bv as f64
                })
                .sum();
            let cv = match sc {
                [] => 0.0,
                [q] => c[if *q == 1 { 0 } else { j }] as f64,
                [r, q] => {
                    let (ri, qj) = (if *r == 1 { 0 } else { i }, if *q == 1 { 0 } else { j });
                    c[ri * q + qj] as f64
                }
                _ => unreachable!(),
            };
            y[i * n + j] = alpha * s + beta * cv;
        }
    }
    y
}

/// The register-blocked kernels' edges: sizes below one block, odd sizes
/// with partial blocks on both edges (columns for gemm_rb4 and for
/// gemm_edge), exact multiples (no edge kernel), long K; relative error
/// against float64 ≤ 1e-5.
#[test]
fn opencl_gemm_edges_match_f64() {
    let Some(d) = dev() else { return };
    let sizes = [
        (1, 1, 1),
        (17, 33, 65),
        (129, 7, 300),
        (64, 40, 32),
        (8, 16, 16),
        (7, 5, 15),
        (24, 1100, 48),
        (1, 300, 1000),
        (300, 20, 3),
        (40, 9, 55),
    ];
    for (i, &(m, k, n)) in sizes.iter().enumerate() {
        let (a, b) = (data(m * k, 20 + i as u64), data(k * n, 40 + i as u64));
        let got = run(
            &d,
            &Op::MatMul,
            &[&up(&d, &[m, k], a.clone()), &up(&d, &[k, n], b.clone())],
        );
        let want = ref_gemm(&a, &b, &[], &[], (m, k, n), (false, false), 1.0, 0.0);
        close(&got, &want, &[m, n], 1e-5, &format!("matmul {m}x{k}x{n}"));
    }
    // Broadcast batches: [2,1,m,k] x [3,k,n] -> [2,3,m,n].
    let (m, k, n) = (19, 21, 35);
    let (a, b) = (data(2 * m * k, 60), data(3 * k * n, 61));
    let got = run(
        &d,
        &Op::MatMul,
        &[
            &up(&d, &[2, 1, m, k], a.clone()),
            &up(&d, &[3, k, n], b.clone()),
        ],
    );
    let mut want = Vec::new();
    for i in 0..2 {
        for j in 0..3 {
            want.extend(ref_gemm(
                &a[i * m * k..(i + 1) * m * k],
                &b[j * k * n..(j + 1) * k * n],
                &[],
                &[],
                (m, k, n),
                (false, false),
                1.0,
                0.0,
            ));
        }
    }
    close(&got, &want, &[2, 3, m, n], 1e-5, "matmul broadcast batches");
    // Gemm: every transpose combination with alpha, beta and C of each
    // broadcastable shape, sizes with partial blocks.
    let (m, k, n) = (29, 40, 50);
    let cs: [&[usize]; 5] = [&[m, n], &[m, 1], &[1, n], &[n], &[1]];
    for (t, &(ta, tb)) in [(false, false), (true, false), (false, true), (true, true)]
        .iter()
        .enumerate()
    {
        for (q, sc) in cs.iter().enumerate() {
            let seed = 100 + 10 * t as u64 + q as u64;
            let (a, b, c) = (
                data(m * k, seed),
                data(k * n, seed + 1),
                data(sc.iter().product(), seed + 2),
            );
            let sa = if ta { [k, m] } else { [m, k] };
            let sb = if tb { [n, k] } else { [k, n] };
            let op = Op::Gemm {
                alpha: 0.75,
                beta: -1.5,
                trans_a: ta,
                trans_b: tb,
                act: Default::default(),
            };
            let got = run(
                &d,
                &op,
                &[
                    &up(&d, &sa, a.clone()),
                    &up(&d, &sb, b.clone()),
                    &up(&d, sc, c.clone()),
                ],
            );
            let want = ref_gemm(&a, &b, &c, sc, (m, k, n), (ta, tb), 0.75, -1.5);
            close(
                &got,
                &want,
                &[m, n],
                1e-5,
                &format!("gemm transA {ta} transB {tb} C {sc:?}"),
            );
        }
    }
}

/// float64 reference of a 2-D NCHW convolution with groups, strides,
/// symmetric pads, dilations, bias and optional relu.
#[allow(clippy::too_many_arguments)]
fn ref_conv2d(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    ws: [usize; 4],
    bias: &[f32],
    group: usize,
    (stride, pad, dil): (usize, usize, usize),
    relu: bool,
) -> (Vec<f64>, Vec<usize>) {
    let [n, c, ih, iw] = xs;
    let [m, cpg, kh, kw] = ws;
    let oh = (ih + 2 * pad - dil * (kh - 1) - 1) / stride + 1;
    let ow = (iw + 2 * pad - dil * (kw - 1) - 1) / stride + 1;
    let mpg = m / group;
    let mut y = vec![0.0; n * m * oh * ow];
    for b in 0..n {
        for o in 0..m {
            let g = o / mpg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bias.get(o).map_or(0.0, |&v| v as f64);
                    for ic in 0..cpg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride + ky * dil) as isize - pad as isize;
                                let ix = (ox * stride + kx * dil) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= ih as isize || ix >= iw as isize {
                                    continue;
                                }
                                let xv = x[((b * c + g * cpg + ic) * ih + iy as usize) * iw
                                    + ix as usize];
                                let wv = w[((o * cpg + ic) * kh + ky) * kw + kx];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[((b * m + o) * oh + oy) * ow + ox] = if relu { s.max(0.0) } else { s };
                }
            }
        }
    }
    (y, vec![n, m, oh, ow])
}

/// Conv through im2col + GEMM (grouped, depthwise, strided, padded,
/// dilated, 1x1 pointwise without im2col) and through the direct kernel
/// (im2col limit 0), with bias and the fused relu, against float64.
#[test]
fn opencl_conv_im2col_and_depthwise_match_f64() {
    let Some(d) = dev() else { return };
    d.set_profiling(true);
    // (x shape, w shape, group, (stride, pad, dilation), bias, relu)
    type Case = (
        [usize; 4],
        [usize; 4],
        usize,
        (usize, usize, usize),
        bool,
        bool,
    );
    let cases: [Case; 6] = [
        ([2, 6, 11, 13], [10, 3, 3, 3], 2, (2, 1, 1), true, true),
        ([1, 5, 9, 9], [17, 5, 3, 2], 1, (1, 0, 2), false, false),
        ([2, 8, 7, 5], [12, 8, 1, 1], 1, (1, 0, 1), true, false),
        ([1, 3, 20, 20], [16, 3, 5, 5], 1, (3, 2, 1), true, true),
        ([1, 4, 6, 6], [4, 1, 3, 3], 4, (1, 1, 1), true, true),
        ([1, 16, 12, 12], [9, 16, 3, 3], 1, (1, 1, 1), true, false),
    ];
    for (limit, path) in [(usize::MAX, "im2col"), (0, "direct")] {
        d.set_im2col_limit(limit);
        for (i, &(xs, ws, group, geo, has_b, relu)) in cases.iter().enumerate() {
            let seed = 200 + 3 * i as u64;
            let x = data(xs.iter().product(), seed);
            let w = data(ws.iter().product(), seed + 1);
            let bias = if has_b { data(ws[0], seed + 2) } else { vec![] };
            let (stride, pad, dil) = geo;
            let op = Op::Conv(hetflow_ops::op::ConvAttrs {
                kernel_shape: None,
                strides: vec![stride; 2],
                pads: vec![pad; 4],
                dilations: vec![dil; 2],
                group,
                auto_pad: Default::default(),
                activation: if relu {
                    hetflow_ops::op::Activation::Relu
                } else {
                    hetflow_ops::op::Activation::None
                },
                residual: false,
            });
            let (tx, tw) = (up(&d, &xs, x.clone()), up(&d, &ws, w.clone()));
            let tb = up(&d, &[ws[0]], data(ws[0], seed + 2));
            let ins: Vec<&DeviceTensor> = if has_b {
                vec![&tx, &tw, &tb]
            } else {
                vec![&tx, &tw]
            };
            let got = run(&d, &op, &ins);
            let (want, shape) = ref_conv2d(&x, xs, &w, ws, &bias, group, geo, relu);
            close(
                &got,
                &want,
                &shape,
                1e-5,
                &format!("{path} conv {xs:?} {ws:?} group {group}"),
            );
            let used = d.kernel_times().unwrap();
            assert_eq!(
                used.contains_key("conv_direct"),
                path == "direct",
                "{path}: {used:?}"
            );
        }
    }
}

#[test]
fn opencl_softmax_layernorm_transpose() {
    let Some(d) = dev() else { return };
    let shape = [2, 5, 7];
    let x = data(70, 13);
    let t = up(&d, &shape, x.clone());
    // Softmax over the middle axis.
    let got = run(
        &d,
        &Op::Softmax {
            axis: 1,
            legacy: false,
        },
        &[&t],
    );
    let mut want = vec![0.0; 70];
    for o in 0..2 {
        for i in 0..7 {
            let at = |q: usize| o * 35 + q * 7 + i;
            let m = (0..5).map(|q| x[at(q)] as f64).fold(f64::MIN, f64::max);
            let s: f64 = (0..5).map(|q| (x[at(q)] as f64 - m).exp()).sum();
            for q in 0..5 {
                want[at(q)] = (x[at(q)] as f64 - m).exp() / s;
            }
        }
    }
    close(&got, &want, &shape, 1e-6, "softmax axis 1");
    // LayerNorm over the last axis with scale and bias.
    let (g, b) = (data(7, 14), data(7, 15));
    let op = Op::LayerNorm {
        axis: -1,
        epsilon: 1e-5,
    };
    let got = run(
        &d,
        &op,
        &[&t, &up(&d, &[7], g.clone()), &up(&d, &[7], b.clone())],
    );
    let mut want = vec![0.0; 70];
    for r in 0..10 {
        let row: Vec<f64> = x[r * 7..r * 7 + 7].iter().map(|&v| v as f64).collect();
        let mean = row.iter().sum::<f64>() / 7.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 7.0;
        for q in 0..7 {
            want[r * 7 + q] = (row[q] - mean) / (var + 1e-5).sqrt() * g[q] as f64 + b[q] as f64;
        }
    }
    close(&got, &want, &shape, 1e-5, "layernorm");
    // Transpose (2, 0, 1).
    let got = run(
        &d,
        &Op::Transpose {
            perm: Some(vec![2, 0, 1]),
        },
        &[&t],
    );
    let want: Vec<f64> = (0..70)
        .map(|i| {
            let (c, r) = (i / 10, i % 10);
            let (a, bb) = (r / 5, r % 5);
            x[a * 35 + bb * 7 + c] as f64
        })
        .collect();
    close(&got, &want, &[7, 2, 5], 0.0, "transpose");
}

#[test]
fn opencl_views_share_buffers_and_read_shape_operands() {
    let Some(d) = dev() else { return };
    let x = data(24, 16);
    let t = up(&d, &[2, 3, 4], x.clone());
    let shape = d
        .upload(Arc::new(Tensor::from_vec(vec![2], vec![4i64, -1]).unwrap()))
        .unwrap();
    let out = crate::testing::exec(
        &d,
        &Op::Reshape {
            allowzero: false,
            shape: None,
        },
        &[Some(&t), Some(&shape)],
    )
    .unwrap();
    assert_eq!(out[0].shape, vec![4, 6]);
    let got = d.download(&out[0]).unwrap();
    assert_eq!(got.as_slice::<f32>().unwrap(), &x[..]);
    let created = d.pool_stats().created;
    let f = crate::testing::exec(&d, &Op::Flatten { axis: 1 }, &[Some(&t)]).unwrap();
    assert_eq!(f[0].shape, vec![2, 12]);
    assert_eq!(d.pool_stats().created, created, "a view allocated a buffer");
}

#[test]
fn opencl_refuses_what_it_cannot_run_naming_op_and_device() {
    let Some(d) = dev() else { return };
    let e = d.supports(&Op::NonZero).unwrap_err();
    assert!(e.contains("no OpenCL kernel for NonZero"), "{e}");
    assert!(d.supports(&Op::MatMul).is_ok());
    assert!(d.supports(&Op::Conv(Default::default())).is_ok());
    // Executing a refused op names the op and the device.
    let x = up(&d, &[3], vec![1.0, 0.0, 2.0]);
    let e = crate::testing::exec(&d, &Op::NonZero, &[Some(&x)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("NonZero") && e.contains("opencl:0"), "{e}");
    // An i64 input to an f32 kernel goes through the host kernel, counted.
    let t = d
        .upload(Arc::new(
            Tensor::from_vec(vec![3], vec![-1i64, 2, -3]).unwrap(),
        ))
        .unwrap();
    let y = crate::testing::exec(&d, &Op::Unary(UnaryOp::Relu), &[Some(&t)]).unwrap();
    let got = d.download(&y[0]).unwrap();
    assert_eq!(got.as_slice::<i64>().unwrap(), &[0, 2, 0]);
    assert_eq!(d.host_evals().get("Relu"), Some(&1));
}

#[test]
fn opencl_pool_reuses_freed_buffers() {
    let Some(d) = dev() else { return };
    let x = up(&d, &[256], data(256, 17));
    for _ in 0..5 {
        let y = run(&d, &Op::Unary(UnaryOp::Neg), &[&x]);
        assert_eq!(y.len(), 256);
    }
    let s = d.pool_stats();
    assert!(s.reused >= 4, "{s:?}");
}

#[test]
fn opencl_profiling_reports_kernel_times() {
    let Some(d) = dev() else { return };
    d.set_profiling(true);
    let a = up(&d, &[64, 64], data(4096, 18));
    let _ = run(&d, &Op::MatMul, &[&a, &a]);
    let t = d.kernel_times().unwrap();
    let (count, ns) = t.get("gemm_rb").copied().unwrap_or((0, 0));
    assert_eq!(count, 1);
    assert!(ns > 0, "profiling event gave 0 ns");
}

#[test]
fn opencl_binary_path_saves_and_reloads_program_binaries() {
    let Some(d) = dev() else { return };
    let dir = std::env::temp_dir().join(format!("hetflow-ocl-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A "bitstream" that provides only GEMM and Add, as an FPGA build might.
    let file = d
        .save_binary(
            &dir,
            Some(vec![
                "gemm_rb".into(),
                "gemm_rb4".into(),
                "gemm_edge".into(),
                "b_add".into(),
            ]),
        )
        .unwrap();
    assert!(std::fs::metadata(&file).unwrap().len() > 0);
    let opts = OpenclOptions {
        binaries: Some(dir.clone()),
    };
    let b = dev_with(&opts).unwrap();
    assert!(
        b.uses_binaries(),
        "a manifest entry for this device turns binary mode on"
    );
    // Ops without a binary are refused at plan time.
    let e = b.supports(&Op::Unary(UnaryOp::Relu)).unwrap_err();
    assert!(e.contains("u_relu"), "{e}");
    assert!(b.supports(&Op::MatMul).is_ok() && b.supports(&Op::Binary(BinaryOp::Add)).is_ok());
    assert!(b.supports(&Op::Identity).is_ok(), "views need no kernel");
    // ... and the loaded binary computes.
    let (m, k, n) = (9, 21, 13);
    let (x, y) = (data(m * k, 19), data(k * n, 20));
    let got = run(
        &b,
        &Op::MatMul,
        &[&up(&b, &[m, k], x.clone()), &up(&b, &[k, n], y.clone())],
    );
    close(
        &got,
        &ref_matmul(&x, &y, m, k, n),
        &[m, n],
        1e-5,
        "matmul from binary",
    );
    assert_eq!(b.programs_built(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Conv runs im2col and up to three GEMM kernels; its kernel report spans
/// all of them (at least the sum of their profiled times), not just the
/// last launch.
#[test]
fn opencl_conv_report_spans_all_its_kernels() {
    let Some(d) = dev() else { return };
    // N = 10 * 10 = 100 output positions: columns for gemm_rb and
    // gemm_rb4; M = 20: the last 4 rows for gemm_edge.
    let x = up(&d, &[1, 8, 10, 10], data(8 * 100, 1));
    let w = up(&d, &[20, 8, 3, 3], data(20 * 8 * 9, 2));
    let op = Op::Conv(hetflow_ops::op::ConvAttrs {
        kernel_shape: None,
        strides: vec![1; 2],
        pads: vec![1; 4],
        dilations: vec![1; 2],
        group: 1,
        auto_pad: Default::default(),
        activation: hetflow_ops::op::Activation::None,
        residual: false,
    });
    d.set_profiling(true);
    let out = crate::testing::exec(&d, &op, &[Some(&x), Some(&w)]).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    assert!(d.on_kernel_done(
        &out[0],
        Box::new(move |r| {
            let _ = tx.send(r.end - r.start);
        })
    ));
    let span = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("a kernel report");
    let times = d.kernel_times().unwrap();
    for k in ["im2col", "gemm_rb", "gemm_rb4", "gemm_edge"] {
        assert_eq!(times.get(k).map(|t| t.0), Some(1), "{k}: {times:?}");
    }
    let sum: u64 = times.values().map(|t| t.1).sum();
    assert!(
        span.as_nanos() as u64 + 1000 >= sum,
        "report {span:?} shorter than the kernels' {sum} ns"
    );
}

/// `program::kernels()`, read from the source text, names exactly kernels
/// the OpenCL compiler built: each is created from the program.
#[test]
fn opencl_every_listed_kernel_is_in_the_built_program() {
    let Some(d) = dev() else { return };
    let all = program::kernels();
    assert!(all.len() > 60, "{} kernels", all.len());
    for k in all {
        d.kernel_work_group(k)
            .unwrap_or_else(|e| panic!("kernel {k}: {e}"));
    }
}
