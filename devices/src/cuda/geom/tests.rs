//! Each kernel's index maths, run on the host through the geometry of
//! `geom.rs`, against the CPU kernels of `hetflow_ops` (exact for data
//! movement, float64-accumulated and within 1e-5 for arithmetic).

use super::*;
use hetflow_ops::op::{Activation, AutoPad, ReduceKind};
use hetflow_ops::{kernels::eval, Op, Tensor};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape.to_vec(), values(n, seed)).unwrap()
}

/// 0, 1, 2, ... as f32 (exact up to 2^24): data movement compares exactly.
fn iota(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape.to_vec(), (0..n).map(|i| i as f32).collect()).unwrap()
}

fn i64s(v: &[i64]) -> Tensor {
    Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap()
}

fn cpu(op: &Op, inputs: &[&Tensor], n_out: usize) -> Vec<Tensor> {
    let refs: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
    eval(op, &refs, n_out).unwrap_or_else(|e| panic!("CPU {}: {e}", op.name()))
}

/// What `strided_copy` does: out[i] = src[offsets_of(i)[0]] written at
/// offsets_of(i)[1].
fn run_copy(l: &Layout, src: &[f32], dst: &mut [f32]) {
    let n: i64 = l.dims[..l.rank as usize].iter().product();
    for i in 0..n {
        let [s, d, _] = l.offsets_of(i);
        dst[d as usize] = src[s as usize];
    }
}

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn grid_stride_launch_covers_every_element() {
    for n in [0usize, 1, 255, 256, 257, 1 << 20, 1 << 30] {
        let b = blocks_for(n) as usize;
        assert!((1..=MAX_BLOCKS).contains(&b), "{n}: {b} blocks");
        if n <= MAX_BLOCKS * THREADS as usize {
            assert!(b * THREADS as usize >= n && (b - 1) * (THREADS as usize) < n.max(1));
        } else {
            assert_eq!(b, MAX_BLOCKS);
        }
    }
}

