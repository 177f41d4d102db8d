//! Per-op cost: arithmetic work and bytes moved for one execution at
//! concrete shapes. The scheduler's cost model reads only this; nothing else
//! in hetflow estimates an op's cost.
//!
//! Counting conventions: a multiply-add is 2 flops; transcendental functions
//! count as 1 flop per element plus their class's efficiency in the cost
//! model; data-movement ops have 0 flops. Bytes are the sizes of the input
//! and output tensors (each read or written once, the roofline ideal).

use crate::graph::Fact;
use crate::op::{resolve_window, Op};

/// Cost of one op execution.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cost {
    /// Arithmetic operations.
    pub flops: f64,
    /// Bytes read.
    pub bytes_read: f64,
    /// Bytes written.
    pub bytes_written: f64,
}

impl Cost {
    /// Total bytes moved.
    pub fn bytes(&self) -> f64 {
        self.bytes_read + self.bytes_written
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            flops: self.flops + o.flops,
            bytes_read: self.bytes_read + o.bytes_read,
            bytes_written: self.bytes_written + o.bytes_written,
        }
    }
}

/// The coarse class of an op, for per-class efficiencies in the cost model.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OpClass {
    /// MatMul, Gemm.
    Gemm,
    /// Conv.
    Conv,
    /// Element-wise arithmetic and activations.
    Elementwise,
    /// Reductions, normalisations, softmax, pooling.
    Reduce,
    /// Pure data movement (reshape, transpose, concat, gather, ...).
    Movement,
}

/// The class of an op.
pub fn op_class(op: &Op) -> OpClass {
    match op {
        Op::MatMul
        | Op::Gemm { .. }
        | Op::Attention(_)
        | Op::Einsum { .. }
        | Op::QLinearMatMul
        | Op::MatMulInteger => OpClass::Gemm,
        Op::Conv(_) | Op::ConvTranspose(_) => OpClass::Conv,
        Op::Unary(_)
        | Op::Binary(_)
        | Op::LeakyRelu { .. }
        | Op::Gelu { .. }
        | Op::Clip { .. }
        | Op::Where
        | Op::Sum
        | Op::Cast { .. }
        | Op::CastLike
        | Op::Extremum(_)
        | Op::Act { .. }
        | Op::IsNaN
        | Op::IsInf { .. }
        | Op::Mean
        | Op::Resize(_)
        | Op::RotaryEmbedding { .. }
        | Op::GridSample { .. }
        | Op::QuantizeLinear { .. }
        | Op::DequantizeLinear { .. }
        | Op::DynamicQuantizeLinear
        | Op::SwiGlu { .. } => OpClass::Elementwise,
        Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::BatchNorm { .. }
        | Op::LayerNorm { .. }
        | Op::Lrn { .. }
        | Op::Reduce { .. }
        | Op::MaxPool(_)
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::ArgExtreme { .. }
        | Op::RmsNorm { .. }
        | Op::Hardmax { .. }
        | Op::TopK { .. }
        | Op::Cumulative { .. }
        | Op::NllLoss { .. }
        | Op::SoftmaxCrossEntropy { .. }
        | Op::LpNorm { .. }
        | Op::InstanceNorm { .. }
        | Op::GroupNorm { .. }
        | Op::LpPool { .. }
        | Op::Det
        | Op::Rnn(_)
        | Op::Dft { .. }
        | Op::NonMaxSuppression { .. }
        | Op::Col2Im { .. }
        | Op::LinearAttention { .. }
        | Op::CausalConvWithState { .. }
        | Op::Unique { .. } => OpClass::Reduce,
        _ => OpClass::Movement,
    }
}

/// Elements of a value, in f64 (a declared shape can multiply past usize).
fn elems(f: &Fact) -> f64 {
    f.concrete_shape()
        .map(|s| s.iter().map(|&d| d as f64).product())
        .unwrap_or(0.0)
}

/// Elements of a conv weight per output channel: the product of its dims
/// after the first (0 for a rank-0 weight, which inference refuses anyway).
fn per_output_weights(w: &[usize]) -> f64 {
    w.get(1..)
        .map_or(0.0, |d| d.iter().map(|&n| n as f64).product())
}

fn bytes(f: &Fact) -> f64 {
    elems(f) * f.dtype.map(|d| d.size()).unwrap_or(4) as f64
}

