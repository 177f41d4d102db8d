//! [`Op`]'s ONNX names ([`Op::name`]), families ([`Op::family`]) and
//! view test ([`Op::is_view`]): tables over the enum of `op/mod.rs`, kept
//! apart from it so that the enum's file stays a list of variants.

use super::{ActKind, BinaryOp, Family, Op, ReduceKind, RnnKind, WindowKind};
use std::fmt;

impl Op {
    /// The ONNX op type this op is imported from (for messages and stats).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
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
            Op::CastLike { .. } => "CastLike",
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
                ReduceKind::L1 => "ReduceL1",
                ReduceKind::L2 => "ReduceL2",
                ReduceKind::LogSum => "ReduceLogSum",
                ReduceKind::LogSumExp => "ReduceLogSumExp",
                ReduceKind::SumSquare => "ReduceSumSquare",
            },
            Op::Conv(_) => "Conv",
            Op::DeformConv(_) => "DeformConv",
            Op::QLinearConv(_) => "QLinearConv",
            Op::ConvInteger(_) => "ConvInteger",
            Op::MaxPool(_) | Op::MaxPoolIndices { .. } => "MaxPool",
            Op::RoiAlign(_) => "RoiAlign",
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
            Op::OptionalHasElement => "OptionalHasElement",
            Op::Dropout | Op::DropoutSeeded { .. } => "Dropout",
            Op::ConstantOfShape { .. } => "ConstantOfShape",
            Op::Act { kind, .. } => match kind {
                ActKind::Elu => "Elu",
                ActKind::Selu => "Selu",
                ActKind::Celu => "Celu",
                ActKind::HardSigmoid => "HardSigmoid",
                ActKind::ThresholdedRelu => "ThresholdedRelu",
                ActKind::Swish => "Swish",
                ActKind::Shrink => "Shrink",
            },
            Op::IsNaN => "IsNaN",
            Op::IsInf { .. } => "IsInf",
            Op::Mean => "Mean",
            Op::GatherElements { .. } => "GatherElements",
            Op::GatherNd { .. } => "GatherND",
            Op::ScatterElements { .. } => "ScatterElements",
            Op::ScatterNd { .. } => "ScatterND",
            Op::Trilu { .. } => "Trilu",
            Op::Cumulative { prod: true, .. } => "CumProd",
            Op::Cumulative { .. } => "CumSum",
            Op::TopK { .. } => "TopK",
            Op::OneHot { .. } => "OneHot",
            Op::NonZero => "NonZero",
            Op::Compress { .. } => "Compress",
            Op::Hardmax { .. } => "Hardmax",
            Op::Tile => "Tile",
            Op::DepthToSpace { .. } => "DepthToSpace",
            Op::SpaceToDepth { .. } => "SpaceToDepth",
            Op::EyeLike { .. } => "EyeLike",
            Op::Pad { .. } => "Pad",
            Op::RmsNorm { .. } => "RMSNormalization",
            Op::NllLoss { .. } => "NegativeLogLikelihoodLoss",
            Op::SoftmaxCrossEntropy { .. } => "SoftmaxCrossEntropyLoss",
            Op::Attention(_) => "Attention",
            Op::FlexAttention(_) => "FlexAttention",
            Op::Resize(_) => "Resize",
            Op::RotaryEmbedding { .. } => "RotaryEmbedding",
            Op::LpNorm { .. } => "LpNormalization",
            Op::MeanVarianceNorm { .. } => "MeanVarianceNormalization",
            Op::Einsum { .. } => "Einsum",
            Op::Window { kind, .. } => match kind {
                WindowKind::Hann => "HannWindow",
                WindowKind::Hamming => "HammingWindow",
                WindowKind::Blackman => "BlackmanWindow",
            },
            Op::ReverseSequence { .. } => "ReverseSequence",
            Op::CenterCropPad { .. } => "CenterCropPad",
            Op::Det => "Det",
            Op::Rnn(r) => match r.kind {
                RnnKind::Rnn => "RNN",
                RnnKind::Gru => "GRU",
                RnnKind::Lstm => "LSTM",
            },
            Op::Dft { .. } => "DFT",
            Op::Stft { .. } => "STFT",
            Op::ImageDecoder { .. } => "ImageDecoder",
            Op::MelWeightMatrix { .. } => "MelWeightMatrix",
            Op::NonMaxSuppression { .. } => "NonMaxSuppression",
            Op::QLinearMatMul => "QLinearMatMul",
            Op::Col2Im { .. } => "Col2Im",
            Op::MatMulInteger => "MatMulInteger",
            Op::LinearAttention { .. } => "LinearAttention",
            Op::CausalConvWithState { .. } => "CausalConvWithState",
            Op::TensorScatter { .. } => "TensorScatter",
            Op::SwiGlu { .. } => "SwiGLU",
            Op::QuantizeLinear { .. } => "QuantizeLinear",
            Op::DequantizeLinear { .. } => "DequantizeLinear",
            Op::DynamicQuantizeLinear => "DynamicQuantizeLinear",
            Op::BitCast { .. } => "BitCast",
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::GridSample { .. } => "GridSample",
            Op::AffineGrid { .. } => "AffineGrid",
            Op::TfIdfVectorizer(_) => "TfIdfVectorizer",
            Op::Unique { .. } => "Unique",
            Op::LpPool { .. } => "LpPool",
            Op::MaxUnpool { .. } => "MaxUnpool",
            Op::InstanceNorm { .. } => "InstanceNormalization",
            Op::GroupNorm { .. } => "GroupNormalization",
            Op::UnaryGrad(_) => "UnaryGrad",
            Op::ConvGradFilter(_) => "ConvGradFilter",
            Op::ConvGradInput { .. } => "ConvGradInput",
            Op::PoolGrad { max: true, .. } => "MaxPoolGrad",
            Op::PoolGrad { max: false, .. } => "AveragePoolGrad",
            Op::SoftmaxGrad { log: false, .. } => "SoftmaxGrad",
            Op::SoftmaxGrad { log: true, .. } => "LogSoftmaxGrad",
            Op::LayerNormGrad { .. } => "LayerNormalizationGrad",
            Op::BatchNormTrain { .. } => "BatchNormalizationTraining",
            Op::BatchNormGrad => "BatchNormalizationGrad",
            Op::SoftmaxCrossEntropyGrad { .. } => "SoftmaxCrossEntropyLossGrad",
            Op::GatherGrad { .. } => "GatherGrad",
            Op::DropoutTrain { .. } => "DropoutTraining",
            Op::If { .. } => "If",
            Op::Loop { .. } => "Loop",
            Op::Scan { .. } => "Scan",
            Op::Optimizer(o) => o.name(),
            Op::Binarizer { .. } => "Binarizer",
            Op::ArrayFeatureExtractor => "ArrayFeatureExtractor",
            Op::TreeEnsemble(_) => "TreeEnsemble",
        }
    }

    /// The family whose module holds this op's rules.
    pub fn family(&self) -> Family {
        match self {
            Op::Unary(_)
            | Op::Binary(_)
            | Op::LeakyRelu { .. }
            | Op::Gelu { .. }
            | Op::Clip { .. }
            | Op::Where
            | Op::Sum
            | Op::Extremum(_)
            | Op::Cast { .. }
            | Op::CastLike { .. }
            | Op::Act { .. }
            | Op::IsNaN
            | Op::IsInf { .. }
            | Op::Mean
            | Op::UnaryGrad(_) => Family::Elementwise,
            Op::Range
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Transpose { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Concat { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Gather { .. }
            | Op::Shape { .. }
            | Op::Size
            | Op::Expand
            | Op::Identity
            | Op::OptionalHasElement
            | Op::Dropout
            | Op::DropoutSeeded { .. }
            | Op::DropoutTrain { .. }
            | Op::GatherGrad { .. }
            | Op::ConstantOfShape { .. } => Family::Movement,
            Op::ArgExtreme { .. } | Op::Reduce { .. } => Family::Reduce,
            Op::MatMul | Op::Gemm { .. } => Family::MatMul,
            Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::BatchNorm { .. }
            | Op::LayerNorm { .. }
            | Op::Lrn { .. }
            | Op::Hardmax { .. }
            | Op::RmsNorm { .. }
            | Op::RotaryEmbedding { .. }
            | Op::LpNorm { .. }
            | Op::MeanVarianceNorm { .. }
            | Op::InstanceNorm { .. }
            | Op::GroupNorm { .. }
            | Op::SoftmaxGrad { .. }
            | Op::LayerNormGrad { .. }
            | Op::BatchNormTrain { .. }
            | Op::BatchNormGrad => Family::Norm,
            Op::Conv(_)
            | Op::DeformConv(_)
            | Op::QLinearConv(_)
            | Op::ConvInteger(_)
            | Op::ConvGradFilter(_)
            | Op::ConvGradInput { .. } => Family::Conv,
            Op::MaxPool(_)
            | Op::MaxPoolIndices { .. }
            | Op::RoiAlign(_)
            | Op::AveragePool(_)
            | Op::GlobalAveragePool
            | Op::GlobalMaxPool
            | Op::LpPool { .. }
            | Op::PoolGrad { .. }
            | Op::MaxUnpool { .. } => Family::Pool,
            Op::GatherElements { .. }
            | Op::GatherNd { .. }
            | Op::ScatterElements { .. }
            | Op::ScatterNd { .. }
            | Op::Trilu { .. }
            | Op::Cumulative { .. }
            | Op::TopK { .. }
            | Op::OneHot { .. }
            | Op::NonZero
            | Op::Compress { .. }
            | Op::Tile
            | Op::DepthToSpace { .. }
            | Op::SpaceToDepth { .. }
            | Op::EyeLike { .. }
            | Op::Pad { .. } => Family::Index,
            Op::NllLoss { .. }
            | Op::SoftmaxCrossEntropy { .. }
            | Op::SoftmaxCrossEntropyGrad { .. } => Family::Loss,
            Op::Attention(_) | Op::FlexAttention(_) => Family::Attention,
            Op::Resize(_) => Family::Resize,
            Op::Einsum { .. } => Family::Einsum,
            Op::Window { .. }
            | Op::ReverseSequence { .. }
            | Op::CenterCropPad { .. }
            | Op::Det
            | Op::ConvTranspose(_)
            | Op::GridSample { .. }
            | Op::AffineGrid { .. }
            | Op::TfIdfVectorizer(_)
            | Op::Unique { .. }
            | Op::ImageDecoder { .. } => Family::Misc,
            Op::Rnn(_) => Family::Rnn,
            Op::Dft { .. }
            | Op::Stft { .. }
            | Op::MelWeightMatrix { .. }
            | Op::NonMaxSuppression { .. }
            | Op::QLinearMatMul
            | Op::Col2Im { .. }
            | Op::MatMulInteger => Family::Signal,
            Op::LinearAttention { .. }
            | Op::CausalConvWithState { .. }
            | Op::TensorScatter { .. }
            | Op::SwiGlu { .. } => Family::Seq,
            Op::QuantizeLinear { .. }
            | Op::DequantizeLinear { .. }
            | Op::DynamicQuantizeLinear
            | Op::BitCast { .. } => Family::Quant,
            Op::If { .. } | Op::Loop { .. } | Op::Scan { .. } => Family::Control,
            Op::Optimizer(_) => Family::Optim,
            Op::Binarizer { .. } | Op::ArrayFeatureExtractor | Op::TreeEnsemble(_) => Family::Ml,
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
