//! Tests of the convolution ops' host kernels, through [`crate::kernels::eval`]
//! against independent references and worked examples.

use super::testref::{conv_ref, epilogue_ref};
use crate::kernels::eval;
use crate::kernels::util::testutil::{close, rnd, t};
use crate::op::{resolve_window, Activation, AutoPad, ConvAttrs, Op};
use crate::tensor::Tensor;

struct Case {
    xs: Vec<usize>,
    ws: Vec<usize>,
    group: usize,
    strides: Vec<usize>,
    dil: Vec<usize>,
    pads: Vec<usize>,
    auto_pad: AutoPad,
    bias: bool,
    // expected begin pads and output spatial size
    pb: Vec<usize>,
    os: Vec<usize>,
}

/// [`check_with`] on the im2col / direct paths (Winograd off, 1e-5) and
/// then on whatever the dispatch picks (Winograd F(4x4, 3x3) where it
/// fits: 3e-4, its f32 error at up to 64 channels; `wino_tests.rs`).
fn check(cs: Case) {
    // An f32 sum of k products is off by about sqrt(k) roundings of its
    // partial sums: 1e-5 of 1 + |value| up to 100 taps per filter, more
    // past that (576 taps: 2.4e-5; the kernels differ in summation order).
    let taps: usize = cs.ws[1..].iter().product();
    let grow = (taps as f64 / 100.0).sqrt().max(1.0);
    for (off, tol) in [(true, 1e-5 * grow), (false, 3e-4)] {
        super::winograd::OFF.with(|o| o.set(off));
        check_with(&cs, tol);
    }
}

fn check_with(cs: &Case, tol: f64) {
    let nx: usize = cs.xs.iter().product();
    let nw: usize = cs.ws.iter().product();
    let (x, w, b) = (rnd(nx, 11), rnd(nw, 12), rnd(cs.ws[0], 13));
    let attrs = ConvAttrs {
        kernel_shape: None,
        strides: cs.strides.clone(),
        pads: cs.pads.clone(),
        dilations: cs.dil.clone(),
        group: cs.group,
        auto_pad: cs.auto_pad,
        ..Default::default()
    };
    let (xt, wt, bt) = (
        t(&cs.xs, x.clone()),
        t(&cs.ws, w.clone()),
        t(&[cs.ws[0]], b.clone()),
    );
    let ins: Vec<Option<&Tensor>> =
        vec![Some(&xt), Some(&wt), if cs.bias { Some(&bt) } else { None }];
    let r = eval(&Op::Conv(attrs.clone()), &ins, 1)
        .expect("conv")
        .remove(0);
    // The same conv with its filter prepared as a session prepares it.
    let wp = t(&cs.ws, w.clone());
    crate::kernels::prepare(&Op::Conv(attrs.clone()), 1, &wp, Some(&cs.xs)).expect("prepare");
    let rp = eval(&Op::Conv(attrs.clone()), &[ins[0], Some(&wp), ins[2]], 1)
        .expect("prepared conv")
        .remove(0);
    let nd = cs.xs.len() - 2;
    let ones = vec![1; nd];
    let st = if cs.strides.is_empty() {
        &ones
    } else {
        &cs.strides
    };
    let dl = if cs.dil.is_empty() { &ones } else { &cs.dil };
    let want = conv_ref(
        &x,
        &cs.xs,
        &w,
        &cs.ws,
        cs.bias.then_some(&b[..]),
        cs.group,
        st,
        dl,
        &cs.pb,
        &cs.os,
    );
    let mut oshape = vec![cs.xs[0], cs.ws[0]];
    oshape.extend(&cs.os);
    assert_eq!(r.shape(), &oshape[..]);
    close(r.as_slice::<f32>().unwrap(), &want, tol);
    close(rp.as_slice::<f32>().unwrap(), &want, tol);
    // Fused activations give the activation of the plain result.
    for (act, f) in [
        (Activation::Relu, (|v: f64| v.max(0.0)) as fn(f64) -> f64),
        (Activation::Clip { lo: -0.1, hi: 0.2 }, |v: f64| {
            v.clamp(-0.1, 0.2)
        }),
    ] {
        let a = ConvAttrs {
            activation: act,
            ..attrs.clone()
        };
        let r = eval(&Op::Conv(a), &ins, 1).expect("conv").remove(0);
        let want: Vec<f64> = want.iter().map(|&v| f(v)).collect();
        close(r.as_slice::<f32>().unwrap(), &want, tol);
    }
    // A fused residual is added before the activation.
    let res = rnd(want.len(), 14);
    let rt = t(&oshape, res.clone());
    let a = ConvAttrs {
        activation: Activation::Relu,
        residual: true,
        ..attrs.clone()
    };
    let ins: Vec<Option<&Tensor>> = vec![ins[0], ins[1], ins[2], Some(&rt)];
    let r = eval(&Op::Conv(a), &ins, 1).expect("conv").remove(0);
    let want: Vec<f64> = want
        .iter()
        .zip(&res)
        .map(|(&v, &r)| (v + r as f64).max(0.0))
        .collect();
    close(r.as_slice::<f32>().unwrap(), &want, tol);
}

