//! ONNX mapping of the matrix-product ops (asked by the ONNX importer).

use crate::error::Result;
use crate::onnx::attrs::ConvertCx;
use crate::op::Op;

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    Ok(Some(match cx.op_type {
        "MatMul" => Op::MatMul,
        "Gemm" => Op::Gemm {
            alpha: a.float_or("alpha", 1.0),
            beta: a.float_or("beta", 1.0),
            trans_a: a.int_or("transA", 0) != 0,
            trans_b: a.int_or("transB", 0) != 0,
            act: Default::default(),
        },
        _ => return Ok(None),
    }))
}
