//! ONNX mapping of the element-wise ops (asked by the ONNX importer).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::narrow::RoundMode;
use crate::onnx::attrs::ConvertCx;
use crate::op::{ActKind, BinaryOp, Op, UnaryOp};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let op_type = cx.op_type;
    let opset = cx.opset;
    let unsupported = || cx.unsupported();
    Ok(Some(match cx.op_type {
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
        "Sin" => Op::Unary(UnaryOp::Sin),
        "Cos" => Op::Unary(UnaryOp::Cos),
        "Tan" => Op::Unary(UnaryOp::Tan),
        "Asin" => Op::Unary(UnaryOp::Asin),
        "Acos" => Op::Unary(UnaryOp::Acos),
        "Atan" => Op::Unary(UnaryOp::Atan),
        "Sinh" => Op::Unary(UnaryOp::Sinh),
        "Cosh" => Op::Unary(UnaryOp::Cosh),
        "Asinh" => Op::Unary(UnaryOp::Asinh),
        "Acosh" => Op::Unary(UnaryOp::Acosh),
        "Atanh" => Op::Unary(UnaryOp::Atanh),
        "Sign" => Op::Unary(UnaryOp::Sign),
        "Round" => Op::Unary(UnaryOp::Round),
        "Softplus" => Op::Unary(UnaryOp::Softplus),
        "Softsign" => Op::Unary(UnaryOp::Softsign),
        "Mish" => Op::Unary(UnaryOp::Mish),
        "HardSwish" => Op::Unary(UnaryOp::HardSwish),
        "BitwiseNot" => Op::Unary(UnaryOp::BitwiseNot),
        "BitwiseAnd" => Op::Binary(BinaryOp::BitwiseAnd),
        "BitwiseOr" => Op::Binary(BinaryOp::BitwiseOr),
        "BitwiseXor" => Op::Binary(BinaryOp::BitwiseXor),
        "BitShift" => Op::Binary(match a.string("direction").as_deref() {
            Some("LEFT") => BinaryOp::ShiftLeft,
            Some("RIGHT") => BinaryOp::ShiftRight,
            other => crate::bail!("BitShift direction must be LEFT or RIGHT, got {other:?}"),
        }),
        "Mod" => Op::Binary(if a.int_or("fmod", 0) != 0 {
            BinaryOp::FMod
        } else {
            BinaryOp::Mod
        }),
        "PRelu" => Op::Binary(BinaryOp::PRelu),
        "Elu" | "Celu" | "ThresholdedRelu" | "Swish" => Op::Act {
            kind: match op_type {
                "Elu" => ActKind::Elu,
                "Celu" => ActKind::Celu,
                "Swish" => ActKind::Swish,
                _ => ActKind::ThresholdedRelu,
            },
            alpha: a.float_or("alpha", 1.0),
            beta: 0.0,
        },
        "Selu" => Op::Act {
            kind: ActKind::Selu,
            alpha: a.float_or("alpha", 1.673_263_2),
            beta: a.float_or("gamma", 1.050_701),
        },
        "HardSigmoid" => Op::Act {
            kind: ActKind::HardSigmoid,
            alpha: a.float_or("alpha", 0.2),
            beta: a.float_or("beta", 0.5),
        },
        "Shrink" => Op::Act {
            kind: ActKind::Shrink,
            alpha: a.float_or("lambd", 0.5),
            beta: a.float_or("bias", 0.0),
        },
        "IsNaN" => Op::IsNaN,
        "IsInf" => Op::IsInf {
            positive: a.int_or("detect_positive", 1) != 0,
            negative: a.int_or("detect_negative", 1) != 0,
        },
        "Mean" => Op::Mean,
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
        "Max" => Op::Extremum(BinaryOp::Max),
        "Min" => Op::Extremum(BinaryOp::Min),
        "CastLike" | "Cast" => {
            let saturate = a.int_or("saturate", 1) != 0;
            let round = match a.string("round_mode") {
                None => RoundMode::Up,
                Some(m) => RoundMode::parse(&m)
                    .ok_or_else(|| Error::msg(format!("round_mode '{m}' is unknown")))?,
            };
            if cx.op_type == "CastLike" {
                Op::CastLike { saturate, round }
            } else {
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
                    saturate,
                    round,
                }
            }
        }
        _ => return Ok(None),
    }))
}
