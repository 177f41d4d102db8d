//! **Per-channel Mul / Add folding**: `Conv -> Mul(k)` and `Conv ->
//! Add(k)`, and the same after a BatchNormalization, where `k` is a
//! constant that scales or shifts each channel alike (a scalar, or `[C,
//! 1, .., 1]` right-aligned against the `[N, C, ...]` operand) and the
//! producer feeds only the Mul / Add, become the producer alone with
//! rescaled constants:
//!
//! - Conv: `W'[o] = W[o]·k[o]`, `b'[o] = b[o]·k[o]` for a Mul, `b'[o] =
//!   b[o] + k[o]` for an Add (computed in f64).
//! - BatchNormalization (`scale·x̂ + beta`): `scale' = scale·k`, `beta' =
//!   beta·k` for a Mul, `beta' = beta + k` for an Add.
//!
//! Caffe2-exported models write each batch norm as BatchNormalization
//! followed by a Mul and an Add by `Unsqueeze`d per-channel constants:
//! Inception-v2 has 69 of each, DenseNet-121 121, where every pair was a
//! pass over the activation (DenseNet-121 at 2 threads: Mul 7.3 ms, Add
//! 5.1 ms of a 78 ms run, 2026-12-03). Folded, the batch norm after a
//! conv disappears into it and the conv's Relu fuses too
//! ([`super::fuse_activations`] runs after this).

use super::{const_f32, Pass};
use crate::graph::Graph;
use crate::op::{Activation, BinaryOp, Op};
use crate::tensor::Tensor;
use crate::ValueId;

/// Folds until nothing changes (a Mul then an Add fold one per round);
/// returns how many Mul / Add nodes went.
pub(super) fn fold_affine(g: &mut Graph) -> usize {
    let mut total = 0;
    loop {
        let n = fold_once(g);
        if n == 0 {
            return total;
        }
        total += n;
        super::drop_unused_constants(g);
    }
}

/// The per-channel values of constant `k` for an operand of rank `rank`
/// with `c` channels (axis 1): `None` unless `k` is f32 and varies along
/// that axis at most.
fn per_channel(g: &Graph, k: ValueId, rank: usize, c: usize) -> Option<Vec<f64>> {
    let t = g.constants.get(&k)?;
    let v = t.as_slice::<f32>().ok()?;
    let shape = t.shape();
    if v.len() == 1 && shape.len() <= rank {
        return Some(vec![v[0] as f64; c]);
    }
    // Right-aligned against [N, C, s1, ..]: 1 everywhere but at axis 1.
    if rank < 2 || shape.len() > rank || shape.len() < rank - 1 {
        return None;
    }
    let axis = shape.len() - (rank - 1);
    let ok = shape
        .iter()
        .enumerate()
        .all(|(i, &d)| if i == axis { d == c } else { d == 1 });
    ok.then(|| v.iter().map(|&x| x as f64).collect())
}

fn fold_once(g: &mut Graph) -> usize {
    let mut pass = Pass::new(g);
    for mi in 0..g.nodes.len() {
        let mul = match g.nodes[mi].op {
            Op::Binary(BinaryOp::Mul) => true,
            Op::Binary(BinaryOp::Add) => false,
            _ => continue,
        };
        let (Some(Some(a)), Some(Some(b))) = (
            g.nodes[mi].inputs.first().copied(),
            g.nodes[mi].inputs.get(1).copied(),
        ) else {
            continue;
        };
        let (x, k) = match (g.constants.contains_key(&a), g.constants.contains_key(&b)) {
            (false, true) => (a, b),
            (true, false) => (b, a),
            _ => continue,
        };
        let fact = &g.value(x).fact;
        let Some(rank) = fact.rank() else {
            continue;
        };
        if fact.dtype != Some(crate::DType::F32) {
            continue;
        }
        let Some(pi) = pass.sole_producer(g, x) else {
            continue;
        };
        let folded = match &g.nodes[pi].op {
            Op::Conv(attrs) if attrs.activation == Activation::None && !attrs.residual => {
                fold_into_conv(g, pi, k, rank, mul)
            }
            Op::BatchNorm { .. } => fold_into_bn(g, pi, k, rank, mul),
            _ => None,
        };
        let Some(new_inputs) = folded else {
            continue;
        };
        let out = g.nodes[mi].outputs[0];
        let p = &mut g.nodes[pi];
        p.inputs = new_inputs;
        // The producer now writes the Mul / Add's output value.
        p.outputs[0] = out;
        pass.removed[mi] = true;
    }
    pass.finish(g)
}

