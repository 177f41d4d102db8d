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

/// Normalisations compute their statistics in f32 or wider; other
/// `stash_type`s are refused.
fn stash_type(a: &Attrs) -> Result<()> {
    match a.int_or("stash_type", 1) {
        1 | 11 => Ok(()),
        t => crate::bail!("stash_type {} is unsupported", DType::onnx_name(t as i32)),
    }
}

/// Maps one node. Errors are plain messages; the caller adds node context.
pub fn convert_node(np: &NodeProto, opset: i64, dir: Option<&Path>) -> Result<Converted> {
    let a = Attrs::new(np);
    let converted = convert_with(np, opset, dir, &a);
    // An attribute of the wrong type was read as absent: refuse the node
    // rather than run it with a default.
    match a.type_error() {
        Some(m) => Err(Error::msg(m)),
        None => converted,
    }
}

fn convert_with(np: &NodeProto, opset: i64, dir: Option<&Path>, a: &Attrs) -> Result<Converted> {
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
        "Hardmax" => {
            let legacy = opset < 13;
            Op::Hardmax {
                axis: a.int_or("axis", if legacy { 1 } else { -1 }),
                legacy,
            }
        }
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
        "Attention" => {
            let heads = |name: &str| -> Result<Option<usize>> {
                match a.int(name) {
                    None => Ok(None),
                    Some(h) if h > 0 => Ok(Some(h as usize)),
                    Some(h) => crate::bail!("{name} must be positive, got {h}"),
                }
            };
            let qk_output_mode = a.int_or("qk_matmul_output_mode", 0);
            if !(0..=3).contains(&qk_output_mode) {
                crate::bail!("qk_matmul_output_mode {qk_output_mode} is not 0..=3");
            }
            let (left_window, right_window) = (
                a.int_or("left_window_size", -1),
                a.int_or("right_window_size", -1),
            );
            if left_window < -1 || right_window < -1 {
                crate::bail!("window sizes must be -1 or nonnegative");
            }
            // softmax_precision: the kernel computes in f64 whatever it asks.
            Op::Attention(AttentionAttrs {
                is_causal: a.int_or("is_causal", 0) != 0,
                q_num_heads: heads("q_num_heads")?,
                kv_num_heads: heads("kv_num_heads")?,
                scale: a.float("scale"),
                softcap: a.float_or("softcap", 0.0),
                qk_output_mode,
                left_window,
                right_window,
            })
        }
        "Resize" => {
            if opset < 11 {
                return Err(unsupported());
            }
            let nearest = match a.string("nearest_mode").as_deref() {
                None | Some("round_prefer_floor") => NearestMode::RoundPreferFloor,
                Some("round_prefer_ceil") => NearestMode::RoundPreferCeil,
                Some("floor") => NearestMode::Floor,
                Some("ceil") => NearestMode::Ceil,
                Some(o) => crate::bail!("unknown nearest_mode '{o}'"),
            };
            let mode = match a.string("mode").as_deref() {
                None | Some("nearest") => ResizeMode::Nearest(nearest),
                Some("linear") => ResizeMode::Linear,
                Some("cubic") => ResizeMode::Cubic,
                Some(o) => crate::bail!("unknown Resize mode '{o}'"),
            };
            let coord = match a.string("coordinate_transformation_mode").as_deref() {
                None | Some("half_pixel") => CoordMode::HalfPixel,
                Some("half_pixel_symmetric") => CoordMode::HalfPixelSymmetric,
                Some("pytorch_half_pixel") => CoordMode::PytorchHalfPixel,
                Some("align_corners") => CoordMode::AlignCorners,
                Some("asymmetric") => CoordMode::Asymmetric,
                Some("tf_crop_and_resize") => CoordMode::TfCropAndResize,
                Some(o) => crate::bail!("unknown coordinate_transformation_mode '{o}'"),
            };
            let antialias = a.int_or("antialias", 0) != 0;
            if antialias && matches!(mode, ResizeMode::Nearest(_)) {
                crate::bail!("antialias is not defined for nearest mode");
            }
            Op::Resize(ResizeAttrs {
                mode,
                coord,
                cubic_coeff_a: a.float_or("cubic_coeff_a", -0.75),
                exclude_outside: a.int_or("exclude_outside", 0) != 0,
                extrapolation_value: a.float_or("extrapolation_value", 0.0),
                antialias,
                axes: a.ints("axes"),
                keep_aspect: match a.string("keep_aspect_ratio_policy").as_deref() {
                    None | Some("stretch") => KeepAspect::Stretch,
                    Some("not_larger") => KeepAspect::NotLarger,
                    Some("not_smaller") => KeepAspect::NotSmaller,
                    Some(o) => crate::bail!("unknown keep_aspect_ratio_policy '{o}'"),
                },
                scales_input: 2,
            })
        }
        "RotaryEmbedding" => Op::RotaryEmbedding {
            interleaved: a.int_or("interleaved", 0) != 0,
            num_heads: a.int("num_heads").filter(|&h| h > 0).map(|h| h as usize),
            rotary_dim: usize::try_from(a.int_or("rotary_embedding_dim", 0))
                .map_err(|_| Error::msg("rotary_embedding_dim must be >= 0"))?,
        },
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => Op::Window {
            kind: match op_type {
                "HannWindow" => WindowKind::Hann,
                "HammingWindow" => WindowKind::Hamming,
                _ => WindowKind::Blackman,
            },
            periodic: a.int_or("periodic", 1) != 0,
            dtype: {
                let code = a.int_or("output_datatype", 1) as i32;
                DType::from_onnx(code).ok_or_else(|| {
                    Error::msg(format!(
                        "output_datatype {} is unsupported",
                        DType::onnx_name(code)
                    ))
                })?
            },
        },
        "ReverseSequence" => Op::ReverseSequence {
            batch_axis: a.int_or("batch_axis", 1),
            time_axis: a.int_or("time_axis", 0),
        },
        "CenterCropPad" => Op::CenterCropPad {
            axes: a.ints("axes"),
        },
        "Det" => Op::Det,
        "RNN" | "GRU" | "LSTM" => {
            let kind = match op_type {
                "RNN" => RnnKind::Rnn,
                "GRU" => RnnKind::Gru,
                _ => RnnKind::Lstm,
            };
            let direction = match a.string("direction").as_deref() {
                None | Some("forward") => 0,
                Some("reverse") => 1,
                Some("bidirectional") => 2,
                Some(o) => crate::bail!("unknown direction '{o}'"),
            };
            let defaults = match kind {
                RnnKind::Rnn => [RnnAct::Tanh; 3],
                RnnKind::Gru => [RnnAct::Sigmoid, RnnAct::Tanh, RnnAct::Tanh],
                RnnKind::Lstm => [RnnAct::Sigmoid, RnnAct::Tanh, RnnAct::Tanh],
            };
            let mut acts = defaults;
            if let Some(list) = a.strings("activations") {
                let per_dir = match kind {
                    RnnKind::Rnn => 1,
                    RnnKind::Gru => 2,
                    RnnKind::Lstm => 3,
                };
                let parse = |s: &str| -> Result<RnnAct> {
                    Ok(match s.to_ascii_lowercase().as_str() {
                        "sigmoid" => RnnAct::Sigmoid,
                        "tanh" => RnnAct::Tanh,
                        "relu" => RnnAct::Relu,
                        o => crate::bail!("activation '{o}' is unsupported"),
                    })
                };
                let parsed: Vec<RnnAct> = list.iter().map(|s| parse(s)).collect::<Result<_>>()?;
                if parsed.len() < per_dir {
                    crate::bail!(
                        "activations lists {} entries, expected {per_dir}",
                        parsed.len()
                    );
                }
                if parsed.len() > per_dir && parsed[..per_dir] != parsed[per_dir..] {
                    crate::bail!("different activations per direction are unsupported");
                }
                acts[..per_dir].copy_from_slice(&parsed[..per_dir]);
            }
            Op::Rnn(RnnAttrs {
                kind,
                hidden: a
                    .int("hidden_size")
                    .filter(|&h| h > 0)
                    .ok_or_else(|| Error::msg("hidden_size must be a positive integer"))?
                    as usize,
                direction,
                batch_major: a.int_or("layout", 0) != 0,
                clip: a.float("clip"),
                acts,
                linear_before_reset: a.int_or("linear_before_reset", 0) != 0,
                input_forget: a.int_or("input_forget", 0) != 0,
            })
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
        "LinearAttention" => {
            let heads = |name: &str| -> Result<usize> {
                a.int(name)
                    .filter(|&h| h > 0)
                    .map(|h| h as usize)
                    .ok_or_else(|| Error::msg(format!("{name} must be a positive integer")))
            };
            Op::LinearAttention {
                rule: match a.string("update_rule").as_deref() {
                    None | Some("gated_delta") => LinearAttentionRule::GatedDelta,
                    Some("linear") => LinearAttentionRule::Linear,
                    Some("gated") => LinearAttentionRule::Gated,
                    Some("delta") => LinearAttentionRule::Delta,
                    Some(o) => crate::bail!("unknown update_rule '{o}'"),
                },
                q_num_heads: heads("q_num_heads")?,
                kv_num_heads: heads("kv_num_heads")?,
                scale: a.float_or("scale", 0.0),
            }
        }
        "CausalConvWithState" => Op::CausalConvWithState {
            silu: match a.string("activation").as_deref() {
                None | Some("none") => false,
                Some("silu") | Some("swish") => true,
                Some(o) => crate::bail!("unknown activation '{o}'"),
            },
        },
        "TensorScatter" => Op::TensorScatter {
            axis: a.int_or("axis", -2),
            circular: match a.string("mode").as_deref() {
                None | Some("linear") => false,
                Some("circular") => true,
                Some(o) => crate::bail!("unknown TensorScatter mode '{o}'"),
            },
        },
        "SwiGLU" => Op::SwiGlu {
            alpha: a.float_or("alpha", 1.0),
        },
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
        "ConvTranspose" => {
            let output_shape = a.usizes("output_shape")?;
            Op::ConvTranspose(ConvTransposeAttrs {
                kernel_shape: a
                    .ints("kernel_shape")
                    .map(|v| v.into_iter().map(|x| x.max(0) as usize).collect()),
                strides: a.usizes("strides")?,
                pads: a.usizes("pads")?,
                dilations: a.usizes("dilations")?,
                group: a.int_or("group", 1).max(1) as usize,
                output_padding: a.usizes("output_padding")?,
                output_shape: (!output_shape.is_empty()).then_some(output_shape),
                auto_pad: auto_pad(a)?,
            })
        }
        "GridSample" => Op::GridSample {
            mode: match a.string("mode").as_deref() {
                None | Some("bilinear") | Some("linear") => GridMode::Linear,
                Some("nearest") => GridMode::Nearest,
                Some("bicubic") | Some("cubic") => GridMode::Cubic,
                Some(o) => crate::bail!("unknown GridSample mode '{o}'"),
            },
            padding: match a.string("padding_mode").as_deref() {
                None | Some("zeros") => GridPadding::Zeros,
                Some("border") => GridPadding::Border,
                Some("reflection") => GridPadding::Reflection,
                Some(o) => crate::bail!("unknown GridSample padding_mode '{o}'"),
            },
            align_corners: a.int_or("align_corners", 0) != 0,
        },
        "Unique" => Op::Unique {
            axis: a.int("axis"),
            sorted: a.int_or("sorted", 1) != 0,
        },
        "LpPool" => {
            if opset < 11 {
                return Err(unsupported());
            }
            Op::LpPool {
                pool: pool_attrs(a)?,
                p: a.int_or("p", 2) as f32,
            }
        }
        "Einsum" => Op::Einsum {
            equation: a
                .string("equation")
                .ok_or_else(|| Error::msg("missing attribute 'equation'"))?,
        },
        "LpNormalization" => Op::LpNorm {
            axis: a.int_or("axis", -1),
            p: match a.int_or("p", 2) {
                1 => 1,
                2 => 2,
                p => crate::bail!("LpNormalization p must be 1 or 2, got {p}"),
            },
        },
        "InstanceNormalization" => Op::InstanceNorm {
            epsilon: a.float_or("epsilon", 1e-5),
        },
        "GroupNormalization" => {
            stash_type(a)?;
            Op::GroupNorm {
                epsilon: a.float_or("epsilon", 1e-5),
                groups: a
                    .int("num_groups")
                    .filter(|&g| g > 0)
                    .ok_or_else(|| Error::msg("num_groups must be a positive integer"))?
                    as usize,
                per_channel: opset >= 21,
            }
        }
        "RMSNormalization" => {
            stash_type(a)?;
            Op::RmsNorm {
                axis: a.int_or("axis", -1),
                epsilon: a.float_or("epsilon", 1e-5),
            }
        }
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => {
            let reduction = match a.string("reduction").as_deref() {
                None | Some("mean") => LossReduction::Mean,
                Some("sum") => LossReduction::Sum,
                Some("none") => LossReduction::None,
                Some(o) => crate::bail!("unknown reduction '{o}'"),
            };
            let ignore_index = a.int("ignore_index");
            if op_type == "SoftmaxCrossEntropyLoss" {
                Op::SoftmaxCrossEntropy {
                    reduction,
                    ignore_index,
                }
            } else {
                Op::NllLoss {
                    reduction,
                    ignore_index,
                }
            }
        }
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
            stash_type(a)?;
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
        "Conv" => Op::Conv(ConvAttrs {
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
        }),
        "MaxPool" => {
            if np.output.len() > 1 && !np.output[1].is_empty() {
                crate::bail!("MaxPool Indices output is unsupported");
            }
            Op::MaxPool(pool_attrs(a)?)
        }
        "AveragePool" => Op::AveragePool(pool_attrs(a)?),
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
        "Constant" => return Ok(Converted::Constant(constant_value(a, dir)?)),
        _ => return Err(unsupported()),
    };
    Ok(Converted::Op(op))
}

fn constant_value(a: &Attrs, dir: Option<&Path>) -> Result<Tensor> {
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
