//! Host kernels of If, Loop and Scan, and the host interpreter that runs
//! their bodies ([`run_graph`]).
//!
//! The interpreter evaluates each body node with the kernel dispatcher,
//! which the caller passes in ([`Eval`]): a family does not import the
//! dispatcher, and the dispatcher is what reaches this file.

use super::{Body, ScanAttrs};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::kernels::util::input;
use crate::op::Op;
use crate::shape::{norm_axis, numel};
use crate::tensor::{Storable, Tensor};
use std::borrow::Cow;

/// The kernel dispatcher ([`crate::kernels::eval`]).
pub(crate) type Eval = fn(&Op, &[Option<&Tensor>], usize) -> Result<Vec<Tensor>>;

/// Runs `g` on the host with `inputs` bound to `g.inputs` in order; its
/// outputs in order. Errors name the body node that failed.
pub(crate) fn run_graph(g: &Graph, inputs: &[&Tensor], eval: Eval) -> Result<Vec<Tensor>> {
    if inputs.len() != g.inputs.len() {
        crate::bail!(
            "the body takes {} inputs, {} were given",
            g.inputs.len(),
            inputs.len()
        );
    }
    let mut vals: Vec<Option<Cow<'_, Tensor>>> = (0..g.values.len()).map(|_| None).collect();
    for (id, t) in &g.constants {
        vals[id.0] = Some(Cow::Borrowed(t.as_ref()));
    }
    for (id, t) in g.inputs.iter().zip(inputs) {
        vals[id.0] = Some(Cow::Borrowed(*t));
    }
    for node in &g.nodes {
        let ctx = |e: Error| e.at_node(&node.name, node.op.name());
        let ins: Vec<Option<&Tensor>> = node
            .inputs
            .iter()
            .map(|i| match i {
                None => Ok(None),
                Some(id) => vals[id.0].as_deref().map(Some).ok_or_else(|| {
                    ctx(Error::msg(format!("value '{}' has no value", g.name(*id))))
                }),
            })
            .collect::<Result<_>>()?;
        let outs = eval(&node.op, &ins, node.outputs.len()).map_err(ctx)?;
        for (o, t) in node.outputs.iter().zip(outs) {
            vals[o.0] = Some(Cow::Owned(t));
        }
    }
    g.outputs
        .iter()
        .map(|o| {
            vals[o.0]
                .as_deref()
                .cloned()
                .ok_or_else(|| Error::msg(format!("body output '{}' has no value", g.name(*o))))
        })
        .collect()
}

/// The truth of a one-element condition tensor.
fn truth(t: &Tensor, what: &str) -> Result<bool> {
    if t.len() != 1 {
        crate::bail!("{what} must hold one element, got shape {:?}", t.shape());
    }
    Ok(t.to_f32_vec().first().is_some_and(|&x| x != 0.0))
}

/// The present inputs in `inputs[range]`, each required.
fn required<'a>(inputs: &[Option<&'a Tensor>], from: usize, n: usize) -> Result<Vec<&'a Tensor>> {
    (from..from + n)
        .map(|i| input(inputs, i, "captured or state value"))
        .collect()
}

/// If: runs the branch that `cond` (input 0) selects with its captures.
pub(crate) fn if_(
    then_branch: &Body,
    else_branch: &Body,
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
    eval: Eval,
) -> Result<Vec<Tensor>> {
    let cond = truth(input(inputs, 0, "cond")?, "If cond")?;
    let (nt, ne) = (then_branch.captures(), else_branch.captures());
    if inputs.len() != 1 + nt + ne {
        crate::bail!(
            "If has {} inputs, expected cond and {} captured values",
            inputs.len(),
            nt + ne
        );
    }
    let (body, caps) = if cond {
        (then_branch, required(inputs, 1, nt)?)
    } else {
        (else_branch, required(inputs, 1 + nt, ne)?)
    };
    let outs = run_graph(&body.graph, &caps, eval)?;
    if outs.len() != n_outputs {
        crate::bail!(
            "the {} branch gave {} outputs, the node has {n_outputs}",
            if cond { "then" } else { "else" },
            outs.len()
        );
    }
    Ok(outs)
}

