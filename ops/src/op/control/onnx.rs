//! ONNX mapping of If, Loop and Scan. Their subgraph attributes are
//! imported by the model importer (`onnx/mod.rs`, which knows the scopes
//! around the node) and handed here as [`Body`]s by attribute name.

use super::{Body, ScanAttrs};
use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::Op;

/// The op types of this family (the importer imports their bodies first).
pub(crate) const OP_TYPES: [&str; 3] = ["If", "Loop", "Scan"];

/// The bodies an op carries, in the order their captures follow the
/// node's own inputs (If: then, else; FlexAttention: score_mod, prob_mod).
pub(crate) fn bodies(op: &Op) -> Vec<&Body> {
    match op {
        Op::If {
            then_branch,
            else_branch,
        } => vec![then_branch, else_branch],
        Op::Loop { body } | Op::Scan { body, .. } => vec![body],
        Op::FlexAttention(a) => a.score_mod.iter().chain(&a.prob_mod).collect(),
        _ => Vec::new(),
    }
}

/// Whether a node of this domain and op type carries subgraphs that the
/// importer imports before building the op: this family's ops, and
/// FlexAttention (`ai.onnx.preview`), whose score and probability
/// modifiers are graphs (its mapping is the attention family's).
pub(crate) fn has_bodies(domain: &str, op_type: &str) -> bool {
    match domain {
        "" | "ai.onnx" => OP_TYPES.contains(&op_type),
        "ai.onnx.preview" => op_type == "FlexAttention",
        _ => false,
    }
}

/// Builds the op from the node's attributes and its imported bodies.
/// `n_outputs` is the node's output count (Scan's scan outputs are those
/// after the state values).
pub(crate) fn convert(
    cx: &ConvertCx,
    mut bodies: Vec<(String, Body)>,
    n_inputs: usize,
    n_outputs: usize,
) -> Result<Op> {
    let mut take = |name: &str| {
        bodies
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| bodies.swap_remove(i).1)
            .ok_or_else(|| Error::msg(format!("missing graph attribute '{name}'")))
    };
    Ok(match cx.op_type {
        "If" => Op::If {
            then_branch: take("then_branch")?,
            else_branch: take("else_branch")?,
        },
        "Loop" => {
            let body = take("body")?;
            if n_inputs < 2 {
                crate::bail!("Loop needs the inputs M and cond (either may be empty)");
            }
            Op::Loop { body }
        }
        "Scan" => {
            let body = take("body")?;
            let a = cx.attrs;
            if cx.opset < 9 {
                return scan8(a, body, n_inputs, n_outputs);
            }
            let m = a
                .int("num_scan_inputs")
                .ok_or_else(|| Error::msg("missing attribute 'num_scan_inputs'"))?;
            let m = usize::try_from(m)
                .ok()
                .filter(|&m| m >= 1 && m <= n_inputs)
                .ok_or_else(|| {
                    Error::msg(format!(
                        "num_scan_inputs {m} must be between 1 and the {n_inputs} inputs"
                    ))
                })?;
            let n_state = n_inputs - m;
            let k = n_outputs.checked_sub(n_state).ok_or_else(|| {
                Error::msg(format!(
                    "{n_outputs} outputs cannot hold the {n_state} state values"
                ))
            })?;
            let list = |name: &str, len: usize, what: &str| -> Result<Vec<i64>> {
                match a.ints(name) {
                    None => Ok(vec![0; len]),
                    Some(v) if v.len() == len => Ok(v),
                    Some(v) => Err(Error::msg(format!(
                        "{name} has {} entries, expected one per {what} ({len})",
                        v.len()
                    ))),
                }
            };
            let dirs = |v: Vec<i64>, name: &str| -> Result<Vec<bool>> {
                v.into_iter()
                    .map(|d| match d {
                        0 => Ok(false),
                        1 => Ok(true),
                        _ => Err(Error::msg(format!(
                            "{name} entries must be 0 or 1, got {d}"
                        ))),
                    })
                    .collect()
            };
            Op::Scan {
                body,
                attrs: ScanAttrs {
                    num_scan_inputs: m,
                    input_axes: list("scan_input_axes", m, "scan input")?,
                    input_reverse: dirs(
                        list("scan_input_directions", m, "scan input")?,
                        "scan_input_directions",
                    )?,
                    output_axes: list("scan_output_axes", k, "scan output")?,
                    output_reverse: dirs(
                        list("scan_output_directions", k, "scan output")?,
                        "scan_output_directions",
                    )?,
                    batched: false,
                },
            }
        }
        _ => return Err(cx.unsupported()),
    })
}

/// Opset 8's Scan: input 0 is the optional sequence_lens, then the states
/// and the scan inputs, all with a batch axis; `directions` reverses scan
/// inputs.
fn scan8(
    a: &crate::onnx::attrs::Attrs,
    body: Body,
    n_inputs: usize,
    n_outputs: usize,
) -> Result<Op> {
    let m = a
        .int("num_scan_inputs")
        .and_then(|m| usize::try_from(m).ok())
        .filter(|&m| m >= 1 && m < n_inputs)
        .ok_or_else(|| {
            Error::msg("num_scan_inputs must be between 1 and the inputs after sequence_lens")
        })?;
    let n_state = n_inputs - 1 - m;
    let k = n_outputs.checked_sub(n_state).ok_or_else(|| {
        Error::msg(format!(
            "{n_outputs} outputs cannot hold the {n_state} state values"
        ))
    })?;
    let reverse = match a.ints("directions") {
        None => vec![false; m],
        Some(v) if v.len() == m && v.iter().all(|d| *d == 0 || *d == 1) => {
            v.iter().map(|&d| d == 1).collect()
        }
        Some(v) => crate::bail!("directions {v:?} must be 0 or 1 for each of the {m} scan inputs"),
    };
    Ok(Op::Scan {
        body,
        attrs: ScanAttrs {
            num_scan_inputs: m,
            input_axes: vec![0; m],
            input_reverse: reverse,
            output_axes: vec![0; k],
            output_reverse: vec![false; k],
            batched: true,
        },
    })
}
