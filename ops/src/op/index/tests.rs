//! Tests of the indexing ops' host kernels, through [`crate::kernels::eval`]
//! against independent references and worked examples.

use crate::kernels::eval;
use crate::kernels::util::testutil::t;
use crate::op::{Op, PadMode, ScatterReduction};
use crate::tensor::Tensor;

fn run(op: Op, ins: &[Option<&Tensor>], n: usize) -> Vec<Tensor> {
    eval(&op, ins, n).expect("eval")
}

#[test]
fn gather_and_scatter_elements_follow_the_index_rule() {
    // Reference by explicit loops over a 3x4 matrix, axis 1.
    let data: Vec<i64> = (0..12).collect();
    let idx: Vec<i64> = vec![3, 0, 1, -1, 2, 2];
    let x = t(&[3, 4], data.clone());
    let i = t(&[3, 2], idx.clone());
    let g = run(Op::GatherElements { axis: 1 }, &[Some(&x), Some(&i)], 1).remove(0);
    let mut want = vec![];
    for r in 0..3 {
        for c in 0..2 {
            let j = idx[r * 2 + c];
            let j = if j < 0 { j + 4 } else { j } as usize;
            want.push(data[r * 4 + j]);
        }
    }
    assert_eq!(g.as_slice::<i64>().unwrap(), &want[..]);
    let u = t(&[3, 2], vec![100i64, 200, 300, 400, 500, 600]);
    let s = run(
        Op::ScatterElements {
            axis: 1,
            reduction: ScatterReduction::Add,
        },
        &[Some(&x), Some(&i), Some(&u)],
        1,
    )
    .remove(0);
    let mut want = data.clone();
    for r in 0..3 {
        for c in 0..2 {
            let j = idx[r * 2 + c];
            let j = if j < 0 { j + 4 } else { j } as usize;
            want[r * 4 + j] += 100 * (r * 2 + c + 1) as i64;
        }
    }
    assert_eq!(s.as_slice::<i64>().unwrap(), &want[..]);
    let bad = t(&[3, 2], vec![4i64, 0, 0, 0, 0, 0]);
    assert!(eval(&Op::GatherElements { axis: 1 }, &[Some(&x), Some(&bad)], 1).is_err());
}

#[test]
fn gather_nd_with_batch_dims() {
    // data [2, 2, 2], indices [2, 1] with batch_dims 1: row b picks
    // data[b][idx[b]].
    let x = t(&[2, 2, 2], (0..8).map(|v| v as f32).collect());
    let i = t(&[2, 1], vec![1i64, 0]);
    let g = run(Op::GatherNd { batch_dims: 1 }, &[Some(&x), Some(&i)], 1).remove(0);
    assert_eq!(g.shape(), &[2, 2]);
    assert_eq!(g.as_slice::<f32>().unwrap(), &[2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn cumsum_exclusive_reverse_and_topk() {
    let x = t(&[4], vec![1.0f64, 2.0, 3.0, 4.0]);
    let ax = Tensor::scalar(0i64);
    let op = Op::Cumulative {
        prod: false,
        exclusive: true,
        reverse: true,
    };
    let c = run(op, &[Some(&x), Some(&ax)], 1).remove(0);
    assert_eq!(c.as_slice::<f64>().unwrap(), &[9.0, 7.0, 4.0, 0.0]);
    let x = t(&[2, 3], vec![3f32, 1.0, 3.0, -1.0, 5.0, 2.0]);
    let k = t(&[1], vec![2i64]);
    let op = Op::TopK {
        axis: 1,
        largest: true,
        sorted: true,
        k: None,
    };
    let o = run(op, &[Some(&x), Some(&k)], 2);
    assert_eq!(o[0].as_slice::<f32>().unwrap(), &[3.0, 3.0, 5.0, 2.0]);
    assert_eq!(o[1].as_slice::<i64>().unwrap(), &[0, 2, 1, 2]);
}

#[test]
fn pad_modes_match_index_formulas() {
    let x = t(&[3], vec![1i32, 2, 3]);
    let p = t(&[2], vec![4i64, 2]);
    let get = |mode| {
        run(
            Op::Pad {
                mode,
                pads: None,
                value: 0.0,
            },
            &[Some(&x), Some(&p)],
            1,
        )
        .remove(0)
        .as_slice::<i32>()
        .unwrap()
        .to_vec()
    };
    assert_eq!(get(PadMode::Constant), vec![0, 0, 0, 0, 1, 2, 3, 0, 0]);
    assert_eq!(get(PadMode::Edge), vec![1, 1, 1, 1, 1, 2, 3, 3, 3]);
    assert_eq!(get(PadMode::Wrap), vec![3, 1, 2, 3, 1, 2, 3, 1, 2]);
    assert_eq!(get(PadMode::Reflect), vec![1, 2, 3, 2, 1, 2, 3, 2, 1]);
}

#[test]
fn depth_to_space_round_trips() {
    let x = t(&[1, 8, 2, 3], (0..48).collect::<Vec<i64>>());
    for crd in [false, true] {
        let d = run(Op::DepthToSpace { blocksize: 2, crd }, &[Some(&x)], 1).remove(0);
        assert_eq!(d.shape(), &[1, 2, 4, 6]);
        let back = run(Op::SpaceToDepth { blocksize: 2, crd }, &[Some(&d)], 1).remove(0);
        assert_eq!(back, x);
    }
    // DCR element check: out[0, c, h*2+i, w*2+j] = x[0, (i*2+j)*2 + c, h, w].
    let d = run(
        Op::DepthToSpace {
            blocksize: 2,
            crd: false,
        },
        &[Some(&x)],
        1,
    )
    .remove(0);
    let dv = d.as_slice::<i64>().unwrap();
    for c in 0..2 {
        for y in 0..4 {
            for xx in 0..6 {
                let (h, i, w, j) = (y / 2, y % 2, xx / 2, xx % 2);
                let src = (((i * 2 + j) * 2 + c) * 2 + h) * 3 + w;
                assert_eq!(dv[(c * 4 + y) * 6 + xx], src as i64);
            }
        }
    }
}
