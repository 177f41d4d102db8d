//! Mixed precision: bf16 compute with f32 master weights and dynamic loss
//! scaling (`hetflow train --precision bf16`, [`super::TrainOptions`]).
//!
//! Design (the usual AMP recipe: Micikevicius et al., "Mixed Precision
//! Training", and PyTorch's `torch.amp`):
//! - **Master weights stay f32** on the host, as in f32 training, and the
//!   optimizer updates them in f32.
//! - **The graph casts.** [`to_bf16`] rewrites the forward graph before it
//!   is differentiated: every f32 graph input and float initializer a node
//!   reads (the batch, the weights, biases, constants) goes through a
//!   `Cast` to bf16, so every forward op, and through autodiff every
//!   backward op, computes on bf16 tensors. The host kernels widen bf16 to
//!   f32 inside each op and round the result back to bf16 (each family's
//!   `widens_half`), which is how bf16 units with f32 accumulation behave,
//!   emulated. The logits are cast back to f32 before the loss, so the
//!   loss and its first gradient are f32. Autodiff gives `Cast` a gradient
//!   (the incoming gradient cast back to the input's type), so the weight
//!   gradients arrive as f32.
//! - **BatchNormalization stays f32** (Apex's `keep_batchnorm_fp32`, and
//!   cuDNN's batch norm under `torch.amp`): its input is cast to f32, its
//!   output back to bf16, and its scale, bias and running statistics are
//!   never rounded. With bf16 statistics, a running-mean update
//!   `0.9·r + 0.1·b` smaller than half a bf16 step (2^-9 of r) is lost, so
//!   the statistics would stall up to a few percent from the batch's.
//! - **Dynamic loss scaling** ([`LossScaler`]). The training graph gets a
//!   scalar f32 input, the scale S, and is differentiated from `loss · S`
//!   instead of the loss (the loss output stays unscaled). The trainer
//!   divides the gradients by S before clipping and the optimizer. When
//!   any gradient is not finite the step is skipped: weights, optimizer
//!   state (moments and step count) and running statistics stay as they
//!   were, S halves, and the step is counted in [`super::Metrics`]'
//!   `skipped`. After `growth_interval` good steps in a row S doubles.
//!   bf16 has f32's exponent range, so it underflows far less than f16
//!   and the scale matters less than it does for f16; it is kept because
//!   gradients of tiny magnitude still lose bits below 2^-126, and it is
//!   the same recipe for both.
//! - Not combined with pipelined training (`--schedule`): refused with an
//!   error naming both. Micro-batches and replicas work.

use hetflow_ops::graph::{Fact, Graph, Node, ValueId};
use hetflow_ops::narrow::RoundMode;
use hetflow_ops::op::Op;
use hetflow_ops::{DType, Error, Result};
use std::collections::{HashMap, HashSet};

/// The precision the training graph computes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout (no casts, no loss scaling).
    #[default]
    F32,
    /// bf16 compute, f32 master weights, f32 loss, dynamic loss scaling.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Precision, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!(
                "precision '{s}' is not supported: choose f32 or bf16"
            )),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// Settings of dynamic loss scaling (bf16 only; f32 runs unscaled).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaling {
    /// The first scale (PyTorch's `GradScaler` default, 2^16, is for f16;
    /// 2^15 here, as the issue asks).
    pub init: f32,
    /// Good steps in a row after which the scale doubles.
    pub growth_interval: u64,
}

impl Default for LossScaling {
    fn default() -> Self {
        LossScaling {
            init: 32768.0,
            growth_interval: 2000,
        }
    }
}

/// The state of dynamic loss scaling (module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaler {
    /// The settings.
    pub config: LossScaling,
    /// The current scale.
    pub scale: f32,
    /// Good steps since the scale last changed.
    pub good_steps: u64,
    /// Steps skipped so far.
    pub skipped: u64,
}

impl LossScaler {
    /// A scaler at `config.init`.
    pub fn new(config: LossScaling) -> LossScaler {
        LossScaler {
            config,
            scale: config.init,
            good_steps: 0,
            skipped: 0,
        }
    }

