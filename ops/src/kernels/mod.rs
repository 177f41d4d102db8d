//! Host kernels: the reference semantics of every op, also run by the CPU
//! device. Each op family's kernels are its `op/<family>/kernel.rs`; this
//! module dispatches to them ([`eval`]) and holds the plumbing they share
//! (`util.rs`: input fetching, the strided walker, dtype dispatch).
//!
//! Contract of [`eval`]: `inputs` are positional as in the node (`None` for an
//! omitted optional input); the result has exactly `n_outputs` tensors.
//! Kernels never panic on bad input: shapes, dtypes and attribute values are
//! checked and reported as [`Error`]s (the caller adds the node name).
//! Multi-threaded kernels use the rayon pool they are called in (the CPU
//! device installs its own pool, sized to its cores).
//!
//! Float arithmetic is written for f32 and f64; f16 and bf16 inputs of the
//! arithmetic ops are widened to f32 here, computed, and narrowed back.
//! Data-movement ops work on every dtype.

pub(crate) mod util;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::control::kernel as control;
use crate::op::{
    attention::kernel as attention, conv::kernel as conv, einsum::kernel as einsum,
    elementwise::kernel as elementwise, index::kernel as index, loss::kernel as loss,
    matmul::kernel as matmul, misc::kernel as misc, movement::kernel as movement,
    norm::kernel as norm, pool::kernel as pool, quant::kernel as quant, reduce::kernel as reduce,
    resize::kernel as resize, rnn::kernel as rnn, seq::kernel as seq, signal::kernel as signal,
};
use crate::op::{BinaryOp, Op, ScatterReduction, UnaryOp};

use crate::tensor::Tensor;

/// Prepares input `slot` of `op`, a weight (a constant the op reads every
/// run), for the op's kernel: MatMul's and Gemm's 2-D f32 B is packed into
/// the small-M kernel's panels (`op/matmul/packed.rs`), the f32 filter of
/// a Conv that takes the blocked product into its row blocks
/// (`op/conv/blocked.rs`), and the packing is attached to the tensor,
/// where [`eval`] finds it. `lhs_shape` is input 0's shape when known at
/// build time: a product with too many rows for the small-M kernel is left
/// to the general GEMM and not packed. Returns whether the tensor now
/// carries a prepared form; ops and inputs with nothing to prepare return
/// `Ok(false)`. Cheap to call again.
pub fn prepare(op: &Op, slot: usize, weight: &Tensor, lhs_shape: Option<&[usize]>) -> Result<bool> {
    let rows = |trans_a: bool| {
        lhs_shape.map(|s| match (s.len(), trans_a) {
            (0, _) => 1,
            (_, true) => s.get(1).copied().unwrap_or(1),
            (_, false) if s.len() == 2 => s[0],
            _ => s[..s.len() - 1].iter().product(),
        })
    };
    match op {
        Op::MatMul if slot == 1 => matmul::prepare_b(weight, false, rows(false)),
        Op::Gemm {
            trans_a, trans_b, ..
        } if slot == 1 => matmul::prepare_b(weight, *trans_b, rows(*trans_a)),
        Op::Conv(a) if slot == 1 => conv::prepare_filter(weight, a),
        _ => Ok(false),
    }
}

/// Multiply-adds (products, convolutions) or elements (every other op) one
/// run of `op` on these inputs does, estimated from the input shapes alone
/// (cheap: no allocation). A device decides from it whether an op is worth
/// handing to its thread pool; the flops of the cost model are
/// [`crate::cost::op_cost`]'s.
pub fn parallel_work(op: &Op, inputs: &[Option<&Tensor>]) -> usize {
    let elems = || inputs.iter().flatten().map(|t| t.len()).sum();
    let (Some(a), Some(b)) = (
        inputs.first().copied().flatten(),
        inputs.get(1).copied().flatten(),
    ) else {
        return elems();
    };
    let last = |t: &Tensor| t.shape().last().copied().unwrap_or(1);
    match op {
        // [.., m, k] x [.., k, n]: a.len() * n (B batched like A).
        Op::MatMul if b.rank() >= 2 => a.len().saturating_mul(last(b)).max(b.len()),
        Op::Gemm { trans_b, .. } if b.rank() == 2 => {
            let n = if *trans_b { b.shape()[0] } else { b.shape()[1] };
            a.len().saturating_mul(n)
        }
        // Output pixels (taken as the input's) x weights per pixel.
        Op::Conv(_) if a.rank() > 2 && a.shape()[1] > 0 => (a.len() / a.shape()[1])
            .saturating_mul(b.len())
            .max(elems()),
        _ => elems(),
    }
}

