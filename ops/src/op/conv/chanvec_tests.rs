//! Tests of the channel-vector product (`chanvec.rs`) against the f64
//! reference of `testref.rs`.

use super::chanvec::{conv, fits, gather_fits, shape_fits, ChanFilter};
use super::testref::{check_packed, geom2d, Shape2d};
use crate::kernels::util::testutil::{in_pool, in_team, rnd, t};
use crate::op::{ConvAttrs, Op};

/// Planes of 7x7 and 14x14 (panels of 7 and 14 that tile them), 5x5 (a
/// partial last panel of 13), 6x6 (12), 9x9 (9, dilated) and 1x1 (one
/// position); filter counts of whole blocks of 32, of a block and a half
/// (the second register of the last block empty), of one past a block;
/// im2col convs with stride, dilation and asymmetric pads; batch 2. The
/// last four take the gathering form (`gather_fits`): stride 2 with
/// asymmetric pads, batch 2 and 40 filters; dilation 2 on rows of 30
/// (three tiles of 10); ResNet-50's 56x56 → 28x28 stride-2 3x3 with
/// fewer channels (two tiles of 14 a row, 784 positions); a 7x7 stem.
/// 14x14 outputs of 1x1 convs are read in place: the planes of a
/// pointwise one (the second shape), the im2col matrix of a stride-2 one
/// (ResNet-50's 28x28 → 14x14 projection with fewer channels; third) and
/// of a padded one with batch 2 (fourth).
const SHAPES: [Shape2d; 14] = [
    ([1, 64, 7, 7], 64, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([2, 40, 14, 14], 48, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([1, 24, 28, 28], 40, [1, 1], [2, 2], [1, 1], [0, 0, 0, 0]),
    ([2, 16, 12, 12], 33, [1, 1], [1, 1], [1, 1], [1, 1, 1, 1]),
    ([1, 16, 14, 14], 33, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
    ([1, 20, 5, 5], 32, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([1, 8, 13, 11], 70, [3, 3], [2, 2], [1, 1], [1, 0, 0, 1]),
    ([1, 3, 9, 9], 96, [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
    ([1, 130, 1, 1], 64, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([1, 32, 12, 12], 40, [2, 2], [2, 2], [1, 1], [0, 0, 0, 0]),
    ([2, 16, 15, 17], 40, [3, 3], [2, 2], [1, 1], [1, 0, 1, 1]),
    ([1, 16, 12, 30], 64, [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
    ([1, 32, 56, 56], 32, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
    ([1, 3, 32, 32], 32, [7, 7], [2, 2], [1, 1], [3, 3, 3, 3]),
];

/// Every shape, with and without bias and a prepared filter, each
/// activation and a residual, against the f64 conv: 1e-5 of 1 + |value|
/// (sums of at most 196 products of values in [-1, 1] in f32; a wrong
/// lane or row shows at the size of the values).
fn check_all() {
    if !shape_fits(64, 1, 512, 49) {
        eprintln!("SKIP channel-vector conv: no AVX-512F on this CPU (or HETFLOW_CHANVEC=0)");
        return;
    }
    // The kernel runs any one-group conv; which ones it is chosen for
    // (`shape_fits`) is a matter of speed, tested below.
    check_packed(&SHAPES, 500, 1e-5, ChanFilter::pack, conv);
}

#[test]
fn chanvec_conv_matches_reference() {
    check_all();
}

/// The same with two threads, in a rayon pool and in a team (as the CPU
/// device runs it): the filter blocks and the packing split over them.
#[test]
fn chanvec_conv_matches_reference_in_a_pool() {
    in_pool(check_all);
    in_team(check_all);
}

/// The transpose in the tiles' epilogue moves lane l of register i to
/// lane i of register l, for every (i, l).
#[test]
fn transpose16_moves_every_lane() {
    if !shape_fits(64, 1, 512, 49) {
        eprintln!("SKIP transpose16: no AVX-512F on this CPU");
        return;
    }
    let mut m = [[0f32; 16]; 16];
    for (i, row) in m.iter_mut().enumerate() {
        for (l, v) in row.iter_mut().enumerate() {
            *v = (i * 16 + l) as f32;
        }
    }
    let got = super::chanvec::transpose_for_test(m);
    for (l, row) in got.iter().enumerate() {
        for (i, &v) in row.iter().enumerate() {
            assert_eq!(v, (i * 16 + l) as f32, "lane {i} of register {l}");
        }
    }
}

/// What takes the path (ResNet-50's 7x7 and 14x14 layers, a 3x3 stride-2
/// conv to 7x7), what does not (28x28 planes, few filters or taps,
/// groups), what a session prepares for it, and the op (through `eval`)
/// against the reference on a 7x7 layer with the filter prepared.
#[test]
fn chanvec_rule_preparation_and_op() {
    if !shape_fits(2048, 1, 512, 49) {
        eprintln!("SKIP channel-vector rule: no AVX-512F on this CPU (or HETFLOW_CHANVEC=0)");
        return;
    }
    assert!(shape_fits(1024, 1, 256, 196));
    assert!(shape_fits(512, 1, 4608, 49));
    assert!(
        !shape_fits(512, 1, 128, 784),
        "28x28 planes stay on the GEMM"
    );
    assert!(!shape_fits(16, 1, 512, 49), "fewer filters than a block");
    assert!(!shape_fits(512, 1, 64, 49), "few taps: packing dominates");
    assert!(!shape_fits(512, 2, 512, 49), "groups stay on im2col");
    let g = geom2d([1, 512, 14, 14], 64, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]);
    assert!(fits(&g), "3x3 stride 2 to 7x7");
    // The gathering form: padded or strided convs with more than one tap
    // per channel, up to 28x28 outputs.
    let g = geom2d([1, 128, 56, 56], 128, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]);
    assert!(gather_fits(&g) && fits(&g), "3x3 stride 2 to 28x28");
    for sh in &SHAPES[10..] {
        let g = geom2d(sh.0, sh.1, sh.2, sh.3, sh.4, sh.5);
        assert!(
            gather_fits(&g),
            "test shape {sh:?} takes the gathering form"
        );
    }
    let g = geom2d([1, 256, 56, 56], 512, [1, 1], [2, 2], [1, 1], [0, 0, 0, 0]);
    assert!(!gather_fits(&g), "1x1 stride 2 stays on the panels");
    let g = geom2d([1, 128, 56, 56], 128, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]);
    assert!(
        !gather_fits(&g) && !fits(&g),
        "56x56 outputs stay off the path"
    );
    let (xs, ws) = ([1usize, 160, 7, 7], [64usize, 160, 1, 1]);
    let w = t(&ws, rnd(64 * 160, 17));
    let op = Op::Conv(ConvAttrs::default());
    assert!(crate::kernels::prepare(&op, 1, &w, Some(&xs)).expect("prepare"));
    assert!(w.prepared::<ChanFilter>().is_some());
    let x = t(&xs, rnd(160 * 49, 18));
    let y = crate::kernels::eval(&op, &[Some(&x), Some(&w)], 1).expect("conv");
    let want = super::testref::conv_ref(
        x.as_slice::<f32>().expect("x"),
        &xs,
        w.as_slice::<f32>().expect("w"),
        &ws,
        None,
        1,
        &[1, 1],
        &[1, 1],
        &[0, 0],
        &[7, 7],
    );
    crate::kernels::util::testutil::close(y[0].as_slice::<f32>().expect("y"), &want, 1e-5);
}
