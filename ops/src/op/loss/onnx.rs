//! ONNX mapping of the loss ops (asked by the ONNX importer).

use crate::error::Result;
use crate::onnx::attrs::ConvertCx;
use crate::op::{LossReduction, Op};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let op_type = cx.op_type;
    Ok(Some(match cx.op_type {
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => {
            let reduction = match a.string("reduction").as_deref() {
                None | Some("mean") => LossReduction::Mean,
                Some("sum") => LossReduction::Sum,
                Some("none") => LossReduction::None,
                Some(o) => crate::bail!("unknown reduction '{o}'"),
            };
            let ignore_index = a.int("ignore_index");
            if op_type == "SoftmaxCrossEntropyLoss" {
                Op::SoftmaxCrossEntropy {
                    reduction,
                    ignore_index,
                }
            } else {
                Op::NllLoss {
                    reduction,
                    ignore_index,
                }
            }
        }
        _ => return Ok(None),
    }))
}
