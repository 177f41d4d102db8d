//! Load-time graph rewrites that keep semantics (up to float rounding):
//!
//! * **BatchNorm folding**: `Conv -> BatchNormalization` with constant
//!   weights, where the conv output feeds only the BN, becomes one Conv with
//!   `W' = W * s` and `b' = (b - mean) * s + beta`, `s = scale / sqrt(var +
//!   eps)` per output channel (computed in f64).
//!
//! * **Per-channel Mul / Add folding** (`optimize/affine.rs`): a Mul or
//!   Add by a per-channel constant after a Conv or a BatchNormalization
//!   goes into the producer's constants.
//!
//! * **Activation fusion**: `Conv -> Relu` and `Conv -> Clip` (constant
//!   bounds, e.g. relu6) become one Conv whose kernel applies the
//!   activation to each output block while it is still in cache
//!   ([`crate::op::Activation`]). The same for a Gemm is
//!   [`fuse_gemm_activations`], applied to CPU-only sessions.
//!
//! Rewrites only touch constants the graph owns and leave node and value
//! names of the surviving nodes as they were, so errors and traces still
//! name the model's nodes. The facade applies [`optimize`] on load; tests of
//! raw semantics can load without it.

mod affine;

use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::tensor::Tensor;

/// What [`optimize`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptimizeReport {
    /// BatchNormalization nodes folded into the preceding Conv.
    pub batchnorms_folded: usize,
    /// Mul / Add nodes by a per-channel constant folded into the
    /// preceding Conv or BatchNormalization.
    pub affine_folded: usize,
    /// Relu / Clip nodes fused into the preceding Conv.
    pub activations_fused: usize,
}

/// Applies every rewrite.
pub fn optimize(g: &mut Graph) -> OptimizeReport {
    let batchnorms_folded = fold_batchnorm(g);
    let affine_folded = affine::fold_affine(g);
    let activations_fused = fuse_activations(g);
    OptimizeReport {
        batchnorms_folded,
        affine_folded,
        activations_fused,
    }
}

