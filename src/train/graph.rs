//! The training graph: the model in its training form, a loss, and the
//! backward pass ([`hetflow_ops::autodiff`]), with the weights as inputs.
//!
//! From the loaded model (no load-time rewrites: BatchNorm must stay a
//! node), for one batch size:
//! - the input shapes are bound ([`hetflow_ops::specialize::specialize`]);
//! - BatchNormalization becomes its training form (batch statistics; the
//!   running mean and variance become inputs, and their updates outputs);
//!   Dropout becomes seeded training-mode dropout, its seed an input;
//! - the loss reads the model's first output: cross-entropy on the logits
//!   (a final Softmax or LogSoftmax is looked through, as frameworks'
//!   cross-entropy takes logits), or the mean squared error;
//! - every float weight a gradient reaches becomes a graph input (the
//!   trainer feeds the current values each step), and its gradient a
//!   graph output.
//!
//! Inputs, in order: the batch, the targets, the dropout seed (when the
//! model has Dropout), the running statistics, the parameters, and in
//! bf16 the loss scale ([`super::precision`]). Outputs: the loss, the
//! prediction, the gradients, the updated statistics.

use hetflow_ops::autodiff::differentiate_traced;
use hetflow_ops::graph::{Fact, Graph, ValueId};
use hetflow_ops::op::{BinaryOp, LossReduction, Op, ReduceKind};
use hetflow_ops::{DType, Error, Result};

use super::precision::{self, Precision};

/// The loss the trainer minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Softmax cross-entropy against int64 class labels.
    CrossEntropy,
    /// Mean squared error against float targets of the prediction's shape.
    Mse,
}

/// A training graph and where its parts are.
#[derive(Clone)]
pub struct TrainGraph {
    /// The graph (inputs and outputs in the order of the module docs).
    pub graph: Graph,
    /// Names of the running statistics, in input order.
    pub state: Vec<String>,
    /// Names of the parameters, in input order.
    pub params: Vec<String>,
    /// Whether a seed input follows the targets.
    pub seeded: bool,
    /// Shape of the targets input.
    pub target_shape: Vec<usize>,
    /// Dtype of the targets input.
    pub target_dtype: DType,
    /// Nodes `0..n_forward` are the forward pass and the loss; the rest
    /// are the backward pass.
    pub n_forward: usize,
    /// For each backward node (node `n_forward + k` is entry `k`), the
    /// forward node it belongs to
    /// ([`hetflow_ops::autodiff::differentiate_traced`]).
    pub origins: Vec<Option<usize>>,
    /// Whether the last input is the loss scale (bf16): the gradients are
    /// those of the loss times it.
    pub loss_scale: bool,
}

/// Makes constant `v` a graph input (its value is fed at run time).
fn lift(g: &mut Graph, v: ValueId) {
    g.constants.remove(&v);
    g.values[v.0].fact.value = None;
    g.inputs.push(v);
}

/// The training graph of `model` (as loaded, inference form) for batches
/// of shape `batch_shape`, in f32.
pub fn build(model: &Graph, batch_shape: &[usize], loss: Loss) -> Result<TrainGraph> {
    build_in(model, batch_shape, loss, Precision::F32)
}

