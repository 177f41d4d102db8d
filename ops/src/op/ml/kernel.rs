//! Host kernels of the `ai.onnx.ml` ops.

use super::{TreeAggregate, TreeEnsembleAttrs, TreeMode, TreeNode, TreeRef};
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, typed};
use crate::tensor::Tensor;

/// `x > threshold` as 1 or 0 in X's dtype.
pub(crate) fn binarizer(threshold: f32, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    if x.dtype().is_narrow_float() || x.dtype() == DType::Bool {
        crate::bail!(
            "Binarizer: X must be a float or integer tensor, got {}",
            x.dtype()
        );
    }
    let th = f64::from(threshold);
    let v: Vec<f64> = x
        .cast(DType::F64)
        .as_slice::<f64>()?
        .iter()
        .map(|&v| if v > th { 1.0 } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(x.shape().to_vec(), v)?.cast(x.dtype()))
}

/// The last-axis elements of X at the indices Y: `[..., len(Y)]` (`[1,
/// len(Y)]` for a vector X).
pub(crate) fn array_feature_extractor(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let idx = typed::<i64>(input(inputs, 1, "Y")?, "Y")?;
    let last = x.shape().last().copied().unwrap_or(1);
    let cols: Vec<usize> = idx
        .iter()
        .map(|&i| {
            usize::try_from(i)
                .ok()
                .filter(|&i| i < last)
                .ok_or_else(|| crate::Error::msg(format!(
                    "ArrayFeatureExtractor: index {i} is out of range for the last axis of size {last}"
                )))
        })
        .collect::<Result<_>>()?;
    let rows = x.len().checked_div(last).unwrap_or(0);
    let shape = if x.rank() <= 1 {
        vec![1, cols.len()]
    } else {
        let mut s = x.shape()[..x.rank() - 1].to_vec();
        s.push(cols.len());
        s
    };
    let size = x.dtype().size();
    let bytes = x.to_le_bytes();
    let mut out = Vec::with_capacity(rows * cols.len() * size);
    for r in 0..rows {
        for &c in &cols {
            let at = (r * last + c) * size;
            out.extend_from_slice(&bytes[at..at + size]);
        }
    }
    Tensor::from_le_bytes(x.dtype(), shape, &out)
}

/// Whether `node` sends `x` (its row) down the true branch.
fn goes_true(node: &TreeNode, x: f64) -> bool {
    if x.is_nan() && node.missing_true {
        return true;
    }
    let s = node.split;
    match node.mode {
        TreeMode::Leq => x <= s,
        TreeMode::Lt => x < s,
        TreeMode::Gte => x >= s,
        TreeMode::Gt => x > s,
        TreeMode::Eq => x == s,
        TreeMode::Neq => x != s,
        TreeMode::Member => node.members.contains(&x),
    }
}

/// The leaf `row` reaches from `root`; an error for a feature out of
/// range or a cycle.
fn leaf_of(t: &TreeEnsembleAttrs, root: TreeRef, row: &[f64]) -> Result<usize> {
    let mut at = root;
    for _ in 0..=t.nodes.len() {
        match at {
            TreeRef::Leaf(l) => return Ok(l),
            TreeRef::Node(i) => {
                let node = &t.nodes[i];
                let x = *row.get(node.feature).ok_or_else(|| {
                    crate::Error::msg(format!(
                        "TreeEnsemble: node {i} reads feature {}, X has {}",
                        node.feature,
                        row.len()
                    ))
                })?;
                at = if goes_true(node, x) {
                    node.on_true
                } else {
                    node.on_false
                };
            }
        }
    }
    crate::bail!("TreeEnsemble: the branches from a root form a cycle")
}

/// TreeEnsemble: `[N, targets]` in X's dtype.
pub(crate) fn tree_ensemble(t: &TreeEnsembleAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    if !x.dtype().is_float() || x.rank() != 2 {
        crate::bail!(
            "TreeEnsemble: X must be a 2-D float tensor, got {} {:?}",
            x.dtype(),
            x.shape()
        );
    }
    let (n, f) = (x.shape()[0], x.shape()[1]);
    let xv = x.cast(DType::F64).into_vec::<f64>()?;
    // Targets no leaf reaches keep the dtype's extreme (as the ONNX
    // reference) under Min and Max.
    let big = match x.dtype() {
        DType::F32 => f64::from(f32::MAX),
        DType::F16 => 65504.0,
        _ => f64::MAX,
    };
    let init = match t.aggregate {
        TreeAggregate::Min => big,
        TreeAggregate::Max => -big,
        _ => 0.0,
    };
    let mut out = vec![init; n * t.n_targets];
    for r in 0..n {
        let row = &xv[r * f..(r + 1) * f];
        let o = &mut out[r * t.n_targets..(r + 1) * t.n_targets];
        for &root in &t.roots {
            let (target, w) = t.leaves[leaf_of(t, root, row)?];
            let slot = &mut o[target];
            match t.aggregate {
                TreeAggregate::Sum => *slot += w,
                TreeAggregate::Average => *slot += w / t.roots.len() as f64,
                TreeAggregate::Min => *slot = slot.min(w),
                TreeAggregate::Max => *slot = slot.max(w),
            }
        }
    }
    Ok(Tensor::from_vec(vec![n, t.n_targets], out)?.cast(x.dtype()))
}