/// Cost of `op` with the given input and output facts (concrete shapes; an
/// unknown shape counts as zero).
pub fn op_cost(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> Cost {
    let bytes_read: f64 = inputs.iter().flatten().map(|f| bytes(f)).sum();
    let out_elems: f64 = outputs.iter().map(|f| elems(f)).sum();
    let bytes_written: f64 = if op.is_view() {
        0.0
    } else {
        outputs.iter().map(|f| bytes(f)).sum()
    };
    let in0 = inputs.first().copied().flatten();
    let flops = match op {
        Op::MatMul | Op::Gemm { .. } => {
            // out = [.., M, N]; K from the second-to-last / last dim of A.
            let k = in0
                .and_then(|a| a.concrete_shape())
                .map(|s| match op {
                    Op::Gemm { trans_a: true, .. } => s.first().copied().unwrap_or(1),
                    _ => s.last().copied().unwrap_or(1),
                })
                .unwrap_or(0) as f64;
            2.0 * out_elems * k
        }
        Op::Conv(_) => {
            // Each output element: C_in/group * prod(kernel) MACs.
            let w = inputs
                .get(1)
                .copied()
                .flatten()
                .and_then(|w| w.concrete_shape());
            let per = w.map_or(0.0, |w| per_output_weights(&w));
            2.0 * out_elems * per
        }
        Op::MaxPool(p) | Op::AveragePool(p) | Op::LpPool { pool: p, .. } => {
            out_elems * p.kernel_shape.iter().map(|&k| k as f64).product::<f64>()
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool | Op::Reduce { .. } => {
            in0.map(elems).unwrap_or(0.0)
        }
        Op::Softmax { .. } | Op::LogSoftmax { .. } => 4.0 * out_elems,
        Op::BatchNorm { .. } => 2.0 * out_elems,
        Op::LayerNorm { .. } => 8.0 * out_elems,
        Op::Lrn { size, .. } => out_elems * (*size as f64 + 4.0),
        Op::Gelu { .. } => 8.0 * out_elems,
        Op::Sum | Op::Mean => {
            out_elems * (inputs.iter().flatten().count().saturating_sub(1)) as f64
        }
        Op::RmsNorm { .. } | Op::LpNorm { .. } => 4.0 * out_elems,
        Op::InstanceNorm { .. } | Op::GroupNorm { .. } => 8.0 * out_elems,
        Op::Resize(_) | Op::RotaryEmbedding { .. } => 4.0 * out_elems,
        Op::ConvTranspose(_) => {
            // Each input element: (M / group) * prod(kernel) multiply-adds.
            let w = inputs
                .get(1)
                .copied()
                .flatten()
                .and_then(|w| w.concrete_shape());
            let per = w.map_or(0.0, |w| per_output_weights(&w));
            2.0 * in0.map(elems).unwrap_or(0.0) * per
        }
        Op::Einsum { .. } => {
            // At least one multiply-add per input element.
            2.0 * inputs
                .iter()
                .flatten()
                .map(|f| elems(f))
                .sum::<f64>()
                .max(out_elems)
        }
        Op::Attention(_) => {
            // QK^T and PV: 2 * (D + Dv) flops per query and key, with the
            // key count read from K (dim rank-2) plus any past.
            let dim2 = |i: usize| {
                inputs
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(|f| f.concrete_shape())
                    .and_then(|s| s.len().checked_sub(2).map(|k| s[k]))
                    .unwrap_or(0) as f64
            };
            let keys = dim2(1) + dim2(4);
            let q = in0.map(elems).unwrap_or(0.0);
            2.0 * (q + out_elems) * keys
        }
        Op::Act { .. } => 4.0 * out_elems,
        Op::SoftmaxCrossEntropy { .. } => 4.0 * in0.map(elems).unwrap_or(0.0),
        Op::Hardmax { .. } | Op::Cumulative { .. } | Op::NllLoss { .. } => {
            in0.map(elems).unwrap_or(0.0)
        }
        Op::TopK { .. } => {
            // A partial sort: about n log2(k + 1) comparisons.
            let k = outputs.first().map(|f| elems(f)).unwrap_or(0.0);
            let n = in0.map(elems).unwrap_or(0.0);
            n * (1.0 + k / n.max(1.0)).log2().max(1.0)
        }
        _ => match op_class(op) {
            OpClass::Elementwise => out_elems,
            _ => 0.0,
        },
    };
    Cost {
        flops,
        bytes_read,
        bytes_written,
    }
}

/// Output spatial size helper reused by devices that plan conv tiling.
pub fn conv_output_spatial(
    input: &[usize],
    kernel: &[usize],
    attrs: &crate::op::ConvAttrs,
) -> crate::Result<Vec<usize>> {
    Ok(resolve_window(
        input,
        kernel,
        &attrs.strides,
        &attrs.dilations,
        &attrs.pads,
        attrs.auto_pad,
        false,
    )?
    .output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn matmul_and_conv_flops() {
        let a = Fact::known(DType::F32, &[64, 128]);
        let b = Fact::known(DType::F32, &[128, 32]);
        let c = Fact::known(DType::F32, &[64, 32]);
        let cost = op_cost(&Op::MatMul, &[Some(&a), Some(&b)], &[&c]);
        assert_eq!(cost.flops, 2.0 * 64.0 * 32.0 * 128.0);
        assert_eq!(cost.bytes_read, 4.0 * (64.0 * 128.0 + 128.0 * 32.0));
        assert_eq!(cost.bytes_written, 4.0 * 64.0 * 32.0);

        let x = Fact::known(DType::F32, &[1, 3, 8, 8]);
        let w = Fact::known(DType::F32, &[16, 3, 3, 3]);
        let y = Fact::known(DType::F32, &[1, 16, 6, 6]);
        let cost = op_cost(&Op::Conv(Default::default()), &[Some(&x), Some(&w)], &[&y]);
        assert_eq!(cost.flops, 2.0 * (16.0 * 36.0) * 27.0);
    }

    /// Found by `scripts/fuzz.sh` (target `onnx_load`): element counts
    /// were multiplied in usize and overflowed on a declared shape.
    #[test]
    fn huge_shapes_do_not_overflow() {
        let big = Fact::known(DType::F32, &[1 << 40, 1 << 40]);
        let c = op_cost(&Op::MatMul, &[Some(&big), Some(&big)], &[&big]);
        assert_eq!(c.bytes_read, 8.0 * 2f64.powi(80));
    }

    /// Found by `scripts/fuzz.sh` (target `onnx_load`): a rank-0 weight
    /// indexed `w[1..]` and panicked.
    #[test]
    fn conv_weights_of_any_rank_do_not_panic() {
        let x = Fact::known(DType::F32, &[1, 1, 3]);
        let y = Fact::known(DType::F32, &[1, 2, 5]);
        for w in [Fact::known(DType::F32, &[]), Fact::known(DType::F32, &[4])] {
            let ct = Op::ConvTranspose(Default::default());
            let conv = Op::Conv(Default::default());
            for op in [ct, conv] {
                let c = op_cost(&op, &[Some(&x), Some(&w)], &[&y]);
                assert!(c.flops.is_finite(), "{op:?}");
            }
        }
    }
}
