//! ONNX mapping of the quantisation ops (asked by the ONNX importer).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::Op;

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let op_type = cx.op_type;
    let opset = cx.opset;
    let unsupported = || cx.unsupported();
    Ok(Some(match cx.op_type {
        "QuantizeLinear" | "DequantizeLinear" => {
            if opset < 10 {
                return Err(unsupported());
            }
            let dtype = match a.int_or("output_dtype", 0) {
                0 => None,
                code => Some(DType::from_onnx(code as i32).ok_or_else(|| {
                    Error::msg(format!(
                        "output_dtype {} is unsupported",
                        DType::onnx_name(code as i32)
                    ))
                })?),
            };
            if a.int_or("saturate", 1) == 0 {
                return Err(Error::msg(
                    "saturate = 0 is unsupported (values saturate to the output type)",
                ));
            }
            let axis = a.int_or("axis", 1);
            let block_size = usize::try_from(a.int_or("block_size", 0))
                .map_err(|_| Error::msg("block_size must be >= 0"))?;
            if op_type == "QuantizeLinear" {
                Op::QuantizeLinear {
                    axis,
                    block_size,
                    dtype,
                }
            } else {
                Op::DequantizeLinear {
                    axis,
                    block_size,
                    dtype,
                }
            }
        }
        "DynamicQuantizeLinear" => Op::DynamicQuantizeLinear,
        "BitCast" => {
            let to = a
                .int("to")
                .ok_or_else(|| Error::msg("missing attribute 'to'"))? as i32;
            Op::BitCast {
                to: DType::from_onnx(to).ok_or_else(|| {
                    Error::msg(format!(
                        "BitCast to {} is unsupported",
                        DType::onnx_name(to)
                    ))
                })?,
            }
        }
        _ => return Ok(None),
    }))
}