/// Evaluates `op` on host tensors.
pub fn eval(op: &Op, inputs: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
    if let Some(dt) = half_input(op, inputs) {
        let wide: Vec<Option<Tensor>> = inputs
            .iter()
            .map(|t| {
                t.map(|t| {
                    if t.dtype() == dt {
                        t.cast(DType::F32)
                    } else {
                        t.clone()
                    }
                })
            })
            .collect();
        let refs: Vec<Option<&Tensor>> = wide.iter().map(|t| t.as_ref()).collect();
        let outs = eval_native(op, &refs, n_outputs)?;
        return Ok(outs
            .into_iter()
            .map(|t| {
                if t.dtype() == DType::F32 {
                    t.cast(dt)
                } else {
                    t
                }
            })
            .collect());
    }
    eval_native(op, inputs, n_outputs)
}

/// The f16/bf16 dtype of input 0 when `op` computes in float arithmetic.
fn half_input(op: &Op, inputs: &[Option<&Tensor>]) -> Option<DType> {
    let dt = inputs.first().copied().flatten()?.dtype();
    if dt != DType::F16 && dt != DType::BF16 {
        return None;
    }
    let arith = match op {
        Op::Unary(u) => !matches!(u, UnaryOp::Not | UnaryOp::BitwiseNot),
        Op::Binary(b) => !b.is_comparison() && !b.is_logical() && !b.is_bitwise(),
        Op::LeakyRelu { .. }
        | Op::Gelu { .. }
        | Op::Sum
        | Op::Extremum(_)
        | Op::MatMul
        | Op::Gemm { .. }
        | Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::BatchNorm { .. }
        | Op::LayerNorm { .. }
        | Op::Lrn { .. }
        | Op::Reduce { .. }
        | Op::Conv(_)
        | Op::MaxPool(_)
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::Act { .. }
        | Op::Mean
        | Op::RmsNorm { .. }
        | Op::Hardmax { .. }
        | Op::Cumulative { .. }
        | Op::NllLoss { .. }
        | Op::SoftmaxCrossEntropy { .. }
        | Op::Attention(_)
        | Op::Einsum { .. }
        | Op::Resize(_)
        | Op::RotaryEmbedding { .. }
        | Op::LpNorm { .. }
        | Op::InstanceNorm { .. }
        | Op::GroupNorm { .. }
        | Op::LpPool { .. }
        | Op::ConvTranspose(_) => true,
        // Scatters with a reduction do arithmetic on data and updates.
        Op::ScatterElements { reduction, .. } | Op::ScatterNd { reduction } => {
            *reduction != ScatterReduction::None
        }
        _ => false,
    };
    arith.then_some(dt)
}