fn case(xs: &[usize], ws: &[usize]) -> Case {
    let nd = xs.len() - 2;
    let os = (0..nd).map(|d| xs[2 + d] - ws[2 + d] + 1).collect();
    Case {
        xs: xs.to_vec(),
        ws: ws.to_vec(),
        group: 1,
        strides: vec![],
        dil: vec![],
        pads: vec![],
        auto_pad: AutoPad::NotSet,
        bias: false,
        pb: vec![0; nd],
        os,
    }
}

#[test]
fn conv2d_plain_and_bias() {
    check(case(&[1, 3, 5, 6], &[4, 3, 3, 3]));
    check(Case {
        bias: true,
        ..case(&[2, 3, 5, 6], &[4, 3, 2, 3])
    });
}

#[test]
fn conv2d_stride_pads_dilation() {
    // H=7,W=8, k=3, pads (1,2,2,1), stride (2,3), dilation (2,1)
    // out_h = (7+1+2-5)/2+1 = 3 ; out_w = (8+2+1-3)/3+1 = 3
    check(Case {
        strides: vec![2, 3],
        dil: vec![2, 1],
        pads: vec![1, 2, 2, 1],
        bias: true,
        pb: vec![1, 2],
        os: vec![3, 3],
        ..case(&[1, 2, 7, 8], &[3, 2, 3, 3])
    });
}

#[test]
fn conv2d_groups_and_depthwise() {
    check(Case {
        group: 2,
        pads: vec![1, 1, 1, 1],
        pb: vec![1, 1],
        os: vec![5, 5],
        bias: true,
        ..case(&[2, 4, 5, 5], &[6, 2, 3, 3])
    });
    // Depthwise, stride 2, padded.
    check(Case {
        group: 4,
        strides: vec![2, 2],
        pads: vec![1, 1, 1, 1],
        pb: vec![1, 1],
        os: vec![4, 4],
        bias: true,
        ..case(&[2, 4, 7, 8], &[4, 1, 3, 3])
    });
}

#[test]
fn conv_auto_pad_same_upper() {
    // W=6, k=4, stride 2: out 3, total pad = (3-1)*2+4-6 = 2 -> (1,1);
    // H=5, k=4, stride 1: out 5, total pad 3 -> begin 1, end 2.
    check(Case {
        strides: vec![1, 2],
        auto_pad: AutoPad::SameUpper,
        pb: vec![1, 1],
        os: vec![5, 3],
        ..case(&[1, 2, 5, 6], &[3, 2, 4, 4])
    });
}

#[test]
fn conv_pointwise_1d_3d() {
    check(Case {
        bias: true,
        ..case(&[2, 8, 4, 5], &[6, 8, 1, 1])
    });
    check(Case {
        group: 2,
        ..case(&[1, 8, 4, 5], &[6, 4, 1, 1])
    });
    check(Case {
        strides: vec![2],
        pads: vec![1, 1],
        pb: vec![1],
        os: vec![5],
        ..case(&[2, 3, 9], &[4, 3, 3])
    });
    check(Case {
        pads: vec![0, 1, 1, 0, 1, 1],
        pb: vec![0, 1, 1],
        os: vec![3, 4, 4],
        bias: true,
        ..case(&[1, 2, 4, 4, 4], &[3, 2, 2, 3, 3])
    });
}

