//! ONNX mapping of the convolution ops (asked by the ONNX importer).

use crate::error::Result;
use crate::onnx::attrs::{Attrs, ConvertCx};
use crate::op::{AutoPad, ConvAttrs, DeformConvAttrs, Op};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    Ok(Some(match cx.op_type {
        "Conv" | "ConvInteger" | "QLinearConv" => {
            let attrs = ConvAttrs {
                kernel_shape: a
                    .ints("kernel_shape")
                    .map(|v| v.into_iter().map(|x| x as usize).collect()),
                strides: a.usizes("strides")?,
                pads: a.usizes("pads")?,
                dilations: a.usizes("dilations")?,
                group: a.int_or("group", 1).max(1) as usize,
                auto_pad: auto_pad(a)?,
                activation: Default::default(),
                residual: false,
            };
            match cx.op_type {
                "Conv" => Op::Conv(attrs),
                "ConvInteger" => Op::ConvInteger(attrs),
                _ => Op::QLinearConv(attrs),
            }
        }
        "DeformConv" => {
            if cx.opset < 19 {
                return Err(cx.unsupported());
            }
            let positive = |name: &str| -> Result<usize> {
                match a.int_or(name, 1) {
                    v if v >= 1 => Ok(v as usize),
                    v => crate::bail!("{name} must be positive, got {v}"),
                }
            };
            Op::DeformConv(DeformConvAttrs {
                conv: ConvAttrs {
                    kernel_shape: a
                        .ints("kernel_shape")
                        .map(|v| v.into_iter().map(|x| x.max(0) as usize).collect()),
                    strides: a.usizes("strides")?,
                    pads: a.usizes("pads")?,
                    dilations: a.usizes("dilations")?,
                    group: positive("group")?,
                    auto_pad: AutoPad::NotSet,
                    activation: Default::default(),
                    residual: false,
                },
                offset_group: positive("offset_group")?,
            })
        }
        _ => return Ok(None),
    }))
}

/// ONNX `auto_pad` (also read by pooling and ConvTranspose).
pub(crate) fn auto_pad(a: &Attrs) -> Result<AutoPad> {
    Ok(match a.string("auto_pad").as_deref() {
        None | Some("NOTSET") | Some("") => AutoPad::NotSet,
        Some("SAME_UPPER") => AutoPad::SameUpper,
        Some("SAME_LOWER") => AutoPad::SameLower,
        Some("VALID") => AutoPad::Valid,
        Some(other) => crate::bail!("unknown auto_pad '{other}'"),
    })
}
