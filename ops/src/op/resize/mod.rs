//! Resize.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;

/// Resize rounding of source coordinates in nearest mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Resize interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    Nearest(NearestMode),
    Linear,
    Cubic,
}

/// Resize: how output coordinates map to input coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

/// Resize with `sizes`: keep the aspect ratio or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeepAspect {
    Stretch,
    NotLarger,
    NotSmaller,
}

/// Resize attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeAttrs {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub cubic_coeff_a: f32,
    pub exclude_outside: bool,
    pub extrapolation_value: f32,
    pub antialias: bool,
    /// Axes that `roi`, `scales` and `sizes` refer to (all when `None`).
    pub axes: Option<Vec<i64>>,
    pub keep_aspect: KeepAspect,
    /// Input index of `scales` (2; 1 for Resize-10).
    pub scales_input: usize,
}

impl Default for ResizeAttrs {
    fn default() -> Self {
        ResizeAttrs {
            mode: ResizeMode::Nearest(NearestMode::RoundPreferFloor),
            coord: CoordMode::HalfPixel,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            axes: None,
            keep_aspect: KeepAspect::Stretch,
            scales_input: 2,
        }
    }
}
