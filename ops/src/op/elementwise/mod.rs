//! Element-wise ops: unary functions, binary arithmetic, comparisons and
//! logic with numpy broadcasting, activations, Clip, Where, Cast and the
//! variadic Sum / Max / Min / Mean.
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod grad;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;
#[cfg(test)]
mod tests;

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
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    /// -1, 0 or 1 (any numeric type).
    Sign,
    /// Round half to even.
    Round,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// `x * max(0, min(1, x / 6 + 1 / 2))`.
    HardSwish,
    /// Bitwise complement of an integer tensor.
    BitwiseNot,
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
    /// Integer modulo with the sign of the divisor (ONNX Mod, fmod = 0).
    Mod,
    /// Remainder with the sign of the dividend (ONNX Mod, fmod = 1).
    FMod,
    /// `a << b` on unsigned integers (ONNX BitShift, direction LEFT).
    ShiftLeft,
    /// `a >> b` on unsigned integers (ONNX BitShift, direction RIGHT).
    ShiftRight,
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
    /// `x < 0 ? slope * x : x` with the slope broadcast to x.
    PRelu,
}

impl UnaryOp {
    /// The ONNX op type.
    pub fn name(self) -> &'static str {
        match self {
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
            UnaryOp::Sin => "Sin",
            UnaryOp::Cos => "Cos",
            UnaryOp::Tan => "Tan",
            UnaryOp::Asin => "Asin",
            UnaryOp::Acos => "Acos",
            UnaryOp::Atan => "Atan",
            UnaryOp::Sinh => "Sinh",
            UnaryOp::Cosh => "Cosh",
            UnaryOp::Asinh => "Asinh",
            UnaryOp::Acosh => "Acosh",
            UnaryOp::Atanh => "Atanh",
            UnaryOp::Sign => "Sign",
            UnaryOp::Round => "Round",
            UnaryOp::Softplus => "Softplus",
            UnaryOp::Softsign => "Softsign",
            UnaryOp::Mish => "Mish",
            UnaryOp::HardSwish => "HardSwish",
            UnaryOp::BitwiseNot => "BitwiseNot",
        }
    }
}

impl BinaryOp {
    /// The ONNX op type (Mod and BitShift cover two variants each).
    pub fn name(self) -> &'static str {
        match self {
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
            BinaryOp::Mod | BinaryOp::FMod => "Mod",
            BinaryOp::ShiftLeft | BinaryOp::ShiftRight => "BitShift",
            BinaryOp::BitwiseAnd => "BitwiseAnd",
            BinaryOp::BitwiseOr => "BitwiseOr",
            BinaryOp::BitwiseXor => "BitwiseXor",
            BinaryOp::PRelu => "PRelu",
        }
    }

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
    /// True for the ops defined on integer bits only.
    pub fn is_bitwise(self) -> bool {
        matches!(
            self,
            BinaryOp::ShiftLeft
                | BinaryOp::ShiftRight
                | BinaryOp::BitwiseAnd
                | BinaryOp::BitwiseOr
                | BinaryOp::BitwiseXor
        )
    }
}

/// Element-wise activations with one or two float parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActKind {
    /// `x < 0 ? alpha * (e^x - 1) : x`.
    Elu,
    /// `gamma * (x <= 0 ? alpha * (e^x - 1) : x)` (`beta` holds gamma).
    Selu,
    /// `max(0, x) + min(0, alpha * (e^(x / alpha) - 1))`.
    Celu,
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid,
    /// `x > alpha ? x : 0`.
    ThresholdedRelu,
    /// `x * sigmoid(alpha * x)`.
    Swish,
    /// `x < -lambd ? x + bias : x > lambd ? x - bias : 0` (`alpha` holds
    /// lambd, `beta` bias).
    Shrink,
}

/// The derivative an [`crate::Op::UnaryGrad`] node applies, and which
/// forward value it reads: the input `x` or the output `y`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GradFn {
    /// `x > 0` (reads x).
    Relu,
    /// `x > 0 ? 1 : alpha` (reads x).
    LeakyRelu { alpha: f32 },
    /// `y (1 - y)` (reads y).
    Sigmoid,
    /// `1 - y²` (reads y).
    Tanh,
    /// `2/√π exp(-x²)` (reads x).
    Erf,
    /// GELU's derivative, exact or of the tanh form (reads x).
    Gelu { tanh: bool },
    /// `1 / (2 y)` (reads y).
    Sqrt,
}

impl GradFn {
    /// Whether the derivative reads the forward output (else the input).
    pub fn reads_output(self) -> bool {
        matches!(self, GradFn::Sigmoid | GradFn::Tanh | GradFn::Sqrt)
    }
}
