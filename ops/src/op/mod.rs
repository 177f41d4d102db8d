//! The op set: one [`Op`] enum whose variants carry their parsed, opset-
//! normalised attributes, its ONNX names ([`Op::name`]) and its families
//! ([`Op::family`]).
//!
//! Each family is a module here (`op/<family>/`) holding its ops'
//! attribute types (re-exported here), ONNX mapping (`onnx.rs`), shape and
//! type inference (`infer.rs`), cost (`cost.rs`) and host kernels
//! (`kernel.rs`). The dispatchers ([`crate::infer::infer_op`],
//! [`crate::cost::op_cost`], [`crate::cost::op_class`], the ONNX importer,
//! [`crate::kernels::eval`]) hold no op's rules. Helpers the rules share
//! are in `common.rs`, below every family; those the kernels share in
//! `kernels/util.rs`. Shape arithmetic that kernels and backends use too is
//! in [`crate::shape`].
//!
//! Attributes that later opsets moved to inputs (Squeeze axes, Split sizes,
//! Slice bounds, Clip bounds, Reduce axes, Reshape shape) are kept as
//! `Option`s: `Some` when the node gave them as attributes, `None` when the
//! kernel reads them from the optional input. Kernels therefore handle both
//! forms and opset differences are resolved once, in the ONNX importer.

pub mod attention;
pub(crate) mod common;
pub mod control;
pub mod conv;
pub mod einsum;
pub mod elementwise;
pub mod index;
pub mod loss;
pub mod matmul;
pub mod misc;
pub mod ml;
pub mod movement;
mod names;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod quant;
pub mod reduce;
pub mod resize;
pub mod rnn;
pub mod seq;
pub mod signal;

pub use attention::{AttentionAttrs, FlexAttrs};
pub use control::{Body, ScanAttrs};
pub use conv::{resolve_window, Activation, AutoPad, ConvAttrs, DeformConvAttrs, Window};
pub use elementwise::{ActKind, BinaryOp, GradFn, UnaryOp};
pub use index::{PadMode, ScatterReduction};
pub use loss::LossReduction;
pub use misc::{
    ConvTransposeAttrs, GridMode, GridPadding, PixelFormat, TfIdfAttrs, TfIdfMode, WindowKind,
};
pub use ml::{TreeAggregate, TreeEnsembleAttrs, TreeMode, TreeNode, TreeRef};
pub use optim::Optimizer;
pub use pool::{PoolAttrs, RoiAlignAttrs};
pub use reduce::ReduceKind;
pub use resize::{CoordMode, KeepAspect, NearestMode, ResizeAttrs, ResizeMode};
pub use rnn::{RnnAct, RnnAttrs, RnnKind};
pub use seq::LinearAttentionRule;

use crate::dtype::DType;
use crate::tensor::Tensor;

