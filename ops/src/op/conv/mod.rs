//! Convolution (Conv), and the one place where the padding and output
//! size of a convolution or pooling window are resolved ([`resolve_window`]),
//! shared by shape inference, cost and the host and device kernels.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]),
//! over `geom.rs` (a conv's shapes, im2col), `depthwise.rs` and
//! `dwflat.rs` (depthwise 2-D kernels), `blocked.rs` (f32 filters packed
//! at session build and the AVX-512 product that reads them), `chanvec.rs`
//! (the product with filters in the lanes, for small output planes),
//! `pointwise.rs` (1x1 convs over large planes, positions in the lanes),
//! `direct.rs` (small filters) and `winograd.rs` (3x3 F(4x4, 3x3), with
//! `winofused.rs`, `winoplan.rs` and `winoprod.rs`).
//! `testref.rs` holds the tests' f64 reference.

/// Runs `$e` with the const `$N` bound to `$v` when it is one of the
/// listed widths, else to `$last`: how the register-tiled kernels
/// (`chanvec.rs`, `winofused.rs`) turn a runtime width into their const
/// generic one.
macro_rules! with_width {
    ($v:expr, $N:ident, [$($k:literal),*], $last:literal => $e:expr) => {
        match $v {
            $($k => {
                const $N: usize = $k;
                $e
            })*
            _ => {
                const $N: usize = $last;
                $e
            }
        }
    };
}

/// A kernel's prepared weight form: `prepared` (made at session build)
/// when `fits` accepts it, else the one `make` builds now, kept in `slot`
/// so the caller can borrow it either way.
pub(super) fn prepared_or<'a, P>(
    prepared: Option<&'a P>,
    fits: impl FnOnce(&P) -> bool,
    slot: &'a mut Option<P>,
    make: impl FnOnce() -> crate::error::Result<P>,
) -> crate::error::Result<&'a P> {
    match prepared.filter(|p| fits(p)) {
        Some(p) => Ok(p),
        None => Ok(slot.insert(make()?)),
    }
}

pub(crate) mod act;
pub(crate) mod blocked;
pub(crate) mod chanvec;
#[cfg(test)]
mod chanvec_tests;
pub(crate) mod cost;
pub(crate) mod deform;
pub(crate) mod depthwise;
pub(crate) mod direct;
#[cfg(test)]
mod direct_tests;
pub(crate) mod dwflat;
pub(crate) mod eval;
pub(crate) mod geom;
pub(crate) mod grad;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;
pub(crate) mod pointwise;
#[cfg(test)]
mod pointwise_tests;
pub(crate) mod qlinear;
#[cfg(test)]
mod testref;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wino_tests;
pub(crate) mod winofused;
pub(crate) mod winograd;
pub(crate) mod winoplan;
pub(crate) mod winoprod;

/// ONNX `auto_pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutoPad {
    /// Explicit `pads`.
    #[default]
    NotSet,
    /// Output = ceil(input / stride); extra padding at the end.
    SameUpper,
    /// Output = ceil(input / stride); extra padding at the start.
    SameLower,
    /// No padding.
    Valid,
}

/// Convolution attributes. Empty vectors mean "the ONNX default for each
/// spatial dim" (strides and dilations 1, pads 0).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    /// Kernel spatial size; `None` = taken from the weight's shape.
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Vec<usize>,
    /// `[begin_0, begin_1, .., end_0, end_1, ..]`.
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub group: usize,
    pub auto_pad: AutoPad,
    /// An element-wise activation applied to the output, fused in by the
    /// load-time optimizer (never set by the ONNX importer).
    pub activation: Activation,
    /// Input 3 is a tensor of the output's shape added to the output
    /// before the activation (a residual connection fused in by
    /// [`crate::optimize::fuse_residual`]; never set by the importer).
    /// Only the CPU kernels implement it; other devices refuse it.
    pub residual: bool,
}

