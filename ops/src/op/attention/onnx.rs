//! ONNX mapping of the attention ops (asked by the ONNX importer).

use super::FlexAttrs;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::{AttentionAttrs, Body, Op};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    Ok(Some(match cx.op_type {
        "Attention" => {
            let heads = |name: &str| -> Result<Option<usize>> {
                match a.int(name) {
                    None => Ok(None),
                    Some(h) if h > 0 => Ok(Some(h as usize)),
                    Some(h) => crate::bail!("{name} must be positive, got {h}"),
                }
            };
            let qk_output_mode = a.int_or("qk_matmul_output_mode", 0);
            if !(0..=3).contains(&qk_output_mode) {
                crate::bail!("qk_matmul_output_mode {qk_output_mode} is not 0..=3");
            }
            let (left_window, right_window) = (
                a.int_or("left_window_size", -1),
                a.int_or("right_window_size", -1),
            );
            if left_window < -1 || right_window < -1 {
                crate::bail!("window sizes must be -1 or nonnegative");
            }
            // softmax_precision: the kernel computes in f64 whatever it asks.
            Op::Attention(AttentionAttrs {
                is_causal: a.int_or("is_causal", 0) != 0,
                q_num_heads: heads("q_num_heads")?,
                kv_num_heads: heads("kv_num_heads")?,
                scale: a.float("scale"),
                softcap: a.float_or("softcap", 0.0),
                qk_output_mode,
                left_window,
                right_window,
            })
        }
        _ => return Ok(None),
    }))
}

/// Maps a FlexAttention node (`ai.onnx.preview` opset 1) with its imported
/// subgraph attributes (asked by the importer, which imports the bodies).
pub(crate) fn convert_flex(cx: &ConvertCx, bodies: Vec<(String, Body)>) -> Result<Op> {
    if cx.op_type != "FlexAttention" || cx.opset != 1 {
        return Err(cx.unsupported());
    }
    let a = cx.attrs;
    let (mut score_mod, mut prob_mod) = (None, None);
    for (name, body) in bodies {
        let slot = match name.as_str() {
            "score_mod" => &mut score_mod,
            "prob_mod" => &mut prob_mod,
            _ => crate::bail!("unknown graph attribute '{name}'"),
        };
        if body.formal != 1 || body.graph.outputs.len() != 1 {
            crate::bail!(
                "{name} must take one input and give one output, it takes {} and gives {}",
                body.formal,
                body.graph.outputs.len()
            );
        }
        *slot = Some(body);
    }
    let softmax_precision = match a.int("softmax_precision") {
        None => None,
        Some(code) => match i32::try_from(code).ok().and_then(DType::from_onnx) {
            Some(d @ (DType::F16 | DType::BF16 | DType::F32 | DType::F64)) => Some(d),
            _ => {
                return Err(Error::msg(format!(
                    "softmax_precision {code} is not a float type"
                )))
            }
        },
    };
    Ok(Op::FlexAttention(Box::new(FlexAttrs {
        scale: a.float("scale"),
        score_mod,
        prob_mod,
        softmax_precision,
    })))
}
