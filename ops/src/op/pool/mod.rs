//! Pooling: MaxPool, AveragePool, LpPool, GlobalAveragePool and
//! GlobalMaxPool.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

use super::conv::{resolve_window, AutoPad, Window};

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod grad;
pub(crate) mod indices;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;
mod pair;
pub(crate) mod roi;
mod rows;

/// Pooling attributes (MaxPool / AveragePool).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PoolAttrs {
    pub kernel_shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
    /// AveragePool: count padded cells in the divisor.
    pub count_include_pad: bool,
}

impl PoolAttrs {
    /// The window over X `[N, C, d..]` (rank 3 to 5, the kernel fitting
    /// the spatial dims), shared by the host, OpenCL and CUDA kernels.
    pub fn window(&self, xs: &[usize]) -> crate::Result<Window> {
        if xs.len() < 3 || xs.len() > 5 {
            crate::bail!("pooling takes inputs of rank 3 to 5, got {xs:?}");
        }
        let spatial = &xs[2..];
        let k = &self.kernel_shape;
        if k.len() != spatial.len() || k.contains(&0) || spatial.contains(&0) {
            crate::bail!("kernel_shape {k:?} does not fit input {xs:?}");
        }
        resolve_window(
            spatial,
            k,
            &self.strides,
            &self.dilations,
            &self.pads,
            self.auto_pad,
            self.ceil_mode,
        )
    }
}

/// RoiAlign attributes (opsets 10 and 16).
#[derive(Clone, Debug, PartialEq)]
pub struct RoiAlignAttrs {
    /// Max of the bin's samples (as the ONNX reference: of each sample's
    /// weighted corners) instead of their mean.
    pub max: bool,
    /// Output height and width.
    pub output: [usize; 2],
    /// Samples per bin side; 0: `ceil(roi size / output size)`.
    pub sampling_ratio: usize,
    /// Scale from ROI coordinates to X's pixels.
    pub spatial_scale: f32,
    /// Shift the ROI by -0.5 pixel (`half_pixel`); else (opset 10's
    /// `output_half_pixel`) ROIs are at least one pixel.
    pub half_pixel: bool,
}