/// DeformConv attributes (opset 19): the convolution's (no auto_pad, no
/// fusion) and the number of groups of input channels that share offsets.
#[derive(Clone, Debug, PartialEq)]
pub struct DeformConvAttrs {
    /// Kernel shape, strides, pads, dilations and group.
    pub conv: ConvAttrs,
    /// Channel groups with offsets (and mask) of their own.
    pub offset_group: usize,
}

/// An activation fused into a producing kernel (applied while the output
/// block is still in cache).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, lo), hi)` (ONNX Clip with constant bounds, e.g. relu6).
    Clip { lo: f32, hi: f32 },
}

impl Default for ConvAttrs {
    fn default() -> Self {
        ConvAttrs {
            kernel_shape: None,
            strides: Vec::new(),
            pads: Vec::new(),
            dilations: Vec::new(),
            group: 1,
            auto_pad: AutoPad::NotSet,
            activation: Activation::None,
            residual: false,
        }
    }
}

/// Padding and output size of one spatial layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads_begin: Vec<usize>,
    pub pads_end: Vec<usize>,
    pub output: Vec<usize>,
}

fn or_ones(v: &[usize], n: usize) -> Vec<usize> {
    if v.is_empty() {
        vec![1; n]
    } else {
        v.to_vec()
    }
}

/// Resolves padding and output size for input spatial dims `input` and a
/// kernel of spatial size `kernel`.
pub fn resolve_window(
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> crate::Result<Window> {
    let n = input.len();
    if kernel.len() != n {
        crate::bail!("kernel has {} spatial dims, input has {}", kernel.len(), n);
    }
    let strides = or_ones(strides, n);
    let dilations = or_ones(dilations, n);
    if strides.len() != n || dilations.len() != n {
        crate::bail!("strides/dilations must have {} entries", n);
    }
    if strides.iter().chain(dilations.iter()).any(|&s| s == 0) {
        crate::bail!("strides and dilations must be positive");
    }
    if kernel.contains(&0) {
        crate::bail!("kernel shape {:?} has an empty dim", kernel);
    }
    let mut pads_begin = vec![0; n];
    let mut pads_end = vec![0; n];
    let mut output = vec![0; n];
    for i in 0..n {
        let ek = (kernel[i] - 1) * dilations[i] + 1;
        match auto_pad {
            AutoPad::SameUpper | AutoPad::SameLower => {
                let out = input[i].div_ceil(strides[i]);
                let total = (out.saturating_sub(1) * strides[i] + ek).saturating_sub(input[i]);
                let (small, big) = (total / 2, total - total / 2);
                if auto_pad == AutoPad::SameUpper {
                    pads_begin[i] = small;
                    pads_end[i] = big;
                } else {
                    pads_begin[i] = big;
                    pads_end[i] = small;
                }
                output[i] = out;
            }
            AutoPad::NotSet | AutoPad::Valid => {
                if auto_pad == AutoPad::NotSet && !pads.is_empty() {
                    if pads.len() != 2 * n {
                        crate::bail!("pads must have {} entries, got {}", 2 * n, pads.len());
                    }
                    pads_begin[i] = pads[i];
                    pads_end[i] = pads[i + n];
                }
                let padded = input[i] + pads_begin[i] + pads_end[i];
                if padded < ek {
                    crate::bail!(
                        "kernel extent {} exceeds padded input {} in spatial dim {}",
                        ek,
                        padded,
                        i
                    );
                }
                let span = padded - ek;
                let mut out = if ceil_mode {
                    span.div_ceil(strides[i])
                } else {
                    span / strides[i]
                } + 1;
                // ceil_mode: the last window must start inside the input or left padding.
                if ceil_mode && (out - 1) * strides[i] >= input[i] + pads_begin[i] {
                    out -= 1;
                }
                output[i] = out;
            }
        }
    }
    Ok(Window {
        kernel: kernel.to_vec(),
        strides,
        dilations,
        pads_begin,
        pads_end,
        output,
    })
}
