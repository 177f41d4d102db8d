//! ONNX mapping of the optimizers (`ai.onnx.preview.training` opset 1,
//! asked by the ONNX importer with the qualified op type).

use super::Optimizer;
use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::Op;

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let required = |name: &str| {
        a.float(name)
            .ok_or_else(|| Error::msg(format!("missing attribute '{name}'")))
    };
    let opt = match cx.op_type {
        "ai.onnx.preview.training.Adagrad" => Optimizer::Adagrad {
            decay_factor: a.float_or("decay_factor", 0.0),
            epsilon: a.float_or("epsilon", 0.0),
            norm_coefficient: a.float_or("norm_coefficient", 0.0),
        },
        "ai.onnx.preview.training.Adam" => Optimizer::Adam {
            alpha: a.float_or("alpha", 0.9),
            beta: a.float_or("beta", 0.999),
            epsilon: a.float_or("epsilon", 0.0),
            norm_coefficient: a.float_or("norm_coefficient", 0.0),
            norm_coefficient_post: a.float_or("norm_coefficient_post", 0.0),
        },
        "ai.onnx.preview.training.Momentum" => Optimizer::Momentum {
            alpha: required("alpha")?,
            beta: required("beta")?,
            nesterov: match a.string("mode").as_deref() {
                Some("standard") => false,
                Some("nesterov") => true,
                Some(m) => crate::bail!("mode must be 'standard' or 'nesterov', got '{m}'"),
                None => crate::bail!("missing attribute 'mode'"),
            },
            norm_coefficient: required("norm_coefficient")?,
        },
        _ => return Ok(None),
    };
    if cx.opset != 1 {
        return Err(cx.unsupported());
    }
    Ok(Some(Op::Optimizer(opt)))
}
