//! ONNX mapping of If, Loop and Scan. Their subgraph attributes are
//! imported by the model importer (`onnx/mod.rs`, which knows the scopes
//! around the node) and handed here as [`Body`]s by attribute name.

use super::{Body, ScanAttrs};
use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::Op;

/// The op types of this family (the importer imports their bodies first).
pub(crate) const OP_TYPES: [&str; 3] = ["If", "Loop", "Scan"];

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
            if cx.opset < 9 {
                // Opset 8's Scan has a batch axis and sequence lengths.
                return Err(cx.unsupported());
            }
            let body = take("body")?;
            let a = cx.attrs;
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
                },
            }
        }
        _ => return Err(cx.unsupported()),
    })
}
