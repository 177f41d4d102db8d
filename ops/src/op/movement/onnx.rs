//! ONNX mapping of the shape and data-movement ops (asked by the ONNX
//! importer).

use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::Op;
use crate::tensor::Tensor;

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let opset = cx.opset;
    let dir = cx.dir;
    Ok(Some(match cx.op_type {
        "Range" => Op::Range,
        "Size" => Op::Size,
        "Reshape" => Op::Reshape {
            allowzero: a.int_or("allowzero", 0) != 0,
            shape: if opset < 5 { a.ints("shape") } else { None },
        },
        "Flatten" => Op::Flatten {
            axis: a.int_or("axis", 1),
        },
        "Transpose" => Op::Transpose {
            perm: a
                .ints("perm")
                .map(|p| p.into_iter().map(|x| x as usize).collect()),
        },
        "Squeeze" => Op::Squeeze {
            axes: if opset < 13 { a.ints("axes") } else { None },
        },
        "Unsqueeze" => {
            let axes = if opset < 13 {
                Some(
                    a.ints("axes")
                        .ok_or_else(|| Error::msg("missing attribute 'axes'"))?,
                )
            } else {
                None
            };
            Op::Unsqueeze { axes }
        }
        "Concat" => Op::Concat {
            axis: a
                .int("axis")
                .ok_or_else(|| Error::msg("missing attribute 'axis'"))?,
        },
        "Split" => Op::Split {
            axis: a.int_or("axis", 0),
            split: if opset < 13 { a.ints("split") } else { None },
        },
        "Slice" => {
            if opset < 10 {
                Op::Slice {
                    starts: Some(
                        a.ints("starts")
                            .ok_or_else(|| Error::msg("missing attribute 'starts'"))?,
                    ),
                    ends: Some(
                        a.ints("ends")
                            .ok_or_else(|| Error::msg("missing attribute 'ends'"))?,
                    ),
                    axes: a.ints("axes"),
                }
            } else {
                Op::Slice {
                    starts: None,
                    ends: None,
                    axes: None,
                }
            }
        }
        "Gather" => Op::Gather {
            axis: a.int_or("axis", 0),
        },
        "Shape" => Op::Shape {
            start: a.int_or("start", 0),
            end: a.int("end"),
        },
        "Expand" => Op::Expand,
        "Identity" => Op::Identity,
        // hetflow values are tensors, never optionals (an optional-typed
        // graph value is refused at load), so an optional here always
        // holds its tensor: OptionalGetElement passes it through, and
        // OptionalHasElement says whether the input was given at all.
        "OptionalGetElement" if cx.opset >= 15 => Op::Identity,
        "OptionalHasElement" if cx.opset >= 15 => Op::OptionalHasElement,
        // A seeded node with a training_mode input draws its mask as the
        // ONNX reference does (`dropout.rs`); others run inference only.
        "Dropout" => match a.int("seed") {
            Some(seed) if cx.opset >= 12 && cx.node.input.get(2).is_some_and(|s| !s.is_empty()) => {
                Op::DropoutSeeded { seed }
            }
            _ => Op::Dropout,
        },
        "ConstantOfShape" => Op::ConstantOfShape {
            value: match a.tensor("value", dir)? {
                Some(t) => t
                    .reshape(vec![])
                    .map_err(|_| Error::msg("ConstantOfShape value must hold one element"))?,
                None => Tensor::scalar(0f32),
            },
        },
        _ => return Ok(None),
    }))
}
