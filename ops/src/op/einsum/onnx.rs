//! ONNX mapping of the Einsum ops (asked by the ONNX importer).

use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::Op;

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    Ok(Some(match cx.op_type {
        "Einsum" => Op::Einsum {
            equation: a
                .string("equation")
                .ok_or_else(|| Error::msg("missing attribute 'equation'"))?,
        },
        _ => return Ok(None),
    }))
}