/// Loop: inputs M (trip count, optional), cond (optional), N initial
/// carried values, then captures; the body maps (iteration, cond,
/// carried) to (cond, carried, K scan values). Outputs the final carried
/// values and the K scan values of every iteration stacked on a new axis 0.
pub(crate) fn loop_(
    body: &Body,
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
    eval: Eval,
) -> Result<Vec<Tensor>> {
    let n_caps = body.captures();
    let n_carried = inputs
        .len()
        .checked_sub(2 + n_caps)
        .ok_or_else(|| Error::msg("Loop needs the inputs M and cond (either may be empty)"))?;
    if body.formal != 2 + n_carried || body.graph.outputs.len() < 1 + n_carried {
        crate::bail!(
            "Loop body takes {} inputs and gives {} outputs; with {n_carried} carried values it must take {} and give at least {}",
            body.formal,
            body.graph.outputs.len(),
            2 + n_carried,
            1 + n_carried
        );
    }
    let n_scan = body.graph.outputs.len() - 1 - n_carried;
    if n_outputs != n_carried + n_scan {
        crate::bail!(
            "Loop has {n_outputs} outputs, its body gives {n_carried} carried and {n_scan} scan values"
        );
    }
    let trips = match inputs.first().copied().flatten() {
        Some(m) => {
            if m.len() != 1 {
                crate::bail!("Loop M must hold one element, got shape {:?}", m.shape());
            }
            Some(m.to_i64_vec()[0])
        }
        None => None,
    };
    let mut cond = match inputs.get(1).copied().flatten() {
        Some(c) => truth(c, "Loop cond")?,
        None => true,
    };
    let caps = required(inputs, 2 + n_carried, n_caps)?;
    let mut state: Vec<Tensor> = required(inputs, 2, n_carried)?
        .into_iter()
        .cloned()
        .collect();
    let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); n_scan];
    let mut i: i64 = 0;
    while cond && trips.is_none_or(|m| i < m) {
        let (it, c) = (Tensor::scalar(i), Tensor::scalar(cond));
        let mut ins: Vec<&Tensor> = vec![&it, &c];
        ins.extend(state.iter());
        ins.extend(caps.iter().copied());
        let mut outs = run_graph(&body.graph, &ins, eval)?.into_iter();
        cond = match outs.next() {
            Some(c) => truth(&c, "Loop body cond output")?,
            None => false,
        };
        state = outs.by_ref().take(n_carried).collect();
        for (s, t) in scans.iter_mut().zip(outs) {
            s.push(t);
        }
        i += 1;
    }
    let mut result = state;
    for (k, parts) in scans.into_iter().enumerate() {
        result.push(stack(&parts, 0, &body.graph, 1 + n_carried + k)?);
    }
    Ok(result)
}

/// Scan (opset 9+): inputs N initial states then M scan inputs, then
/// captures; the body maps (states, one slice of each scan input) to
/// (states, K scan output slices), once per slice.
pub(crate) fn scan(
    body: &Body,
    attrs: &ScanAttrs,
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
    eval: Eval,
) -> Result<Vec<Tensor>> {
    if attrs.batched {
        return scan_batched(body, attrs, inputs, n_outputs, eval);
    }
    let m = attrs.num_scan_inputs;
    let n_caps = body.captures();
    let n_state = inputs
        .len()
        .checked_sub(m + n_caps)
        .ok_or_else(|| Error::msg(format!("Scan needs {m} scan inputs")))?;
    let n_scan_out = n_outputs.saturating_sub(n_state);
    if body.formal != n_state + m || body.graph.outputs.len() != n_outputs {
        crate::bail!(
            "Scan body takes {} inputs and gives {} outputs; the node needs {} and {n_outputs}",
            body.formal,
            body.graph.outputs.len(),
            n_state + m
        );
    }
    if attrs.input_axes.len() != m
        || attrs.input_reverse.len() != m
        || attrs.output_axes.len() != n_scan_out
        || attrs.output_reverse.len() != n_scan_out
    {
        crate::bail!("Scan axes and directions must have one entry per scan input and output");
    }
    let xs = required(inputs, n_state, m)?;
    let caps = required(inputs, n_state + m, n_caps)?;
    let mut axes = Vec::with_capacity(m);
    let mut len = None;
    for (j, x) in xs.iter().enumerate() {
        let a = norm_axis(attrs.input_axes[j], x.rank())?;
        let l = x.shape()[a];
        if len.is_some_and(|n| n != l) {
            crate::bail!(
                "scan input {j} has {l} slices along axis {a}, scan input 0 has {}",
                len.unwrap_or(0)
            );
        }
        len = Some(l);
        axes.push(a);
    }
    let len = len.unwrap_or(0);
    let mut state: Vec<Tensor> = required(inputs, 0, n_state)?.into_iter().cloned().collect();
    let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); n_scan_out];
    for t in 0..len {
        let slices: Vec<Tensor> = xs
            .iter()
            .enumerate()
            .map(|(j, x)| {
                let i = if attrs.input_reverse[j] {
                    len - 1 - t
                } else {
                    t
                };
                take_slice(x, axes[j], i)
            })
            .collect::<Result<_>>()?;
        let mut ins: Vec<&Tensor> = state.iter().collect();
        ins.extend(slices.iter());
        ins.extend(caps.iter().copied());
        let mut outs = run_graph(&body.graph, &ins, eval)?.into_iter();
        state = outs.by_ref().take(n_state).collect();
        for (s, y) in scans.iter_mut().zip(outs) {
            s.push(y);
        }
    }
    let mut result = state;
    for (k, mut parts) in scans.into_iter().enumerate() {
        if attrs.output_reverse[k] {
            parts.reverse();
        }
        let rank = parts
            .first()
            .map(|p| p.rank())
            .or_else(|| {
                let o = body.graph.outputs[n_state + k];
                body.graph.values[o.0].fact.rank()
            })
            .unwrap_or(0);
        let a = norm_axis(attrs.output_axes[k], rank + 1)?;
        result.push(stack(&parts, a, &body.graph, n_state + k)?);
    }
    Ok(result)
}

