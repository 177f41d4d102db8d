//! Gradient checking for the rules' tests: an op's gradient from
//! [`differentiate`](super::differentiate) against float64 central finite
//! differences of the same op, computed here by re-running the forward
//! kernels on perturbed inputs.
//!
//! The checked function is `L = sum_k sum(out_k * R_k)` with fixed random
//! weights `R_k`, so every output element contributes with its own
//! weight. Float arguments are graph inputs (differentiated); fixed
//! arguments (labels, indices, shapes) are constants. Each check runs
//! twice: in f64 (analytic against finite differences, relative error
//! ≤ 1e-6) and in f32 (the f32 kernels' gradient against the same f64
//! finite differences, relative error ≤ 1e-3).

use super::differentiate;
use crate::dtype::DType;
use crate::graph::{Dim, Graph, ValueId};
use crate::kernels::eval;
use crate::op::{BinaryOp, Op, ReduceKind};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// One argument of the checked op.
pub(crate) enum Arg {
    /// A float input the gradient is checked for: shape and values.
    Diff(Vec<usize>, Vec<f64>),
    /// A float input held fixed (not checked).
    Fixed(Vec<usize>, Vec<f64>),
    /// A constant of any dtype (labels, indices, shapes).
    Const(Tensor),
}

/// Deterministic values in `[lo, hi)` (a splitmix stream).
pub(crate) fn vals(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut r = crate::rng::Rng::new(seed.wrapping_mul(crate::rng::GOLDEN) ^ 0xD1B5_4A32_D192_ED03);
    (0..n).map(|_| lo + (hi - lo) * r.unit()).collect()
}

/// A differentiated argument with values in [-1, 1).
pub(crate) fn diff(shape: &[usize], seed: u64) -> Arg {
    let n = shape.iter().product();
    Arg::Diff(shape.to_vec(), vals(n, seed, -1.0, 1.0))
}

fn build(
    op: &Op,
    args: &[Arg],
    n_out: usize,
    used: &[usize],
    dt: DType,
) -> (Graph, Vec<ValueId>, ValueId) {
    let mut g = Graph::default();
    let mut ins = Vec::new();
    let mut wrt = Vec::new();
    for (k, a) in args.iter().enumerate() {
        match a {
            Arg::Diff(s, _) | Arg::Fixed(s, _) => {
                let dims = s.iter().map(|&d| Dim::Known(d)).collect();
                let v = g.add_input(&format!("in{k}"), dt, dims);
                if matches!(a, Arg::Diff(..)) {
                    wrt.push(v);
                }
                ins.push(Some(v));
            }
            Arg::Const(t) => ins.push(Some(g.add_const(&format!("c{k}"), t.clone()))),
        }
    }
    let outs: Vec<ValueId> = (0..n_out)
        .map(|i| g.add_value(format!("out{i}"), Default::default()))
        .collect();
    g.nodes.push(crate::graph::Node {
        name: "checked".into(),
        op: op.clone(),
        inputs: ins,
        outputs: outs.clone(),
    });
    let mut g = g.finish().expect("forward graph infers");
    let mut terms = Vec::new();
    for (i, &o) in outs.iter().enumerate() {
        let f = g.values[o.0].fact.clone();
        if !used.contains(&i) || !f.dtype.is_some_and(|d| d.is_float()) {
            continue;
        }
        let shape = f.concrete_shape().expect("concrete output shape");
        let n: usize = shape.iter().product();
        let r = Tensor::from_vec(shape, vals(n, 1000 + i as u64, -1.0, 1.0))
            .unwrap()
            .cast(dt);
        let rv = g.add_const(&format!("r{i}"), r);
        let m = g.add_node(&format!("m{i}"), Op::Binary(BinaryOp::Mul), &[o, rv], 1)[0];
        let s = g.add_node(
            &format!("s{i}"),
            Op::Reduce {
                kind: ReduceKind::Sum,
                axes: None,
                keepdims: false,
                noop_with_empty_axes: false,
            },
            &[m],
            1,
        )[0];
        terms.push(s);
    }
    let mut loss = terms[0];
    for t in &terms[1..] {
        loss = g.add_node("acc", Op::Binary(BinaryOp::Add), &[loss, *t], 1)[0];
    }
    let g = g.finish().expect("loss graph infers");
    (g, wrt, loss)
}

/// Runs every node of `g` on the host with the graph inputs fed.
pub(crate) fn run(g: &Graph, feeds: &[Tensor]) -> HashMap<ValueId, Tensor> {
    let mut vals: HashMap<ValueId, Tensor> = HashMap::new();
    for (id, t) in &g.constants {
        vals.insert(*id, (**t).clone());
    }
    for (id, t) in g.inputs.iter().zip(feeds) {
        vals.insert(*id, t.clone());
    }
    for n in &g.nodes {
        let ins: Vec<Option<&Tensor>> = n.inputs.iter().map(|i| i.map(|i| &vals[&i])).collect();
        let outs = eval(&n.op, &ins, n.outputs.len())
            .unwrap_or_else(|e| panic!("node {} ({}): {e}", n.name, n.op.name()));
        for (o, t) in n.outputs.iter().zip(outs) {
            vals.insert(*o, t);
        }
    }
    vals
}

