//! Tests of the pointwise product (`pointwise.rs`) against the f64
//! reference of `testref.rs`.

use super::blocked::PackedFilter;
use super::pointwise::{conv, shape_fits};
use super::testref::{check_packed, Shape2d};
use crate::kernels::util::testutil::{in_pool, in_team};

/// 1x1 convs over planes of 256 positions and more: whole stripes of 48
/// with a last one of 16 (16x16); a last stripe of 28, two registers, the
/// second masked (20x23, 460 positions), with 9 filters (a block and one
/// row) over 17 channels; 3 channels into 8 filters (17x17, a last stripe
/// of one position); batch 2 with 44 filters (a half-empty last block);
/// ResNet-50's 56x56 planes with 72 filters. Strided (the positions
/// gathered per piece first): ResNet-50's 56x56 → 28x28 projection with
/// fewer channels, stride 2 on odd planes with batch 2 (17x18 outputs,
/// rows that end inside a stripe), and strides 3 and 1 (10x30).
const SHAPES: [Shape2d; 8] = [
    ([1, 64, 16, 16], 64, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([1, 17, 20, 23], 9, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([1, 3, 17, 17], 8, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([2, 24, 28, 28], 44, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([1, 64, 56, 56], 72, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
    ([1, 32, 56, 56], 40, [1, 1], [2, 2], [1, 1], [0, 0, 0, 0]),
    ([2, 16, 33, 35], 16, [1, 1], [2, 2], [1, 1], [0, 0, 0, 0]),
    ([1, 8, 28, 30], 24, [1, 1], [3, 1], [1, 1], [0, 0, 0, 0]),
];

/// Every shape, with and without bias and a prepared filter, each
/// activation and a residual, against the f64 conv: 1e-5 of 1 + |value|
/// (sums of at most 64 products of values in [-1, 1] in f32; a wrong
/// lane, row or stripe shows at the size of the values).
fn check_all() {
    if !shape_fits(64, 64, 1, true, 3136) {
        eprintln!("SKIP pointwise conv: no AVX-512F on this CPU (or HETFLOW_POINTWISE=0)");
        return;
    }
    check_packed(
        &SHAPES,
        700,
        1e-5,
        |w, m, k| PackedFilter::pack(w, m, k, 1),
        conv,
    );
}

#[test]
fn pointwise_conv_matches_reference() {
    check_all();
}

/// The same with two threads, in a rayon pool and in a team (as the CPU
/// device runs it): the positions split over them in runs of 16.
#[test]
fn pointwise_conv_matches_reference_in_a_pool() {
    in_pool(check_all);
    in_team(check_all);
}

/// What takes the path: pointwise one-group convs over 256 positions or
/// more with at least a block of filters; not 14x14 planes (the
/// channel-vector product's), groups, strided or padded convs, or fewer
/// than 8 filters.
#[test]
fn pointwise_rule() {
    if !shape_fits(64, 64, 1, true, 3136) {
        eprintln!("SKIP pointwise rule: no AVX-512F on this CPU (or HETFLOW_POINTWISE=0)");
        return;
    }
    assert!(shape_fits(256, 64, 1, true, 3136));
    assert!(shape_fits(512, 128, 1, true, 784));
    assert!(!shape_fits(1024, 256, 1, true, 196), "14x14 planes");
    assert!(!shape_fits(64, 64, 2, true, 3136), "groups");
    assert!(!shape_fits(64, 64, 1, false, 3136), "not 1x1 unpadded");
    assert!(
        !shape_fits(64, 4, 1, true, 3136),
        "fewer filters than a block"
    );
}