/// Opset 8's Scan: each batch entry (axis 0 of every state and scan
/// input) scanned on its own along axis 1, the results stacked on axis 0.
/// Sequence lengths shorter than the scan inputs are refused.
fn scan_batched(
    body: &Body,
    attrs: &ScanAttrs,
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
    eval: Eval,
) -> Result<Vec<Tensor>> {
    let rest = inputs.get(1..).unwrap_or_default();
    let m = attrs.num_scan_inputs;
    let n_state = rest
        .len()
        .checked_sub(m + body.captures())
        .ok_or_else(|| Error::msg(format!("Scan needs {m} scan inputs")))?;
    let batched = required(rest, 0, n_state + m)?;
    let batch = batched
        .first()
        .and_then(|t| t.shape().first().copied())
        .ok_or_else(|| Error::msg("Scan (opset 8) inputs need a batch axis"))?;
    if let Some(t) = batched.iter().find(|t| t.shape().first() != Some(&batch)) {
        crate::bail!(
            "Scan (opset 8): input {:?} does not have batch size {batch}",
            t.shape()
        );
    }
    if let Some(lens) = inputs.first().copied().flatten() {
        let full = batched
            .get(n_state)
            .and_then(|x| x.shape().get(1))
            .copied()
            .unwrap_or(0);
        if lens.to_i64_vec().iter().any(|&l| l != full as i64) {
            crate::bail!("Scan (opset 8): sequence_lens shorter than the scan inputs ({full}) are unsupported");
        }
    }
    let flat = ScanAttrs {
        batched: false,
        ..attrs.clone()
    };
    let mut per: Vec<Vec<Tensor>> = vec![Vec::with_capacity(batch); n_outputs];
    for b in 0..batch {
        let slices: Vec<Tensor> = batched
            .iter()
            .map(|t| take_slice(t, 0, b))
            .collect::<Result<_>>()?;
        let mut ins: Vec<Option<&Tensor>> = slices.iter().map(Some).collect();
        ins.extend(rest[n_state + m..].iter().copied());
        for (k, y) in scan(body, &flat, &ins, n_outputs, eval)?
            .into_iter()
            .enumerate()
        {
            per[k].push(y);
        }
    }
    per.iter()
        .enumerate()
        .map(|(k, parts)| stack(parts, 0, &body.graph, k))
        .collect()
}

/// Slice `i` of `t` along `axis`, without that axis.
fn take_slice(t: &Tensor, axis: usize, i: usize) -> Result<Tensor> {
    let s = t.shape();
    let (outer, n, inner) = (numel(&s[..axis]), s[axis], numel(&s[axis + 1..]));
    let mut shape = s.to_vec();
    shape.remove(axis);
    let data = crate::dispatch_data!(t.data(), v, T => {
        let mut out: Vec<T> = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            let b = (o * n + i) * inner;
            out.extend_from_slice(&v[b..b + inner]);
        }
        <T as Storable>::wrap(out)
    });
    Tensor::new(shape, data)
}

/// Stacks equal parts on a new axis `axis`. With no parts, the result is
/// empty along `axis` with the rest of the shape and the dtype from the
/// fact of body output `out` (which must be concrete).
fn stack(parts: &[Tensor], axis: usize, body: &Graph, out: usize) -> Result<Tensor> {
    let Some(first) = parts.first() else {
        let fact = body
            .outputs
            .get(out)
            .map(|o| &body.values[o.0].fact)
            .cloned()
            .unwrap_or_default();
        let (Some(dt), Some(mut shape)) = (fact.dtype, fact.concrete_shape()) else {
            crate::bail!(
                "a scan output of no iterations needs a body output of known dtype and shape"
            );
        };
        shape.insert(axis.min(shape.len()), 0);
        return Ok(Tensor::zeros(dt, shape));
    };
    if let Some(p) = parts
        .iter()
        .find(|p| p.shape() != first.shape() || p.dtype() != first.dtype())
    {
        crate::bail!(
            "scan output slices differ: {} {:?} and {} {:?}",
            first.dtype(),
            first.shape(),
            p.dtype(),
            p.shape()
        );
    }
    let s = first.shape();
    let (outer, inner) = (numel(&s[..axis]), numel(&s[axis..]));
    let mut shape = s.to_vec();
    shape.insert(axis, parts.len());
    let data = crate::dispatch_data!(first.data(), _v, T => {
        let slices: Vec<&[T]> = parts.iter().map(|p| p.as_slice::<T>()).collect::<Result<_>>()?;
        let mut out: Vec<T> = Vec::with_capacity(outer * inner * parts.len());
        for o in 0..outer {
            for p in &slices {
                out.extend_from_slice(&p[o * inner..(o + 1) * inner]);
            }
        }
        <T as Storable>::wrap(out)
    });
    Tensor::new(shape, data)
}
