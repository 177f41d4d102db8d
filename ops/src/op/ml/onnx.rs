//! ONNX mapping of the `ai.onnx.ml` ops (asked by the ONNX importer with
//! the qualified op type).

use super::{TreeAggregate, TreeEnsembleAttrs, TreeMode, TreeNode, TreeRef};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::Op;

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let op = match cx.op_type {
        "ai.onnx.ml.Binarizer" => Op::Binarizer {
            threshold: a.float_or("threshold", 0.0),
        },
        "ai.onnx.ml.ArrayFeatureExtractor" => Op::ArrayFeatureExtractor,
        "ai.onnx.ml.TreeEnsemble" => {
            if cx.opset < 5 {
                return Err(cx.unsupported());
            }
            Op::TreeEnsemble(Box::new(tree_ensemble(cx)?))
        }
        _ => return Ok(None),
    };
    Ok(Some(op))
}

/// The f64 values of a tensor attribute.
fn floats(cx: &ConvertCx, name: &str) -> Result<Option<Vec<f64>>> {
    match cx.attrs.tensor(name, cx.dir)? {
        None => Ok(None),
        Some(t) => Ok(Some(t.cast(DType::F64).into_vec::<f64>()?)),
    }
}

fn tree_ensemble(cx: &ConvertCx) -> Result<TreeEnsembleAttrs> {
    let a = cx.attrs;
    let ints = |name: &str| {
        a.ints(name)
            .ok_or_else(|| Error::msg(format!("missing attribute '{name}'")))
    };
    let need = |name: &str| -> Result<Vec<f64>> {
        floats(cx, name)?.ok_or_else(|| Error::msg(format!("missing attribute '{name}'")))
    };
    let splits = need("nodes_splits")?;
    let n = splits.len();
    let featureids = ints("nodes_featureids")?;
    let modes = need("nodes_modes")?;
    let (truenodes, falsenodes) = (ints("nodes_truenodeids")?, ints("nodes_falsenodeids")?);
    let (trueleafs, falseleafs) = (ints("nodes_trueleafs")?, ints("nodes_falseleafs")?);
    let missing = a
        .ints("nodes_missing_value_tracks_true")
        .unwrap_or(vec![0; n]);
    for (name, len) in [
        ("nodes_featureids", featureids.len()),
        ("nodes_modes", modes.len()),
        ("nodes_truenodeids", truenodes.len()),
        ("nodes_falsenodeids", falsenodes.len()),
        ("nodes_trueleafs", trueleafs.len()),
        ("nodes_falseleafs", falseleafs.len()),
        ("nodes_missing_value_tracks_true", missing.len()),
    ] {
        if len != n {
            crate::bail!("{name} has {len} entries, nodes_splits {n}");
        }
    }
    let targets = ints("leaf_targetids")?;
    let weights = need("leaf_weights")?;
    if targets.len() != weights.len() {
        crate::bail!(
            "leaf_targetids has {} entries, leaf_weights {}",
            targets.len(),
            weights.len()
        );
    }
    let n_targets = a
        .int("n_targets")
        .and_then(|t| usize::try_from(t).ok())
        .filter(|&t| t > 0)
        .ok_or_else(|| Error::msg("n_targets must be given and positive"))?;
    let leaves = targets
        .iter()
        .zip(&weights)
        .map(|(&t, &w)| match usize::try_from(t) {
            Ok(t) if t < n_targets => Ok((t, w)),
            _ => Err(Error::msg(format!(
                "leaf target {t} is not below n_targets {n_targets}"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let reference = |id: i64, leaf: i64| -> Result<TreeRef> {
        let bound = if leaf != 0 { leaves.len() } else { n };
        match usize::try_from(id) {
            Ok(i) if i < bound && leaf != 0 => Ok(TreeRef::Leaf(i)),
            Ok(i) if i < bound => Ok(TreeRef::Node(i)),
            _ => Err(Error::msg(format!(
                "branch target {id} is out of range (nodes {n}, leaves {})",
                leaves.len()
            ))),
        }
    };
    let mut members = floats(cx, "membership_values")?
        .unwrap_or_default()
        .into_iter();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mode = match modes[i] as i64 {
            0 => TreeMode::Leq,
            1 => TreeMode::Lt,
            2 => TreeMode::Gte,
            3 => TreeMode::Gt,
            4 => TreeMode::Eq,
            5 => TreeMode::Neq,
            6 => TreeMode::Member,
            m => crate::bail!("node {i} has mode {m}, expected 0 to 6"),
        };
        // Set members are listed in node order, each set ended by a NaN.
        let set = if mode == TreeMode::Member {
            let set: Vec<f64> = members.by_ref().take_while(|v| !v.is_nan()).collect();
            if set.is_empty() {
                crate::bail!("set-membership node {i} has no members in membership_values");
            }
            set
        } else {
            Vec::new()
        };
        nodes.push(TreeNode {
            feature: usize::try_from(featureids[i])
                .map_err(|_| Error::msg(format!("node {i} has feature {}", featureids[i])))?,
            mode,
            split: splits[i],
            members: set,
            missing_true: missing[i] != 0,
            on_true: reference(truenodes[i], trueleafs[i])?,
            on_false: reference(falsenodes[i], falseleafs[i])?,
        });
    }
    // A root whose branches are the same leaf is that leaf.
    let roots = ints("tree_roots")?
        .into_iter()
        .map(|r| {
            let i = usize::try_from(r)
                .ok()
                .filter(|&i| i < n)
                .ok_or_else(|| Error::msg(format!("tree root {r} is not a node")))?;
            Ok(match (nodes[i].on_true, nodes[i].on_false) {
                (TreeRef::Leaf(x), TreeRef::Leaf(y)) if x == y => TreeRef::Leaf(x),
                _ => TreeRef::Node(i),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if a.int_or("post_transform", 0) != 0 {
        crate::bail!("post_transform other than NONE (0) is unsupported");
    }
    let aggregate = match a.int_or("aggregate_function", 1) {
        0 => TreeAggregate::Average,
        1 => TreeAggregate::Sum,
        2 => TreeAggregate::Min,
        3 => TreeAggregate::Max,
        f => crate::bail!("aggregate_function {f} is not 0 to 3"),
    };
    Ok(TreeEnsembleAttrs {
        nodes,
        leaves,
        roots,
        n_targets,
        aggregate,
    })
}