/// The Conv `ci`'s inputs with its weight and bias rescaled by `k`.
fn fold_into_conv(
    g: &mut Graph,
    ci: usize,
    k: ValueId,
    rank: usize,
    mul: bool,
) -> Option<Vec<Option<ValueId>>> {
    let conv = &g.nodes[ci];
    let w_id = conv.inputs.get(1).copied().flatten()?;
    let w = g.constants.get(&w_id)?.clone();
    let wv = w.as_slice::<f32>().ok()?;
    let cout = *w.shape().first()?;
    let per = wv.len().checked_div(cout)?;
    let kv = per_channel(g, k, rank, cout)?;
    let bias = match conv.inputs.get(2).copied().flatten() {
        Some(b) => match const_f32(g, Some(b)) {
            Some(b) if b.len() == cout => b,
            _ => return None,
        },
        None => vec![0.0; cout],
    };
    let (nw, nb): (Vec<f32>, Vec<f32>) = if mul {
        let nw = (0..cout)
            .flat_map(|o| {
                let s = kv[o];
                wv[o * per..(o + 1) * per]
                    .iter()
                    .map(move |&x| (x as f64 * s) as f32)
            })
            .collect();
        (
            nw,
            (0..cout).map(|o| (bias[o] as f64 * kv[o]) as f32).collect(),
        )
    } else {
        (
            wv.to_vec(),
            (0..cout).map(|o| (bias[o] as f64 + kv[o]) as f32).collect(),
        )
    };
    let (nw, nb) = (
        Tensor::from_vec(w.shape().to_vec(), nw).ok()?,
        Tensor::from_vec(vec![cout], nb).ok()?,
    );
    let name = g.nodes[ci].name.clone();
    let x = g.nodes[ci].inputs[0];
    let w_new = if mul {
        g.add_const(&format!("{name}.scaled_weight"), nw)
    } else {
        w_id
    };
    let b_new = g.add_const(&format!("{name}.shifted_bias"), nb);
    Some(vec![x, Some(w_new), Some(b_new)])
}

