//! The op set: one [`Op`] enum whose variants carry their parsed, opset-
//! normalised attributes. Each op family lives in its own module with its
//! shape inference (`infer`), its cost (`cost`) and its host kernel (in
//! `crate::kernels`).
//!
//! Attributes that later opsets moved to inputs (Squeeze axes, Split sizes,
//! Slice bounds, Clip bounds, Reduce axes, Reshape shape) are kept as
//! `Option`s: `Some` when the node gave them as attributes, `None` when the
//! kernel reads them from the optional input. Kernels therefore handle both
//! forms and opset differences are resolved once, in the ONNX importer.

pub mod conv;

pub use conv::{
    resolve_window, resolve_window_dims, Activation, AutoPad, ConvAttrs, PoolAttrs, Window,
};

use crate::dtype::DType;
use crate::tensor::Tensor;
use std::fmt;

/// Element-wise functions of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Abs,
    Sqrt,
    Exp,
    Log,
    Relu,
    Sigmoid,
    Tanh,
    Erf,
    Reciprocal,
    Floor,
    Ceil,
    Not,
}

/// Element-wise functions of two tensors with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
    Xor,
    /// Element-wise maximum (NaN propagates); ONNX Max with two inputs.
    Max,
    /// Element-wise minimum (NaN propagates); ONNX Min with two inputs.
    Min,
}

impl BinaryOp {
    /// True when the result is bool whatever the operand dtype.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::Greater
                | BinaryOp::LessOrEqual
                | BinaryOp::GreaterOrEqual
        )
    }
    /// True for the logical ops on bool tensors.
    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }
}

/// Reduction kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

/// An operator with its attributes. Inputs are positional as in ONNX; an
/// absent optional input is `None` in the node's input list.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `f(x)` element-wise.
    Unary(UnaryOp),
    /// `f(a, b)` element-wise with broadcasting.
    Binary(BinaryOp),
    /// `x < 0 ? alpha * x : x`.
    LeakyRelu { alpha: f32 },
    /// GELU, exact (erf) or with the tanh approximation.
    Gelu { tanh: bool },
    /// Clamp. Bounds from attributes (opset < 11) or from inputs 1 and 2.
    Clip { min: Option<f32>, max: Option<f32> },
    /// `cond ? x : y` with broadcasting.
    Where,
    /// Variadic element-wise sum with broadcasting.
    Sum,
    /// `[start, start + delta, ...)` up to `limit` from three scalars.
    Range,
    /// ArgMax (`max`) / ArgMin along one axis, as i64 indices; `last`
    /// picks the last of equal extremes (`select_last_index`).
    ArgExtreme {
        max: bool,
        axis: i64,
        keepdims: bool,
        last: bool,
    },
    /// Variadic element-wise max or min with broadcasting (`BinaryOp::Max`
    /// or `BinaryOp::Min` folded over the inputs).
    Extremum(BinaryOp),
    /// Element type conversion.
    Cast { to: DType },
    /// Cast input 0 to the element type of input 1 (opset 15).
    CastLike,
    /// Number of elements of input 0, as an i64 scalar.
    Size,
    /// Numpy-style batched matrix product.
    MatMul,
    /// `alpha * op(A) op(B) + beta * C`.
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    /// Softmax along `axis`; `legacy` (opset < 13) flattens to 2-D at `axis`.
    Softmax { axis: i64, legacy: bool },
    /// Log of softmax, same axis rules as [`Op::Softmax`].
    LogSoftmax { axis: i64, legacy: bool },
    /// Inference-mode batch normalisation: inputs x, scale, bias, mean, var.
    BatchNorm { epsilon: f32 },
    /// Layer normalisation over dims `axis..`: inputs x, scale, optional bias.
    LayerNorm { axis: i64, epsilon: f32 },
    /// Local response normalisation across channels.
    Lrn {
        alpha: f32,
        beta: f32,
        bias: f32,
        size: usize,
    },
    /// Reduction over `axes` (attribute) or over input 1 (opset 13/18+).
    Reduce {
        kind: ReduceKind,
        axes: Option<Vec<i64>>,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    /// N-d convolution: inputs x, w, optional bias.
    Conv(ConvAttrs),
    /// Max pooling.
    MaxPool(PoolAttrs),
    /// Average pooling.
    AveragePool(PoolAttrs),
    /// Mean over all spatial dims, kept as size 1.
    GlobalAveragePool,
    /// Max over all spatial dims, kept as size 1.
    GlobalMaxPool,
    /// Reshape to input 1 (or the `shape` attribute of opset < 5).
    Reshape {
        allowzero: bool,
        shape: Option<Vec<i64>>,
    },
    /// Collapse to 2-D at `axis`.
    Flatten { axis: i64 },
    /// Permute dims; `None` reverses them.
    Transpose { perm: Option<Vec<usize>> },
    /// Remove size-1 dims (attribute axes, or input 1; none = all size-1 dims).
    Squeeze { axes: Option<Vec<i64>> },
    /// Insert size-1 dims (attribute axes, or input 1).
    Unsqueeze { axes: Option<Vec<i64>> },
    /// Join along `axis`.
    Concat { axis: i64 },
    /// Split along `axis` by `split` sizes (attribute, or input 1), else
    /// evenly into the node's output count.
    Split { axis: i64, split: Option<Vec<i64>> },
    /// Strided slice; bounds from attributes (opset < 10) or inputs 1..=4.
    Slice {
        starts: Option<Vec<i64>>,
        ends: Option<Vec<i64>>,
        axes: Option<Vec<i64>>,
    },
    /// Gather slices of input 0 along `axis` at indices input 1.
    Gather { axis: i64 },
    /// The shape of input 0 as an i64 vector, dims `start..end`.
    Shape { start: i64, end: Option<i64> },
    /// Broadcast input 0 to the shape given by input 1.
    Expand,
    /// Pass-through.
    Identity,
    /// Inference-mode dropout: identity, plus an all-true mask when asked.
    Dropout,
    /// Tensor of shape input 0 filled with `value` (one element).
    ConstantOfShape { value: Tensor },
}