fn eval_native(op: &Op, inputs: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
    let one = |t: Result<Tensor>| t.map(|t| vec![t]);
    let mut outs = match op {
        Op::Unary(u) => one(elementwise::unary(*u, inputs)),
        Op::Binary(b) => one(elementwise::binary(*b, inputs)),
        Op::LeakyRelu { alpha } => one(elementwise::leaky_relu(*alpha, inputs)),
        Op::Gelu { tanh } => one(elementwise::gelu(*tanh, inputs)),
        Op::UnaryGrad(f) => one(crate::op::elementwise::grad::unary_grad(*f, inputs)),
        Op::Clip { min, max } => one(elementwise::clip(*min, *max, inputs)),
        Op::Where => one(elementwise::where_(inputs)),
        Op::Sum => one(elementwise::fold(BinaryOp::Add, inputs)),
        Op::Range => one(movement::range(inputs)),
        Op::ArgExtreme {
            max,
            axis,
            keepdims,
            last,
        } => one(reduce::arg_extreme(*max, *axis, *keepdims, *last, inputs)),
        Op::Extremum(b) => one(elementwise::fold(*b, inputs)),
        Op::Cast {
            to,
            saturate,
            round,
        } => one(util::input(inputs, 0, "input").map(|t| t.cast_with(*to, *saturate, *round))),
        Op::MatMul => one(matmul::matmul(inputs)),
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => one(matmul::gemm_op(*alpha, *beta, *trans_a, *trans_b, inputs)),
        Op::Softmax { axis, legacy } => one(norm::softmax(*axis, *legacy, false, inputs)),
        Op::LogSoftmax { axis, legacy } => one(norm::softmax(*axis, *legacy, true, inputs)),
        Op::BatchNorm { epsilon } => one(norm::batch_norm(*epsilon, inputs)),
        Op::LayerNorm { axis, epsilon } => norm::layer_norm(*axis, *epsilon, inputs, n_outputs),
        Op::Lrn {
            alpha,
            beta,
            bias,
            size,
        } => one(norm::lrn(*alpha, *beta, *bias, *size, inputs)),
        Op::Reduce {
            kind,
            axes,
            keepdims,
            noop_with_empty_axes,
        } => one(reduce::reduce(
            *kind,
            axes.as_deref(),
            *keepdims,
            *noop_with_empty_axes,
            inputs,
        )),
        Op::Conv(a) => one(conv::conv(a, inputs)),
        Op::SoftmaxCrossEntropyGrad {
            reduction,
            ignore_index,
        } => one(crate::op::loss::grad::softmax_ce_grad(
            *reduction,
            *ignore_index,
            inputs,
        )),
        Op::SoftmaxGrad { axis, log } => {
            one(crate::op::norm::grad::softmax_grad(*axis, *log, inputs))
        }
        Op::LayerNormGrad { axis, epsilon } => {
            crate::op::norm::grad::layer_norm_grad(*axis, *epsilon, inputs)
        }
        Op::BatchNormTrain { epsilon, momentum } => {
            let mut outs = crate::op::norm::grad::batch_norm_train(*epsilon, *momentum, inputs)?;
            outs.truncate(n_outputs.clamp(1, 5));
            Ok(outs)
        }
        Op::BatchNormGrad => crate::op::norm::grad::batch_norm_grad(inputs),
        Op::PoolGrad { max, attrs } => one(crate::op::pool::grad::pool_grad(attrs, *max, inputs)),
        Op::ConvGradFilter(a) => one(crate::op::conv::grad::grad_filter(a, inputs)),
        Op::ConvGradInput { attrs, x_shape } => {
            one(crate::op::conv::grad::grad_input(attrs, x_shape, inputs))
        }
        Op::ConvInteger(a) => one(conv::conv_integer(a, inputs)),
        Op::MaxPool(p) => match inputs.first().copied().flatten() {
            // Integer max pooling is exact through f64.
            Some(x) if x.dtype().is_int() => {
                let wide = x.cast(DType::F64);
                let mut rest: Vec<Option<&Tensor>> = inputs.to_vec();
                rest[0] = Some(&wide);
                one(pool::pool(p, true, &rest).map(|t| t.cast(x.dtype())))
            }
            _ => one(pool::pool(p, true, inputs)),
        },
        Op::AveragePool(p) => one(pool::pool(p, false, inputs)),
        Op::GlobalAveragePool => one(pool::global_pool(false, inputs)),
        Op::GlobalMaxPool => one(pool::global_pool(true, inputs)),
        Op::Reshape { allowzero, shape } => {
            one(movement::reshape(*allowzero, shape.as_deref(), inputs))
        }
        Op::Flatten { axis } => one(movement::flatten(*axis, inputs)),
        Op::Transpose { perm } => one(movement::transpose(perm.as_deref(), inputs)),
        Op::Squeeze { axes } => one(movement::squeeze(axes.as_deref(), inputs)),
        Op::Unsqueeze { axes } => one(movement::unsqueeze(axes.as_deref(), inputs)),
        Op::Concat { axis } => one(movement::concat(*axis, inputs)),
        Op::Split { axis, split } => movement::split(*axis, split.as_deref(), inputs, n_outputs),
        Op::Slice { starts, ends, axes } => one(movement::slice(
            starts.as_deref(),
            ends.as_deref(),
            axes.as_deref(),
            inputs,
        )),
        Op::Gather { axis } => one(movement::gather(*axis, inputs)),
        Op::GatherGrad { axis, data_shape } => one(crate::op::movement::grad::gather_grad(
            *axis, data_shape, inputs,
        )),
        Op::DropoutTrain { ratio } => crate::op::movement::grad::dropout_train(*ratio, inputs),
        Op::Shape { start, end } => one(movement::shape_of(*start, *end, inputs)),
        Op::If {
            then_branch,
            else_branch,
        } => control::if_(then_branch, else_branch, inputs, n_outputs, eval),
        Op::Loop { body } => control::loop_(body, inputs, n_outputs, eval),
        Op::MaxPoolIndices { pool, column_major } => {
            crate::op::pool::indices::max_pool_indices(pool, *column_major, inputs)
        }
        Op::RoiAlign(a) => one(crate::op::pool::roi::roi_align(a, inputs)),
        Op::QLinearConv(a) => one(crate::op::conv::qlinear::qlinear_conv(a, inputs)),
        Op::DeformConv(a) => one(crate::op::conv::deform::deform_conv(a, inputs)),
        Op::ImageDecoder { format } => one(crate::op::misc::image::image_decoder(*format, inputs)),
        Op::Stft { onesided } => one(crate::op::signal::stft::stft(*onesided, inputs)),
        Op::MelWeightMatrix { dtype } => {
            one(crate::op::signal::stft::mel_weight_matrix(*dtype, inputs))
        }
        Op::Optimizer(o) => crate::op::optim::kernel::optimize(o, inputs, n_outputs),
        Op::Binarizer { threshold } => one(crate::op::ml::kernel::binarizer(*threshold, inputs)),
        Op::ArrayFeatureExtractor => one(crate::op::ml::kernel::array_feature_extractor(inputs)),
        Op::TreeEnsemble(t) => one(crate::op::ml::kernel::tree_ensemble(t, inputs)),
        Op::FlexAttention(a) => crate::op::attention::flex::flex(a, inputs, eval),
        Op::Scan { body, attrs } => control::scan(body, attrs, inputs, n_outputs, eval),
        Op::CastLike { saturate, round } => {
            let like = util::input(inputs, 1, "target_type")?;
            one(util::input(inputs, 0, "input")
                .map(|t| t.cast_with(like.dtype(), *saturate, *round)))
        }
        Op::Size => one(util::input(inputs, 0, "data").map(|t| Tensor::scalar(t.len() as i64))),
        Op::Expand => one(movement::expand(inputs)),
        Op::Identity => one(util::input(inputs, 0, "input").cloned()),
        Op::OptionalHasElement => one(Ok(Tensor::scalar(util::opt_input(inputs, 0).is_some()))),
        Op::Dropout => movement::dropout(inputs, n_outputs),
        Op::DropoutSeeded { seed } => {
            crate::op::movement::dropout::dropout_seeded(*seed, inputs, n_outputs)
        }
        Op::ConstantOfShape { value } => one(movement::constant_of_shape(value, inputs)),
        Op::Act { kind, alpha, beta } => one(elementwise::act(*kind, *alpha, *beta, inputs)),
        Op::IsNaN => one(elementwise::is_special(true, false, false, inputs)),
        Op::IsInf { positive, negative } => {
            one(elementwise::is_special(false, *positive, *negative, inputs))
        }
        Op::Mean => one(elementwise::mean(inputs)),
        Op::GatherElements { axis } => one(index::gather_elements(*axis, inputs)),
        Op::GatherNd { batch_dims } => one(index::gather_nd(*batch_dims, inputs)),
        Op::ScatterElements { axis, reduction } => {
            one(index::scatter_elements(*axis, *reduction, inputs))
        }
        Op::ScatterNd { reduction } => one(index::scatter_nd(*reduction, inputs)),
        Op::Trilu { upper } => one(index::trilu(*upper, inputs)),
        Op::Cumulative {
            prod,
            exclusive,
            reverse,
        } => one(index::cumulative(*prod, *exclusive, *reverse, inputs)),
        Op::TopK {
            axis, largest, k, ..
        } => index::top_k(*axis, *largest, *k, inputs),
        Op::OneHot { axis } => one(index::one_hot(*axis, inputs)),
        Op::NonZero => one(index::non_zero(inputs)),
        Op::Compress { axis } => one(index::compress(*axis, inputs)),
        Op::Hardmax { axis, legacy } => one(norm::hardmax(*axis, *legacy, inputs)),
        Op::Tile => one(index::tile(inputs)),
        Op::DepthToSpace { blocksize, crd } => {
            one(index::space_depth(true, *blocksize, *crd, inputs))
        }
        Op::SpaceToDepth { blocksize, crd } => {
            one(index::space_depth(false, *blocksize, *crd, inputs))
        }
        Op::EyeLike { dtype, k } => one(index::eye_like(*dtype, *k, inputs)),
        Op::Pad { mode, pads, value } => one(index::pad(*mode, pads.as_deref(), *value, inputs)),
        Op::RmsNorm { axis, epsilon } => one(norm::rms_norm(*axis, *epsilon, inputs)),
        Op::NllLoss {
            reduction,
            ignore_index,
        } => one(loss::nll_loss(*reduction, *ignore_index, inputs)),
        Op::SoftmaxCrossEntropy {
            reduction,
            ignore_index,
        } => loss::softmax_cross_entropy(*reduction, *ignore_index, inputs, n_outputs),
        Op::Attention(a) => attention::attention(a, inputs, n_outputs),
        Op::Resize(a) => one(resize::resize(a, inputs)),
        Op::RotaryEmbedding {
            interleaved,
            num_heads,
            rotary_dim,
        } => one(norm::rotary(*interleaved, *num_heads, *rotary_dim, inputs)),
        Op::LpNorm { axis, p } => one(norm::lp_norm(*axis, *p, inputs)),
        Op::MeanVarianceNorm { axes } => one(norm::mean_variance_norm(axes, inputs)),
        Op::Einsum { equation } => one(einsum::einsum(equation, inputs)),
        Op::Window {
            kind,
            periodic,
            dtype,
        } => one(misc::window(*kind, *periodic, *dtype, inputs)),
        Op::ReverseSequence {
            batch_axis,
            time_axis,
        } => one(misc::reverse_sequence(*batch_axis, *time_axis, inputs)),
        Op::CenterCropPad { axes } => one(misc::center_crop_pad(axes.as_deref(), inputs)),
        Op::Det => one(misc::det(inputs)),
        Op::Rnn(a) => rnn::rnn(a, inputs, n_outputs),
        Op::Dft {
            axis,
            inverse,
            onesided,
        } => one(signal::dft(*axis, *inverse, *onesided, inputs)),
        Op::NonMaxSuppression { center_point_box } => one(signal::nms(*center_point_box, inputs)),
        Op::QLinearMatMul => one(signal::qlinear_matmul(inputs)),
        Op::Col2Im {
            dilations,
            pads,
            strides,
        } => one(signal::col2im(dilations, pads, strides, inputs)),
        Op::MatMulInteger => one(signal::matmul_integer(inputs)),
        Op::LinearAttention {
            rule,
            q_num_heads,
            kv_num_heads,
            scale,
        } => seq::linear_attention(*rule, *q_num_heads, *kv_num_heads, *scale, inputs),
        Op::CausalConvWithState { silu } => seq::causal_conv(*silu, inputs),
        Op::TensorScatter { axis, circular } => one(seq::tensor_scatter(*axis, *circular, inputs)),
        Op::SwiGlu { alpha } => one(seq::swiglu(*alpha, inputs)),
        Op::QuantizeLinear {
            axis,
            block_size,
            dtype,
        } => one(quant::quantize(*axis, *block_size, *dtype, inputs)),
        Op::DequantizeLinear {
            axis,
            block_size,
            dtype,
        } => one(quant::dequantize(*axis, *block_size, *dtype, inputs)),
        Op::DynamicQuantizeLinear => quant::dynamic_quantize(inputs),
        Op::BitCast { to } => one(quant::bit_cast(*to, inputs)),
        Op::ConvTranspose(a) => one(misc::conv_transpose(a, inputs)),
        Op::GridSample {
            mode,
            padding,
            align_corners,
        } => one(misc::grid_sample(*mode, *padding, *align_corners, inputs)),
        Op::TfIdfVectorizer(t) => one(misc::tfidf_vectorizer(t, inputs)),
        Op::AffineGrid { align_corners } => one(misc::affine_grid(*align_corners, inputs)),
        Op::Unique { axis, sorted } => misc::unique(*axis, *sorted, inputs, n_outputs),
        Op::LpPool { pool, p } => one(pool::lp_pool(pool, *p, inputs)),
        Op::MaxUnpool {
            kernel_shape,
            strides,
            pads,
        } => one(pool::max_unpool(kernel_shape, strides, pads, inputs)),
        Op::InstanceNorm { epsilon } => one(norm::group_norm(*epsilon, None, true, inputs)),
        Op::GroupNorm {
            epsilon,
            groups,
            per_channel,
        } => one(norm::group_norm(
            *epsilon,
            Some(*groups),
            *per_channel,
            inputs,
        )),
    }?;
    if outs.len() < n_outputs {
        return Err(Error::msg(format!(
            "{} produces {} output(s), the node asks for {}",
            op.name(),
            outs.len(),
            n_outputs
        )));
    }
    outs.truncate(n_outputs);
    Ok(outs)
}
