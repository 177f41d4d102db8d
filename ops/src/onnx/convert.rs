//! ONNX node -> [`Op`], resolving attribute forms per opset.

use super::attrs::Attrs;
use super::proto::NodeProto;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::*;
use crate::tensor::Tensor;
use std::path::Path;

/// What an ONNX node becomes.
pub enum Converted {
    /// An op node.
    Op(Op),
    /// A constant (the `Constant` op), folded into the graph's constants.
    Constant(Tensor),
}

fn auto_pad(a: &Attrs) -> Result<AutoPad> {
    Ok(match a.string("auto_pad").as_deref() {
        None | Some("NOTSET") | Some("") => AutoPad::NotSet,
        Some("SAME_UPPER") => AutoPad::SameUpper,
        Some("SAME_LOWER") => AutoPad::SameLower,
        Some("VALID") => AutoPad::Valid,
        Some(other) => crate::bail!("unknown auto_pad '{other}'"),
    })
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

/// Maps one node. Errors are plain messages; the caller adds node context.
pub fn convert_node(np: &NodeProto, opset: i64, dir: &Path) -> Result<Converted> {
    let a = Attrs::new(np);
    let op_type = np.op_type();
    let unsupported = || Error::Unsupported {
        op: op_type.to_string(),
        opset,
        node: np.name().to_string(),
    };
    let op = match op_type {
        "Neg" => Op::Unary(UnaryOp::Neg),
        "Abs" => Op::Unary(UnaryOp::Abs),
        "Sqrt" => Op::Unary(UnaryOp::Sqrt),
        "Exp" => Op::Unary(UnaryOp::Exp),
        "Log" => Op::Unary(UnaryOp::Log),
        "Relu" => Op::Unary(UnaryOp::Relu),
        "Sigmoid" => Op::Unary(UnaryOp::Sigmoid),
        "Tanh" => Op::Unary(UnaryOp::Tanh),
        "Erf" => Op::Unary(UnaryOp::Erf),
        "Reciprocal" => Op::Unary(UnaryOp::Reciprocal),
        "Floor" => Op::Unary(UnaryOp::Floor),
        "Ceil" => Op::Unary(UnaryOp::Ceil),
        "Not" => Op::Unary(UnaryOp::Not),
        "Add" | "Sub" | "Mul" | "Div" => {
            // Opset < 7 had a `broadcast` attribute with axis semantics.
            if opset < 7 && a.int_or("broadcast", 0) != 0 {
                return Err(unsupported());
            }
            Op::Binary(match op_type {
                "Add" => BinaryOp::Add,
                "Sub" => BinaryOp::Sub,
                "Mul" => BinaryOp::Mul,
                _ => BinaryOp::Div,
            })
        }
        "Pow" => Op::Binary(BinaryOp::Pow),
        "Equal" => Op::Binary(BinaryOp::Equal),
        "Less" => Op::Binary(BinaryOp::Less),
        "Greater" => Op::Binary(BinaryOp::Greater),
        "LessOrEqual" => Op::Binary(BinaryOp::LessOrEqual),
        "GreaterOrEqual" => Op::Binary(BinaryOp::GreaterOrEqual),
        "And" => Op::Binary(BinaryOp::And),
        "Or" => Op::Binary(BinaryOp::Or),
        "Xor" => Op::Binary(BinaryOp::Xor),
        "LeakyRelu" => Op::LeakyRelu {
            alpha: a.float_or("alpha", 0.01),
        },
        "Gelu" => Op::Gelu {
            tanh: match a.string("approximate").as_deref() {
                None | Some("none") => false,
                Some("tanh") => true,
                Some(o) => crate::bail!("unknown Gelu approximate '{o}'"),
            },
        },
        "Clip" => {
            if opset < 11 {
                Op::Clip {
                    min: Some(a.float_or("min", f32::MIN)),
                    max: Some(a.float_or("max", f32::MAX)),
                }
            } else {
                Op::Clip {
                    min: None,
                    max: None,
                }
            }
        }
        "Where" => Op::Where,
        "Sum" => Op::Sum,
        "Range" => Op::Range,
        "ArgMax" | "ArgMin" => Op::ArgExtreme {
            max: np.op_type() == "ArgMax",
            axis: a.int_or("axis", 0),
            keepdims: a.int_or("keepdims", 1) != 0,
            last: a.int_or("select_last_index", 0) != 0,
        },
        "Max" => Op::Extremum(BinaryOp::Max),
        "Min" => Op::Extremum(BinaryOp::Min),
        "CastLike" => Op::CastLike,
        "Size" => Op::Size,
        "Cast" => {
            let to = a
                .int("to")
                .ok_or_else(|| Error::msg("missing attribute 'to'"))?;
            Op::Cast {
                to: DType::from_onnx(to as i32).ok_or_else(|| {
                    Error::msg(format!(
                        "Cast to {} is unsupported",
                        DType::onnx_name(to as i32)
                    ))
                })?,
            }
        }
        "MatMul" => Op::MatMul,
        "Gemm" => Op::Gemm {
            alpha: a.float_or("alpha", 1.0),
            beta: a.float_or("beta", 1.0),
            trans_a: a.int_or("transA", 0) != 0,
            trans_b: a.int_or("transB", 0) != 0,
        },
        "Softmax" | "LogSoftmax" => {
            let legacy = opset < 13;
            let axis = a.int_or("axis", if legacy { 1 } else { -1 });
            if op_type == "Softmax" {
                Op::Softmax { axis, legacy }
            } else {
                Op::LogSoftmax { axis, legacy }
            }
        }
        "BatchNormalization" => {
            if a.int_or("training_mode", 0) != 0 {
                crate::bail!("BatchNormalization in training mode is unsupported");
            }
            if np.output.iter().filter(|o| !o.is_empty()).count() > 1 {
                crate::bail!(
                    "BatchNormalization with running-statistics outputs (training) is unsupported"
                );
            }
            Op::BatchNorm {
                epsilon: a.float_or("epsilon", 1e-5),
            }
        }
        "LayerNormalization" => {
            if np.output.iter().skip(1).any(|o| !o.is_empty()) {
                crate::bail!("LayerNormalization Mean/InvStdDev outputs are unsupported");
            }
            Op::LayerNorm {
                axis: a.int_or("axis", -1),
                epsilon: a.float_or("epsilon", 1e-5),
            }
        }
        "LRN" => Op::Lrn {
            alpha: a.float_or("alpha", 1e-4),
            beta: a.float_or("beta", 0.75),
            bias: a.float_or("bias", 1.0),
            size: a
                .int("size")
                .ok_or_else(|| Error::msg("missing attribute 'size'"))? as usize,
        },
        "ReduceSum" => reduce(&a, ReduceKind::Sum, opset, 13),
        "ReduceMean" => reduce(&a, ReduceKind::Mean, opset, 18),
        "ReduceMax" => reduce(&a, ReduceKind::Max, opset, 18),
        "ReduceMin" => reduce(&a, ReduceKind::Min, opset, 18),
        "ReduceProd" => reduce(&a, ReduceKind::Prod, opset, 18),
        "Conv" => Op::Conv(ConvAttrs {
            kernel_shape: a
                .ints("kernel_shape")
                .map(|v| v.into_iter().map(|x| x as usize).collect()),
            strides: a.usizes("strides")?,
            pads: a.usizes("pads")?,
            dilations: a.usizes("dilations")?,
            group: a.int_or("group", 1).max(1) as usize,
            auto_pad: auto_pad(&a)?,
            activation: Default::default(),
        }),
        "MaxPool" => {
            if np.output.len() > 1 && !np.output[1].is_empty() {
                crate::bail!("MaxPool Indices output is unsupported");
            }
            Op::MaxPool(pool_attrs(&a)?)
        }
        "AveragePool" => Op::AveragePool(pool_attrs(&a)?),
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "GlobalMaxPool" => Op::GlobalMaxPool,
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
        "Dropout" => Op::Dropout,
        "ConstantOfShape" => Op::ConstantOfShape {
            value: match a.tensor("value", dir)? {
                Some(t) => t
                    .reshape(vec![])
                    .map_err(|_| Error::msg("ConstantOfShape value must hold one element"))?,
                None => Tensor::scalar(0f32),
            },
        },
        "Constant" => return Ok(Converted::Constant(constant_value(&a, dir)?)),
        _ => return Err(unsupported()),
    };
    Ok(Converted::Op(op))
}

fn constant_value(a: &Attrs, dir: &Path) -> Result<Tensor> {
    if let Some(t) = a.tensor("value", dir)? {
        return Ok(t);
    }
    if let Some(f) = a.float("value_float") {
        return Ok(Tensor::scalar(f));
    }
    if let Some(i) = a.int("value_int") {
        return Ok(Tensor::scalar(i));
    }
    if let Some(v) = a.ints("value_ints") {
        return Tensor::from_vec(vec![v.len()], v);
    }
    if a.has("value_floats") {
        // value_floats are stored in AttributeProto.floats
        crate::bail!("Constant value_floats is unsupported");
    }
    crate::bail!(
        "Constant has no supported value attribute (sparse and string constants are unsupported)"
    )
}
