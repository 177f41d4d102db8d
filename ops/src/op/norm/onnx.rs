//! ONNX mapping of the normalisation ops (asked by the ONNX importer).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::onnx::attrs::{Attrs, ConvertCx};
use crate::op::Op;

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let op_type = cx.op_type;
    let opset = cx.opset;
    let np = cx.node;
    Ok(Some(match cx.op_type {
        "Hardmax" => {
            let legacy = opset < 13;
            Op::Hardmax {
                axis: a.int_or("axis", if legacy { 1 } else { -1 }),
                legacy,
            }
        }
        "RotaryEmbedding" => Op::RotaryEmbedding {
            interleaved: a.int_or("interleaved", 0) != 0,
            num_heads: a.int("num_heads").filter(|&h| h > 0).map(|h| h as usize),
            rotary_dim: usize::try_from(a.int_or("rotary_embedding_dim", 0))
                .map_err(|_| Error::msg("rotary_embedding_dim must be >= 0"))?,
        },
        "LpNormalization" => Op::LpNorm {
            axis: a.int_or("axis", -1),
            p: match a.int_or("p", 2) {
                1 => 1,
                2 => 2,
                p => crate::bail!("LpNormalization p must be 1 or 2, got {p}"),
            },
        },
        "MeanVarianceNormalization" => Op::MeanVarianceNorm {
            axes: a.ints("axes").unwrap_or_else(|| vec![0, 2, 3]),
        },
        "InstanceNormalization" => Op::InstanceNorm {
            epsilon: a.float_or("epsilon", 1e-5),
        },
        "GroupNormalization" => {
            stash_type(a)?;
            Op::GroupNorm {
                epsilon: a.float_or("epsilon", 1e-5),
                groups: a
                    .int("num_groups")
                    .filter(|&g| g > 0)
                    .ok_or_else(|| Error::msg("num_groups must be a positive integer"))?
                    as usize,
                per_channel: opset >= 21,
            }
        }
        "RMSNormalization" => {
            stash_type(a)?;
            Op::RmsNorm {
                axis: a.int_or("axis", -1),
                epsilon: a.float_or("epsilon", 1e-5),
            }
        }
        "Softmax" | "LogSoftmax" => {
            let legacy = opset < 13;
            let axis = a.int_or("axis", if legacy { 1 } else { -1 });
            if op_type == "Softmax" {
                Op::Softmax { axis, legacy }
            } else {
                Op::LogSoftmax { axis, legacy }
            }
        }
        "BatchNormalization" => {
            if a.int_or("training_mode", 0) != 0 {
                // Opset 14+: Y and optionally the running mean and var.
                if np.output.len() > 3 {
                    crate::bail!("BatchNormalization has at most 3 outputs in training mode");
                }
                return Ok(Some(Op::BatchNormTrain {
                    epsilon: a.float_or("epsilon", 1e-5),
                    momentum: a.float_or("momentum", 0.9),
                }));
            }
            if np.output.iter().filter(|o| !o.is_empty()).count() > 1 {
                crate::bail!(
                    "BatchNormalization with running-statistics outputs (training) is unsupported"
                );
            }
            Op::BatchNorm {
                epsilon: a.float_or("epsilon", 1e-5),
            }
        }
        "LayerNormalization" => {
            stash_type(a)?;
            Op::LayerNorm {
                axis: a.int_or("axis", -1),
                epsilon: a.float_or("epsilon", 1e-5),
            }
        }
        "LRN" => Op::Lrn {
            alpha: a.float_or("alpha", 1e-4),
            beta: a.float_or("beta", 0.75),
            bias: a.float_or("bias", 1.0),
            size: a
                .int("size")
                .ok_or_else(|| Error::msg("missing attribute 'size'"))? as usize,
        },
        _ => return Ok(None),
    }))
}

/// Normalisations compute their statistics in f32 or wider; other
/// `stash_type`s are refused.
fn stash_type(a: &Attrs) -> Result<()> {
    match a.int_or("stash_type", 1) {
        1 | 11 => Ok(()),
        t => crate::bail!("stash_type {} is unsupported", DType::onnx_name(t as i32)),
    }
}