impl Op {
    /// The ONNX op type this op is imported from (for messages and stats).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(u) => match u {
                UnaryOp::Neg => "Neg",
                UnaryOp::Abs => "Abs",
                UnaryOp::Sqrt => "Sqrt",
                UnaryOp::Exp => "Exp",
                UnaryOp::Log => "Log",
                UnaryOp::Relu => "Relu",
                UnaryOp::Sigmoid => "Sigmoid",
                UnaryOp::Tanh => "Tanh",
                UnaryOp::Erf => "Erf",
                UnaryOp::Reciprocal => "Reciprocal",
                UnaryOp::Floor => "Floor",
                UnaryOp::Ceil => "Ceil",
                UnaryOp::Not => "Not",
            },
            Op::Binary(b) => match b {
                BinaryOp::Add => "Add",
                BinaryOp::Sub => "Sub",
                BinaryOp::Mul => "Mul",
                BinaryOp::Div => "Div",
                BinaryOp::Pow => "Pow",
                BinaryOp::Equal => "Equal",
                BinaryOp::Less => "Less",
                BinaryOp::Greater => "Greater",
                BinaryOp::LessOrEqual => "LessOrEqual",
                BinaryOp::GreaterOrEqual => "GreaterOrEqual",
                BinaryOp::And => "And",
                BinaryOp::Or => "Or",
                BinaryOp::Xor => "Xor",
                BinaryOp::Max => "Max",
                BinaryOp::Min => "Min",
            },
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::Gelu { .. } => "Gelu",
            Op::Clip { .. } => "Clip",
            Op::Where => "Where",
            Op::Sum => "Sum",
            Op::Range => "Range",
            Op::ArgExtreme { max: true, .. } => "ArgMax",
            Op::ArgExtreme { .. } => "ArgMin",
            Op::Extremum(BinaryOp::Min) => "Min",
            Op::Extremum(_) => "Max",
            Op::Cast { .. } => "Cast",
            Op::CastLike => "CastLike",
            Op::Size => "Size",
            Op::MatMul => "MatMul",
            Op::Gemm { .. } => "Gemm",
            Op::Softmax { .. } => "Softmax",
            Op::LogSoftmax { .. } => "LogSoftmax",
            Op::BatchNorm { .. } => "BatchNormalization",
            Op::LayerNorm { .. } => "LayerNormalization",
            Op::Lrn { .. } => "LRN",
            Op::Reduce { kind, .. } => match kind {
                ReduceKind::Sum => "ReduceSum",
                ReduceKind::Mean => "ReduceMean",
                ReduceKind::Max => "ReduceMax",
                ReduceKind::Min => "ReduceMin",
                ReduceKind::Prod => "ReduceProd",
            },
            Op::Conv(_) => "Conv",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::Reshape { .. } => "Reshape",
            Op::Flatten { .. } => "Flatten",
            Op::Transpose { .. } => "Transpose",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Concat { .. } => "Concat",
            Op::Split { .. } => "Split",
            Op::Slice { .. } => "Slice",
            Op::Gather { .. } => "Gather",
            Op::Shape { .. } => "Shape",
            Op::Expand => "Expand",
            Op::Identity => "Identity",
            Op::Dropout => "Dropout",
            Op::ConstantOfShape { .. } => "ConstantOfShape",
        }
    }

    /// True for ops whose output aliases or re-labels the input without
    /// arithmetic (a device may implement them as a view).
    pub fn is_view(&self) -> bool {
        matches!(
            self,
            Op::Reshape { .. }
                | Op::Flatten { .. }
                | Op::Squeeze { .. }
                | Op::Unsqueeze { .. }
                | Op::Identity
                | Op::Dropout
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Normalises a possibly negative axis against `rank` (ONNX convention).
pub fn norm_axis(axis: i64, rank: usize) -> crate::Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        crate::bail!("axis {} out of range for rank {}", axis, rank);
    }
    Ok(a as usize)
}

