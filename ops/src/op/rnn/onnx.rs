//! ONNX mapping of the recurrent ops (asked by the ONNX importer).

use crate::error::{Error, Result};
use crate::onnx::attrs::ConvertCx;
use crate::op::{Op, RnnAct, RnnAttrs, RnnKind};

/// Maps an ONNX node to an op of this family; `None` when the node is not
/// one of its op types.
/// Errors are plain messages; the caller adds node context.
pub(crate) fn convert(cx: &ConvertCx) -> Result<Option<Op>> {
    let a = cx.attrs;
    let op_type = cx.op_type;
    Ok(Some(match cx.op_type {
        "RNN" | "GRU" | "LSTM" => {
            let kind = match op_type {
                "RNN" => RnnKind::Rnn,
                "GRU" => RnnKind::Gru,
                _ => RnnKind::Lstm,
            };
            let direction = match a.string("direction").as_deref() {
                None | Some("forward") => 0,
                Some("reverse") => 1,
                Some("bidirectional") => 2,
                Some(o) => crate::bail!("unknown direction '{o}'"),
            };
            let defaults = match kind {
                RnnKind::Rnn => [RnnAct::Tanh; 3],
                RnnKind::Gru => [RnnAct::Sigmoid, RnnAct::Tanh, RnnAct::Tanh],
                RnnKind::Lstm => [RnnAct::Sigmoid, RnnAct::Tanh, RnnAct::Tanh],
            };
            let mut acts = defaults;
            if let Some(list) = a.strings("activations") {
                let per_dir = match kind {
                    RnnKind::Rnn => 1,
                    RnnKind::Gru => 2,
                    RnnKind::Lstm => 3,
                };
                let parse = |s: &str| -> Result<RnnAct> {
                    Ok(match s.to_ascii_lowercase().as_str() {
                        "sigmoid" => RnnAct::Sigmoid,
                        "tanh" => RnnAct::Tanh,
                        "relu" => RnnAct::Relu,
                        o => crate::bail!("activation '{o}' is unsupported"),
                    })
                };
                let parsed: Vec<RnnAct> = list.iter().map(|s| parse(s)).collect::<Result<_>>()?;
                if parsed.len() < per_dir {
                    crate::bail!(
                        "activations lists {} entries, expected {per_dir}",
                        parsed.len()
                    );
                }
                if parsed.len() > per_dir && parsed[..per_dir] != parsed[per_dir..] {
                    crate::bail!("different activations per direction are unsupported");
                }
                acts[..per_dir].copy_from_slice(&parsed[..per_dir]);
            }
            Op::Rnn(RnnAttrs {
                kind,
                hidden: a
                    .int("hidden_size")
                    .filter(|&h| h > 0)
                    .ok_or_else(|| Error::msg("hidden_size must be a positive integer"))?
                    as usize,
                direction,
                batch_major: a.int_or("layout", 0) != 0,
                clip: a.float("clip"),
                acts,
                linear_before_reset: a.int_or("linear_before_reset", 0) != 0,
                input_forget: a.int_or("input_forget", 0) != 0,
            })
        }
        _ => return Ok(None),
    }))
}
