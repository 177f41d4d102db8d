//! Ops without a larger family: the window functions (Hann, Hamming,
//! Blackman), ReverseSequence, CenterCropPad, Det, ConvTranspose, GridSample,
//! AffineGrid and Unique.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]),
//! with GridSample's and AffineGrid's in `sampling.rs`.

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod image;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;
pub(crate) mod png;
pub(crate) mod sampling;

use super::conv::AutoPad;

/// GridSample interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GridMode {
    Nearest,
    Linear,
    Cubic,
}

/// GridSample handling of coordinates outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GridPadding {
    Zeros,
    Border,
    Reflection,
}

/// How TfIdfVectorizer weighs an n-gram's count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TfIdfMode {
    /// The count.
    Tf,
    /// The weight where the count is non-zero (1 without weights).
    Idf,
    /// The weight times the count (the count without weights).
    TfIdf,
}

/// TfIdfVectorizer attributes: the n-gram pool (integer tokens) in
/// segments of 1-grams, 2-grams, ... starting at `ngram_counts`, each
/// n-gram's output column (`ngram_indexes`, in pool order), and what is
/// counted.
#[derive(Clone, Debug, PartialEq)]
pub struct TfIdfAttrs {
    pub mode: TfIdfMode,
    pub min_gram_length: usize,
    pub max_gram_length: usize,
    pub max_skip_count: usize,
    pub ngram_counts: Vec<usize>,
    pub ngram_indexes: Vec<usize>,
    pub pool: Vec<i64>,
    pub weights: Vec<f32>,
}

/// ConvTranspose attributes (spatial lists empty when not given).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ConvTransposeAttrs {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Vec<usize>,
    /// `[begin_0, .., end_0, ..]`.
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub group: usize,
    pub output_padding: Vec<usize>,
    /// Spatial output shape.
    pub output_shape: Option<Vec<usize>>,
    pub auto_pad: AutoPad,
}

/// Window functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WindowKind {
    Hann,
    Hamming,
    Blackman,
}

/// ImageDecoder's output channels (`pixel_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red.
    Bgr,
    /// One luma channel.
    Grayscale,
}