/// The BatchNormalization `bi`'s inputs with its scale and beta rescaled
/// (Mul) or its beta shifted (Add) by `k`.
fn fold_into_bn(
    g: &mut Graph,
    bi: usize,
    k: ValueId,
    rank: usize,
    mul: bool,
) -> Option<Vec<Option<ValueId>>> {
    let bn = &g.nodes[bi];
    if bn.inputs.len() != 5 {
        return None;
    }
    let param = |i: usize| const_f32(g, bn.inputs.get(i).copied().flatten());
    let (scale, beta) = (param(1)?, param(2)?);
    let c = scale.len();
    if beta.len() != c {
        return None;
    }
    let kv = per_channel(g, k, rank, c)?;
    let (ns, nb): (Vec<f32>, Vec<f32>) = if mul {
        (
            (0..c).map(|o| (scale[o] as f64 * kv[o]) as f32).collect(),
            (0..c).map(|o| (beta[o] as f64 * kv[o]) as f32).collect(),
        )
    } else {
        (
            scale.clone(),
            (0..c).map(|o| (beta[o] as f64 + kv[o]) as f32).collect(),
        )
    };
    let name = g.nodes[bi].name.clone();
    let mut inputs = g.nodes[bi].inputs.clone();
    if mul {
        inputs[1] = Some(g.add_const(
            &format!("{name}.scaled_scale"),
            Tensor::from_vec(vec![c], ns).ok()?,
        ));
    }
    inputs[2] = Some(g.add_const(
        &format!("{name}.shifted_beta"),
        Tensor::from_vec(vec![c], nb).ok()?,
    ));
    Some(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::UnaryOp;
    use crate::optimize::tests::{assert_close as close, run};
    use crate::{DType, Dim};

    fn konst(g: &mut Graph, name: &str, shape: &[usize], v: &[f32]) -> ValueId {
        g.add_const(name, Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap())
    }

    /// x [1, 3, 4, 4] -> head -> Mul(k1) -> Add(k2) [-> Relu], where head
    /// is a Conv (with `conv`) or a BatchNormalization.
    fn graph(conv: bool, k1: (&[usize], &[f32]), k2: (&[usize], &[f32]), relu: bool) -> Graph {
        let mut g = Graph::default();
        let dims = [1, 3, 4, 4].map(Dim::Known).to_vec();
        let x = g.add_input("x", DType::F32, dims);
        let h = if conv {
            let w: Vec<f32> = (0..81).map(|i| (i as f32 * 0.37).sin()).collect();
            let w = konst(&mut g, "w", &[3, 3, 3, 3], &w);
            let b = konst(&mut g, "b", &[3], &[0.1, -0.2, 0.3]);
            let attrs = crate::op::ConvAttrs {
                pads: vec![1, 1, 1, 1],
                ..Default::default()
            };
            g.add_node("conv", Op::Conv(attrs), &[x, w, b], 1)[0]
        } else {
            let p: Vec<ValueId> = [
                [1.5f32, 0.5, 2.0],
                [0.1, 0.2, -0.3],
                [0.05, 0.3, 0.2],
                [0.9, 1.1, 0.4],
            ]
            .iter()
            .enumerate()
            .map(|(i, v)| konst(&mut g, &format!("p{i}"), &[3], v))
            .collect();
            g.add_node(
                "bn",
                Op::BatchNorm { epsilon: 1e-5 },
                &[x, p[0], p[1], p[2], p[3]],
                1,
            )[0]
        };
        let k1 = konst(&mut g, "k1", k1.0, k1.1);
        let k2 = konst(&mut g, "k2", k2.0, k2.1);
        let m = g.add_node("mul", Op::Binary(BinaryOp::Mul), &[h, k1], 1)[0];
        // The constant first: either operand order folds.
        let mut y = g.add_node("add", Op::Binary(BinaryOp::Add), &[k2, m], 1)[0];
        if relu {
            y = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[y], 1)[0];
        }
        g.add_output(y);
        g.finish().unwrap()
    }

    fn input() -> Tensor {
        Tensor::from_vec(
            vec![1, 3, 4, 4],
            (0..48).map(|i| (i as f32 * 0.29).cos() * 2.0).collect(),
        )
        .unwrap()
    }

    #[test]
    fn per_channel_mul_and_add_fold_into_conv_and_batchnorm() {
        let scale: (&[usize], &[f32]) = (&[3, 1, 1], &[2.0, -0.5, 1.25]);
        let shift: (&[usize], &[f32]) = (&[1, 3, 1, 1], &[0.3, -1.0, 0.05]);
        let scalar: (&[usize], &[f32]) = (&[], &[0.7]);
        for conv in [true, false] {
            for (k1, k2, relu) in [
                (scale, shift, true),
                (scalar, shift, false),
                (scale, scalar, true),
            ] {
                let g0 = graph(conv, k1, k2, relu);
                let want = run(&g0, &input());
                let mut g = g0.clone();
                let report = crate::optimize::optimize(&mut g);
                assert_eq!(report.affine_folded, 2, "conv {conv}: {:?}", g.nodes);
                // What is left: the head, and its Relu unless fused into
                // a conv.
                let left = 1 + usize::from(relu && !conv);
                assert_eq!(g.nodes.len(), left, "conv {conv}");
                close(&run(&g, &input()), &want);
                // The unfolded constants are gone.
                assert!(g.constants.len() <= 4 + 1, "{}", g.constants.len());
            }
        }
    }

    #[test]
    fn other_constants_and_shared_producers_stay() {
        // A spatial constant ([4, 4]: varies along W and H, not C) and a
        // [3] vector (aligned with W, not C) are no per-channel scale.
        let spatial: (&[usize], &[f32]) = (&[4, 4], &[0.5; 16]);
        let along_w: (&[usize], &[f32]) = (&[1, 1, 1, 4], &[1.0, 2.0, 3.0, 4.0]);
        for (k1, k2) in [(spatial, spatial), (along_w, along_w)] {
            let g0 = graph(true, k1, k2, false);
            let mut g = g0.clone();
            let report = crate::optimize::optimize(&mut g);
            assert_eq!(report.affine_folded, 0);
            assert_eq!(g.nodes.len(), 3);
            close(&run(&g, &input()), &run(&g0, &input()));
        }
        // The conv's output is also a graph output: the Mul cannot take it.
        let mut g = graph(true, (&[3, 1, 1], &[2.0, 3.0, 4.0]), (&[], &[1.0]), false);
        let conv_out = g.nodes[0].outputs[0];
        g.add_output(conv_out);
        let report = crate::optimize::optimize(&mut g);
        assert_eq!(report.affine_folded, 0);
    }
}
