//! ONNX mapping of the sequence-model ops (asked by the ONNX importer).

use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::{LinearAttentionRule, Op};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    Ok(Some(match cx.op_type {
        "LinearAttention" => {
            let heads = |name: &str| -> Result<usize> {
                a.int(name)
                    .filter(|&h| h > 0)
                    .map(|h| h as usize)
                    .ok_or_else(|| Error::msg(format!("{name} must be a positive integer")))
            };
            Op::LinearAttention {
                rule: match a.string("update_rule").as_deref() {
                    None | Some("gated_delta") => LinearAttentionRule::GatedDelta,
                    Some("linear") => LinearAttentionRule::Linear,
                    Some("gated") => LinearAttentionRule::Gated,
                    Some("delta") => LinearAttentionRule::Delta,
                    Some(o) => crate::bail!("unknown update_rule '{o}'"),
                },
                q_num_heads: heads("q_num_heads")?,
                kv_num_heads: heads("kv_num_heads")?,
                scale: a.float_or("scale", 0.0),
            }
        }
        "CausalConvWithState" => Op::CausalConvWithState {
            silu: match a.string("activation").as_deref() {
                None | Some("none") => false,
                Some("silu") | Some("swish") => true,
                Some(o) => crate::bail!("unknown activation '{o}'"),
            },
        },
        "TensorScatter" => Op::TensorScatter {
            axis: a.int_or("axis", -2),
            circular: match a.string("mode").as_deref() {
                None | Some("linear") => false,
                Some("circular") => true,
                Some(o) => crate::bail!("unknown TensorScatter mode '{o}'"),
            },
        },
        "SwiGLU" => Op::SwiGlu {
            alpha: a.float_or("alpha", 1.0),
        },
        _ => return Ok(None),
    }))
}