/// The op families: each is a module under `op/` that holds its ops'
/// attributes, ONNX mapping, shape and type inference, cost and host
/// kernels. The dispatchers of inference and cost ([`crate::infer::infer_op`],
/// [`crate::cost::op_cost`], [`crate::cost::op_class`]) go through
/// [`Op::family`]; the ONNX importer, which has no op yet, asks each family
/// in turn; [`crate::kernels::eval`] reaches each family's `eval.rs`, which
/// names the op's kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// [`elementwise`]
    Elementwise,
    /// [`movement`]
    Movement,
    /// [`reduce`]
    Reduce,
    /// [`matmul`]
    MatMul,
    /// [`norm`]
    Norm,
    /// [`conv`]
    Conv,
    /// [`pool`]
    Pool,
    /// [`index`]
    Index,
    /// [`loss`]
    Loss,
    /// [`attention`]
    Attention,
    /// [`resize`]
    Resize,
    /// [`einsum`]
    Einsum,
    /// [`misc`]
    Misc,
    /// [`rnn`]
    Rnn,
    /// [`signal`]
    Signal,
    /// [`seq`]
    Seq,
    /// [`quant`]
    Quant,
    /// [`control`]
    Control,
    /// [`optim`]
    Optim,
    /// [`ml`]
    Ml,
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
    /// Element type conversion. `saturate` (opset 19) and `round` (opset
    /// 25) matter only for the narrow float targets ([`crate::narrow`]).
    Cast {
        to: DType,
        saturate: bool,
        round: crate::narrow::RoundMode,
    },
    /// Cast input 0 to the element type of input 1 (opset 15), with Cast's
    /// `saturate` and `round`.
    CastLike {
        saturate: bool,
        round: crate::narrow::RoundMode,
    },
    /// Number of elements of input 0, as an i64 scalar.
    Size,
    /// Numpy-style batched matrix product.
    MatMul,
    /// `act(alpha * op(A) op(B) + beta * C)`. `act` is `None` from the
    /// importer; [`crate::optimize::fuse_gemm_activations`] sets it (a
    /// following Relu / Clip) on sessions whose devices are all CPUs, the
    /// only kernels that apply it.
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
        act: Activation,
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
    /// Quantized convolution: inputs x, x_scale, x_zero_point, w,
    /// w_scale, w_zero_point, y_scale, y_zero_point, optional i32 B.
    QLinearConv(ConvAttrs),
    /// Deformable 2-D convolution: inputs X, W, offset, optional B and
    /// mask.
    DeformConv(DeformConvAttrs),
    /// Max pooling.
    MaxPool(PoolAttrs),
    /// Max pooling with the Indices output (i64 flat indices into X;
    /// `column_major`: ONNX `storage_order` 1).
    MaxPoolIndices { pool: PoolAttrs, column_major: bool },
    /// Bilinear pooling of regions of interest: inputs X `[N, C, H, W]`,
    /// rois `[R, 4]`, batch_indices `[R]`; output `[R, C, oh, ow]`.
    RoiAlign(RoiAlignAttrs),
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
    /// Whether input 0 was given (a bool scalar): hetflow has no optional
    /// values, so a given input always holds a tensor.
    OptionalHasElement,
    /// Inference-mode dropout: identity, plus an all-true mask when asked.
    Dropout,
    /// Dropout with a `seed` and a training_mode input: inputs data,
    /// ratio, training_mode; outputs Y and the keep mask (numpy's
    /// `RandomState(seed)` draw in training mode, else the identity).
    DropoutSeeded { seed: i64 },
    /// Tensor of shape input 0 filled with `value` (one element).
    ConstantOfShape { value: Tensor },
    /// Activations with float parameters (see [`ActKind`]).
    Act {
        kind: ActKind,
        alpha: f32,
        beta: f32,
    },
    /// True where the element is NaN.
    IsNaN,
    /// True where the element is +inf (`positive`) or -inf (`negative`).
    IsInf { positive: bool, negative: bool },
    /// Variadic element-wise mean with broadcasting.
    Mean,
    /// `out[.., i, ..] = data[.., index[.., i, ..], ..]` along `axis`.
    GatherElements { axis: i64 },
    /// Gather slices by index tuples in the last dim of the indices.
    GatherNd { batch_dims: usize },
    /// Scatter of updates at per-element indices along `axis`.
    ScatterElements {
        axis: i64,
        reduction: ScatterReduction,
    },
    /// Scatter of slices at index tuples.
    ScatterNd { reduction: ScatterReduction },
    /// Keep the upper (or lower) triangle of the last two dims, shifted by
    /// input 1 (k).
    Trilu { upper: bool },
    /// Running sum (or product) along the axis in input 1.
    Cumulative {
        prod: bool,
        exclusive: bool,
        reverse: bool,
    },
    /// The k largest (or smallest) along `axis`: values and i64 indices;
    /// k from the attribute (opset < 10) or input 1.
    TopK {
        axis: i64,
        largest: bool,
        sorted: bool,
        k: Option<i64>,
    },
    /// One-hot along `axis` from indices, depth and [off, on] values.
    OneHot { axis: i64 },
    /// Indices of the non-zero elements, `[rank, n]` i64.
    NonZero,
    /// Elements (or slices along `axis`) where the bool condition holds.
    Compress { axis: Option<i64> },
    /// 1 at the first maximum along `axis`, 0 elsewhere; `legacy` (opset
    /// < 13) flattens to 2-D at `axis`.
    Hardmax { axis: i64, legacy: bool },
    /// Repeat input 0 `repeats[i]` times along dim i.
    Tile,
    /// Move depth into blocks of space (`crd`: column-row-depth order).
    DepthToSpace { blocksize: usize, crd: bool },
    /// Move blocks of space into depth (`crd`: column-row-depth order).
    SpaceToDepth { blocksize: usize, crd: bool },
    /// 2-D identity-like matrix of input 0's shape with ones on diagonal k.
    EyeLike { dtype: Option<DType>, k: i64 },
    /// Padding; pads from the attribute (opset < 11) or inputs 1..=3.
    Pad {
        mode: PadMode,
        pads: Option<Vec<i64>>,
        value: f32,
    },
    /// RMS normalisation over dims `axis..`: inputs x, scale.
    RmsNorm { axis: i64, epsilon: f32 },
    /// Negative log-likelihood loss: inputs log-probabilities `[N, C, ..]`,
    /// targets `[N, ..]`, optional class weights `[C]`.
    NllLoss {
        reduction: LossReduction,
        ignore_index: Option<i64>,
    },
    /// Softmax cross-entropy: inputs scores, labels, optional weights;
    /// outputs the loss and optionally the log-probabilities.
    SoftmaxCrossEntropy {
        reduction: LossReduction,
        ignore_index: Option<i64>,
    },
    /// Scaled dot-product attention: inputs Q, K, V, attn_mask, past_key,
    /// past_value, nonpad_kv_seqlen; outputs Y, present_key, present_value,
    /// qk_matmul_output.
    Attention(AttentionAttrs),
    /// FlexAttention (`ai.onnx.preview`): inputs Q, K, V `[B, H, L, E]`,
    /// then the captures of its modifier subgraphs; output Y.
    FlexAttention(Box<FlexAttrs>),
    /// Resize by scales or to sizes: inputs X, roi, scales, sizes.
    Resize(ResizeAttrs),
    /// Rotary position embedding: inputs X, cos_cache, sin_cache, optional
    /// position_ids.
    RotaryEmbedding {
        interleaved: bool,
        num_heads: Option<usize>,
        rotary_dim: usize,
    },
    /// A window of the length in input 0 (`periodic`, else symmetric).
    Window {
        kind: WindowKind,
        periodic: bool,
        dtype: DType,
    },
    /// Reverse the first `sequence_lens[b]` steps of every batch entry.
    ReverseSequence { batch_axis: i64, time_axis: i64 },
    /// Crop or zero-pad `axes` (all when `None`) around the centre to the
    /// sizes in input 1.
    CenterCropPad { axes: Option<Vec<i64>> },
    /// Sample X at the normalised grid coordinates.
    GridSample {
        mode: GridMode,
        padding: GridPadding,
        align_corners: bool,
    },
    /// Sampling grid of affine matrices: theta `[N, 2, 3]` or `[N, 3, 4]`
    /// and size (input 1: `[N, C, H, W]` or `[N, C, D, H, W]`) give
    /// `[N, H, W, 2]` or `[N, D, H, W, 3]`.
    AffineGrid { align_corners: bool },
    /// Counts (weighted) n-grams of integer tokens per row: `[C]` or
    /// `[B, C]` to f32 `[out]` or `[B, out]`.
    TfIdfVectorizer(Box<TfIdfAttrs>),
    /// Transposed convolution: inputs x, w `[C, M / group, k..]`, bias.
    ConvTranspose(ConvTransposeAttrs),
    /// `saturate(round(x / scale) + zero_point)`: inputs x, scale,
    /// optional zero point (whose dtype, else `dtype`, else u8, is the
    /// output's); per tensor, per `axis`, or in blocks of `block_size`.
    QuantizeLinear {
        axis: i64,
        block_size: usize,
        dtype: Option<DType>,
    },
    /// `(x - zero_point) * scale`, in the scale's dtype (or `dtype`).
    DequantizeLinear {
        axis: i64,
        block_size: usize,
        dtype: Option<DType>,
    },
    /// u8 quantisation over x's range: y, scale, zero point.
    DynamicQuantizeLinear,
    /// The input's bytes read as `to`.
    BitCast { to: DType },
    /// Recurrent linear attention over packed `[B, T, H * D]` inputs:
    /// query, key, value, past_state, decay, beta; outputs y and the state.
    LinearAttention {
        rule: LinearAttentionRule,
        q_num_heads: usize,
        kv_num_heads: usize,
        /// 0: `1 / sqrt(d_k)`.
        scale: f32,
    },
    /// Depthwise causal 1-D convolution with a carried state: input,
    /// weight, bias, past_state; outputs y and present_state.
    CausalConvWithState { silu: bool },
    /// KV-cache write of input 1 into input 0 along `axis` at per-batch
    /// write indices (input 2).
    TensorScatter { axis: i64, circular: bool },
    /// `a * sigmoid(alpha * a) * b`.
    SwiGlu { alpha: f32 },
    /// Discrete Fourier transform; `axis` from the attribute (opset 17) or
    /// input 2.
    Dft {
        axis: Option<i64>,
        inverse: bool,
        onesided: bool,
    },
    /// Decodes an encoded image (u8 bytes) to `[H, W, C]` u8.
    ImageDecoder { format: PixelFormat },
    /// Short-time Fourier transform: inputs signal, frame_step, window,
    /// frame_length; output `[B, frames, bins, 2]`.
    Stft { onesided: bool },
    /// Triangular mel filter bank `[dft_length / 2 + 1, num_mel_bins]`
    /// from five scalar inputs.
    MelWeightMatrix { dtype: DType },
    /// Greedy non-maximum suppression: `[k, 3]` (batch, class, box) rows.
    NonMaxSuppression { center_point_box: bool },
    /// Sum columns back into images: inputs columns, image_shape,
    /// block_shape.
    Col2Im {
        dilations: Vec<usize>,
        pads: Vec<usize>,
        strides: Vec<usize>,
    },
    /// Quantised matrix product with per-tensor scales and zero points.
    QLinearMatMul,
    /// Integer matrix product with zero points, in i32.
    MatMulInteger,
    /// Integer convolution with zero points (inputs x, w, x_zero_point,
    /// w_zero_point per tensor or per output channel), in i32.
    ConvInteger(ConvAttrs),
    /// RNN / GRU / LSTM: inputs X, W, R, B, sequence_lens, initial_h
    /// (initial_c, P); outputs Y, Y_h (Y_c).
    Rnn(RnnAttrs),
    /// Determinants of the trailing square matrices.
    Det,
    /// Unique elements or slices: Y, indices, inverse_indices, counts.
    Unique { axis: Option<i64>, sorted: bool },
    /// `(sum of |x|^p over the window)^(1/p)`.
    LpPool { pool: PoolAttrs, p: f32 },
    /// Scatters X back to the positions MaxPool's flat indices (input 1)
    /// name; the output shape from input 2, else from the window.
    MaxUnpool {
        kernel_shape: Vec<usize>,
        strides: Vec<usize>,
        /// `[begin_0, .., end_0, ..]`.
        pads: Vec<usize>,
    },
    /// Einsum with its equation.
    Einsum { equation: String },
    /// `x / ||x||_p` along `axis` (p = 1 or 2).
    LpNorm { axis: i64, p: u8 },
    /// `(x - mean) / (std + 1e-9)` over `axes` (MeanVarianceNormalization).
    MeanVarianceNorm { axes: Vec<i64> },
    /// Per-instance, per-channel normalisation over the spatial dims:
    /// inputs x `[N, C, ..]`, scale `[C]`, bias `[C]`.
    InstanceNorm { epsilon: f32 },
    /// Normalisation over groups of channels: inputs x `[N, C, ..]`, scale
    /// and bias per channel (`per_channel`, opset 21) or per group.
    GroupNorm {
        epsilon: f32,
        groups: usize,
        per_channel: bool,
    },
    /// Backward of an element-wise function: inputs the saved value the
    /// derivative reads (`x` or `y`, see [`GradFn`]) and the output's
    /// gradient; output the input's gradient.
    UnaryGrad(GradFn),
    /// Backward of Conv with respect to the filter: inputs X and the
    /// output's gradient; output the filter's gradient `[M, C/group, k...]`.
    ConvGradFilter(ConvAttrs),
    /// Backward of Conv with respect to its input: inputs the output's
    /// gradient and W; output the gradient of an input of shape `x_shape`.
    ConvGradInput {
        attrs: ConvAttrs,
        x_shape: Vec<usize>,
    },
    /// Backward of MaxPool (`max`) or AveragePool: inputs X and the
    /// output's gradient; output X's gradient.
    PoolGrad { max: bool, attrs: PoolAttrs },
    /// Backward of Softmax (`log: false`, inputs Y and dY) or LogSoftmax
    /// (`log: true`, same inputs): output dX.
    SoftmaxGrad { axis: i64, log: bool },
    /// Backward of LayerNormalization: inputs X, scale, dY; outputs dX,
    /// dScale, dBias.
    LayerNormGrad { axis: i64, epsilon: f32 },
    /// Training-mode batch normalisation: inputs X, scale, bias, running
    /// mean, running var; outputs Y (normalised with the batch's
    /// statistics), the updated running mean and var
    /// (`running * momentum + batch * (1 - momentum)`), and the batch mean
    /// and inverse standard deviation saved for the backward pass.
    BatchNormTrain { epsilon: f32, momentum: f32 },
    /// Backward of [`Op::BatchNormTrain`]: inputs X, scale, saved mean,
    /// saved inverse std, dY; outputs dX, dScale, dBias.
    BatchNormGrad,
    /// Backward of SoftmaxCrossEntropyLoss: inputs scores, labels, optional
    /// class weights, dLoss; output dScores.
    SoftmaxCrossEntropyGrad {
        reduction: LossReduction,
        ignore_index: Option<i64>,
    },
    /// Backward of Gather: inputs indices and dY; output the gradient of a
    /// data tensor of shape `data_shape` (rows gathered twice add up).
    GatherGrad { axis: i64, data_shape: Vec<usize> },
    /// Training-mode dropout: inputs X and an i64 scalar seed; outputs Y
    /// and the mask of multipliers (0 or `1 / (1 - ratio)`) that Y = X *
    /// mask used. The draw is a hash of (seed, element index), so it is the
    /// same on every device and every run with that seed.
    DropoutTrain { ratio: f32 },
    /// Runs `then_branch` or `else_branch` as input 0 (cond) says; the
    /// branches' captured values follow cond ([`control`]).
    If {
        then_branch: Body,
        else_branch: Body,
    },
    /// Runs `body` while cond holds and fewer than M iterations ran:
    /// inputs M, cond, the initial carried values, then the captures.
    Loop { body: Body },
    /// Runs `body` once per slice of the scan inputs (opset 9+): inputs
    /// the initial states, the scan inputs, then the captures.
    Scan { body: Body, attrs: ScanAttrs },
    /// An optimizer's update (`ai.onnx.preview.training`): inputs R, T,
    /// the tensors, their gradients and states; outputs the updated
    /// tensors and states.
    Optimizer(Optimizer),
    /// `x > threshold` as 1 or 0 (`ai.onnx.ml`).
    Binarizer { threshold: f32 },
    /// Input 0's last-axis elements at the i64 indices input 1
    /// (`ai.onnx.ml`).
    ArrayFeatureExtractor,
    /// A tree ensemble's per-target scores of the rows of X
    /// (`ai.onnx.ml` opset 5).
    TreeEnsemble(Box<TreeEnsembleAttrs>),
}
