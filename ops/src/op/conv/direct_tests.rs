//! Tests of the direct conv (`direct.rs`) against the f64 reference of
//! `tests.rs`.

use super::direct::{conv, shape_fits, DirectFilter};
use super::geom::Geom;
use super::testref::{check_packed, conv_ref, geom2d, Shape2d};
use crate::kernels::util::testutil::{close, in_pool, in_team, rnd, t};
use crate::op::{resolve_window, AutoPad, ConvAttrs, Op};

/// LeNet's two convs; filter counts below, at and past a block of 8 (and
/// not a multiple of it); rows of one partial chunk, of exactly one, of
/// several with a partial last; a chunk count that leaves a lone chunk
/// after the pairs; strides, dilations, asymmetric pads; batch > 1.
const SHAPES: [Shape2d; 8] = [
    ([1, 1, 28, 28], 6, [5, 5], [1, 1], [1, 1], [2, 2, 2, 2]),
    ([1, 6, 14, 14], 16, [5, 5], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([2, 3, 16, 16], 13, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
    ([1, 2, 9, 40], 20, [3, 5], [1, 1], [1, 1], [0, 2, 1, 0]),
    ([1, 3, 23, 23], 8, [7, 7], [2, 2], [1, 1], [3, 3, 3, 3]),
    ([1, 4, 12, 12], 3, [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
    ([3, 5, 7, 9], 9, [2, 3], [2, 1], [1, 2], [1, 0, 0, 1]),
    ([1, 1, 5, 5], 1, [5, 5], [1, 1], [1, 1], [0, 0, 0, 0]),
];

fn geom(sh: &Shape2d) -> Geom {
    let (xs, m, k, st, dl, pads) = *sh;
    geom2d(xs, m, k, st, dl, pads)
}

/// Every shape, with and without bias and a prepared filter, each
/// activation and a residual, against the f64 direct conv: 1e-5 of
/// 1 + |value| (the sums are at most 150 products of values in [-1, 1]
/// in f32; an indexing mistake shows at the size of the values).
fn check_all() {
    if !shape_fits(1, 1, 1, &geom(&SHAPES[0]).win) {
        eprintln!("SKIP direct conv: no AVX-512F on this CPU (or HETFLOW_DIRECT_CONV=0)");
        return;
    }
    for sh in &SHAPES {
        assert!(super::direct::fits(&geom(sh)), "{sh:?} fits");
    }
    check_packed(&SHAPES, 300, 1e-5, DirectFilter::pack, conv);
}

#[test]
fn direct_conv_matches_reference() {
    check_all();
}

/// The same with two threads, in a rayon pool and in a team (as the CPU
/// device runs it): the tiles split over the threads.
#[test]
fn direct_conv_matches_reference_in_a_pool() {
    in_pool(check_all);
    in_team(check_all);
}

/// What takes the path, and what a session prepares for it; the op
/// (through `eval`) agrees with the reference on LeNet's first conv.
#[test]
fn direct_rule_preparation_and_op() {
    let win = |k: [usize; 2], g: usize| {
        resolve_window(
            &[14, 14],
            &k,
            &[1, 1],
            &[1, 1],
            &[0; 4],
            AutoPad::NotSet,
            false,
        )
        .map(|w| (w, g))
        .expect("window")
    };
    let fits = |c: usize, k: [usize; 2], g: usize| {
        let (w, g) = win(k, g);
        shape_fits(c, 16, g, &w)
    };
    if !fits(6, [5, 5], 1) {
        eprintln!("SKIP direct conv rule: no AVX-512F on this CPU (or HETFLOW_DIRECT_CONV=0)");
        return;
    }
    assert!(!fits(7, [5, 5], 1), "175 taps is past the rule");
    assert!(!fits(6, [1, 1], 1), "1x1 stays on the GEMM");
    assert!(!fits(6, [3, 3], 2), "groups stay on im2col");
    let a = ConvAttrs {
        pads: vec![2, 2, 2, 2],
        ..Default::default()
    };
    let (xs, ws) = ([1usize, 1, 28, 28], [6usize, 1, 5, 5]);
    let w = t(&ws, rnd(150, 7));
    let op = Op::Conv(a);
    assert!(crate::kernels::prepare(&op, 1, &w, Some(&xs)).expect("prepare"));
    assert!(w.prepared::<DirectFilter>().is_some());
    let x = t(&xs, rnd(784, 8));
    let y = crate::kernels::eval(&op, &[Some(&x), Some(&w)], 1).expect("conv");
    let want = conv_ref(
        x.as_slice::<f32>().expect("x"),
        &xs,
        w.as_slice::<f32>().expect("w"),
        &ws,
        None,
        1,
        &[1, 1],
        &[1, 1],
        &[2, 2],
        &[28, 28],
    );
    close(y[0].as_slice::<f32>().expect("y"), &want, 1e-5);
}
