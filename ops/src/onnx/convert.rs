//! ONNX node -> [`Op`], resolving attribute forms per opset. Only dispatch
//! lives here (and `Constant`, which becomes no op): each family's mapping
//! is its `op/<family>/onnx.rs`.

use super::attrs::{Attrs, ConvertCx};
use super::proto::NodeProto;
use crate::error::{Error, Result};
use crate::op::{
    attention, conv, einsum, elementwise, index, loss, matmul, misc, ml, movement, norm, optim,
    pool, quant, reduce, resize, rnn, seq, signal, Op,
};
use crate::tensor::Tensor;
use std::path::Path;

/// What an ONNX node becomes.
pub enum Converted {
    /// An op node.
    Op(Op),
    /// A constant (the `Constant` op), folded into the graph's constants.
    Constant(Tensor),
}

/// Maps one node. Errors are plain messages; the caller adds node context.
pub fn convert_node(np: &NodeProto, opset: i64, dir: Option<&Path>) -> Result<Converted> {
    let a = Attrs::new(np);
    let converted = convert_with(np, opset, dir, &a);
    // An attribute of the wrong type was read as absent: refuse the node
    // rather than run it with a default.
    match a.type_error() {
        Some(m) => Err(Error::msg(m)),
        None => converted,
    }
}

/// A family's ONNX mapping: the op, or `None` for another family's node.
type Convert = fn(&ConvertCx) -> Result<Option<Op>>;

/// The families' ONNX mappings, asked in turn (their op types are disjoint).
const FAMILIES: [Convert; 19] = [
    elementwise::onnx::convert,
    movement::onnx::convert,
    reduce::onnx::convert,
    matmul::onnx::convert,
    norm::onnx::convert,
    conv::onnx::convert,
    pool::onnx::convert,
    index::onnx::convert,
    loss::onnx::convert,
    attention::onnx::convert,
    resize::onnx::convert,
    einsum::onnx::convert,
    misc::onnx::convert,
    rnn::onnx::convert,
    signal::onnx::convert,
    seq::onnx::convert,
    quant::onnx::convert,
    optim::onnx::convert,
    ml::onnx::convert,
];

fn convert_with(np: &NodeProto, opset: i64, dir: Option<&Path>, a: &Attrs) -> Result<Converted> {
    // Ops of another domain go by their qualified name (`ai.onnx.ml.Binarizer`),
    // so that no default-domain mapping claims them.
    let qualified;
    let op_type = if super::check::is_default_domain(np) {
        np.op_type()
    } else {
        qualified = format!("{}.{}", np.domain(), np.op_type());
        &qualified
    };
    let cx = ConvertCx {
        node: np,
        op_type,
        opset,
        dir,
        attrs: a,
    };
    if cx.op_type == "Constant" {
        return Ok(Converted::Constant(constant_value(a, dir)?));
    }
    for convert in FAMILIES {
        if let Some(op) = convert(&cx)? {
            return Ok(Converted::Op(op));
        }
    }
    Err(cx.unsupported())
}

fn constant_value(a: &Attrs, dir: Option<&Path>) -> Result<Tensor> {
    if let Some(t) = a.tensor("value", dir)? {
        return Ok(t);
    }
    if let Some(f) = a.float("value_float") {
        return Ok(Tensor::scalar(f));
    }
    if let Some(i) = a.int("value_int") {
        return Ok(Tensor::scalar(i));
    }
    if let Some(v) = a.ints("value_ints") {
        return Tensor::from_vec(vec![v.len()], v);
    }
    if a.has("value_floats") {
        // value_floats are stored in AttributeProto.floats
        crate::bail!("Constant value_floats is unsupported");
    }
    crate::bail!(
        "Constant has no supported value attribute (sparse and string constants are unsupported)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::schemas::DEFAULT_DOMAIN;

    /// The dispatcher asks the families in turn and takes the first
    /// answer, so no op type may belong to two of them.
    #[test]
    fn each_op_type_has_at_most_one_family() {
        for (op_type, since, _) in DEFAULT_DOMAIN {
            let np = NodeProto {
                op_type: Some(op_type.to_string()),
                ..Default::default()
            };
            let a = Attrs::new(&np);
            let opset = since.last().copied().unwrap_or(1);
            let cx = ConvertCx {
                node: &np,
                op_type,
                opset,
                dir: None,
                attrs: &a,
            };
            let claimed = FAMILIES
                .iter()
                .filter(|convert| !matches!(convert(&cx), Ok(None)))
                .count();
            assert!(claimed <= 1, "{op_type} is claimed by {claimed} families");
        }
    }
}
