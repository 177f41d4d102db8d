//! Tests of the Winograd F(4x4, 3x3) conv (`winograd.rs`) against the f64
//! reference of `tests.rs`, on every instruction set this CPU runs.

use super::geom::Geom;
use super::testref::{check_epilogues, conv_ref, geom2d};
use super::winograd::{conv_with, shape_fits, WinoFilter};
use crate::kernels::util::testutil::{close, in_pool, in_team, isas, rnd, t};
use crate::kernels::util::Isa;
use crate::op::{resolve_window, Activation, AutoPad, ConvAttrs, Op};

/// (x shape `[n, c, h, w]`, filters, pads `[t, l, b, r]`)
type Shape = ([usize; 4], usize, [usize; 4]);

/// Tile edges (outputs not a multiple of 4), channel and filter counts
/// that are and are not multiples of 16, no, asymmetric and wide padding,
/// batch > 1.
const SHAPES: [Shape; 8] = [
    ([1, 16, 8, 8], 16, [1, 1, 1, 1]),
    ([2, 20, 13, 11], 24, [1, 1, 1, 1]),
    ([1, 33, 10, 17], 17, [0, 0, 0, 0]),
    ([1, 16, 9, 12], 40, [0, 1, 2, 0]),
    ([1, 48, 14, 14], 64, [2, 2, 2, 2]),
    ([3, 16, 16, 9], 32, [1, 0, 1, 2]),
    // The fused path's cases: 16 tiles a row (register tiles of 14 and
    // 2), 48 filters (a block of 32, then one of 16), rows of tiles past
    // the image's last rows.
    ([1, 32, 9, 61], 48, [1, 1, 1, 1]),
    ([2, 32, 20, 20], 64, [0, 1, 1, 0]),
];

/// Each instruction set with the four passes, and AVX-512F (the only one
/// the row path runs on; elsewhere `fused` is ignored) with the rows.
fn paths() -> Vec<(Isa, bool)> {
    let mut v: Vec<(Isa, bool)> = isas().into_iter().map(|i| (i, false)).collect();
    v.extend(
        isas()
            .into_iter()
            .filter(|&i| i == Isa::Avx512)
            .map(|i| (i, true)),
    );
    v
}

fn geom(xs: [usize; 4], m: usize, pads: [usize; 4]) -> Geom {
    geom2d(xs, m, [3, 3], [1, 1], [1, 1], pads)
}

/// Every shape, with and without bias and a prepared filter, with each
/// activation and a residual, against the f64 direct conv. The tolerance
/// is 1e-4 of 1 + |value|: F(4x4, 3x3) in f32 is off by up to 3e-5 of
/// that at 16 channels and 1.3e-4 at 64 (a NumPy emulation of the
/// algorithm in f32 gives the same), against about 1e-6 for the direct
/// form. Indexing mistakes
/// show as errors of the size of the values themselves.
fn check_all() {
    for (k, (xs, m, pads)) in SHAPES.into_iter().enumerate() {
        // The kernel runs any 3x3 / 1 geometry; which ones it is chosen
        // for (`shape_fits`) is a matter of speed, tested below.
        let sh = (xs, m, [3, 3], [1, 1], [1, 1], pads);
        for (isa, fused) in paths() {
            check_epilogues(
                &sh,
                40 + 10 * k as u64,
                1e-4,
                &|g, x, w, b, r, act, prep| {
                    let pre = prep.then(|| WinoFilter::transform(w, g.m, g.c).expect("transform"));
                    conv_with(isa, fused, g, pre.as_ref(), x, w, b, r, act).expect("winograd conv")
                },
            );
        }
    }
}

#[test]
fn winograd_matches_direct_conv_every_isa() {
    check_all();
}

/// The same with two threads, in a rayon pool and in a team (as the CPU
/// device runs it): every pass split over the threads.
#[test]
fn winograd_matches_direct_conv_in_a_pool() {
    in_pool(check_all);
    in_team(check_all);
}

/// Large channel counts: the error grows with the channels summed (1.5e-4
/// of 1 + |value| at 256 in the NumPy emulation; bound 5e-4).
#[test]
fn winograd_many_channels() {
    let (xs, m) = ([1, 256, 14, 14], 64);
    let g = geom(xs, m, [1, 1, 1, 1]);
    let ws = [m, xs[1], 3, 3];
    let x = rnd(xs.iter().product(), 90);
    let w = rnd(ws.iter().product(), 91);
    let want = conv_ref(
        &x,
        &xs,
        &w,
        &ws,
        None,
        1,
        &[1, 1],
        &[1, 1],
        &[1, 1],
        &g.win.output,
    );
    for (isa, fused) in paths() {
        let o =
            conv_with(isa, fused, &g, None, &x, &w, None, None, Activation::None).expect("conv");
        close(&o, &want, 5e-4);
    }
}

/// What takes the path: 3x3, stride 1, dilation 1, one group, at least 16
/// channels and filters, outputs of at least 8 a side; and what a session
/// prepares for it.
#[test]
fn winograd_rule_and_preparation() {
    let win = |xs: [usize; 2], st: [usize; 2], dl: [usize; 2]| {
        resolve_window(
            &xs,
            &[3, 3],
            &st,
            &dl,
            &[1, 1, 1, 1],
            AutoPad::NotSet,
            false,
        )
        .expect("window")
    };
    assert!(shape_fits(64, 64, 1, &win([14, 14], [1, 1], [1, 1])));
    assert!(!shape_fits(64, 64, 1, &win([14, 14], [2, 2], [1, 1])));
    assert!(!shape_fits(64, 64, 1, &win([14, 14], [1, 1], [2, 2])));
    assert!(!shape_fits(64, 64, 2, &win([14, 14], [1, 1], [1, 1])));
    assert!(!shape_fits(8, 64, 1, &win([14, 14], [1, 1], [1, 1])));
    assert!(!shape_fits(64, 8, 1, &win([14, 14], [1, 1], [1, 1])));
    assert!(!shape_fits(64, 64, 1, &win([7, 7], [1, 1], [1, 1])));
    // Fewer than 32 channels (SqueezeNet's 16-channel expands: the
    // direct kernel), and maps whose 4x4 tiles cover half as much again
    // (13x13: im2col), are left to the other paths; 27x27 and 14x14 stay.
    assert!(!shape_fits(16, 64, 1, &win([55, 55], [1, 1], [1, 1])));
    assert!(!shape_fits(64, 256, 1, &win([13, 13], [1, 1], [1, 1])));
    assert!(shape_fits(32, 128, 1, &win([27, 27], [1, 1], [1, 1])));
    assert!(shape_fits(256, 256, 1, &win([14, 14], [1, 1], [1, 1])));
    if !super::blocked::available() {
        eprintln!("SKIP Winograd preparation: no AVX-512F on this CPU");
        return;
    }
    let a = ConvAttrs {
        pads: vec![1, 1, 1, 1],
        ..Default::default()
    };
    let prep = |xs: &[usize]| {
        let w = t(&[32, 32, 3, 3], rnd(32 * 32 * 9, 5));
        crate::kernels::prepare(&Op::Conv(a.clone()), 1, &w, Some(xs)).expect("prepare");
        w
    };
    // Small maps are left to the other paths.
    assert!(prep(&[1, 32, 6, 6]).prepared::<WinoFilter>().is_none());
    assert!(prep(&[1, 32, 20, 20]).prepared::<WinoFilter>().is_some());
}