/// A scalar f32 constant input, or `default` when the input is omitted;
/// `None` when it is present but not a constant f32 scalar.
fn scalar_or(g: &Graph, v: Option<&Option<crate::ValueId>>, default: f32) -> Option<f32> {
    match v.copied().flatten() {
        None => Some(default),
        Some(id) => match const_f32(g, Some(id)) {
            Some(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        },
    }
}

/// The producer graph of one rewrite pass, with the nodes it removes.
struct Pass {
    producers: Vec<Option<NodeId>>,
    consumers: Vec<Vec<NodeId>>,
    removed: Vec<bool>,
}

impl Pass {
    fn new(g: &Graph) -> Pass {
        Pass {
            producers: g.producers(),
            consumers: g.consumers(),
            removed: vec![false; g.nodes.len()],
        }
    }

    /// The Conv node producing `x` when the node reading it is its only
    /// reader and `x` is not a graph output (so the two can merge).
    fn sole_conv_producer(&self, g: &Graph, x: crate::ValueId) -> Option<usize> {
        self.sole_producer(g, x)
            .filter(|&ci| matches!(g.nodes[ci].op, Op::Conv(_)))
    }

    /// The node producing `x` when the node reading it is its only reader
    /// and `x` is not a graph output.
    fn sole_producer(&self, g: &Graph, x: crate::ValueId) -> Option<usize> {
        let NodeId(ci) = self.producers[x.0]?;
        let merge = !self.removed[ci] && self.consumers[x.0].len() == 1 && !g.outputs.contains(&x);
        merge.then_some(ci)
    }

    /// Drops the removed nodes; returns how many there were.
    fn finish(self, g: &mut Graph) -> usize {
        let n = self.removed.iter().filter(|&&r| r).count();
        if n > 0 {
            let mut keep = self.removed.iter().map(|&r| !r);
            g.nodes.retain(|_| keep.next().unwrap_or(true));
        }
        n
    }
}

fn fuse_activations(g: &mut Graph) -> usize {
    fuse_activations_into(g, false)
}

/// **Gemm activation fusion** (not part of [`optimize`]: only the CPU
/// kernels implement it, so the facade applies it, like
/// [`fuse_residual`], to sessions whose devices are all CPUs and that
/// were given no plan): `Gemm -> Relu` and `Gemm -> Clip` (constant
/// bounds), where the f32 Gemm feeds only the activation, become one Gemm
/// whose kernel applies it to the output it just wrote
/// ([`crate::op::Op::Gemm`]'s `act`): an MLP's layers lose a node each,
/// with its dispatch and its pass over the tensor. Returns how many
/// activations were fused.
pub fn fuse_gemm_activations(g: &mut Graph) -> usize {
    fuse_activations_into(g, true)
}

/// Fuses Relu / Clip nodes into the Conv (or, with `gemm`, the Gemm)
/// that produces their input.
fn fuse_activations_into(g: &mut Graph, gemm: bool) -> usize {
    use crate::op::{Activation, UnaryOp};
    let mut pass = Pass::new(g);
    for ai in 0..g.nodes.len() {
        let n = &g.nodes[ai];
        let act = match &n.op {
            Op::Unary(UnaryOp::Relu) => Activation::Relu,
            Op::Clip { min, max } => {
                let lo = min.map_or_else(|| scalar_or(g, n.inputs.get(1), f32::NEG_INFINITY), Some);
                let hi = max.map_or_else(|| scalar_or(g, n.inputs.get(2), f32::INFINITY), Some);
                match (lo, hi) {
                    (Some(lo), Some(hi)) => Activation::Clip { lo, hi },
                    _ => continue,
                }
            }
            _ => continue,
        };
        let Some(Some(x)) = n.inputs.first().copied() else {
            continue;
        };
        let Some(ci) = pass.sole_producer(g, x) else {
            continue;
        };
        let free = match &g.nodes[ci].op {
            Op::Conv(attrs) if !gemm => attrs.activation == Activation::None,
            Op::Gemm { act, .. } if gemm => *act == Activation::None,
            _ => false,
        };
        if !free || g.value(x).fact.dtype != Some(crate::DType::F32) {
            continue;
        }
        let out = g.nodes[ai].outputs[0];
        let node = &mut g.nodes[ci];
        match &mut node.op {
            Op::Conv(a) => a.activation = act,
            Op::Gemm { act: a, .. } => *a = act,
            _ => {}
        }
        node.outputs[0] = out;
        pass.removed[ai] = true;
    }
    pass.finish(g)
}

/// **Residual fusion** (not part of [`optimize`]: only the CPU kernels
/// implement it, so the facade applies it to sessions whose devices are
/// all CPUs and that were given no plan): `Conv -> Add/Sum(conv, r) [->
/// Relu]`, where the conv (without an activation) feeds only the Add, the
/// Add only the Relu, and `r` has the output's exact shape and dtype,
/// becomes one Conv with `r` as input 3 ([`crate::op::ConvAttrs::residual`])
/// and the Relu as its activation: the residual is added while each output
/// block is in cache, and two passes over the tensor disappear (ResNet's
/// 16 shortcut joins). When both Add inputs are such convs, the later one
/// (in node order) takes the other's output as its residual. Returns how
/// many Adds were fused.
pub fn fuse_residual(g: &mut Graph) -> usize {
    use crate::op::{Activation, BinaryOp, UnaryOp};
    let mut pass = Pass::new(g);
    let mut fused = 0;
    for si in 0..g.nodes.len() {
        let n = &g.nodes[si];
        let two = match &n.op {
            Op::Binary(BinaryOp::Add) | Op::Sum => n.inputs.len() == 2,
            _ => false,
        };
        if !two || pass.removed[si] {
            continue;
        }
        let (Some(a), Some(b)) = (n.inputs[0], n.inputs[1]) else {
            continue;
        };
        let (fa, fb) = (&g.value(a).fact, &g.value(b).fact);
        let same = fa.dtype == Some(crate::DType::F32)
            && fa.dtype == fb.dtype
            && fa.concrete_shape().is_some()
            && fa.concrete_shape() == fb.concrete_shape()
            && g.value(n.outputs[0]).fact.concrete_shape() == fa.concrete_shape();
        if !same {
            continue;
        }
        // Candidate convs: a plain Conv whose only reader is this Add and
        // which comes after the producer of the other operand.
        let producers = &pass.producers;
        let after = |ci: usize, other: crate::ValueId| match producers[other.0] {
            Some(NodeId(p)) => p < ci,
            None => true,
        };
        let plain = |ci: usize| matches!(&g.nodes[ci].op, Op::Conv(c) if c.activation == Activation::None && !c.residual);
        let mut best: Option<(usize, crate::ValueId)> = None;
        for (x, other) in [(a, b), (b, a)] {
            if let Some(ci) = pass.sole_conv_producer(g, x) {
                if plain(ci) && after(ci, other) && best.is_none_or(|(bc, _)| ci > bc) {
                    best = Some((ci, other));
                }
            }
        }
        let Some((ci, r)) = best else {
            continue;
        };
        // A Relu that is the Add's only reader joins too.
        let sum_out = g.nodes[si].outputs[0];
        let relu = match pass.consumers[sum_out.0].as_slice() {
            [NodeId(ri)]
                if !g.outputs.contains(&sum_out)
                    && !pass.removed[*ri]
                    && matches!(g.nodes[*ri].op, Op::Unary(UnaryOp::Relu)) =>
            {
                Some(*ri)
            }
            _ => None,
        };
        let out = match relu {
            Some(ri) => g.nodes[ri].outputs[0],
            None => sum_out,
        };
        let conv = &mut g.nodes[ci];
        if let Op::Conv(c) = &mut conv.op {
            c.residual = true;
            if relu.is_some() {
                c.activation = Activation::Relu;
            }
        }
        conv.inputs.resize(3, None);
        conv.inputs.push(Some(r));
        conv.outputs[0] = out;
        pass.removed[si] = true;
        if let Some(ri) = relu {
            pass.removed[ri] = true;
        }
        fused += 1;
    }
    pass.finish(g);
    fused
}

fn const_f32(g: &Graph, v: Option<crate::ValueId>) -> Option<Vec<f32>> {
    let t = g.constants.get(&v?)?;
    t.as_slice::<f32>().ok().map(|s| s.to_vec())
}

fn fold_batchnorm(g: &mut Graph) -> usize {
    let mut pass = Pass::new(g);
    for bi in 0..g.nodes.len() {
        let Op::BatchNorm { epsilon } = g.nodes[bi].op else {
            continue;
        };
        let bn = &g.nodes[bi];
        let Some(Some(x)) = bn.inputs.first().copied() else {
            continue;
        };
        let Some(ci) = pass.sole_conv_producer(g, x) else {
            continue;
        };
        let conv = &g.nodes[ci];
        let Some(w_id) = conv.inputs.get(1).copied().flatten() else {
            continue;
        };
        let Some(w) = g.constants.get(&w_id).cloned() else {
            continue;
        };
        let Ok(wv) = w.as_slice::<f32>() else {
            continue;
        };
        let cout = w.shape()[0];
        let Some(per) = wv.len().checked_div(cout) else {
            continue;
        };
        let bias = match conv.inputs.get(2).copied().flatten() {
            Some(b) => match const_f32(g, Some(b)) {
                Some(b) if b.len() == cout => b,
                _ => continue,
            },
            None => vec![0.0; cout],
        };
        let param = |i: usize| const_f32(g, bn.inputs.get(i).copied().flatten());
        let (Some(scale), Some(beta), Some(mean), Some(var)) =
            (param(1), param(2), param(3), param(4))
        else {
            continue;
        };
        if [&scale, &beta, &mean, &var].iter().any(|v| v.len() != cout) {
            continue;
        }
        let mut nw = Vec::with_capacity(wv.len());
        let mut nb = Vec::with_capacity(cout);
        for o in 0..cout {
            let s = scale[o] as f64 / (var[o] as f64 + epsilon as f64).sqrt();
            nw.extend(
                wv[o * per..(o + 1) * per]
                    .iter()
                    .map(|&x| (x as f64 * s) as f32),
            );
            nb.push(((bias[o] as f64 - mean[o] as f64) * s + beta[o] as f64) as f32);
        }
        let (Ok(nw), Ok(nb)) = (
            Tensor::from_vec(w.shape().to_vec(), nw),
            Tensor::from_vec(vec![cout], nb),
        ) else {
            continue;
        };
        let bn_out = g.nodes[bi].outputs[0];
        let conv_name = g.nodes[ci].name.clone();
        let w_new = g.add_const(&format!("{conv_name}.folded_weight"), nw);
        let b_new = g.add_const(&format!("{conv_name}.folded_bias"), nb);
        let conv = &mut g.nodes[ci];
        conv.inputs = vec![conv.inputs[0], Some(w_new), Some(b_new)];
        // The conv now produces the BN's output value directly.
        conv.outputs[0] = bn_out;
        pass.removed[bi] = true;
    }
    let folded = pass.finish(g);
    if folded > 0 {
        drop_unused_constants(g);
    }
    folded
}

/// Drops constants no node reads any more (the unfolded weights), from
/// the constants and from their values' facts: a fact keeps its tensor,
/// and ResNet-50's unfolded filters and BatchNorm parameters (89 of its
/// 97 MB) stayed alive there for as long as the model did.
fn drop_unused_constants(g: &mut Graph) {
    let used: std::collections::HashSet<crate::ValueId> = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().flatten().copied())
        .chain(g.outputs.iter().copied())
        .collect();
    g.constants.retain(|k, _| used.contains(k));
    for (i, v) in g.values.iter_mut().enumerate() {
        if !used.contains(&crate::ValueId(i)) {
            v.fact.value = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::UnaryOp;
    use crate::{DType, Dim, ValueId};
    use std::collections::HashMap;

    /// Runs a graph node by node with the host kernels (also for
    /// `affine.rs`'s tests).
    pub(super) fn run(g: &Graph, x: &Tensor) -> Vec<f32> {
        let mut vals: HashMap<ValueId, Tensor> = g
            .constants
            .iter()
            .map(|(k, v)| (*k, (**v).clone()))
            .collect();
        vals.insert(g.inputs[0], x.clone());
        for n in &g.nodes {
            let ins: Vec<Option<&Tensor>> = n.inputs.iter().map(|i| i.map(|i| &vals[&i])).collect();
            let outs = crate::kernels::eval(&n.op, &ins, n.outputs.len()).unwrap();
            for (o, t) in n.outputs.iter().zip(outs) {
                vals.insert(*o, t);
            }
        }
        vals[&g.outputs[0]].to_f32_vec()
    }

    fn conv_graph() -> (Graph, ValueId, Tensor) {
        let mut g = Graph::default();
        let x = g.add_input(
            "x",
            DType::F32,
            vec![Dim::Known(1), Dim::Known(2), Dim::Known(4), Dim::Known(4)],
        );
        let w = g.add_const(
            "w",
            Tensor::from_vec(
                vec![3, 2, 3, 3],
                (0..54).map(|i| (i as f32 * 0.37).sin() * 3.0).collect(),
            )
            .unwrap(),
        );
        let b = g.add_const(
            "b",
            Tensor::from_vec(vec![3], vec![0.1f32, -0.2, 0.3]).unwrap(),
        );
        let c = g.add_node("conv", Op::Conv(Default::default()), &[x, w, b], 1)[0];
        let xin = Tensor::from_vec(
            vec![1, 2, 4, 4],
            (0..32).map(|i| (i as f32 * 0.11).cos()).collect(),
        )
        .unwrap();
        (g, c, xin)
    }

    /// Element-wise within 1e-5 of `1 + |b|` (`affine.rs`'s tests use it
    /// too).
    pub(super) fn assert_close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
        }
    }

    #[test]
    fn folds_conv_bn_and_matches_unfolded() {
        let (mut g, c, xin) = conv_graph();
        let p: Vec<_> = [
            [1.5f32, 0.5, 2.0],
            [0.1, 0.2, -0.3],
            [0.05, 30.0, 0.2],
            [0.9, 1.1, 0.4],
        ]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            g.add_const(
                &format!("p{i}"),
                Tensor::from_vec(vec![3], v.to_vec()).unwrap(),
            )
        })
        .collect();
        let y = g.add_node(
            "bn",
            Op::BatchNorm { epsilon: 1e-5 },
            &[c, p[0], p[1], p[2], p[3]],
            1,
        )[0];
        let r = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[y], 1)[0];
        g.add_output(r);
        let g = g.finish().unwrap();
        let mut opt = g.clone();
        let rep = optimize(&mut opt);
        assert_eq!((rep.batchnorms_folded, rep.activations_fused), (1, 1));
        assert_eq!(opt.nodes.len(), 1);
        assert_eq!(opt.name(opt.outputs[0]), "relu");
        let out = run(&opt, &xin);
        assert!(out.contains(&0.0) && out.iter().any(|&v| v > 0.0));
        assert_close(&out, &run(&g, &xin));
        // No tensor outlives its fold: only the folded filter and bias
        // are held, by the constants and the facts alike.
        let held: Vec<&str> = opt
            .values
            .iter()
            .filter(|v| v.fact.value.is_some())
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(held.len(), 2, "tensors still held: {held:?}");
        assert_eq!(opt.constants.len(), 2);
    }

    #[test]
    fn fuses_clip_with_constant_bounds_only() {
        for (lo, hi) in [
            (Some(0.0f32), Some(1.0f32)),
            (None, Some(0.5)),
            (Some(-0.3), None),
        ] {
            let (mut g, c, xin) = conv_graph();
            let lo = lo.map(|v| g.add_const("lo", Tensor::from_vec(vec![], vec![v]).unwrap()));
            let hi = hi.map(|v| g.add_const("hi", Tensor::from_vec(vec![], vec![v]).unwrap()));
            let node_inputs: Vec<Option<ValueId>> = vec![Some(c), lo, hi];
            let y = g.add_node(
                "clip",
                Op::Clip {
                    min: None,
                    max: None,
                },
                &[c],
                1,
            )[0];
            let last = g.nodes.len() - 1;
            g.nodes[last].inputs = node_inputs;
            g.add_output(y);
            let g = g.finish().unwrap();
            let mut opt = g.clone();
            assert_eq!(optimize(&mut opt).activations_fused, 1);
            assert_eq!(opt.nodes.len(), 1);
            assert_close(&run(&opt, &xin), &run(&g, &xin));
        }
        // A Clip bound computed at run time is not fused.
        let (mut g, c, _) = conv_graph();
        let y = g.add_node(
            "clip",
            Op::Clip {
                min: None,
                max: None,
            },
            &[c, c],
            1,
        )[0];
        g.add_output(y);
        let mut g = g.finish().unwrap();
        assert_eq!(optimize(&mut g).activations_fused, 0);
    }

    #[test]
    fn keeps_conv_output_with_other_readers() {
        let (mut g, c, _) = conv_graph();
        let r = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[c], 1)[0];
        g.add_output(r);
        g.add_output(c);
        let mut g = g.finish().unwrap();
        assert_eq!(optimize(&mut g).activations_fused, 0);
        assert_eq!(g.nodes.len(), 2);
    }

    /// An MLP layer: `x [3, 6]` times a `[5, 6]` weight (transB) plus a
    /// bias row, its output `y`.
    fn gemm_graph() -> (Graph, ValueId, Tensor) {
        let mut g = Graph::default();
        let x = g.add_input("x", DType::F32, vec![Dim::Known(3), Dim::Known(6)]);
        let w = g.add_const(
            "w",
            Tensor::from_vec(
                vec![5, 6],
                (0..30).map(|i| (i as f32 * 0.37).sin()).collect(),
            )
            .unwrap(),
        );
        let b = g.add_const(
            "b",
            Tensor::from_vec(vec![5], vec![0.1f32, -0.2, 0.3, 0.0, -0.5]).unwrap(),
        );
        let op = Op::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
            act: crate::op::Activation::None,
        };
        let y = g.add_node("fc", op, &[x, w, b], 1)[0];
        let xin = Tensor::from_vec(
            vec![3, 6],
            (0..18).map(|i| (i as f32 * 0.7).cos()).collect(),
        )
        .unwrap();
        (g, y, xin)
    }

    /// `Gemm -> Relu` and `Gemm -> Clip` fuse (by the CPU-only pass, not by
    /// `optimize`), keep the activation's output name and compute what the
    /// two nodes did; a Gemm whose output is read elsewhere stays apart.
    #[test]
    fn gemm_activations_fuse_and_match_unfused() {
        for clip in [false, true] {
            let (mut g, y, xin) = gemm_graph();
            let z = if clip {
                let lo = g.add_const("lo", Tensor::from_vec(vec![], vec![-0.3f32]).unwrap());
                let hi = g.add_const("hi", Tensor::from_vec(vec![], vec![0.4f32]).unwrap());
                let op = Op::Clip {
                    min: None,
                    max: None,
                };
                let z = g.add_node("act", op, &[y], 1)[0];
                let last = g.nodes.len() - 1;
                g.nodes[last].inputs = vec![Some(y), Some(lo), Some(hi)];
                z
            } else {
                g.add_node("act", Op::Unary(UnaryOp::Relu), &[y], 1)[0]
            };
            g.add_output(z);
            let g = g.finish().unwrap();
            let mut fused = g.clone();
            assert_eq!(
                optimize(&mut fused).activations_fused,
                0,
                "optimize leaves Gemms alone"
            );
            assert_eq!(fuse_gemm_activations(&mut fused), 1);
            assert_eq!(fused.nodes.len(), 1);
            assert!(
                matches!(fused.nodes[0].op, Op::Gemm { act, .. } if act != crate::op::Activation::None)
            );
            assert_eq!(fused.name(fused.outputs[0]), "act");
            let out = run(&fused, &xin);
            assert!(out.iter().any(|&v| v < 0.01) && out.iter().any(|&v| v > 0.01));
            assert_close(&out, &run(&g, &xin));
        }
        let (mut g, y, _) = gemm_graph();
        let r = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[y], 1)[0];
        g.add_output(r);
        g.add_output(y);
        let mut g = g.finish().unwrap();
        assert_eq!(fuse_gemm_activations(&mut g), 0);
        assert_eq!(g.nodes.len(), 2);
    }

    /// `x [1, 2, 5, 5]`; a conv with pads 1 keeps the shape.
    fn residual_case(
        group: usize,
        bias: bool,
        cout: usize,
        join: Op,
        relu: bool,
        projection: bool,
    ) -> (Graph, Tensor) {
        use crate::op::ConvAttrs;
        let mut g = Graph::default();
        let d = |v: &[usize]| v.iter().map(|&k| Dim::Known(k)).collect::<Vec<_>>();
        let x = g.add_input("x", DType::F32, d(&[1, 2, 5, 5]));
        let cin = 2 / group;
        let mk = |g: &mut Graph, name: &str, cout: usize, seed: f32| {
            let w = g.add_const(
                &format!("{name}_w"),
                Tensor::from_vec(
                    vec![cout, cin, 3, 3],
                    (0..cout * cin * 9)
                        .map(|i| ((i as f32 + seed) * 0.37).sin())
                        .collect(),
                )
                .unwrap(),
            );
            let b = bias.then(|| {
                g.add_const(
                    &format!("{name}_b"),
                    Tensor::from_vec(
                        vec![cout],
                        (0..cout).map(|i| 0.1 * i as f32 - 0.15).collect(),
                    )
                    .unwrap(),
                )
            });
            let attrs = ConvAttrs {
                pads: vec![1, 1, 1, 1],
                group,
                ..Default::default()
            };
            let ins: Vec<ValueId> = [Some(x), Some(w), b].into_iter().flatten().collect();
            g.add_node(name, Op::Conv(attrs), &ins, 1)[0]
        };
        let c = mk(&mut g, "conv", cout, 0.0);
        let other = if projection {
            mk(&mut g, "proj", cout, 5.0)
        } else {
            x
        };
        let mut y = g.add_node("join", join, &[c, other], 1)[0];
        if relu {
            y = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[y], 1)[0];
        }
        g.add_output(y);
        let g = g.finish().unwrap();
        let xin = Tensor::from_vec(
            vec![1, 2, 5, 5],
            (0..50).map(|i| (i as f32 * 0.23).cos()).collect(),
        )
        .unwrap();
        (g, xin)
    }

    #[test]
    fn residual_joins_fuse_into_the_conv() {
        use crate::op::BinaryOp;
        // (group, bias, cout, join, relu, projection)
        let cases = [
            (1, true, 2, Op::Sum, true, false),
            (1, false, 2, Op::Binary(BinaryOp::Add), true, false),
            (2, true, 2, Op::Sum, true, false),
            (1, true, 2, Op::Binary(BinaryOp::Add), false, false),
            (1, true, 3, Op::Sum, true, true),
        ];
        for (group, bias, cout, join, relu, proj) in cases {
            let (g, x) = residual_case(group, bias, cout, join.clone(), relu, proj);
            let want = run(&g, &x);
            let mut f = g.clone();
            assert_eq!(fuse_residual(&mut f), 1, "{join:?} group {group}");
            assert_eq!(f.nodes.len(), g.nodes.len() - 1 - usize::from(relu));
            let conv = f
                .nodes
                .iter()
                .find_map(|n| match &n.op {
                    Op::Conv(a) if a.residual => Some(a.clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(conv.activation != crate::op::Activation::None, relu);
            assert_close(&run(&f, &x), &want);
        }
    }

    #[test]
    fn residual_fusion_skips_broadcasts_and_shared_convs() {
        let (mut g, _) = residual_case(1, true, 2, Op::Sum, true, false);
        // The conv output also feeds the graph output: not fusable.
        let c = g.nodes[0].outputs[0];
        g.add_output(c);
        let mut f = g.clone();
        assert_eq!(fuse_residual(&mut f), 0);
        // A broadcast join ([1, 2, 5, 5] + [2, 1, 1]) is left alone.
        let mut g = Graph::default();
        let x = g.add_input(
            "x",
            DType::F32,
            vec![Dim::Known(1), Dim::Known(2), Dim::Known(5), Dim::Known(5)],
        );
        let w = g.add_const(
            "w",
            Tensor::from_vec(vec![2, 2, 1, 1], vec![1.0f32; 4]).unwrap(),
        );
        let r = g.add_const(
            "r",
            Tensor::from_vec(vec![2, 1, 1], vec![1.0f32; 2]).unwrap(),
        );
        let c = g.add_node("conv", Op::Conv(Default::default()), &[x, w], 1)[0];
        let y = g.add_node("join", Op::Sum, &[c, r], 1)[0];
        g.add_output(y);
        let mut g = g.finish().unwrap();
        assert_eq!(fuse_residual(&mut g), 0);
    }
}