#[test]
fn conv_big_parallel_paths() {
    for team in [false, true] {
        let run = |f: &(dyn Fn() + Sync)| {
            if team {
                crate::kernels::util::testutil::in_team(f)
            } else {
                crate::kernels::util::testutil::in_pool(f)
            }
        };
        big_parallel_cases(&run);
    }
}

/// The cases of [`conv_big_parallel_paths`], run by `run` in a pool or team.
fn big_parallel_cases(run: &dyn Fn(&(dyn Fn() + Sync))) {
    run(&|| {
        // Large enough for the parallel GEMM and im2col paths.
        check(Case {
            pads: vec![1, 1, 1, 1],
            pb: vec![1, 1],
            os: vec![20, 20],
            bias: true,
            ..case(&[1, 32, 20, 20], &[48, 32, 3, 3])
        });
        check(Case {
            group: 4,
            pads: vec![1, 1, 1, 1],
            pb: vec![1, 1],
            os: vec![12, 12],
            ..case(&[2, 16, 12, 12], &[8, 4, 3, 3])
        });
        // Outputs over BLOCK_BYTES: fused blocks, by columns (a wide
        // pointwise conv) and by rows (a 14 x 14 map, many channels).
        check(Case {
            bias: true,
            os: vec![32, 32],
            pb: vec![0, 0],
            ..case(&[1, 32, 32, 32], &[128, 32, 1, 1])
        });
        check(Case {
            bias: true,
            pads: vec![1, 1, 1, 1],
            pb: vec![1, 1],
            os: vec![14, 14],
            ..case(&[1, 64, 14, 14], &[384, 64, 3, 3])
        });
        // Large im2col with small weights: the tiled path (3 tiles of 27,
        // 27 and 10 output rows), with and without stride.
        check(Case {
            pads: vec![2, 2, 2, 2],
            pb: vec![2, 2],
            os: vec![64, 64],
            bias: true,
            ..case(&[1, 3, 64, 64], &[8, 3, 5, 5])
        });
        check(Case {
            strides: vec![2, 2],
            pads: vec![3, 3, 3, 3],
            pb: vec![3, 3],
            os: vec![56, 56],
            ..case(&[2, 3, 112, 112], &[4, 3, 7, 7])
        });
    });
}

#[test]
fn conv_bad_input_errors() {
    let x = t(&[1, 3, 4, 4], vec![0f32; 48]);
    let w = t(&[2, 2, 3, 3], vec![0f32; 36]);
    assert!(eval(
        &Op::Conv(ConvAttrs {
            group: 1,
            ..Default::default()
        }),
        &[Some(&x), Some(&w)],
        1
    )
    .is_err());
    assert!(eval(&Op::Conv(ConvAttrs::default()), &[Some(&x), None], 1).is_err());
}

#[test]
fn resolve_window_rejects_empty_kernels_and_handles_empty_inputs() {
    assert!(resolve_window(&[4], &[0], &[], &[], &[], AutoPad::NotSet, false).is_err());
    let w = resolve_window(&[0], &[3], &[], &[], &[], AutoPad::SameUpper, false).unwrap();
    assert_eq!(w.output, vec![0]);
}

