//! ONNX mapping of the signal ops (asked by the ONNX importer).

use crate::error::Result;
use crate::onnx::attrs::ConvertCx;
use crate::op::Op;

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let opset = cx.opset;
    let unsupported = || cx.unsupported();
    Ok(Some(match cx.op_type {
        "STFT" => {
            if opset < 17 {
                return Err(unsupported());
            }
            Op::Stft {
                onesided: cx.attrs.int_or("onesided", 1) != 0,
            }
        }
        "MelWeightMatrix" => {
            if opset < 17 {
                return Err(unsupported());
            }
            let code = cx.attrs.int_or("output_datatype", 1);
            Op::MelWeightMatrix {
                dtype: match i32::try_from(code).ok().and_then(crate::DType::from_onnx) {
                    Some(d) if d.is_float() || d.is_int() => d,
                    _ => crate::bail!("output_datatype {code} is not a numeric type"),
                },
            }
        }
        "DFT" => {
            if opset < 17 {
                return Err(unsupported());
            }
            Op::Dft {
                axis: if opset < 20 {
                    Some(a.int_or("axis", 1))
                } else {
                    None
                },
                inverse: a.int_or("inverse", 0) != 0,
                onesided: a.int_or("onesided", 0) != 0,
            }
        }
        "NonMaxSuppression" => Op::NonMaxSuppression {
            center_point_box: a.int_or("center_point_box", 0) != 0,
        },
        "QLinearMatMul" => Op::QLinearMatMul,
        "Col2Im" => Op::Col2Im {
            dilations: a.usizes("dilations")?,
            pads: a.usizes("pads")?,
            strides: a.usizes("strides")?,
        },
        "MatMulInteger" => Op::MatMulInteger,
        _ => return Ok(None),
    }))
}
