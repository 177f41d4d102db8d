//! ONNX mapping of the pooling ops (asked by the ONNX importer).

use crate::error::Result;
use crate::onnx::attrs::{Attrs, ConvertCx};
use crate::op::conv::onnx::auto_pad;
use crate::op::{Op, PoolAttrs};

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
                crate::bail!("MaxPool Indices output is unsupported");
            }
            Op::MaxPool(pool_attrs(a)?)
        }
        "AveragePool" => Op::AveragePool(pool_attrs(a)?),
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

fn pool_attrs(a: &Attrs) -> Result<PoolAttrs> {
    if a.int_or("storage_order", 0) != 0 {
        crate::bail!("storage_order=1 (column-major indices) is unsupported");
    }
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