/// Numpy broadcast of two concrete shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> crate::Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            crate::bail!("shapes {:?} and {:?} do not broadcast", a, b);
        };
    }
    Ok(out)
}

/// ONNX Slice bound clamping for one axis of size `dim`: returns the
/// effective `(start, end)` (end exclusive in the step's direction; `-1`
/// means "before index 0" for negative steps).
pub fn slice_range(start: i64, end: i64, step: i64, dim: usize) -> (i64, i64) {
    let d = dim as i64;
    if d == 0 {
        // Nothing to select: an empty range in either direction.
        return if step > 0 { (0, 0) } else { (-1, -1) };
    }
    let fix = |v: i64| if v < 0 { v + d } else { v };
    let (s, e) = (fix(start), fix(end));
    if step > 0 {
        (s.clamp(0, d), e.clamp(0, d))
    } else {
        (s.clamp(0, d - 1), e.clamp(-1, d - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_range_on_empty_dims_is_empty_both_ways() {
        assert_eq!(slice_range(0, 10, 1, 0), (0, 0));
        assert_eq!(slice_range(-1, i64::MIN, -1, 0), (-1, -1));
        // Non-empty dims: negative step clamps to [d-1, -1].
        assert_eq!(slice_range(100, -100, -1, 4), (3, -1));
    }

    #[test]
    fn resolve_window_rejects_empty_kernels_and_handles_empty_inputs() {
        assert!(resolve_window(&[4], &[0], &[], &[], &[], AutoPad::NotSet, false).is_err());
        let w = resolve_window(&[0], &[3], &[], &[], &[], AutoPad::SameUpper, false).unwrap();
        assert_eq!(w.output, vec![0]);
    }
}
