//! ONNX mapping of the miscellaneous ops (asked by the ONNX importer).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::conv::onnx::auto_pad;
use crate::op::{
    ConvTransposeAttrs, GridMode, GridPadding, Op, PixelFormat, TfIdfAttrs, TfIdfMode, WindowKind,
};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let op_type = cx.op_type;
    Ok(Some(match cx.op_type {
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
        "TfIdfVectorizer" => {
            if a.has("pool_strings") {
                crate::bail!("pool_strings is unsupported (string tensors); pool_int64s works");
            }
            let mode = match a.string("mode").as_deref() {
                Some("TF") => TfIdfMode::Tf,
                Some("IDF") => TfIdfMode::Idf,
                Some("TFIDF") => TfIdfMode::TfIdf,
                Some(m) => crate::bail!("unknown mode '{m}'"),
                None => crate::bail!("missing attribute 'mode'"),
            };
            let count = |name: &str| -> Result<usize> {
                let v = a
                    .int(name)
                    .ok_or_else(|| crate::Error::msg(format!("missing attribute '{name}'")))?;
                usize::try_from(v)
                    .map_err(|_| crate::Error::msg(format!("{name} must be >= 0, got {v}")))
            };
            let attrs = TfIdfAttrs {
                mode,
                min_gram_length: count("min_gram_length")?,
                max_gram_length: count("max_gram_length")?,
                max_skip_count: count("max_skip_count")?,
                ngram_counts: a.usizes("ngram_counts")?,
                ngram_indexes: a.usizes("ngram_indexes")?,
                pool: a.ints("pool_int64s").unwrap_or_default(),
                weights: a.floats("weights").unwrap_or_default(),
            };
            if attrs.min_gram_length == 0 || attrs.min_gram_length > attrs.max_gram_length {
                crate::bail!(
                    "gram lengths {}..{} must satisfy 1 <= min <= max",
                    attrs.min_gram_length,
                    attrs.max_gram_length
                );
            }
            if attrs.ngram_indexes.is_empty() {
                crate::bail!("ngram_indexes is empty");
            }
            Op::TfIdfVectorizer(Box::new(attrs))
        }
        "AffineGrid" => Op::AffineGrid {
            align_corners: a.int_or("align_corners", 0) != 0,
        },
        "ImageDecoder" => {
            if cx.opset < 20 {
                return Err(cx.unsupported());
            }
            Op::ImageDecoder {
                format: match a.string("pixel_format").as_deref() {
                    None | Some("RGB") => PixelFormat::Rgb,
                    Some("BGR") => PixelFormat::Bgr,
                    Some("Grayscale") => PixelFormat::Grayscale,
                    Some(f) => {
                        crate::bail!("pixel_format must be RGB, BGR or Grayscale, got '{f}'")
                    }
                },
            }
        }
        "Unique" => Op::Unique {
            axis: a.int("axis"),
            sorted: a.int_or("sorted", 1) != 0,
        },
        _ => return Ok(None),
    }))
}
