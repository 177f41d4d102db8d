//! Shape and dtype inference of If, Loop and Scan from their bodies'
//! facts (inferred when the model was imported).

use super::Body;
use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{input, other_family};
use crate::op::Op;

/// The fact of a body output, without a constant value.
fn body_out(b: &Body, i: usize) -> Fact {
    b.graph
        .outputs
        .get(i)
        .map(|o| Fact {
            value: None,
            ..b.graph.values[o.0].fact.clone()
        })
        .unwrap_or_default()
}

fn outs_count(b: &Body, need: usize, what: &str) -> Result<()> {
    if b.graph.outputs.len() != need {
        crate::bail!(
            "the {what} has {} outputs, the node needs {need}",
            b.graph.outputs.len()
        );
    }
    Ok(())
}

/// Infers the output facts of one of this family's ops.
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::If {
            then_branch,
            else_branch,
        } => {
            outs_count(then_branch, n_out, "then_branch")?;
            outs_count(else_branch, n_out, "else_branch")?;
            Ok((0..n_out)
                .map(|i| {
                    let (t, e) = (body_out(then_branch, i), body_out(else_branch, i));
                    Fact {
                        dtype: t.dtype.or(e.dtype),
                        shape: if t.shape == e.shape { t.shape } else { None },
                        value: None,
                    }
                })
                .collect())
        }
        Op::Loop { body } => {
            // Body outputs: cond, N carried values, K scan outputs.
            let n_carried = body.formal.saturating_sub(2);
            outs_count(body, 1 + n_out, "Loop body")?;
            Ok((0..n_out)
                .map(|i| {
                    let f = body_out(body, 1 + i);
                    if i < n_carried {
                        let init = inputs.get(2 + i).copied().flatten();
                        let same = init.is_some_and(|x| x.shape == f.shape);
                        Fact {
                            dtype: f.dtype.or(init.and_then(|x| x.dtype)),
                            shape: if same { f.shape } else { None },
                            value: None,
                        }
                    } else {
                        Fact {
                            dtype: f.dtype,
                            shape: None,
                            value: None,
                        }
                    }
                })
                .collect())
        }
        Op::Scan { body, attrs } if attrs.batched => {
            // Opset 8: sequence_lens, states [B, ..], scan inputs [B, T, ..].
            let m = attrs.num_scan_inputs;
            let n_state = inputs.len().saturating_sub(body.captures() + 1 + m);
            outs_count(body, n_out, "Scan body")?;
            let x0 = input(inputs, 1 + n_state)?;
            let lead = x0
                .shape
                .as_ref()
                .filter(|s| s.len() >= 2)
                .map(|s| (s[0].clone(), s[1].clone()));
            Ok((0..n_out)
                .map(|i| {
                    let f = body_out(body, i);
                    if i < n_state {
                        let init = inputs.get(1 + i).copied().flatten();
                        return Fact {
                            dtype: f.dtype.or(init.and_then(|x| x.dtype)),
                            shape: init.and_then(|x| x.shape.clone()),
                            value: None,
                        };
                    }
                    let shape = match (&f.shape, &lead) {
                        (Some(s), Some((b, t))) => {
                            let mut o = vec![b.clone(), t.clone()];
                            o.extend(s.iter().cloned());
                            Some(o)
                        }
                        _ => None,
                    };
                    Fact {
                        dtype: f.dtype,
                        shape,
                        value: None,
                    }
                })
                .collect())
        }
        Op::Scan { body, attrs } => {
            let m = attrs.num_scan_inputs;
            let n_declared = inputs.len().saturating_sub(body.captures());
            let n_state = n_declared.saturating_sub(m);
            outs_count(body, n_out, "Scan body")?;
            // The sequence length: scan input 0 along its axis.
            let x0 = input(inputs, n_state)?;
            let len = x0.shape.as_ref().and_then(|s| {
                let a = crate::shape::norm_axis(
                    attrs.input_axes.first().copied().unwrap_or(0),
                    s.len(),
                )
                .ok()?;
                Some(s[a].clone())
            });
            Ok((0..n_out)
                .map(|i| {
                    let f = body_out(body, i);
                    if i < n_state {
                        let init = inputs.get(i).copied().flatten();
                        return Fact {
                            dtype: f.dtype.or(init.and_then(|x| x.dtype)),
                            shape: init.and_then(|x| x.shape.clone()).or(f.shape),
                            value: None,
                        };
                    }
                    let k = i - n_state;
                    let shape = match (&f.shape, &len) {
                        (Some(s), Some(l)) => {
                            let axis = attrs.output_axes.get(k).copied().unwrap_or(0);
                            crate::shape::norm_axis(axis, s.len() + 1).ok().map(|a| {
                                let mut s: Vec<Dim> = s.clone();
                                s.insert(a, l.clone());
                                s
                            })
                        }
                        _ => None,
                    };
                    Fact {
                        dtype: f.dtype,
                        shape,
                        value: None,
                    }
                })
                .collect())
        }
        _ => Err(other_family(op, "control")),
    }
}