/// [`super::kernel::conv_blocked`] (any conv geometry, though the kernel
/// dispatcher sends it only pointwise convs) on a case, with the filter
/// packed on the fly and prepared, with bias, residual and each
/// activation, against the f64 reference.
fn check_blocked(cs: &Case) {
    use super::blocked::PackedFilter;
    use super::geom::Geom;
    use super::kernel::conv_blocked;
    if !super::blocked::available() {
        eprintln!("SKIP blocked conv product: no AVX-512F on this CPU");
        return;
    }
    let nd = cs.xs.len() - 2;
    let ones = vec![1; nd];
    let st = if cs.strides.is_empty() {
        &ones
    } else {
        &cs.strides
    };
    let dl = if cs.dil.is_empty() { &ones } else { &cs.dil };
    let win = resolve_window(
        &cs.xs[2..],
        &cs.ws[2..],
        st,
        dl,
        &cs.pads,
        cs.auto_pad,
        false,
    )
    .expect("window");
    let (m, group) = (cs.ws[0], cs.group);
    let g = Geom {
        n: cs.xs[0],
        c: cs.xs[1],
        m,
        group,
        spatial: cs.xs[2..].to_vec(),
        win,
    };
    let nw: usize = cs.ws.iter().product();
    let x = rnd(cs.xs.iter().product(), 41);
    let (w, b) = (rnd(nw, 42), rnd(m, 43));
    let with_b = conv_ref(
        &x,
        &cs.xs,
        &w,
        &cs.ws,
        Some(&b),
        group,
        st,
        dl,
        &cs.pb,
        &cs.os,
    );
    let no_b = conv_ref(&x, &cs.xs, &w, &cs.ws, None, group, st, dl, &cs.pb, &cs.os);
    let res = rnd(with_b.len(), 44);
    let pf = PackedFilter::pack(&w, m, nw / m, group).expect("pack");
    for prepared in [None, Some(&pf)] {
        for (act, with_res, bias) in [
            (Activation::None, false, true),
            (Activation::Relu, true, false),
            (Activation::Clip { lo: -0.1, hi: 0.2 }, true, true),
        ] {
            let o = conv_blocked(
                &g,
                prepared,
                &x,
                &w,
                bias.then_some(&b[..]),
                with_res.then_some(&res[..]),
                act,
            )
            .expect("blocked conv");
            let base = if bias { &with_b } else { &no_b };
            let want = epilogue_ref(base, with_res.then_some(&res[..]), act);
            close(&o, &want, 1e-5);
        }
    }
}

/// The blocked product's edges: filter rows not a multiple of its 8-row
/// blocks, columns not a multiple of its 32-column panels nor of its
/// 8-panel blocks, K over one 512-row pass (so partial sums go through the
/// output), im2col tiles, and grouped units side by side; serial and in a
/// pool. Each case also runs through `eval` (the generic path, or the
/// blocked one for a pointwise conv the rule sends there).
#[test]
fn conv_blocked_edges() {
    let cases = || {
        [
            // kdim = 70 * 9 = 630 > 512, 13 filter rows, 9x11 map.
            Case {
                pads: vec![1, 1, 1, 1],
                pb: vec![1, 1],
                os: vec![9, 11],
                bias: true,
                ..case(&[2, 70, 9, 11], &[13, 70, 3, 3])
            },
            // Pointwise with 600 input channels, 7 output channels.
            Case {
                bias: true,
                ..case(&[1, 600, 5, 7], &[7, 600, 1, 1])
            },
            // Pointwise that the dispatcher sends to the blocked product
            // (64 rows of 32), 290 columns (9 panels: past one block).
            Case {
                bias: true,
                ..case(&[2, 32, 10, 29], &[64, 32, 1, 1])
            },
            // Groups of 3 with 5 filter rows each, strided, 1 column.
            Case {
                group: 3,
                strides: vec![2, 2],
                os: vec![3, 1],
                ..case(&[3, 6, 7, 3], &[15, 2, 3, 3])
            },
            // One output column per row, 33 output rows (a tile past one
            // panel), dilated.
            Case {
                dil: vec![2, 1],
                pads: vec![2, 0, 2, 0],
                pb: vec![2, 0],
                os: vec![33, 1],
                ..case(&[1, 4, 33, 3], &[9, 4, 3, 3])
            },
            // A 1-D conv and a 3-D one.
            Case {
                strides: vec![2],
                pads: vec![1, 1],
                pb: vec![1],
                os: vec![5],
                ..case(&[2, 3, 9], &[4, 3, 3])
            },
            Case {
                pads: vec![0, 1, 1, 0, 1, 1],
                pb: vec![0, 1, 1],
                os: vec![3, 4, 4],
                ..case(&[1, 2, 4, 4, 4], &[3, 2, 2, 3, 3])
            },
        ]
    };
    for cs in cases() {
        check_blocked(&cs);
        check(cs);
    }
    crate::kernels::util::testutil::in_team(|| {
        for cs in cases() {
            check_blocked(&cs);
        }
    });
    crate::kernels::util::testutil::in_pool(|| {
        for cs in cases() {
            check_blocked(&cs);
        }
        // Large enough for split panels, parallel tiles and parallel
        // units.
        check_blocked(&Case {
            pads: vec![1, 1, 1, 1],
            pb: vec![1, 1],
            os: vec![40, 40],
            ..case(&[1, 24, 40, 40], &[40, 24, 3, 3])
        });
        let big = || case(&[1, 64, 40, 40], &[72, 64, 1, 1]);
        check_blocked(&big());
        check(big());
        check_blocked(&Case {
            group: 2,
            ..case(&[2, 8, 12, 12], &[6, 4, 1, 1])
        });
    });
}

