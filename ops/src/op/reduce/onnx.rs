//! ONNX mapping of the reduction ops (asked by the ONNX importer).

use crate::error::Result;
use crate::onnx::attrs::{Attrs, ConvertCx};
use crate::op::{Op, ReduceKind};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let opset = cx.opset;
    let np = cx.node;
    Ok(Some(match cx.op_type {
        "ArgMax" | "ArgMin" => Op::ArgExtreme {
            max: np.op_type() == "ArgMax",
            axis: a.int_or("axis", 0),
            keepdims: a.int_or("keepdims", 1) != 0,
            last: a.int_or("select_last_index", 0) != 0,
        },
        "ReduceSum" => reduce(a, ReduceKind::Sum, opset, 13),
        "ReduceMean" => reduce(a, ReduceKind::Mean, opset, 18),
        "ReduceMax" => reduce(a, ReduceKind::Max, opset, 18),
        "ReduceMin" => reduce(a, ReduceKind::Min, opset, 18),
        "ReduceProd" => reduce(a, ReduceKind::Prod, opset, 18),
        "ReduceL1" => reduce(a, ReduceKind::L1, opset, 18),
        "ReduceL2" => reduce(a, ReduceKind::L2, opset, 18),
        "ReduceLogSum" => reduce(a, ReduceKind::LogSum, opset, 18),
        "ReduceLogSumExp" => reduce(a, ReduceKind::LogSumExp, opset, 18),
        "ReduceSumSquare" => reduce(a, ReduceKind::SumSquare, opset, 18),
        _ => return Ok(None),
    }))
}

fn reduce(a: &Attrs, kind: ReduceKind, opset: i64, axes_input_from: i64) -> Op {
    // From `axes_input_from` on the axes are input 1; before it an attribute.
    let axes = if opset < axes_input_from {
        a.ints("axes")
    } else {
        None
    };
    Op::Reduce {
        kind,
        axes,
        keepdims: a.int_or("keepdims", 1) != 0,
        noop_with_empty_axes: a.int_or("noop_with_empty_axes", 0) != 0,
    }
}
