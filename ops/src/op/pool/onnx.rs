//! ONNX mapping of the pooling ops (asked by the ONNX importer).

use crate::error::Result;
use crate::onnx::attrs::{Attrs, ConvertCx};
use crate::op::conv::onnx::auto_pad;
use crate::op::{Op, PoolAttrs, RoiAlignAttrs};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let opset = cx.opset;
    let np = cx.node;
    let unsupported = || cx.unsupported();
    Ok(Some(match cx.op_type {
        "LpPool" => {
            if opset < 11 {
                return Err(unsupported());
            }
            Op::LpPool {
                pool: pool_attrs(a)?,
                p: a.int_or("p", 2) as f32,
            }
        }
        "MaxPool" => {
            if np.output.len() > 1 && !np.output[1].is_empty() {
                if cx.opset < 8 {
                    crate::bail!("MaxPool has one output before opset 8");
                }
                return Ok(Some(Op::MaxPoolIndices {
                    pool: pool_attrs(a)?,
                    column_major: match a.int_or("storage_order", 0) {
                        0 => false,
                        1 => true,
                        s => crate::bail!("storage_order must be 0 or 1, got {s}"),
                    },
                }));
            }
            Op::MaxPool(pool_attrs(a)?)
        }
        "AveragePool" => Op::AveragePool(pool_attrs(a)?),
        "RoiAlign" => {
            if opset < 10 {
                return Err(unsupported());
            }
            let dim = |name: &str| -> Result<usize> {
                match a.int_or(name, 1) {
                    d if d >= 1 => Ok(d as usize),
                    d => crate::bail!("{name} must be positive, got {d}"),
                }
            };
            // Opset 16 added the attribute; before, the start was not shifted.
            let half_pixel = match a.string("coordinate_transformation_mode").as_deref() {
                None => opset >= 16,
                Some("half_pixel") => true,
                Some("output_half_pixel") => false,
                Some(m) => crate::bail!("unknown coordinate_transformation_mode '{m}'"),
            };
            Op::RoiAlign(RoiAlignAttrs {
                max: match a.string("mode").as_deref() {
                    None | Some("avg") => false,
                    Some("max") => true,
                    Some(m) => crate::bail!("mode must be 'avg' or 'max', got '{m}'"),
                },
                output: [dim("output_height")?, dim("output_width")?],
                sampling_ratio: usize::try_from(a.int_or("sampling_ratio", 0))
                    .map_err(|_| crate::Error::msg("sampling_ratio must be nonnegative"))?,
                spatial_scale: a.float_or("spatial_scale", 1.0),
                half_pixel,
            })
        }
        "MaxUnpool" => {
            let kernel_shape = a.usizes("kernel_shape")?;
            if kernel_shape.is_empty() || kernel_shape.contains(&0) {
                crate::bail!("kernel_shape must be given, with positive entries");
            }
            Op::MaxUnpool {
                kernel_shape,
                strides: a.usizes("strides")?,
                pads: a.usizes("pads")?,
            }
        }
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "GlobalMaxPool" => Op::GlobalMaxPool,
        _ => return Ok(None),
    }))
}

/// `storage_order` only orders MaxPool's Indices output
/// ([`Op::MaxPoolIndices`]); the pooled values do not depend on it.
fn pool_attrs(a: &Attrs) -> Result<PoolAttrs> {
    let kernel_shape = a.usizes("kernel_shape")?;
    if kernel_shape.is_empty() {
        crate::bail!("missing attribute kernel_shape");
    }
    Ok(PoolAttrs {
        kernel_shape,
        strides: a.usizes("strides")?,
        pads: a.usizes("pads")?,
        dilations: a.usizes("dilations")?,
        auto_pad: auto_pad(a)?,
        ceil_mode: a.int_or("ceil_mode", 0) != 0,
        count_include_pad: a.int_or("count_include_pad", 0) != 0,
    })
}