/// [`build`] computing in `precision` ([`super::precision`]).
pub fn build_in(
    model: &Graph,
    batch_shape: &[usize],
    loss: Loss,
    precision: Precision,
) -> Result<TrainGraph> {
    if model.inputs.len() != 1 {
        return Err(Error::msg(format!(
            "training needs a model with one input (the batch), this one has {}: {}",
            model.inputs.len(),
            model
                .inputs
                .iter()
                .map(|i| model.name(*i))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if model.outputs.is_empty() {
        return Err(Error::msg("the model has no output"));
    }
    let mut g = hetflow_ops::specialize::specialize(model, &[batch_shape.to_vec()])?;

    // Training form.
    let mut state_in = Vec::new();
    let mut state_out = Vec::new();
    let mut seed: Option<ValueId> = None;
    let nodes = std::mem::take(&mut g.nodes);
    let consumers = |g: &Graph, v: ValueId| {
        nodes.iter().any(|n| n.inputs.contains(&Some(v))) || g.outputs.contains(&v)
    };
    let mut rebuilt = Vec::with_capacity(nodes.len());
    for node in &nodes {
        let mut node = node.clone();
        match node.op {
            Op::BatchNorm { epsilon } => {
                for k in [3, 4] {
                    match node.inputs.get(k).copied().flatten() {
                        Some(v) if g.constants.contains_key(&v) => {
                            if !state_in.contains(&v) {
                                state_in.push(v);
                            }
                        }
                        _ => {
                            return Err(Error::msg(format!(
                                "node '{}' (BatchNormalization): its running mean and variance must be initializers to train",
                                node.name
                            )))
                        }
                    }
                }
                let op = Op::BatchNormTrain {
                    epsilon,
                    momentum: 0.9,
                };
                let outs = g.infer_outputs(&node.name, &op, &node.inputs, 5)?;
                let mut ids = vec![node.outputs[0]];
                for (k, f) in outs.into_iter().enumerate().skip(1) {
                    ids.push(g.add_value(format!("{}:train{k}", node.name), f));
                }
                state_out.push(ids[1]);
                state_out.push(ids[2]);
                node.op = op;
                node.outputs = ids;
            }
            Op::Dropout => {
                if node.outputs.len() > 1 && consumers(&g, node.outputs[1]) {
                    return Err(Error::msg(format!(
                        "node '{}' (Dropout): its mask output is read; training cannot run it",
                        node.name
                    )));
                }
                let ratio = match node.inputs.get(1).copied().flatten() {
                    None => 0.5,
                    Some(v) => match g.constants.get(&v) {
                        Some(t) => t
                            .cast(DType::F32)
                            .to_f32_vec()
                            .first()
                            .copied()
                            .unwrap_or(0.5),
                        None => {
                            return Err(Error::msg(format!(
                                "node '{}' (Dropout): the ratio must be a constant to train",
                                node.name
                            )))
                        }
                    },
                };
                let s = *seed.get_or_insert_with(|| {
                    g.add_value("dropout_seed", Fact::known(DType::I64, &[]))
                });
                let mask_fact = g.values[node.outputs[0].0].fact.clone();
                let mask = g.add_value(
                    format!("{}:mask", node.name),
                    Fact {
                        value: None,
                        ..mask_fact
                    },
                );
                node.op = Op::DropoutTrain { ratio };
                node.inputs = vec![node.inputs[0], Some(s)];
                node.outputs = vec![node.outputs[0], mask];
            }
            _ => {}
        }
        rebuilt.push(node);
    }
    g.nodes = rebuilt;
    if precision == Precision::Bf16 {
        precision::to_bf16(&mut g)?;
    }

    // Loss (in f32: a bf16 prediction is cast back first).
    let pred = g.outputs[0];
    let producers = g.producers();
    let (target, lv) = match loss {
        Loss::CrossEntropy => {
            let mut logits = pred;
            if let Some(p) = producers[pred.0] {
                let n = &g.nodes[p.0];
                let rank = g.values[pred.0].fact.rank().unwrap_or(0);
                if let Op::Softmax { axis, .. } | Op::LogSoftmax { axis, .. } = n.op {
                    if rank >= 2 && (axis == 1 || axis == -1 && rank == 2) {
                        logits = n.inputs[0].ok_or_else(|| Error::msg("Softmax without input"))?;
                    }
                }
            }
            let logits = precision::to_f32(&mut g, logits)?;
            let shape = g.values[logits.0]
                .fact
                .concrete_shape()
                .ok_or_else(|| Error::msg("the prediction has no concrete shape"))?;
            if shape.len() < 2 {
                return Err(Error::msg(format!(
                    "cross-entropy needs a prediction of shape [batch, classes, ...], got {shape:?}"
                )));
            }
            let mut ts = vec![shape[0]];
            ts.extend(&shape[2..]);
            let t = g.add_value("labels", Fact::known(DType::I64, &ts));
            let op = Op::SoftmaxCrossEntropy {
                reduction: LossReduction::Mean,
                ignore_index: None,
            };
            let l = g.add_inferred("loss", op, &[Some(logits), Some(t)], 1)?[0];
            (t, l)
        }
        Loss::Mse => {
            let pred = precision::to_f32(&mut g, pred)?;
            let f = g.values[pred.0].fact.clone();
            let shape = f
                .concrete_shape()
                .ok_or_else(|| Error::msg("the prediction has no concrete shape"))?;
            let dt = f.dtype.unwrap_or(DType::F32);
            let t = g.add_value("targets", Fact::known(dt, &shape));
            let d = g.add_inferred(
                "loss/diff",
                Op::Binary(BinaryOp::Sub),
                &[Some(pred), Some(t)],
                1,
            )?[0];
            let sq = g.add_inferred(
                "loss/square",
                Op::Binary(BinaryOp::Mul),
                &[Some(d), Some(d)],
                1,
            )?[0];
            let op = Op::Reduce {
                kind: ReduceKind::Mean,
                axes: None,
                keepdims: false,
                noop_with_empty_axes: false,
            };
            let l = g.add_inferred("loss", op, &[Some(sq)], 1)?[0];
            (t, l)
        }
    };
    // Loss scaling: the backward pass starts from loss · scale.
    let (from, scale) = if precision == Precision::Bf16 {
        let s = g.add_value("loss_scale", Fact::known(DType::F32, &[]));
        let mul = Op::Binary(BinaryOp::Mul);
        (
            g.add_inferred("loss/scaled", mul, &[Some(lv), Some(s)], 1)?[0],
            Some(s),
        )
    } else {
        (lv, None)
    };
    let target_shape = g.values[target.0].fact.concrete_shape().unwrap_or_default();
    let target_dtype = g.values[target.0].fact.dtype.unwrap_or(DType::F32);
    g.inputs.push(target);
    if let Some(s) = seed {
        g.inputs.push(s);
    }
    for &v in &state_in {
        lift(&mut g, v);
    }

    // Parameters: float initializers some node reads.
    let read: std::collections::HashSet<ValueId> = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().flatten().copied())
        .collect();
    let mut cands: Vec<ValueId> = g
        .constants
        .iter()
        .filter(|(id, t)| read.contains(id) && t.dtype().is_float() && !state_in.contains(id))
        .map(|(id, _)| *id)
        .collect();
    cands.sort();
    let saved: Vec<_> = cands.iter().map(|v| g.constants[v].clone()).collect();
    for &v in &cands {
        lift(&mut g, v);
    }
    let n_forward = g.nodes.len();
    let (grads, origins) = differentiate_traced(&mut g, from, &cands)?;
    let mut params = Vec::new();
    let mut grad_outs = Vec::new();
    for ((&v, gr), t) in cands.iter().zip(grads).zip(saved) {
        match gr {
            Some(gr) => {
                params.push(v);
                grad_outs.push(gr);
            }
            None => {
                // No gradient reaches it (a clip bound, a pad value): it
                // stays a constant.
                g.inputs.retain(|&i| i != v);
                g.values[v.0].fact.value = Some(t.clone());
                g.constants.insert(v, t);
            }
        }
    }
    if params.is_empty() {
        return Err(Error::msg(
            "the model has no weight a gradient reaches; nothing to train",
        ));
    }
    // Parameters last among the inputs, in the order of `params`.
    g.inputs.retain(|i| !params.contains(i));
    g.inputs.extend(&params);
    g.inputs.extend(scale);
    g.outputs = vec![lv, pred];
    g.outputs.extend(grad_outs);
    g.outputs.extend(&state_out);
    Ok(TrainGraph {
        state: state_in.iter().map(|v| g.name(*v).to_string()).collect(),
        params: params.iter().map(|v| g.name(*v).to_string()).collect(),
        seeded: seed.is_some(),
        target_shape,
        target_dtype,
        n_forward,
        origins,
        loss_scale: scale.is_some(),
        graph: g,
    })
}