fn feeds(args: &[Arg], dt: DType) -> Vec<Tensor> {
    args.iter()
        .filter_map(|a| match a {
            Arg::Diff(s, v) | Arg::Fixed(s, v) => {
                Some(Tensor::from_vec(s.clone(), v.clone()).unwrap().cast(dt))
            }
            _ => None,
        })
        .collect()
}

fn scalar(t: &Tensor) -> f64 {
    t.cast(DType::F64).as_slice::<f64>().unwrap()[0]
}

/// Checks the gradient of `op` (with `n_out` outputs) for every `Diff`
/// argument, in f64 and in f32, against central differences.
pub(crate) fn check(op: Op, args: Vec<Arg>, n_out: usize) {
    let all: Vec<usize> = (0..n_out).collect();
    check_outputs(op, args, n_out, &all)
}

/// [`check`] with only the outputs in `used` in the checked function
/// (outputs no gradient flows back from, such as running statistics).
pub(crate) fn check_outputs(op: Op, args: Vec<Arg>, n_out: usize, used: &[usize]) {
    let numeric = numeric(&op, &args, n_out, used);
    for (dt, tol) in [(DType::F64, 1e-6), (DType::F32, 1e-3)] {
        compare(&op, &args, n_out, used, dt, tol, &numeric);
    }
}

/// The gradient of `op` computed on bf16 tensors (what bf16 training
/// runs: every forward and backward kernel of the check on bf16 inputs,
/// widened per op) against the float64 finite differences, within
/// `BF16_TOL` of the largest gradient element. bf16 keeps 8 significant
/// bits (a rounding is up to 2^-9 relative); the inputs, the weights `R`,
/// every intermediate and the gradient are each rounded, so a few times
/// that bound is expected.
pub(crate) fn check_bf16(op: Op, args: Vec<Arg>, n_out: usize) {
    let all: Vec<usize> = (0..n_out).collect();
    let numeric = numeric(&op, &args, n_out, &all);
    compare(&op, &args, n_out, &all, DType::BF16, BF16_TOL, &numeric);
}

/// [`check_bf16`]'s tolerance, relative to the largest gradient element.
pub(crate) const BF16_TOL: f64 = 3e-2;

/// Central finite differences in f64 of the checked function, per `Diff`
/// argument.
fn numeric(op: &Op, args: &[Arg], n_out: usize, used: &[usize]) -> Vec<Vec<f64>> {
    let (g64, _, loss) = build(op, args, n_out, used, DType::F64);
    let base = feeds(args, DType::F64);
    let diff_pos: Vec<usize> = args
        .iter()
        .filter(|a| matches!(a, Arg::Diff(..) | Arg::Fixed(..)))
        .enumerate()
        .filter(|(_, a)| matches!(a, Arg::Diff(..)))
        .map(|(i, _)| i)
        .collect();
    let h = 1e-6;
    let mut numeric: Vec<Vec<f64>> = Vec::new();
    for &fi in &diff_pos {
        let n = base[fi].len();
        let mut gi = vec![0.0; n];
        for (j, gj) in gi.iter_mut().enumerate() {
            let f = |d: f64| {
                let mut fs = base.clone();
                let mut v = fs[fi].clone().into_vec::<f64>().unwrap();
                v[j] += d;
                fs[fi] = Tensor::from_vec(base[fi].shape().to_vec(), v).unwrap();
                scalar(&run(&g64, &fs)[&loss])
            };
            *gj = (f(h) - f(-h)) / (2.0 * h);
        }
        numeric.push(gi);
    }
    numeric
}

/// The analytic gradient in `dt` against `numeric`, within `tol` of the
/// largest numeric element.
fn compare(
    op: &Op,
    args: &[Arg],
    n_out: usize,
    used: &[usize],
    dt: DType,
    tol: f64,
    numeric: &[Vec<f64>],
) {
    let (mut g, wrt_d, loss_d) = build(op, args, n_out, used, dt);
    assert_eq!(wrt_d.len(), numeric.len());
    let grads = differentiate(&mut g, loss_d, &wrt_d)
        .unwrap_or_else(|e| panic!("{}: differentiate: {e}", op.name()));
    let vals = run(&g, &feeds(args, dt));
    for (k, gv) in grads.iter().enumerate() {
        let gv = gv.unwrap_or_else(|| panic!("{}: no gradient reaches input {k}", op.name()));
        assert_eq!(vals[&gv].dtype(), dt, "{}: gradient {k} dtype", op.name());
        let a = vals[&gv].cast(DType::F64).into_vec::<f64>().unwrap();
        let num = &numeric[k];
        assert_eq!(a.len(), num.len(), "{}: gradient {k} size", op.name());
        let scale = num.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-2);
        let err = a
            .iter()
            .zip(num)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            err / scale <= tol,
            "{} ({dt}): gradient of input {k}: max error {err:.3e} \
             (relative {:.3e} > {tol:e})\nanalytic {:?}\nnumeric  {:?}",
            op.name(),
            err / scale,
            &a[..a.len().min(8)],
            &num[..num.len().min(8)]
        );
    }
}