    /// Takes gradients of the scaled loss: when all are finite, divides
    /// them by the scale (exact: the scale is a power of two when it
    /// starts as one) and returns true; else returns false and leaves
    /// them. Then updates the scale: halves it after a non-finite step,
    /// doubles it after `growth_interval` good steps in a row.
    pub fn unscale(&mut self, grads: &mut [Vec<f32>]) -> bool {
        let finite = grads.iter().flatten().all(|g| g.is_finite());
        if finite {
            for g in grads.iter_mut().flatten() {
                *g /= self.scale;
            }
            self.good_steps += 1;
            if self.good_steps >= self.config.growth_interval && (self.scale * 2.0).is_finite() {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.skipped += 1;
            self.scale = (self.scale * 0.5).max(f32::MIN_POSITIVE);
            self.good_steps = 0;
        }
        finite
    }
}

fn cast_op(to: DType) -> Op {
    Op::Cast {
        to,
        saturate: true,
        round: RoundMode::Up,
    }
}

/// Appends to `nodes` a Cast of `v` to `to`, its output a new value of
/// `g` named `v`'s name with `:to` appended.
fn cast_into(g: &mut Graph, nodes: &mut Vec<Node>, v: ValueId, to: DType) -> ValueId {
    let name = format!("{}:{to}", g.name(v));
    let fact = Fact {
        dtype: Some(to),
        shape: g.values[v.0].fact.shape.clone(),
        value: None,
    };
    let out = g.add_value(name.clone(), fact);
    nodes.push(Node {
        name: format!("cast/{name}"),
        op: cast_op(to),
        inputs: vec![Some(v)],
        outputs: vec![out],
    });
    out
}

/// `v` as f32: `v` itself when it is not bf16, else a Cast node appended
/// to `g`.
pub(crate) fn to_f32(g: &mut Graph, v: ValueId) -> Result<ValueId> {
    if g.values[v.0].fact.dtype != Some(DType::BF16) {
        return Ok(v);
    }
    let name = format!("cast/{}:f32", g.name(v));
    Ok(g.add_inferred(&name, cast_op(DType::F32), &[Some(v)], 1)?[0])
}

/// Rewrites the forward graph `g` (training form, before the loss) to
/// compute in bf16 (module docs): f32 graph inputs and float initializers
/// are cast to bf16 where a node reads them, BatchNormalization runs in
/// f32 between casts, and every node's output facts are inferred again.
pub(crate) fn to_bf16(g: &mut Graph) -> Result<()> {
    let nodes = std::mem::take(&mut g.nodes);
    let produced: HashSet<ValueId> = nodes.iter().flat_map(|n| n.outputs.clone()).collect();
    let mut casts: HashMap<ValueId, ValueId> = HashMap::new();
    let mut out = Vec::with_capacity(nodes.len() * 2);
    for mut node in nodes {
        if let Op::BatchNormTrain { .. } = node.op {
            if let Some(Some(x)) = node.inputs.first().copied() {
                if g.values[x.0].fact.dtype == Some(DType::BF16) {
                    node.inputs[0] = Some(cast_into(g, &mut out, x, DType::F32));
                }
            }
            let facts = g.infer_outputs(&node.name, &node.op, &node.inputs, node.outputs.len())?;
            let y = node.outputs[0];
            let y32 = g.add_value(
                format!("{}:f32", g.name(y)),
                Fact {
                    value: None,
                    ..facts[0].clone()
                },
            );
            for (o, f) in node.outputs.iter().zip(facts).skip(1) {
                g.values[o.0].fact = Fact { value: None, ..f };
            }
            node.outputs[0] = y32;
            out.push(node);
            g.values[y.0].fact = Fact {
                dtype: Some(DType::BF16),
                ..g.values[y32.0].fact.clone()
            };
            out.push(Node {
                name: format!("cast/{}:bf16", g.name(y)),
                op: cast_op(DType::BF16),
                inputs: vec![Some(y32)],
                outputs: vec![y],
            });
            continue;
        }
        for inp in node.inputs.iter_mut() {
            let Some(v) = *inp else { continue };
            if produced.contains(&v) || g.values[v.0].fact.dtype != Some(DType::F32) {
                continue;
            }
            let c = match casts.get(&v) {
                Some(&c) => c,
                None => {
                    let c = cast_into(g, &mut out, v, DType::BF16);
                    casts.insert(v, c);
                    c
                }
            };
            *inp = Some(c);
        }
        let facts = g
            .infer_outputs(&node.name, &node.op, &node.inputs, node.outputs.len())
            .map_err(|e| {
                Error::msg(format!(
                    "bf16 training: {e} (the op does not take bf16 tensors)"
                ))
            })?;
        for (o, f) in node.outputs.iter().zip(facts) {
            g.values[o.0].fact = Fact { value: None, ..f };
        }
        out.push(node);
    }
    g.nodes = out;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_unscales_halves_on_overflow_and_doubles_after_good_steps() {
        let mut s = LossScaler::new(LossScaling {
            init: 8.0,
            growth_interval: 2,
        });
        let mut g = vec![vec![8.0f32, -4.0], vec![2.0]];
        assert!(s.unscale(&mut g));
        assert_eq!(g, vec![vec![1.0, -0.5], vec![0.25]]);
        let mut bad = vec![vec![1.0f32, f32::INFINITY]];
        assert!(!s.unscale(&mut bad));
        assert_eq!(bad[0][0], 1.0, "a skipped step's gradients are left");
        assert_eq!((s.scale, s.skipped, s.good_steps), (4.0, 1, 0));
        let mut nan = vec![vec![f32::NAN]];
        assert!(!s.unscale(&mut nan));
        assert_eq!(s.scale, 2.0);
        for _ in 0..2 {
            assert!(s.unscale(&mut g));
        }
        assert_eq!((s.scale, s.good_steps), (4.0, 0));
    }

    #[test]
    fn precisions_parse_by_name() {
        assert_eq!("bf16".parse::<Precision>(), Ok(Precision::Bf16));
        assert_eq!("f32".parse::<Precision>(), Ok(Precision::F32));
        let e = "fp16".parse::<Precision>().unwrap_err();
        assert!(e.contains("fp16") && e.contains("f32 or bf16"), "{e}");
    }
}