#[test]
fn layouts_merge_contiguous_dims_and_drop_ones() {
    let s = contiguous_strides(&[2, 3, 4]);
    let l = Layout::new(&[2, 3, 4], &[&s, &s], [0; 3]).unwrap();
    assert_eq!((l.rank, l.dims[0], l.strides[0][0]), (1, 24, 1));
    // A broadcast dim (stride 0) cannot merge with its neighbours.
    let b = bcast_strides(&[3, 1], &[2, 3, 4]);
    assert_eq!(b, [0, 1, 0]);
    let l = Layout::new(&[2, 3, 4], &[&b, &s], [0; 3]).unwrap();
    assert_eq!(l.rank, 3);
    // Rank 10 with size-1 dims still fits.
    let dims = [1, 2, 1, 3, 1, 1, 2, 1, 2, 1];
    let st = contiguous_strides(&dims);
    assert!(Layout::new(&dims, &[&st], [0; 3]).is_some());
    assert_eq!(broadcast(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
    assert_eq!(broadcast(&[2, 3], &[4]), None);
    assert_eq!(
        broadcast_all(&[&[3, 1], &[1], &[2, 1, 4]]),
        Some(vec![2, 3, 4])
    );
    // The C struct: an int, padding, 8 dims, 3 x 8 strides, 3 offsets.
    assert_eq!(std::mem::size_of::<Layout>(), 8 + 8 * 8 + 3 * 8 * 8 + 3 * 8);
    assert_eq!(std::mem::size_of::<ReduceLayout>(), 8 + 4 * 8 * 8 + 8);
    assert_eq!(std::mem::size_of::<Win3>(), 7 * 3 * 8);
}

#[test]
fn transpose_matches_cpu() {
    for (shape, perm) in [
        (vec![2, 3, 4], Some(vec![2, 0, 1])),
        (vec![2, 3, 4, 5], Some(vec![0, 2, 1, 3])),
        (vec![4, 1, 3], None),
        (vec![1, 2, 3, 2, 2], Some(vec![0, 2, 1, 3, 4])),
    ] {
        let x = iota(&shape);
        let (out, l) = transpose(&shape, perm.as_deref()).unwrap();
        let mut got = vec![f32::NAN; out.iter().product()];
        run_copy(&l, &x.to_f32_vec(), &mut got);
        let want = &cpu(&Op::Transpose { perm: perm.clone() }, &[&x], 1)[0];
        assert_eq!(want.shape(), out.as_slice());
        assert_eq!(got, want.to_f32_vec(), "{shape:?} {perm:?}");
    }
    assert!(transpose(&[2, 3], Some(&[0, 0])).is_none());
}

#[test]
fn slice_matches_cpu_including_negative_steps_and_clamping() {
    let shape = [5, 7, 4];
    let x = iota(&shape);
    type Case = (Vec<i64>, Vec<i64>, Option<Vec<i64>>, Option<Vec<i64>>);
    let cases: Vec<Case> = vec![
        (vec![1], vec![4], None, None),
        (vec![0, 2], vec![-1, 100], Some(vec![1, 2]), None),
        (vec![-1], vec![-100], Some(vec![1]), Some(vec![-1])),
        (
            vec![10, 3],
            vec![-10, 0],
            Some(vec![0, 2]),
            Some(vec![-2, -1]),
        ),
        (vec![1, 0], vec![5, 7], Some(vec![-1, -2]), Some(vec![2, 3])),
        (vec![3], vec![3], None, None),
        (vec![-3], vec![i64::MAX], Some(vec![1]), Some(vec![2])),
        (
            vec![i64::MAX],
            vec![i64::MIN],
            Some(vec![0]),
            Some(vec![-1]),
        ),
    ];
    for (st, en, ax, sp) in cases {
        let (out, base, strides) = slice(&shape, &st, &en, ax.as_deref(), sp.as_deref()).unwrap();
        let n: usize = out.iter().product();
        let mut got = vec![f32::NAN; n];
        if n > 0 {
            let l =
                Layout::new(&out, &[&strides, &contiguous_strides(&out)], [base, 0, 0]).unwrap();
            run_copy(&l, &x.to_f32_vec(), &mut got);
        }
        let mut ins = vec![x.clone(), i64s(&st), i64s(&en)];
        let k = st.len() as i64;
        ins.push(i64s(ax.as_deref().unwrap_or(&(0..k).collect::<Vec<_>>())));
        ins.push(i64s(sp.as_deref().unwrap_or(&vec![1; st.len()])));
        let refs: Vec<&Tensor> = ins.iter().collect();
        let op = Op::Slice {
            starts: None,
            ends: None,
            axes: None,
        };
        let want = &cpu(&op, &refs, 1)[0];
        assert_eq!(want.shape(), out.as_slice(), "{st:?} {en:?} {ax:?} {sp:?}");
        assert_eq!(got, want.to_f32_vec(), "{st:?} {en:?} {ax:?} {sp:?}");
    }
    assert!(slice(&shape, &[0], &[1], None, Some(&[0])).is_err());
    assert!(slice(&shape, &[0, 0], &[1, 1], Some(&[1, -2]), None).is_err());
}

#[test]
fn concat_and_split_match_cpu() {
    let (a, b, c) = (
        iota(&[2, 3, 4]),
        tensor(&[2, 1, 4], 1),
        tensor(&[2, 5, 4], 2),
    );
    for axis in [1i64, -2] {
        let shapes: Vec<&[usize]> = vec![a.shape(), b.shape(), c.shape()];
        let (out, parts) = concat(&shapes, axis).unwrap();
        let mut got = vec![f32::NAN; out.iter().product()];
        for (t, l) in [&a, &b, &c].iter().zip(&parts) {
            run_copy(l, &t.to_f32_vec(), &mut got);
        }
        let want = &cpu(&Op::Concat { axis }, &[&a, &b, &c], 1)[0];
        assert_eq!(got, want.to_f32_vec());
    }
    assert!(concat(&[&[2, 3], &[3, 3]], 1).is_none());

    let x = iota(&[3, 10, 2]);
    for (sizes, n_out) in [(Some(vec![2i64, 5, 3]), 3), (None, 4)] {
        let s: Vec<usize> = match &sizes {
            Some(v) => v.iter().map(|&n| n as usize).collect(),
            None => even_split(10, n_out),
        };
        let parts = split(x.shape(), 1, &s).unwrap();
        let want = cpu(
            &Op::Split {
                axis: 1,
                split: sizes.clone(),
            },
            &[&x],
            n_out,
        );
        for ((shape, l), w) in parts.iter().zip(&want) {
            let mut got = vec![f32::NAN; shape.iter().product()];
            run_copy(l, &x.to_f32_vec(), &mut got);
            assert_eq!(w.shape(), shape.as_slice());
            assert_eq!(got, w.to_f32_vec());
        }
    }
}

#[test]
fn expand_and_where_broadcasts_match_cpu() {
    let x = iota(&[3, 1]);
    let target = [2usize, 1, 4];
    let out = broadcast(x.shape(), &target).unwrap();
    let l = Layout::new(
        &out,
        &[&bcast_strides(x.shape(), &out), &contiguous_strides(&out)],
        [0; 3],
    )
    .unwrap();
    let mut got = vec![f32::NAN; out.iter().product()];
    run_copy(&l, &x.to_f32_vec(), &mut got);
    let want = &cpu(&Op::Expand, &[&x, &i64s(&[2, 1, 4])], 1)[0];
    assert_eq!(want.shape(), out.as_slice());
    assert_eq!(got, want.to_f32_vec());

    // Where: condition [4], X [3, 1], Y [2, 1, 1] -> [2, 3, 4].
    let cond: Vec<bool> = vec![true, false, false, true];
    let ct = Tensor::from_vec(vec![4], cond.clone()).unwrap();
    let (xt, yt) = (iota(&[3, 1]), tensor(&[2, 1, 1], 3));
    let out = broadcast_all(&[ct.shape(), xt.shape(), yt.shape()]).unwrap();
    let st: Vec<Vec<i64>> = [&ct, &xt, &yt]
        .iter()
        .map(|t| bcast_strides(t.shape(), &out))
        .collect();
    let l = Layout::new(&out, &[&st[0], &st[1], &st[2]], [0; 3]).unwrap();
    let (xv, yv) = (xt.to_f32_vec(), yt.to_f32_vec());
    let got: Vec<f32> = (0..out.iter().product::<usize>() as i64)
        .map(|i| {
            let [c, a, b] = l.offsets_of(i);
            if cond[c as usize] {
                xv[a as usize]
            } else {
                yv[b as usize]
            }
        })
        .collect();
    let want = &cpu(&Op::Where, &[&ct, &xt, &yt], 1)[0];
    assert_eq!(got, want.to_f32_vec());
}

#[test]
fn gather_matches_cpu() {
    let x = iota(&[3, 5, 2]);
    let idx = Tensor::from_vec(vec![2, 2], vec![4i64, -1, 0, 2]).unwrap();
    let ([outer, len, inner], out) = gather(x.shape(), idx.shape(), 1).unwrap();
    let (xv, iv) = (x.to_f32_vec(), idx.to_i64_vec());
    // gather kernel: i -> (o, j, k) over [outer, n_idx, inner].
    let n_idx = iv.len();
    let got: Vec<f32> = (0..outer * n_idx * inner)
        .map(|i| {
            let (o, j, k) = (i / (n_idx * inner), (i / inner) % n_idx, i % inner);
            let t = if iv[j] < 0 { iv[j] + len as i64 } else { iv[j] } as usize;
            xv[(o * len + t) * inner + k]
        })
        .collect();
    let want = &cpu(&Op::Gather { axis: 1 }, &[&x, &idx], 1)[0];
    assert_eq!(want.shape(), out.as_slice());
    assert_eq!(got, want.to_f32_vec());
}

/// Convolution the way the CUDA path runs it: im2col per image into
/// `[C * k, osz]` (or X itself when pointwise, or the direct depthwise
/// loop), a GEMM per group, then bias and the fused activation.
fn conv_like_cuda(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let (osz, kdim, mg, cg) = (g.osz(), g.kdim(), g.mg(), g.cg());
    let (isz, ksz) = (g.win.in_size() as usize, g.win.kernel_size() as usize);
    let mut out = vec![0f32; g.n * g.m * osz];
    for n in 0..g.n {
        let xn = &x[n * g.c * isz..(n + 1) * g.c * isz];
        let on = &mut out[n * g.m * osz..(n + 1) * g.m * osz];
        if g.depthwise() {
            // depthwise kernel: one thread per output element.
            for (i, o) in on.iter_mut().enumerate() {
                let (ch, oi) = (i / osz, i % osz);
                let oc = unflatten3(oi as i64, &g.win.output);
                let mut acc = 0f64;
                for k in 0..ksz {
                    let kc = unflatten3(k as i64, &g.win.kernel);
                    if let Some(off) = g.win.offset(oc, kc) {
                        acc += (xn[ch * isz + off as usize] * w[ch * ksz + k]) as f64;
                    }
                }
                *o = acc as f32;
            }
        } else {
            // im2col kernel: one thread per column element (row r, col j).
            let col: Vec<f32> = if g.pointwise() {
                xn.to_vec()
            } else {
                (0..g.c * ksz * osz)
                    .map(|i| {
                        let (r, j) = (i / osz, i % osz);
                        let (ch, k) = (r / ksz, r % ksz);
                        let oc = unflatten3(j as i64, &g.win.output);
                        let kc = unflatten3(k as i64, &g.win.kernel);
                        g.win
                            .offset(oc, kc)
                            .map_or(0.0, |off| xn[ch * isz + off as usize])
                    })
                    .collect()
            };
            // Strided-batched GEMM over groups: W_g [mg, kdim] x col_g [kdim, osz].
            for gi in 0..g.group {
                for r in 0..mg {
                    for j in 0..osz {
                        let acc: f64 = (0..kdim)
                            .map(|k| {
                                (w[(gi * mg + r) * kdim + k] * col[(gi * cg * ksz + k) * osz + j])
                                    as f64
                            })
                            .sum();
                        on[(gi * mg + r) * osz + j] = acc as f32;
                    }
                }
            }
        }
        // bias_act kernel.
        for (i, o) in on.iter_mut().enumerate() {
            let mut v = *o + b.map_or(0.0, |b| b[i / osz]);
            v = match act {
                Activation::None => v,
                Activation::Relu => v.max(0.0),
                Activation::Clip { lo, hi } => v.max(lo).min(hi),
            };
            *o = v;
        }
    }
    out
}

#[test]
fn conv_as_im2col_gemm_matches_cpu() {
    struct Case {
        x: Vec<usize>,
        w: Vec<usize>,
        attrs: ConvAttrs,
        bias: bool,
    }
    let a = |strides: &[usize], pads: &[usize], dil: &[usize], group: usize| ConvAttrs {
        strides: strides.to_vec(),
        pads: pads.to_vec(),
        dilations: dil.to_vec(),
        group,
        ..Default::default()
    };
    let mut cases = vec![
        Case {
            x: vec![2, 3, 9, 8],
            w: vec![4, 3, 3, 3],
            attrs: a(&[1, 1], &[1, 1, 1, 1], &[], 1),
            bias: true,
        },
        Case {
            x: vec![1, 4, 11, 10],
            w: vec![6, 2, 3, 2],
            attrs: a(&[2, 3], &[0, 1, 2, 0], &[2, 1], 2),
            bias: false,
        },
        Case {
            x: vec![1, 5, 7, 7],
            w: vec![5, 1, 3, 3],
            attrs: a(&[2, 2], &[1, 1, 1, 1], &[], 5),
            bias: true,
        },
        Case {
            x: vec![2, 6, 5, 5],
            w: vec![4, 6, 1, 1],
            attrs: a(&[], &[], &[], 1),
            bias: true,
        },
        Case {
            x: vec![1, 6, 9, 9],
            w: vec![6, 1, 5, 5],
            attrs: a(&[1, 1], &[2, 2, 2, 2], &[2, 2], 6),
            bias: false,
        },
        Case {
            x: vec![2, 3, 13],
            w: vec![4, 3, 4],
            attrs: a(&[3], &[2, 1], &[2], 1),
            bias: true,
        },
        Case {
            x: vec![1, 2, 5, 6, 4],
            w: vec![3, 2, 2, 3, 2],
            attrs: a(&[1, 2, 1], &[1, 0, 1, 0, 1, 1], &[], 1),
            bias: true,
        },
        Case {
            x: vec![1, 3, 10, 10],
            w: vec![2, 3, 4, 4],
            attrs: a(&[3, 3], &[], &[], 1),
            bias: true,
        },
    ];
    let mut same = a(&[2, 2], &[], &[], 1);
    same.auto_pad = AutoPad::SameUpper;
    cases.push(Case {
        x: vec![1, 2, 7, 8],
        w: vec![3, 2, 3, 3],
        attrs: same.clone(),
        bias: false,
    });
    same.auto_pad = AutoPad::SameLower;
    cases.push(Case {
        x: vec![1, 2, 7, 8],
        w: vec![3, 2, 4, 2],
        attrs: same,
        bias: true,
    });
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::Clip { lo: -0.3, hi: 0.5 },
    ];
    for (ci, c) in cases.iter().enumerate() {
        let act = acts[ci % acts.len()];
        let mut attrs = c.attrs.clone();
        attrs.activation = act;
        let (x, w) = (tensor(&c.x, 10 + ci as u64), tensor(&c.w, 20 + ci as u64));
        let b = tensor(&[c.w[0]], 30 + ci as u64);
        let g = ConvGeom::new(&attrs, &c.x, &c.w).unwrap();
        let bv = b.to_f32_vec();
        let got = conv_like_cuda(
            &g,
            &x.to_f32_vec(),
            &w.to_f32_vec(),
            c.bias.then_some(&bv[..]),
            act,
        );
        let mut ins = vec![&x, &w];
        if c.bias {
            ins.push(&b);
        }
        let want = &cpu(&Op::Conv(attrs), &ins, 1)[0];
        assert_eq!(want.shape(), g.out_shape().as_slice(), "case {ci}");
        close(&got, &want.to_f32_vec(), 1e-5, &format!("conv case {ci}"));
    }
    assert!(ConvGeom::new(&ConvAttrs::default(), &[1, 3, 5, 5], &[2, 2, 3, 3]).is_err());
}

/// What the pool kernel does for one output element.
fn pool_like_cuda(
    win: &Win3,
    planes: usize,
    x: &[f32],
    is_max: bool,
    include_pad: bool,
) -> Vec<f32> {
    let (osz, isz, ksz) = (win.out_size(), win.in_size() as usize, win.kernel_size());
    (0..planes * osz as usize)
        .map(|i| {
            let (p, oi) = (i / osz as usize, i as i64 % osz);
            let oc = unflatten3(oi, &win.output);
            let (mut acc, mut n, mut padded) = (if is_max { f32::MIN } else { 0.0 }, 0, 0);
            for k in 0..ksz {
                let kc = unflatten3(k, &win.kernel);
                padded += win.in_padded(oc, kc) as i64;
                if let Some(off) = win.offset(oc, kc) {
                    let v = x[p * isz + off as usize];
                    acc = if is_max { acc.max(v) } else { acc + v };
                    n += 1;
                }
            }
            let cnt = if include_pad { padded } else { n };
            match (is_max, cnt) {
                (true, _) => acc,
                (false, 0) => 0.0,
                (false, c) => acc / c as f32,
            }
        })
        .collect()
}

#[test]
fn pools_match_cpu() {
    let p =
        |k: &[usize], s: &[usize], pads: &[usize], d: &[usize], ceil: bool, incl: bool| PoolAttrs {
            kernel_shape: k.to_vec(),
            strides: s.to_vec(),
            pads: pads.to_vec(),
            dilations: d.to_vec(),
            ceil_mode: ceil,
            count_include_pad: incl,
            ..Default::default()
        };
    let cases = [
        (
            vec![2, 3, 8, 8],
            p(&[2, 2], &[2, 2], &[], &[], false, false),
        ),
        (
            vec![1, 2, 7, 9],
            p(&[3, 3], &[2, 2], &[1, 1, 1, 1], &[], false, false),
        ),
        (
            vec![1, 2, 7, 9],
            p(&[3, 3], &[2, 2], &[1, 1, 1, 1], &[], false, true),
        ),
        (
            vec![1, 2, 7, 8],
            p(&[3, 2], &[2, 3], &[0, 1, 1, 0], &[], true, false),
        ),
        (
            vec![1, 3, 9, 9],
            p(&[2, 2], &[1, 1], &[1, 0, 0, 1], &[2, 2], true, true),
        ),
        (vec![2, 2, 11], p(&[3], &[2], &[1, 2], &[], false, true)),
        (
            vec![1, 1, 5, 6, 4],
            p(&[2, 3, 2], &[2, 1, 2], &[], &[], true, false),
        ),
    ];
    for (ci, (shape, attrs)) in cases.iter().enumerate() {
        let x = tensor(shape, 40 + ci as u64);
        let (out, win) = pool(attrs, shape).unwrap();
        for is_max in [true, false] {
            let got = pool_like_cuda(
                &win,
                shape[0] * shape[1],
                &x.to_f32_vec(),
                is_max,
                attrs.count_include_pad,
            );
            let op = if is_max {
                Op::MaxPool(attrs.clone())
            } else {
                Op::AveragePool(attrs.clone())
            };
            let want = &cpu(&op, &[&x], 1)[0];
            assert_eq!(want.shape(), out.as_slice(), "case {ci}");
            close(
                &got,
                &want.to_f32_vec(),
                1e-6,
                &format!("pool case {ci} max={is_max}"),
            );
        }
    }
}

#[test]
fn reductions_fold_axes_and_match_cpu() {
    let shape = [2, 3, 4, 5];
    let x = tensor(&shape, 7);
    let xv = x.to_f32_vec();
    for (axes, keep) in [
        (vec![1i64], true),
        (vec![-1], false),
        (vec![0, 2], true),
        (vec![1, 2], false),
        (vec![0, 1, 2, 3], false),
        (vec![], true),
        (vec![3, 0], false),
    ] {
        let (out, l) = ReduceLayout::new(&shape, &axes, keep).unwrap();
        let n_out: usize = out.iter().product();
        for kind in [
            ReduceKind::Sum,
            ReduceKind::Mean,
            ReduceKind::Max,
            ReduceKind::Min,
        ] {
            // reduce kernel: one block per output, threads over the count.
            let got: Vec<f32> = (0..n_out as i64)
                .map(|o| {
                    let vals = (0..l.count).map(|j| xv[l.offset(o, j) as usize] as f64);
                    let r = match kind {
                        ReduceKind::Max => vals.fold(f64::MIN, f64::max),
                        ReduceKind::Min => vals.fold(f64::MAX, f64::min),
                        ReduceKind::Mean => vals.sum::<f64>() / l.count as f64,
                        _ => vals.sum(),
                    };
                    r as f32
                })
                .collect();
            let op = Op::Reduce {
                kind,
                axes: Some(axes.clone()),
                keepdims: keep,
                noop_with_empty_axes: false,
            };
            let want = &cpu(&op, &[&x], 1)[0];
            assert_eq!(want.shape(), out.as_slice(), "{axes:?}");
            close(
                &got,
                &want.to_f32_vec(),
                1e-5,
                &format!("{kind:?} {axes:?}"),
            );
        }
    }
    // [2, 3, 4, 5] over axes 1, 2: kept [2, 5], reduced dims merged to [12].
    let (_, l) = ReduceLayout::new(&shape, &[1, 2], false).unwrap();
    assert_eq!((l.kept_rank, l.red_rank, l.count), (2, 1, 12));
    assert!(ReduceLayout::new(&shape, &[4], false).is_none());
}

/// LRN's channel window as `lrn_*` computes it (`before = (size - 1) / 2`,
/// `after = size / 2`), against the CPU kernel for odd and even sizes.
#[test]
fn lrn_channel_window_matches_cpu() {
    let shape = [2usize, 7, 3, 2];
    let x = tensor(&shape, 9);
    let xv = x.to_f32_vec();
    let (c, sp) = (shape[1], shape[2] * shape[3]);
    for size in [1usize, 2, 3, 4, 5, 8] {
        let (alpha, beta, bias) = (0.3f32, 0.75f32, 1.5f32);
        let alpha_n = (alpha as f64 / size as f64) as f32;
        let (before, after) = ((size - 1) / 2, size / 2);
        let got: Vec<f32> = (0..xv.len())
            .map(|i| {
                let (s, ch, img) = (i % sp, (i / sp) % c, i / (sp * c));
                let lo = ch.saturating_sub(before);
                let hi = (ch + after).min(c - 1);
                let q: f32 = (lo..=hi)
                    .map(|cc| xv[(img * c + cc) * sp + s].powi(2))
                    .sum();
                xv[i] / (bias + alpha_n * q).powf(beta)
            })
            .collect();
        let op = Op::Lrn {
            alpha,
            beta,
            bias,
            size,
        };
        close(
            &got,
            &cpu(&op, &[&x], 1)[0].to_f32_vec(),
            1e-6,
            &format!("LRN size {size}"),
        );
    }
}

/// `cast_any` (misc.cu) goes through double: float to integer truncates
/// and saturates, NaN becomes 0, anything to bool is `!= 0`. The same
/// rules written out here must agree with `Tensor::cast` on edge values.
#[test]
fn cast_rules_match_the_host_cast() {
    use hetflow_ops::DType;
    let put = |v: f64, to: DType| -> f64 {
        let sat = |lo: f64, hi: f64| {
            if v.is_nan() {
                0.0
            } else {
                v.clamp(lo, hi).trunc()
            }
        };
        match to {
            DType::I64 => sat(i64::MIN as f64, i64::MAX as f64),
            DType::I32 => sat(i32::MIN as f64, i32::MAX as f64),
            DType::U8 => sat(0.0, 255.0),
            DType::Bool => (v != 0.0) as u8 as f64,
            _ => v as f32 as f64,
        }
    };
    let vals = [
        0.0f32,
        -0.0,
        1.5,
        -1.5,
        2.5,
        -2.7,
        255.9,
        256.0,
        300.0,
        -1.0,
        3e9,
        -3e9,
        1e20,
        -1e20,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e-30,
    ];
    let x = Tensor::from_vec(vec![vals.len()], vals.to_vec()).unwrap();
    for to in [DType::I64, DType::I32, DType::U8, DType::Bool] {
        let got = x.cast(to);
        let host: Vec<f64> = match to {
            DType::Bool => got.to_f32_vec().iter().map(|&v| v as f64).collect(),
            _ => got.to_i64_vec().iter().map(|&v| v as f64).collect(),
        };
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(host[i], put(v as f64, to), "{v} to {to}");
        }
    }
}
