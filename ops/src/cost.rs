//! Per-op cost: arithmetic work and bytes moved for one execution at
//! concrete shapes. The scheduler's cost model reads only this; nothing else
//! in hetflow estimates an op's cost.
//!
//! Counting conventions: a multiply-add is 2 flops; transcendental functions
//! count as 1 flop per element plus their class's efficiency in the cost
//! model; data-movement ops have 0 flops. Bytes are the sizes of the input
//! and output tensors (each read or written once, the roofline ideal).
//!
//! Each op family's `cost.rs` (under [`crate::op`]) gives its ops' flops and
//! class; this module adds the bytes and dispatches.

use crate::graph::Fact;
use crate::op::common::elems;
pub use crate::op::common::OpClass;
use crate::op::resolve_window;
use crate::op::{
    attention, control, conv, einsum, elementwise, index, loss, matmul, misc, ml, movement, norm,
    optim, pool, quant, reduce, resize, rnn, seq, signal, Family, Op,
};

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

/// The class of an op (the op family's `cost.rs` decides).
pub fn op_class(op: &Op) -> OpClass {
    match op.family() {
        Family::Elementwise => elementwise::cost::class(op),
        Family::Movement => movement::cost::class(op),
        Family::Reduce => reduce::cost::class(op),
        Family::MatMul => matmul::cost::class(op),
        Family::Norm => norm::cost::class(op),
        Family::Conv => conv::cost::class(op),
        Family::Pool => pool::cost::class(op),
        Family::Index => index::cost::class(op),
        Family::Loss => loss::cost::class(op),
        Family::Attention => attention::cost::class(op),
        Family::Resize => resize::cost::class(op),
        Family::Einsum => einsum::cost::class(op),
        Family::Misc => misc::cost::class(op),
        Family::Rnn => rnn::cost::class(op),
        Family::Signal => signal::cost::class(op),
        Family::Seq => seq::cost::class(op),
        Family::Quant => quant::cost::class(op),
        Family::Control => control::cost::class(op),
        Family::Optim => optim::cost::class(op),
        Family::Ml => ml::cost::class(op),
    }
}

fn bytes(f: &Fact) -> f64 {
    elems(f) * f.dtype.map(|d| d.size()).unwrap_or(4) as f64
}

/// Cost of `op` with the given input and output facts (concrete shapes; an
/// unknown shape counts as zero). Bytes are counted here; the flops are the
/// op family's (`op/<family>/cost.rs`).
pub fn op_cost(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> Cost {
    let bytes_read: f64 = inputs.iter().flatten().map(|f| bytes(f)).sum();
    let bytes_written: f64 = if op.is_view() {
        0.0
    } else {
        outputs.iter().map(|f| bytes(f)).sum()
    };
    let flops = match op.family() {
        Family::Elementwise => elementwise::cost::flops(op, inputs, outputs),
        Family::Movement => movement::cost::flops(op, inputs, outputs),
        Family::Reduce => reduce::cost::flops(op, inputs, outputs),
        Family::MatMul => matmul::cost::flops(op, inputs, outputs),
        Family::Norm => norm::cost::flops(op, inputs, outputs),
        Family::Conv => conv::cost::flops(op, inputs, outputs),
        Family::Pool => pool::cost::flops(op, inputs, outputs),
        Family::Index => index::cost::flops(op, inputs, outputs),
        Family::Loss => loss::cost::flops(op, inputs, outputs),
        Family::Attention => attention::cost::flops(op, inputs, outputs),
        Family::Resize => resize::cost::flops(op, inputs, outputs),
        Family::Einsum => einsum::cost::flops(op, inputs, outputs),
        Family::Misc => misc::cost::flops(op, inputs, outputs),
        Family::Rnn => rnn::cost::flops(op, inputs, outputs),
        Family::Signal => signal::cost::flops(op, inputs, outputs),
        Family::Seq => seq::cost::flops(op, inputs, outputs),
        Family::Quant => quant::cost::flops(op, inputs, outputs),
        Family::Control => control::cost::flops(op, inputs, outputs, &graph_flops),
        Family::Optim => optim::cost::flops(op, inputs, outputs),
        Family::Ml => ml::cost::flops(op, inputs, outputs),
    };
    Cost {
        flops,
        bytes_read,
        bytes_written,
    }
}

/// Flops of one run of a graph (a control-flow body) at the facts its
/// import inferred; unknown shapes count as zero.
fn graph_flops(g: &crate::graph::Graph) -> f64 {
    g.nodes
        .iter()
        .map(|n| {
            let ins: Vec<Option<&Fact>> = n
                .inputs
                .iter()
                .map(|i| i.map(|id| &g.values[id.0].fact))
                .collect();
            let outs: Vec<&Fact> = n.outputs.iter().map(|o| &g.values[o.0].fact).collect();
            op_cost(&n.op, &ins, &outs).flops
        })
        .sum()
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
