//! ONNX mapping of the Resize ops (asked by the ONNX importer).

use crate::error::Result;
use crate::onnx::attrs::ConvertCx;
use crate::op::{CoordMode, KeepAspect, NearestMode, Op, ResizeAttrs, ResizeMode};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let opset = cx.opset;
    let unsupported = || cx.unsupported();
    Ok(Some(match cx.op_type {
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
        // Upsample-9 (X, scales) is Resize-10: asymmetric coordinates,
        // nearest rounding down.
        "Upsample" => {
            if opset < 9 {
                return Err(unsupported());
            }
            Op::Resize(ResizeAttrs {
                mode: match a.string("mode").as_deref() {
                    None | Some("nearest") => ResizeMode::Nearest(NearestMode::Floor),
                    Some("linear") | Some("bilinear") => ResizeMode::Linear,
                    Some(o) => crate::bail!("unknown Upsample mode '{o}'"),
                },
                coord: CoordMode::Asymmetric,
                scales_input: 1,
                ..Default::default()
            })
        }
        _ => return Ok(None),
    }))
}
