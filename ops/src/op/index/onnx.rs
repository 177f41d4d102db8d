//! ONNX mapping of the indexing ops (asked by the ONNX importer).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::onnx::attrs::{Attrs, ConvertCx};
use crate::op::{Op, PadMode, ScatterReduction};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let op_type = cx.op_type;
    let opset = cx.opset;
    let unsupported = || cx.unsupported();
    Ok(Some(match cx.op_type {
        "GatherElements" => Op::GatherElements {
            axis: a.int_or("axis", 0),
        },
        "GatherND" => Op::GatherNd {
            batch_dims: usize::try_from(a.int_or("batch_dims", 0))
                .map_err(|_| Error::msg("GatherND batch_dims must be >= 0"))?,
        },
        "Scatter" | "ScatterElements" => Op::ScatterElements {
            axis: a.int_or("axis", 0),
            reduction: scatter_reduction(a)?,
        },
        "ScatterND" => Op::ScatterNd {
            reduction: scatter_reduction(a)?,
        },
        "Trilu" => Op::Trilu {
            upper: a.int_or("upper", 1) != 0,
        },
        "CumSum" | "CumProd" => Op::Cumulative {
            prod: op_type == "CumProd",
            exclusive: a.int_or("exclusive", 0) != 0,
            reverse: a.int_or("reverse", 0) != 0,
        },
        "TopK" => Op::TopK {
            axis: a.int_or("axis", -1),
            largest: a.int_or("largest", 1) != 0,
            sorted: a.int_or("sorted", 1) != 0,
            k: if opset < 10 {
                Some(
                    a.int("k")
                        .ok_or_else(|| Error::msg("missing attribute 'k'"))?,
                )
            } else {
                None
            },
        },
        "OneHot" => Op::OneHot {
            axis: a.int_or("axis", -1),
        },
        "NonZero" => Op::NonZero,
        "Compress" => Op::Compress {
            axis: a.int("axis"),
        },
        "Tile" => {
            if opset < 6 {
                return Err(unsupported());
            }
            Op::Tile
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let blocksize = a
                .int("blocksize")
                .filter(|&b| b > 0)
                .ok_or_else(|| Error::msg("attribute 'blocksize' must be a positive integer"))?
                as usize;
            let crd = match a.string("mode").as_deref() {
                None | Some("DCR") => false,
                Some("CRD") => true,
                Some(o) => crate::bail!("unknown {op_type} mode '{o}'"),
            };
            if op_type == "SpaceToDepth" {
                Op::SpaceToDepth { blocksize, crd }
            } else {
                Op::DepthToSpace { blocksize, crd }
            }
        }
        "EyeLike" => Op::EyeLike {
            dtype: match a.int("dtype") {
                None => None,
                Some(code) => Some(DType::from_onnx(code as i32).ok_or_else(|| {
                    Error::msg(format!(
                        "EyeLike dtype {} is unsupported",
                        DType::onnx_name(code as i32)
                    ))
                })?),
            },
            k: a.int_or("k", 0),
        },
        "Pad" => {
            if opset < 2 {
                return Err(unsupported());
            }
            let mode = match a.string("mode").as_deref() {
                None | Some("constant") => PadMode::Constant,
                Some("reflect") => PadMode::Reflect,
                Some("edge") => PadMode::Edge,
                Some("wrap") if opset >= 19 => PadMode::Wrap,
                Some(o) => crate::bail!("unknown Pad mode '{o}'"),
            };
            if opset < 11 {
                Op::Pad {
                    mode,
                    pads: Some(
                        a.ints("pads")
                            .ok_or_else(|| Error::msg("missing attribute 'pads'"))?,
                    ),
                    value: a.float_or("value", 0.0),
                }
            } else {
                Op::Pad {
                    mode,
                    pads: None,
                    value: 0.0,
                }
            }
        }
        _ => return Ok(None),
    }))
}

fn scatter_reduction(a: &Attrs) -> Result<ScatterReduction> {
    Ok(match a.string("reduction").as_deref() {
        None | Some("none") => ScatterReduction::None,
        Some("add") => ScatterReduction::Add,
        Some("mul") => ScatterReduction::Mul,
        Some("max") => ScatterReduction::Max,
        Some("min") => ScatterReduction::Min,
        Some(o) => crate::bail!("unknown scatter reduction '{o}'"),
    })
}
