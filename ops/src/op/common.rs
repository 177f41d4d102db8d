//! What the op families' rules share (below every family, above nothing
//! of theirs): reading input facts and building output facts for shape
//! inference, element counts for cost, and the [`OpClass`] each family
//! assigns its ops (re-exported as `crate::cost::OpClass`).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Dim, Fact};
use crate::op::Op;
use crate::shape::broadcast_dims;

pub(crate) fn input<'a>(inputs: &[Option<&'a Fact>], i: usize) -> Result<&'a Fact> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| Error::msg(format!("required input {i} is missing")))
}

pub(crate) fn opt_input<'a>(inputs: &[Option<&'a Fact>], i: usize) -> Option<&'a Fact> {
    inputs.get(i).copied().flatten()
}

pub(crate) fn same(f: &Fact) -> Fact {
    Fact {
        dtype: f.dtype,
        shape: f.shape.clone(),
        value: None,
    }
}

pub(crate) fn with_dtype(dtype: Option<DType>, shape: Option<Vec<Dim>>) -> Fact {
    Fact {
        dtype,
        shape,
        value: None,
    }
}

pub(crate) fn broadcast_facts(fs: &[&Fact]) -> Result<Option<Vec<Dim>>> {
    let mut acc: Option<Vec<Dim>> = Some(Vec::new());
    for f in fs {
        acc = match (acc, &f.shape) {
            (Some(a), Some(s)) => Some(broadcast_dims(&a, s)?),
            _ => None,
        };
    }
    Ok(acc)
}

pub(crate) fn check_same_dtype(fs: &[&Fact], what: &str) -> Result<Option<DType>> {
    let mut dt = None;
    for f in fs {
        if let Some(d) = f.dtype {
            if let Some(prev) = dt {
                if prev != d {
                    crate::bail!("{what} operands have different dtypes {prev} and {d}");
                }
            }
            dt = Some(d);
        }
    }
    Ok(dt)
}

pub(crate) fn check_index_dtype(f: &Fact) -> Result<()> {
    match f.dtype {
        Some(d) if d != DType::I64 && d != DType::I32 => {
            crate::bail!("indices must be i32 or i64, got {d}")
        }
        _ => Ok(()),
    }
}

pub(crate) fn const_ints(f: Option<&Fact>) -> Option<Vec<i64>> {
    f.and_then(|f| f.value.as_ref()).map(|t| t.to_i64_vec())
}

/// One output fact.
pub(crate) fn one(f: Fact) -> Result<Vec<Fact>> {
    Ok(vec![f])
}

/// The error of a family's rules asked about an op of another family
/// (a dispatch bug: [`Op::family`] and the dispatchers disagree).
pub(crate) fn other_family(op: &Op, family: &str) -> Error {
    Error::msg(format!("{} is not a {family} op", op.name()))
}

/// Elements of a value, in f64 (a declared shape can multiply past usize).
pub(crate) fn elems(f: &Fact) -> f64 {
    f.concrete_shape()
        .map(|s| s.iter().map(|&d| d as f64).product())
        .unwrap_or(0.0)
}

/// Elements of input 0 (0 when absent or unknown).
pub(crate) fn in0_elems(inputs: &[Option<&Fact>]) -> f64 {
    inputs.first().copied().flatten().map(elems).unwrap_or(0.0)
}

/// Elements of all outputs together.
pub(crate) fn out_elems(outputs: &[&Fact]) -> f64 {
    outputs.iter().map(|f| elems(f)).sum()
}

/// The concrete shape of input `i`, when present and known.
pub(crate) fn input_shape(inputs: &[Option<&Fact>], i: usize) -> Option<Vec<usize>> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .and_then(|f| f.concrete_shape())
}

/// Elements of a conv weight per output channel: the product of its dims
/// after the first (0 for a rank-0 weight, which inference refuses anyway).
pub(crate) fn per_output_weights(w: &[usize]) -> f64 {
    w.get(1..)
        .map_or(0.0, |d| d.iter().map(|&n| n as f64).product())
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