/// The filters a session prepares: pointwise convs with many rows and a
/// small filter (the blocked product's), nothing else.
#[test]
fn prepare_packs_only_blocked_filters() {
    if !super::blocked::available() {
        eprintln!("SKIP blocked conv product: no AVX-512F on this CPU");
        return;
    }
    let prep = |ws: &[usize], a: ConvAttrs| {
        let w = t(ws, rnd(ws.iter().product(), 1));
        crate::kernels::prepare(&Op::Conv(a), 1, &w, None).expect("prepare")
    };
    assert!(prep(&[64, 32, 1, 1], ConvAttrs::default()));
    // Few rows, a large filter, a 3x3 kernel, a stride, a depthwise conv.
    assert!(!prep(&[16, 64, 1, 1], ConvAttrs::default()));
    assert!(!prep(&[512, 1024, 1, 1], ConvAttrs::default()));
    assert!(!prep(&[64, 16, 3, 3], ConvAttrs::default()));
    let strided = ConvAttrs {
        strides: vec![2, 2],
        ..Default::default()
    };
    assert!(!prep(&[64, 32, 1, 1], strided));
    let dw = ConvAttrs {
        group: 64,
        ..Default::default()
    };
    assert!(!prep(&[64, 1, 3, 3], dw));
}

/// The f32 depthwise kernel on every instruction set this CPU runs,
/// against the f64 reference: strides 1-3, dilation, asymmetric padding,
/// non-square kernels, maps narrower and wider than a 16-lane chunk,
/// batch > 1, with bias, residual and each activation.
#[test]
fn depthwise_f32_every_isa() {
    use super::depthwise::depthwise2d_f32_with;
    use super::dwflat::Flat;
    use super::geom::Geom;
    // (x shape, kernel, strides, dilations, pads [t, l, b, r])
    type Shape = ([usize; 4], [usize; 2], [usize; 2], [usize; 2], [usize; 4]);
    // Stride-1 layers with rows as long as the input's take the in-place
    // kernel (`dwflat.rs`) on AVX-512: 3x3 "same" at several sizes (one
    // plane of exactly 16 lanes, planes of under one chunk, 7x7 and 14x14
    // with rows ending inside chunks), dilation 2, a 5x5 kernel, and
    // uneven pads (rows lost at the bottom, all horizontal pad on the
    // left).
    // Planes of 16 chunks or more with a 3-column kernel take its
    // shifted-load path: "same" 3x3, rows dilated by 2, and rows lost
    // to uneven vertical pads.
    let shapes: [Shape; 17] = [
        ([1, 3, 20, 21], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        ([1, 2, 24, 19], [3, 3], [1, 1], [2, 1], [2, 1, 2, 1]),
        ([1, 2, 30, 17], [3, 3], [1, 1], [1, 1], [0, 1, 1, 1]),
        ([1, 3, 4, 4], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        ([1, 2, 2, 3], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        ([1, 20, 7, 7], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        ([2, 9, 14, 14], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        ([1, 4, 12, 13], [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
        ([1, 3, 11, 9], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2]),
        ([1, 3, 10, 9], [3, 3], [1, 1], [1, 1], [0, 2, 1, 0]),
        ([1, 3, 5, 6], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        ([2, 4, 17, 35], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        ([1, 5, 14, 33], [3, 3], [2, 2], [1, 1], [0, 1, 1, 0]),
        ([1, 2, 9, 40], [5, 5], [3, 2], [1, 2], [2, 3, 1, 2]),
        ([2, 3, 8, 8], [3, 1], [1, 3], [2, 1], [2, 0, 2, 1]),
        ([1, 2, 4, 4], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
        ([1, 3, 56, 56], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
    ];
    for (xs, k, st, dl, pads) in shapes {
        let c = xs[1];
        let win =
            resolve_window(&xs[2..], &k, &st, &dl, &pads, AutoPad::NotSet, false).expect("window");
        let os = win.output.clone();
        let ws = [c, 1, k[0], k[1]];
        let g = Geom {
            n: xs[0],
            c,
            m: c,
            group: c,
            spatial: xs[2..].to_vec(),
            win,
        };
        let x = rnd(xs.iter().product(), 21);
        let w = rnd(ws.iter().product(), 22);
        let b = rnd(c, 23);
        let plain = conv_ref(&x, &xs, &w, &ws, Some(&b), c, &st, &dl, &pads[..2], &os);
        let res = rnd(plain.len(), 24);
        // The in-place kernel's plan: none (made per call), the one made
        // at session build, or one made for another geometry (ignored).
        let own = Flat::new(&g);
        let other = Flat::new(&Geom {
            n: 1,
            c: 2,
            m: 2,
            group: 2,
            spatial: vec![7, 7],
            win: resolve_window(
                &[7, 7],
                &[3, 3],
                &[1, 1],
                &[1, 1],
                &[1, 1, 1, 1],
                AutoPad::NotSet,
                false,
            )
            .expect("window"),
        });
        for isa in crate::kernels::util::testutil::isas() {
            for (act, with_res) in [
                (Activation::None, false),
                (Activation::Relu, true),
                (Activation::Clip { lo: -0.2, hi: 0.3 }, false),
            ] {
                for flat in [None, own.as_ref(), other.as_ref()] {
                    let r = with_res.then_some(&res[..]);
                    let o = depthwise2d_f32_with(isa, &g, flat, &x, &w, Some(&b), r, act);
                    let want = epilogue_ref(&plain, with_res.then_some(&res[..]), act);
                    close(&o, &want, 1e-5);
                }
            }
        }
    }
}

/// f64 convs run the generic kernel (im2col + GEMM, the plain depthwise
/// loop).
#[test]
fn conv_f64_generic_paths() {
    for (xs, ws, group) in [
        ([2usize, 4, 6, 7], [6usize, 2, 3, 3], 2usize),
        ([1, 3, 6, 7], [3, 1, 3, 3], 3),
    ] {
        let x = rnd(xs.iter().product(), 31);
        let w = rnd(ws.iter().product(), 32);
        let to64 = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let attrs = ConvAttrs {
            pads: vec![1, 1, 1, 1],
            group,
            ..Default::default()
        };
        let (xt, wt) = (t(&xs, to64(&x)), t(&ws, to64(&w)));
        let r = eval(&Op::Conv(attrs), &[Some(&xt), Some(&wt)], 1)
            .expect("conv")
            .remove(0);
        let os = [xs[2], xs[3]];
        let want = conv_ref(
            &x,
            &xs,
            &w,
            &ws,
            None,
            group,
            &[1, 1],
            &[1, 1],
            &[1, 1],
            &os,
        );
        let got: Vec<f32> = r
            .as_slice::<f64>()
            .unwrap()
            .iter()
            .map(|&v| v as f32)
            .collect();
        close(&got, &want, 1e-5);
    }
}

/// The fused GEMM's output blocks: the cuts cover `0..len` in order,
/// every piece but the last a multiple of 16, the sizes within 16 of
/// each other (the threads' shares balance).
#[test]
fn cuts16_cover_evenly() {
    use super::kernel::cuts16;
    for (len, parts) in [
        (784, 4),
        (3136, 14),
        (3136, 8),
        (128, 1),
        (100, 7),
        (5, 3),
        (1000, 64),
    ] {
        let c = cuts16(len, parts);
        assert!(!c.is_empty() && c.len() <= parts, "{len} in {parts}: {c:?}");
        let mut at = 0;
        for (i, &(a, n)) in c.iter().enumerate() {
            assert_eq!(a, at, "{len} in {parts}: {c:?}");
            assert!(n > 0, "{len} in {parts}: empty piece in {c:?}");
            if i + 1 < c.len() {
                assert_eq!(n % 16, 0, "{len} in {parts}: {c:?}");
            }
            at += n;
        }
        assert_eq!(at, len, "{len} in {parts}: {c:?}");
        let (lo, hi) = (c.iter().map(|p| p.1).min(), c.iter().map(|p| p.1).max());
        assert!(hi.unwrap() - lo.unwrap() <= 16, "{len} in {parts}: {c:?}");
    }
    assert_eq!(
        cuts16(784, 4),
        vec![(0, 192), (192, 192), (384, 192), (576, 208)]
    );
}
