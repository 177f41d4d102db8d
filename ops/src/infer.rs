//! Shape and dtype inference, with constant folding.
//!
//! [`infer_graph`] runs once on load: it walks the nodes in order, derives
//! each output's [`Fact`] from its inputs' facts, and evaluates nodes whose
//! inputs are all constant (so `Shape -> Gather -> Reshape` chains over known
//! shapes and weight preprocessing disappear before placement). Declared
//! shapes from the model are kept where inference knows less. Every error
//! names the node and the value.
//!
//! [`concrete_facts`] re-runs the same inference with concrete input shapes
//! (symbolic dims bound), which is what the cost model needs.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Dim, Fact, Graph};
use crate::op::{resolve_window_dims, BinaryOp, Op};
use crate::shape::{broadcast_dims, dim_axis, norm_axis, prod_dims};
use std::sync::Arc;

impl Graph {
    /// Runs shape inference and constant folding (as the ONNX loader does).
    /// (Defined here rather than in `graph.rs` so that the IR does not
    /// depend on inference.)
    pub fn finish(mut self) -> Result<Graph> {
        infer_graph(&mut self)?;
        Ok(self)
    }
}

/// Folding evaluates a node only when its inputs together and each of its
/// outputs stay this small (elements).
const FOLD_LIMIT: usize = 1 << 22;

/// The largest rank inference spells out as symbolic dims when only the
/// rank is known.
const MAX_SYMBOLIC_RANK: usize = 64;

/// Infers facts for every value of `g` and folds constant nodes (removing
/// them from `g.nodes` and recording their outputs in `g.constants`).
pub fn infer_graph(g: &mut Graph) -> Result<()> {
    let mut kept = Vec::with_capacity(g.nodes.len());
    let nodes = std::mem::take(&mut g.nodes);
    for node in nodes {
        let in_facts: Vec<Option<Fact>> = node
            .inputs
            .iter()
            .map(|i| i.map(|id| g.values[id.0].fact.clone()))
            .collect();
        let refs: Vec<Option<&Fact>> = in_facts.iter().map(|f| f.as_ref()).collect();
        let ctx = |e: Error| e.at_node(&node.name, node.op.name());
        // Constant folding.
        if foldable(&node.op)
            && !refs.is_empty()
            && refs.iter().flatten().all(|f| f.value.is_some())
        {
            let tensors: Vec<Option<&crate::Tensor>> = refs
                .iter()
                .map(|f| f.and_then(|f| f.value.as_deref()))
                .collect();
            let small = tensors.iter().flatten().map(|t| t.len()).sum::<usize>() <= FOLD_LIMIT
                && !outputs_too_big(&node.op, &refs, node.outputs.len());
            if small {
                let outs =
                    crate::kernels::eval(&node.op, &tensors, node.outputs.len()).map_err(ctx)?;
                for (o, t) in node.outputs.iter().zip(outs) {
                    let t = Arc::new(t);
                    g.values[o.0].fact = Fact::constant(t.clone());
                    g.constants.insert(*o, t);
                }
                continue;
            }
        }
        let outs = infer_op(&node.op, &refs, node.outputs.len()).map_err(ctx)?;
        for (o, f) in node.outputs.iter().zip(outs) {
            let declared = &g.values[o.0].fact;
            let merged = merge(f, declared);
            g.values[o.0].fact = merged;
        }
        kept.push(node);
    }
    g.nodes = kept;
    Ok(())
}

/// Whether inference gives an output of more than [`FOLD_LIMIT`] elements
/// (a small constant such as ConstantOfShape's shape can ask for any
/// size). An output it cannot size, or an inference error, is left to the
/// kernel as before.
fn outputs_too_big(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> bool {
    let Ok(outs) = infer_op(op, inputs, n_out) else {
        return false;
    };
    outs.iter().any(|f| {
        f.concrete_shape().is_some_and(|s| {
            s.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none_or(|n| n > FOLD_LIMIT)
        })
    })
}

fn foldable(op: &Op) -> bool {
    !matches!(op, Op::Dropout)
}

fn merge(inferred: Fact, declared: &Fact) -> Fact {
    let dtype = inferred.dtype.or(declared.dtype);
    let shape = match (&inferred.shape, &declared.shape) {
        (Some(i), Some(d)) if i.len() == d.len() => Some(
            i.iter()
                .zip(d)
                .map(|(a, b)| match (a, b) {
                    (Dim::Known(_), _) => a.clone(),
                    (_, Dim::Known(_)) => b.clone(),
                    _ => b.clone(),
                })
                .collect(),
        ),
        (Some(i), _) => Some(i.clone()),
        (None, d) => d.clone(),
    };
    Fact {
        dtype,
        shape,
        value: inferred.value,
    }
}

/// Facts for every value of `g` with the graph inputs bound to the given
/// facts (e.g. concrete shapes for a batch size).
pub fn concrete_facts(g: &Graph, inputs: &[Fact]) -> Result<Vec<Fact>> {
    let mut facts: Vec<Fact> = g.values.iter().map(|v| v.fact.clone()).collect();
    for (id, f) in g.inputs.iter().zip(inputs) {
        facts[id.0] = f.clone();
    }
    for node in &g.nodes {
        let refs: Vec<Option<&Fact>> = node
            .inputs
            .iter()
            .map(|i| i.map(|id| &facts[id.0]))
            .collect();
        let outs = infer_op(&node.op, &refs, node.outputs.len())
            .map_err(|e| e.at_node(&node.name, node.op.name()))?;
        for (o, f) in node.outputs.iter().zip(outs) {
            facts[o.0] = f;
        }
    }
    Ok(facts)
}

fn input<'a>(inputs: &[Option<&'a Fact>], i: usize) -> Result<&'a Fact> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| Error::msg(format!("required input {i} is missing")))
}

fn opt_input<'a>(inputs: &[Option<&'a Fact>], i: usize) -> Option<&'a Fact> {
    inputs.get(i).copied().flatten()
}

fn same(f: &Fact) -> Fact {
    Fact {
        dtype: f.dtype,
        shape: f.shape.clone(),
        value: None,
    }
}

fn with_dtype(dtype: Option<DType>, shape: Option<Vec<Dim>>) -> Fact {
    Fact {
        dtype,
        shape,
        value: None,
    }
}

fn broadcast_facts(fs: &[&Fact]) -> Result<Option<Vec<Dim>>> {
    let mut acc: Option<Vec<Dim>> = Some(Vec::new());
    for f in fs {
        acc = match (acc, &f.shape) {
            (Some(a), Some(s)) => Some(broadcast_dims(&a, s)?),
            _ => None,
        };
    }
    Ok(acc)
}

fn check_same_dtype(fs: &[&Fact], what: &str) -> Result<Option<DType>> {
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

/// Resize output dims when the scales or sizes are constants (with the
/// stretch policy); otherwise the resized axes are symbolic.
fn resize_dims(
    ra: &crate::op::ResizeAttrs,
    s: &[Dim],
    inputs: &[Option<&Fact>],
) -> Result<Vec<Dim>> {
    let r = s.len();
    let axes: Vec<usize> = match &ra.axes {
        Some(a) => a.iter().map(|&v| dim_axis(v, r)).collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    let value = |i: usize| {
        opt_input(inputs, i)
            .and_then(|f| f.value.clone())
            .filter(|t| !t.is_empty())
    };
    let sizes = if ra.scales_input == 1 { None } else { value(3) };
    let scales = value(ra.scales_input);
    let mut o = s.to_vec();
    for (i, &d) in axes.iter().enumerate() {
        o[d] = match (&sizes, &scales, &s[d]) {
            (Some(sz), _, _) if ra.keep_aspect == crate::op::KeepAspect::Stretch => {
                match sz.to_i64_vec().get(i) {
                    Some(&n) if n >= 0 => Dim::Known(n as usize),
                    _ => crate::bail!("sizes {:?} do not fit {} axes", sz.shape(), axes.len()),
                }
            }
            (None, Some(sc), Dim::Known(n)) => match sc.to_f32_vec().get(i) {
                Some(&f) if f > 0.0 => Dim::Known((f as f64 * *n as f64) as usize),
                _ => crate::bail!("scales {:?} do not fit {} axes", sc.shape(), axes.len()),
            },
            _ => Dim::Sym(format!("resize_{d}")),
        };
    }
    Ok(o)
}

fn check_index_dtype(f: &Fact) -> Result<()> {
    match f.dtype {
        Some(d) if d != DType::I64 && d != DType::I32 => {
            crate::bail!("indices must be i32 or i64, got {d}")
        }
        _ => Ok(()),
    }
}

fn const_ints(f: Option<&Fact>) -> Option<Vec<i64>> {
    f.and_then(|f| f.value.as_ref()).map(|t| t.to_i64_vec())
}

/// Infers the facts of one op's outputs from its inputs' facts. Unknowns
/// stay unknown; contradictions are errors.
pub fn infer_op(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    let x = || input(inputs, 0);
    let one = |f: Fact| Ok(vec![f]);
    match op {
        Op::Unary(_)
        | Op::LeakyRelu { .. }
        | Op::Gelu { .. }
        | Op::Clip { .. }
        | Op::Identity
        | Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::Lrn { .. }
        | Op::BatchNorm { .. }
        | Op::LayerNorm { .. }
        | Op::RmsNorm { .. }
        | Op::Act { .. }
        | Op::Hardmax { .. }
        | Op::Trilu { .. }
        | Op::Cumulative { .. }
        | Op::ScatterElements { .. }
        | Op::ScatterNd { .. }
        | Op::RotaryEmbedding { .. }
        | Op::LpNorm { .. }
        | Op::InstanceNorm { .. }
        | Op::GroupNorm { .. } => {
            let x = x()?;
            if let (
                Op::BatchNorm { .. }
                | Op::LayerNorm { .. }
                | Op::RmsNorm { .. }
                | Op::Act { .. }
                | Op::Lrn { .. }
                | Op::Softmax { .. }
                | Op::LogSoftmax { .. }
                | Op::Hardmax { .. }
                | Op::RotaryEmbedding { .. }
                | Op::LpNorm { .. }
                | Op::InstanceNorm { .. }
                | Op::GroupNorm { .. }
                | Op::Gelu { .. },
                Some(d),
            ) = (op, x.dtype)
            {
                if !d.is_float() {
                    crate::bail!("input 0 must be a float tensor, got {d}");
                }
            }
            if let Op::Unary(u) = op {
                if let Some(d) = x.dtype {
                    crate::kernels::check_unary_dtype(*u, d)?;
                }
            }
            if let Op::LayerNorm { axis, .. } | Op::RmsNorm { axis, .. } = op {
                if let Some(r) = x.rank() {
                    norm_axis(*axis, r)?;
                }
            }
            if let (Op::LayerNorm { axis, .. }, true) = (op, n_out > 1) {
                // Mean and InvStdDev: the reduced dims kept as 1.
                let stat = match &x.shape {
                    Some(s) => {
                        let a = norm_axis(*axis, s.len())?;
                        let mut st = s[..a].to_vec();
                        st.extend(std::iter::repeat_n(Dim::Known(1), s.len() - a));
                        Some(st)
                    }
                    None => None,
                };
                let mut v = vec![same(x)];
                for _ in 1..n_out.min(3) {
                    v.push(with_dtype(x.dtype, stat.clone()));
                }
                return Ok(v);
            }
            one(same(x))
        }
        Op::Attention(at) => {
            let q = x()?;
            let v = input(inputs, 2)?;
            if let Some(d) = q.dtype {
                if !d.is_float() {
                    crate::bail!("Q must be a float tensor, got {d}");
                }
            }
            let known = |f: &Fact| f.concrete_shape();
            let y = match (known(q), known(v)) {
                (Some(qs), Some(vs)) if qs.len() == 4 && vs.len() == 4 => Some(vec![
                    Dim::Known(qs[0]),
                    Dim::Known(qs[1]),
                    Dim::Known(qs[2]),
                    Dim::Known(vs[3]),
                ]),
                (Some(qs), Some(vs)) if qs.len() == 3 && vs.len() == 3 => {
                    match (at.q_num_heads, at.kv_num_heads) {
                        (Some(qh), Some(kvh)) if vs[2] % kvh == 0 => Some(vec![
                            Dim::Known(qs[0]),
                            Dim::Known(qs[1]),
                            Dim::Known(qh * (vs[2] / kvh)),
                        ]),
                        _ => None,
                    }
                }
                _ => None,
            };
            let mut outs = vec![with_dtype(q.dtype, y)];
            for _ in 1..n_out {
                outs.push(with_dtype(q.dtype, None));
            }
            Ok(outs)
        }
        Op::Window { dtype, .. } => {
            let len = const_ints(Some(x()?)).and_then(|v| v.first().copied());
            one(with_dtype(
                Some(*dtype),
                Some(vec![match len {
                    Some(n) if n >= 0 => Dim::Known(n as usize),
                    _ => Dim::Sym("window".into()),
                }]),
            ))
        }
        Op::ReverseSequence { .. } => one(same(x()?)),
        Op::CenterCropPad { .. } => {
            let x = x()?;
            one(with_dtype(
                x.dtype,
                x.rank()
                    .map(|r| (0..r).map(|i| Dim::Sym(format!("crop_{i}"))).collect()),
            ))
        }
        Op::GridSample { .. } => {
            let x = x()?;
            let g = input(inputs, 1)?;
            let shape = match (&x.shape, &g.shape) {
                (Some(xs), Some(gs)) if xs.len() >= 3 && gs.len() == xs.len() => {
                    let mut o = xs[..2].to_vec();
                    o.extend(gs[1..gs.len() - 1].iter().cloned());
                    Some(o)
                }
                (Some(xs), Some(gs)) => crate::bail!(
                    "X {} and grid {} ranks do not fit",
                    crate::graph::fmt_shape(xs),
                    crate::graph::fmt_shape(gs)
                ),
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::ConvTranspose(ct) => {
            let x = x()?;
            let w = input(inputs, 1)?;
            let shape = match (&x.shape, w.concrete_shape()) {
                (Some(xs), Some(ws)) if xs.len() < 3 || ws.len() != xs.len() => crate::bail!(
                    "ConvTranspose input {} and weight {:?} ranks do not fit",
                    crate::graph::fmt_shape(xs),
                    ws
                ),
                (Some(xs), Some(ws)) => {
                    let r = xs.len() - 2;
                    let mut o = vec![xs[0].clone(), Dim::Known(ws[1] * ct.group.max(1))];
                    for i in 0..r {
                        let at = |v: &[usize], d: usize| v.get(i).copied().unwrap_or(d);
                        o.push(match (&ct.output_shape, &xs[i + 2]) {
                            (Some(os), _) => Dim::Known(at(os, 0)),
                            (None, Dim::Known(n)) => {
                                let s = at(&ct.strides, 1);
                                if matches!(
                                    ct.auto_pad,
                                    crate::op::AutoPad::SameUpper | crate::op::AutoPad::SameLower
                                ) && ct.pads.is_empty()
                                {
                                    Dim::Known(n * s)
                                } else {
                                    let full = s * n.saturating_sub(1)
                                        + at(&ct.output_padding, 0)
                                        + ws[i + 2].saturating_sub(1) * at(&ct.dilations, 1)
                                        + 1;
                                    Dim::Known(full.saturating_sub(
                                        at(&ct.pads, 0) + ct.pads.get(i + r).copied().unwrap_or(0),
                                    ))
                                }
                            }
                            _ => Dim::Sym(format!("convt_{i}")),
                        });
                    }
                    Some(o)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::QuantizeLinear { dtype, .. } => {
            let x = x()?;
            let dt = opt_input(inputs, 2)
                .and_then(|z| z.dtype)
                .or(*dtype)
                .or(Some(DType::U8));
            one(with_dtype(dt, x.shape.clone()))
        }
        Op::DequantizeLinear { dtype, .. } => {
            let x = x()?;
            let scale = input(inputs, 1)?;
            one(with_dtype(dtype.or(scale.dtype), x.shape.clone()))
        }
        Op::DynamicQuantizeLinear => {
            let x = x()?;
            Ok(vec![
                with_dtype(Some(DType::U8), x.shape.clone()),
                with_dtype(Some(DType::F32), Some(vec![])),
                with_dtype(Some(DType::U8), Some(vec![])),
            ])
        }
        Op::BitCast { to } => {
            let x = x()?;
            if let Some(d) = x.dtype {
                if d.size() != to.size() {
                    crate::bail!("BitCast from {d} to {to}: element sizes differ");
                }
            }
            one(with_dtype(Some(*to), x.shape.clone()))
        }
        Op::LinearAttention {
            q_num_heads,
            kv_num_heads,
            ..
        } => {
            let q = x()?;
            let v = input(inputs, 2)?;
            let (qs, vs) = (q.concrete_shape(), v.concrete_shape());
            let (y, st) = match (qs, vs) {
                (Some(qs), Some(vs)) if qs.len() == 3 && vs.len() == 3 && *kv_num_heads > 0 => {
                    let dv = vs[2] / kv_num_heads;
                    let dk = qs[2] / (*q_num_heads).max(1);
                    (
                        Some(vec![
                            Dim::Known(qs[0]),
                            Dim::Known(qs[1]),
                            Dim::Known(q_num_heads * dv),
                        ]),
                        Some(vec![
                            Dim::Known(qs[0]),
                            Dim::Known(*kv_num_heads),
                            Dim::Known(dk),
                            Dim::Known(dv),
                        ]),
                    )
                }
                _ => (None, None),
            };
            let sdt = opt_input(inputs, 3).and_then(|p| p.dtype).or(q.dtype);
            let mut v = vec![with_dtype(q.dtype, y)];
            if n_out > 1 {
                v.push(with_dtype(sdt, st));
            }
            Ok(v)
        }
        Op::CausalConvWithState { .. } => {
            let x = x()?;
            let w = input(inputs, 1)?;
            let st = match (&x.shape, w.concrete_shape()) {
                (Some(s), Some(ws)) if s.len() == 3 && ws.len() == 3 && ws[2] > 0 => {
                    Some(vec![s[0].clone(), s[1].clone(), Dim::Known(ws[2] - 1)])
                }
                _ => None,
            };
            let mut v = vec![same(x)];
            if n_out > 1 {
                v.push(with_dtype(x.dtype, st));
            }
            Ok(v)
        }
        Op::TensorScatter { .. } | Op::SwiGlu { .. } => one(same(x()?)),
        Op::Dft {
            axis,
            inverse,
            onesided,
        } => {
            let x = x()?;
            let shape = x.shape.as_ref().map(|s| {
                let r = s.len();
                let ax = match axis {
                    Some(a) => Some(*a),
                    None => match opt_input(inputs, 2) {
                        None => Some(-2),
                        f => const_ints(f).and_then(|v| v.first().copied()),
                    },
                };
                let mut o: Vec<Dim> = (0..r).map(|i| Dim::Sym(format!("dft_{i}"))).collect();
                for (i, d) in s.iter().enumerate().take(r.saturating_sub(1)) {
                    let is_axis = ax.and_then(|a| norm_axis(a, r).ok()) == Some(i);
                    if !is_axis && ax.is_some() {
                        o[i] = d.clone();
                    }
                }
                if r > 0 {
                    o[r - 1] = Dim::Known(if *inverse && *onesided { 1 } else { 2 });
                }
                o
            });
            one(with_dtype(x.dtype, shape))
        }
        Op::Col2Im { .. } => {
            let x = x()?;
            let img = const_ints(Some(input(inputs, 1)?));
            let shape = match (&x.shape, img) {
                (Some(s), Some(img)) if s.len() == 3 => {
                    let mut o = vec![s[0].clone(), Dim::Sym("col2im_c".into())];
                    o.extend(img.iter().map(|&d| Dim::Known(d.max(0) as usize)));
                    Some(o)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::NonMaxSuppression { .. } => one(with_dtype(
            Some(DType::I64),
            Some(vec![Dim::Sym("nms_selected".into()), Dim::Known(3)]),
        )),
        Op::QLinearMatMul | Op::MatMulInteger => {
            let (ai, bi) = if matches!(op, Op::QLinearMatMul) {
                (0, 3)
            } else {
                (0, 1)
            };
            let a = input(inputs, ai)?;
            let b = input(inputs, bi)?;
            let dt = if matches!(op, Op::QLinearMatMul) {
                opt_input(inputs, 7).and_then(|z| z.dtype)
            } else {
                Some(DType::I32)
            };
            let shape = match (&a.shape, &b.shape) {
                (Some(sa), Some(sb)) => Some(matmul_shape(sa, sb)?),
                _ => None,
            };
            one(with_dtype(dt, shape))
        }
        Op::Rnn(ra) => {
            let x = x()?;
            let dirs = if ra.direction == 2 { 2 } else { 1 };
            let h = Dim::Known(ra.hidden);
            let (y, st) = match &x.shape {
                Some(s) if s.len() == 3 => {
                    let (seq, batch) = if ra.batch_major {
                        (s[1].clone(), s[0].clone())
                    } else {
                        (s[0].clone(), s[1].clone())
                    };
                    let d = Dim::Known(dirs);
                    if ra.batch_major {
                        (
                            Some(vec![batch.clone(), seq, d.clone(), h.clone()]),
                            Some(vec![batch, d, h]),
                        )
                    } else {
                        (
                            Some(vec![seq, d.clone(), batch.clone(), h.clone()]),
                            Some(vec![d, batch, h]),
                        )
                    }
                }
                Some(s) => crate::bail!("X must be 3-D, got {}", crate::graph::fmt_shape(s)),
                None => (None, None),
            };
            let mut v = vec![with_dtype(x.dtype, y)];
            for _ in 1..n_out {
                v.push(with_dtype(x.dtype, st.clone()));
            }
            Ok(v)
        }
        Op::Det => {
            let x = x()?;
            one(with_dtype(
                x.dtype,
                x.shape
                    .as_ref()
                    .map(|s| s[..s.len().saturating_sub(2)].to_vec()),
            ))
        }
        Op::Unique { axis, .. } => {
            let x = x()?;
            let y = match (axis, &x.shape) {
                (None, _) => Some(vec![Dim::Sym("unique".into())]),
                (Some(a), Some(s)) => {
                    let a = dim_axis(*a, s.len())?;
                    let mut o = s.clone();
                    o[a] = Dim::Sym("unique".into());
                    Some(o)
                }
                _ => None,
            };
            let mut v = vec![with_dtype(x.dtype, y)];
            for _ in 1..n_out {
                v.push(with_dtype(
                    Some(DType::I64),
                    Some(vec![Dim::Sym("unique_n".into())]),
                ));
            }
            Ok(v)
        }
        Op::Einsum { equation } => {
            let fs: Vec<&Fact> = inputs.iter().flatten().copied().collect();
            let dt = check_same_dtype(&fs, "Einsum")?;
            let shapes: Option<Vec<Vec<usize>>> = fs.iter().map(|f| f.concrete_shape()).collect();
            let shape = match shapes {
                Some(ss) => {
                    let refs: Vec<&[usize]> = ss.iter().map(|s| s.as_slice()).collect();
                    Some(
                        crate::kernels::einsum_shape(equation, &refs)?
                            .into_iter()
                            .map(Dim::Known)
                            .collect(),
                    )
                }
                None => None,
            };
            one(with_dtype(dt, shape))
        }
        Op::Resize(ra) => {
            let x = x()?;
            let shape = match &x.shape {
                Some(s) => Some(resize_dims(ra, s, inputs)?),
                None => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::IsNaN | Op::IsInf { .. } => {
            let x = x()?;
            if let Some(d) = x.dtype {
                if !d.is_float() {
                    crate::bail!("input 0 must be a float tensor, got {d}");
                }
            }
            one(with_dtype(Some(DType::Bool), x.shape.clone()))
        }
        Op::GatherElements { axis } => {
            let x = x()?;
            let idx = input(inputs, 1)?;
            check_index_dtype(idx)?;
            if let (Some(r), Some(ri)) = (x.rank(), idx.rank()) {
                if r != ri {
                    crate::bail!("data has rank {r}, indices rank {ri}");
                }
                norm_axis(*axis, r)?;
            }
            one(with_dtype(x.dtype, idx.shape.clone()))
        }
        Op::GatherNd { batch_dims } => {
            let x = x()?;
            let idx = input(inputs, 1)?;
            if let Some(d) = idx.dtype {
                if d != DType::I64 {
                    crate::bail!("indices must be i64, got {d}");
                }
            }
            let shape = match (&x.shape, &idx.shape) {
                (Some(s), Some(i)) => match i.last() {
                    Some(Dim::Known(k)) => {
                        if batch_dims + k > s.len() || *batch_dims >= i.len() {
                            crate::bail!(
                                "indices {} with batch_dims {batch_dims} do not fit data {}",
                                crate::graph::fmt_shape(i),
                                crate::graph::fmt_shape(s)
                            );
                        }
                        let mut o = i[..i.len() - 1].to_vec();
                        o.extend(s[batch_dims + k..].iter().cloned());
                        Some(o)
                    }
                    _ => None,
                },
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::TopK { axis, k, .. } => {
            let x = x()?;
            let k = match k {
                Some(k) => Some(*k),
                None => const_ints(Some(input(inputs, 1)?)).and_then(|v| v.first().copied()),
            };
            let shape = match &x.shape {
                Some(s) => {
                    let a = dim_axis(*axis, s.len())?;
                    let mut o = s.clone();
                    o[a] = match k {
                        Some(k) if k >= 0 => Dim::Known(k as usize),
                        Some(k) => crate::bail!("k must be >= 0, got {k}"),
                        None => Dim::Sym("topk_k".into()),
                    };
                    Some(o)
                }
                None => None,
            };
            Ok(vec![
                with_dtype(x.dtype, shape.clone()),
                with_dtype(Some(DType::I64), shape),
            ])
        }
        Op::OneHot { axis } => {
            let idx = x()?;
            let depth = const_ints(Some(input(inputs, 1)?)).and_then(|v| v.first().copied());
            let values = input(inputs, 2)?;
            let shape = match &idx.shape {
                Some(s) => {
                    let r = s.len() + 1;
                    let a = norm_axis(*axis, r)?;
                    let mut o = s.clone();
                    o.insert(
                        a,
                        match depth {
                            Some(d) if d >= 0 => Dim::Known(d as usize),
                            _ => Dim::Sym("onehot_depth".into()),
                        },
                    );
                    Some(o)
                }
                None => None,
            };
            one(with_dtype(values.dtype, shape))
        }
        Op::NonZero => {
            let x = x()?;
            one(with_dtype(
                Some(DType::I64),
                x.rank()
                    .map(|r| vec![Dim::Known(r), Dim::Sym("nonzero_n".into())]),
            ))
        }
        Op::Compress { axis } => {
            let x = x()?;
            let c = input(inputs, 1)?;
            if let Some(d) = c.dtype {
                if d != DType::Bool {
                    crate::bail!("condition must be bool, got {d}");
                }
            }
            let shape = match (axis, &x.shape) {
                (None, _) => Some(vec![Dim::Sym("compress_n".into())]),
                (Some(a), Some(s)) => {
                    let a = dim_axis(*a, s.len())?;
                    let mut o = s.clone();
                    o[a] = Dim::Sym("compress_n".into());
                    Some(o)
                }
                (Some(_), None) => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Tile => {
            let x = x()?;
            let reps = const_ints(Some(input(inputs, 1)?));
            let shape = match (&x.shape, reps) {
                (Some(s), Some(r)) => {
                    if r.len() != s.len() {
                        crate::bail!("repeats has {} entries for rank {}", r.len(), s.len());
                    }
                    let mut o = Vec::with_capacity(s.len());
                    for (d, &n) in s.iter().zip(&r) {
                        if n < 0 {
                            crate::bail!("repeats must be >= 0, got {n}");
                        }
                        o.push(match d {
                            Dim::Known(d) => Dim::Known(d * n as usize),
                            Dim::Sym(_) if n == 1 => d.clone(),
                            Dim::Sym(_) => Dim::Sym("tile".into()),
                        });
                    }
                    Some(o)
                }
                (Some(s), None) => Some(
                    (0..s.len())
                        .map(|i| Dim::Sym(format!("tile_{i}")))
                        .collect(),
                ),
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::DepthToSpace { blocksize, .. } | Op::SpaceToDepth { blocksize, .. } => {
            let x = x()?;
            let b = *blocksize;
            let shape = match &x.shape {
                Some(s) => {
                    if s.len() != 4 {
                        crate::bail!("input must be 4-D, got {}", crate::graph::fmt_shape(s));
                    }
                    let d2s = matches!(op, Op::DepthToSpace { .. });
                    let f = |d: &Dim, mul: bool| match d {
                        Dim::Known(n) if mul => Ok(Dim::Known(n * b)),
                        Dim::Known(n) if n % b == 0 => Ok(Dim::Known(n / b)),
                        Dim::Known(n) => Err(Error::msg(format!(
                            "dim {n} is not divisible by blocksize {b}"
                        ))),
                        Dim::Sym(_) => Ok(Dim::Sym("blocks".into())),
                    };
                    let c = match &s[1] {
                        Dim::Known(c) if d2s && c % (b * b) != 0 => crate::bail!(
                            "channels {c} are not divisible by blocksize^2 = {}",
                            b * b
                        ),
                        Dim::Known(c) if d2s => Dim::Known(c / (b * b)),
                        Dim::Known(c) => Dim::Known(c * b * b),
                        Dim::Sym(_) => Dim::Sym("blocks_c".into()),
                    };
                    Some(vec![s[0].clone(), c, f(&s[2], d2s)?, f(&s[3], d2s)?])
                }
                None => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::EyeLike { dtype, .. } => {
            let x = x()?;
            if let Some(r) = x.rank() {
                if r != 2 {
                    crate::bail!("EyeLike input must be 2-D, got rank {r}");
                }
            }
            one(with_dtype(dtype.or(x.dtype), x.shape.clone()))
        }
        Op::Pad { pads, .. } => {
            let x = x()?;
            let pads = match pads {
                Some(p) => Some(p.clone()),
                None => const_ints(Some(input(inputs, 1)?)),
            };
            let axes_known = opt_input(inputs, 3).is_none_or(|f| f.value.is_some());
            let shape = match (&x.shape, pads, axes_known) {
                (Some(s), Some(p), true) => {
                    let r = s.len();
                    let axes: Vec<usize> = match const_ints(opt_input(inputs, 3)) {
                        Some(a) => a.iter().map(|&a| dim_axis(a, r)).collect::<Result<_>>()?,
                        None => (0..r).collect(),
                    };
                    if p.len() != 2 * axes.len() {
                        crate::bail!("pads has {} entries for {} axes", p.len(), axes.len());
                    }
                    let mut o = s.clone();
                    for (i, &a) in axes.iter().enumerate() {
                        if let Dim::Known(d) = s[a] {
                            let n = d as i64 + p[i] + p[i + axes.len()];
                            if n < 0 {
                                crate::bail!("pads {:?} make axis {a} negative", p);
                            }
                            o[a] = Dim::Known(n as usize);
                        }
                    }
                    Some(o)
                }
                (Some(s), _, _) => {
                    Some((0..s.len()).map(|i| Dim::Sym(format!("pad_{i}"))).collect())
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Mean => {
            let fs: Vec<&Fact> = inputs.iter().flatten().copied().collect();
            if fs.is_empty() {
                crate::bail!("Mean needs at least one input");
            }
            let dt = check_same_dtype(&fs, "Mean")?;
            one(with_dtype(dt, broadcast_facts(&fs)?))
        }
        Op::NllLoss { reduction, .. } | Op::SoftmaxCrossEntropy { reduction, .. } => {
            let x = x()?;
            let t = input(inputs, 1)?;
            if let Some(d) = x.dtype {
                if !d.is_float() {
                    crate::bail!("input 0 must be a float tensor, got {d}");
                }
            }
            if let Some(d) = t.dtype {
                if d != DType::I64 && d != DType::I32 {
                    crate::bail!("target must be i32 or i64, got {d}");
                }
            }
            let loss_shape = match reduction {
                crate::op::LossReduction::None => t.shape.clone(),
                _ => Some(vec![]),
            };
            let mut v = vec![with_dtype(x.dtype, loss_shape)];
            if n_out > 1 {
                v.push(same(x));
            }
            Ok(v)
        }
        Op::Dropout => {
            if let Some(Some(t)) = inputs.get(2).map(|f| f.and_then(|f| f.value.as_deref())) {
                // A ratio known only at run time is checked then.
                match opt_input(inputs, 1) {
                    Some(r) => {
                        if let Some(rv) = r.value.as_deref() {
                            crate::kernels::refuse_dropout_training(t, Some(rv))?;
                        }
                    }
                    None => crate::kernels::refuse_dropout_training(t, None)?,
                }
            }
            let x = x()?;
            let mut v = vec![same(x)];
            if n_out > 1 {
                v.push(with_dtype(Some(DType::Bool), x.shape.clone()));
            }
            Ok(v)
        }
        Op::Binary(b) => {
            let a = input(inputs, 0)?;
            let c = input(inputs, 1)?;
            let dt = if *b == BinaryOp::Pow {
                a.dtype
            } else {
                check_same_dtype(&[a, c], op.name())?
            };
            if let Some(d) = dt {
                crate::kernels::check_binary_dtype(*b, d)?;
            }
            let shape = broadcast_facts(&[a, c])?;
            let dtype = if b.is_comparison() || b.is_logical() {
                Some(DType::Bool)
            } else {
                dt
            };
            one(with_dtype(dtype, shape))
        }
        Op::Where => {
            let c = input(inputs, 0)?;
            let a = input(inputs, 1)?;
            let b = input(inputs, 2)?;
            if let Some(d) = c.dtype {
                if d != DType::Bool {
                    crate::bail!("condition must be bool, got {d}");
                }
            }
            let dt = check_same_dtype(&[a, b], "Where")?;
            one(with_dtype(dt, broadcast_facts(&[c, a, b])?))
        }
        Op::Sum | Op::Extremum(_) => {
            let fs: Vec<&Fact> = inputs.iter().flatten().copied().collect();
            if fs.is_empty() {
                crate::bail!("{} needs at least one input", op.name());
            }
            let dt = check_same_dtype(&fs, op.name())?;
            one(with_dtype(dt, broadcast_facts(&fs)?))
        }
        Op::ArgExtreme { axis, keepdims, .. } => {
            let x = x()?;
            let shape = match &x.shape {
                Some(s) => {
                    let ax = dim_axis(*axis, s.len())?;
                    let mut o = s.clone();
                    if *keepdims {
                        o[ax] = Dim::Known(1);
                    } else {
                        o.remove(ax);
                    }
                    Some(o)
                }
                None => None,
            };
            one(with_dtype(Some(DType::I64), shape))
        }
        Op::Range => {
            // Constant bounds are folded before this; otherwise the length
            // is known only at run time.
            let start = x()?;
            one(with_dtype(
                start.dtype,
                Some(vec![Dim::Sym("range_len".into())]),
            ))
        }
        Op::Cast { to } => one(with_dtype(Some(*to), x()?.shape.clone())),
        Op::CastLike => {
            let like = input(inputs, 1)?;
            one(with_dtype(like.dtype, x()?.shape.clone()))
        }
        Op::Size => {
            x()?;
            one(with_dtype(Some(DType::I64), Some(vec![])))
        }
        Op::MatMul => {
            let a = input(inputs, 0)?;
            let b = input(inputs, 1)?;
            let dt = check_same_dtype(&[a, b], "MatMul")?;
            let shape = match (&a.shape, &b.shape) {
                (Some(sa), Some(sb)) => Some(matmul_shape(sa, sb)?),
                _ => None,
            };
            one(with_dtype(dt, shape))
        }
        Op::Gemm {
            trans_a, trans_b, ..
        } => {
            let a = input(inputs, 0)?;
            let b = input(inputs, 1)?;
            let dt = check_same_dtype(&[a, b], "Gemm")?;
            let shape = match (&a.shape, &b.shape) {
                (Some(sa), Some(sb)) => {
                    if sa.len() != 2 || sb.len() != 2 {
                        crate::bail!(
                            "Gemm needs 2-D A and B, got {} and {}",
                            crate::graph::fmt_shape(sa),
                            crate::graph::fmt_shape(sb)
                        );
                    }
                    let (m, ka) = if *trans_a {
                        (&sa[1], &sa[0])
                    } else {
                        (&sa[0], &sa[1])
                    };
                    let (kb, n) = if *trans_b {
                        (&sb[1], &sb[0])
                    } else {
                        (&sb[0], &sb[1])
                    };
                    if let (Dim::Known(x), Dim::Known(y)) = (ka, kb) {
                        if x != y {
                            crate::bail!(
                                "Gemm inner dims differ: A {} vs B {}",
                                crate::graph::fmt_shape(sa),
                                crate::graph::fmt_shape(sb)
                            );
                        }
                    }
                    Some(vec![m.clone(), n.clone()])
                }
                _ => None,
            };
            one(with_dtype(dt, shape))
        }
        Op::Reduce {
            axes,
            keepdims,
            noop_with_empty_axes,
            ..
        } => {
            let x = x()?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => match opt_input(inputs, 1) {
                    None => Some(vec![]),
                    Some(f) => const_ints(Some(f)),
                },
            };
            let shape = match (&x.shape, axes) {
                (Some(s), Some(axes)) => {
                    if axes.is_empty() && *noop_with_empty_axes {
                        Some(s.clone())
                    } else {
                        let r = s.len();
                        let mut red = vec![axes.is_empty(); r];
                        for a in axes {
                            red[dim_axis(a, r)?] = true;
                        }
                        Some(
                            s.iter()
                                .zip(red)
                                .filter_map(|(d, r)| match (r, *keepdims) {
                                    (true, true) => Some(Dim::Known(1)),
                                    (true, false) => None,
                                    (false, _) => Some(d.clone()),
                                })
                                .collect(),
                        )
                    }
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Conv(c) => {
            let x = x()?;
            let w = input(inputs, 1)?;
            let shape = match (&x.shape, w.concrete_shape()) {
                (Some(xs), Some(ws)) => {
                    if xs.len() < 3 || ws.len() != xs.len() {
                        crate::bail!(
                            "Conv input {} and weight {:?} ranks do not fit",
                            crate::graph::fmt_shape(xs),
                            ws
                        );
                    }
                    if let Dim::Known(cin) = xs[1] {
                        if cin != ws[1] * c.group {
                            crate::bail!("Conv input has {} channels but weight {:?} with group {} expects {}",
                                cin, ws, c.group, ws[1] * c.group);
                        }
                    }
                    if ws[0] % c.group != 0 {
                        crate::bail!(
                            "Conv output channels {} not divisible by group {}",
                            ws[0],
                            c.group
                        );
                    }
                    let kernel = c.kernel_shape.clone().unwrap_or_else(|| ws[2..].to_vec());
                    let mut out = vec![xs[0].clone(), Dim::Known(ws[0])];
                    out.extend(resolve_window_dims(
                        &xs[2..],
                        &kernel,
                        &c.strides,
                        &c.dilations,
                        &c.pads,
                        c.auto_pad,
                        false,
                    )?);
                    Some(out)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::MaxPool(p) | Op::AveragePool(p) | Op::LpPool { pool: p, .. } => {
            let x = x()?;
            let shape = match &x.shape {
                Some(xs) => {
                    if xs.len() != p.kernel_shape.len() + 2 {
                        crate::bail!(
                            "pool kernel {:?} does not fit input {}",
                            p.kernel_shape,
                            crate::graph::fmt_shape(xs)
                        );
                    }
                    let mut out = xs[..2].to_vec();
                    out.extend(resolve_window_dims(
                        &xs[2..],
                        &p.kernel_shape,
                        &p.strides,
                        &p.dilations,
                        &p.pads,
                        p.auto_pad,
                        p.ceil_mode,
                    )?);
                    Some(out)
                }
                None => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            let x = x()?;
            let shape = x.shape.as_ref().map(|s| {
                s.iter()
                    .enumerate()
                    .map(|(i, d)| if i < 2 { d.clone() } else { Dim::Known(1) })
                    .collect()
            });
            one(with_dtype(x.dtype, shape))
        }
        Op::Reshape { allowzero, shape } => {
            let x = x()?;
            let target = match shape {
                Some(s) => Some(s.clone()),
                None => const_ints(Some(input(inputs, 1)?)),
            };
            let out = match target {
                Some(t) => Some(reshape_dims(x.shape.as_deref(), &t, *allowzero)?),
                // The rank is the shape input's length, which a declared
                // shape can set to anything: past MAX_SYMBOLIC_RANK it stays
                // unknown rather than becoming that many symbolic dims.
                None => input(inputs, 1)?.concrete_shape().and_then(|s| {
                    s.first()
                        .filter(|&&r| r <= MAX_SYMBOLIC_RANK)
                        .map(|&r| (0..r).map(|i| Dim::Sym(format!("reshape_{i}"))).collect())
                }),
            };
            one(with_dtype(x.dtype, out))
        }
        Op::Flatten { axis } => {
            let x = x()?;
            let shape = match &x.shape {
                Some(s) => {
                    let r = s.len() as i64;
                    let a = if *axis < 0 { axis + r } else { *axis };
                    if a < 0 || a > r {
                        crate::bail!("Flatten axis {axis} out of range for rank {r}");
                    }
                    let a = a as usize;
                    Some(vec![prod_dims(&s[..a]), prod_dims(&s[a..])])
                }
                None => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Transpose { perm } => {
            let x = x()?;
            let shape = match &x.shape {
                Some(s) => {
                    let perm = crate::shape::transpose_perm(perm.as_deref(), s.len())?;
                    Some(perm.iter().map(|&p| s[p].clone()).collect())
                }
                None => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Squeeze { axes } => {
            let x = x()?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => match opt_input(inputs, 1) {
                    None => None,
                    f => const_ints(f).map(Some).unwrap_or(Some(vec![i64::MIN])),
                },
            };
            let shape = match (&x.shape, axes) {
                (Some(s), None) => {
                    if s.iter().any(|d| matches!(d, Dim::Sym(_))) {
                        None
                    } else {
                        Some(s.iter().filter(|d| **d != Dim::Known(1)).cloned().collect())
                    }
                }
                (Some(_), Some(a)) if a == [i64::MIN] => None,
                (Some(s), Some(a)) => {
                    let mut drop = vec![false; s.len()];
                    for ax in a {
                        let i = dim_axis(ax, s.len())?;
                        if let Dim::Known(d) = s[i] {
                            if d != 1 {
                                crate::bail!("cannot squeeze axis {ax} of size {d}");
                            }
                        }
                        drop[i] = true;
                    }
                    Some(
                        s.iter()
                            .zip(drop)
                            .filter(|(_, d)| !d)
                            .map(|(s, _)| s.clone())
                            .collect(),
                    )
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Unsqueeze { axes } => {
            let x = x()?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => const_ints(Some(input(inputs, 1)?)),
            };
            let shape = match (&x.shape, axes) {
                (Some(s), Some(a)) => {
                    let r = s.len() + a.len();
                    let mut ins = vec![false; r];
                    for ax in a {
                        let i = norm_axis(ax, r)?;
                        if ins[i] {
                            crate::bail!("axis {ax} repeated");
                        }
                        ins[i] = true;
                    }
                    let mut it = s.iter();
                    Some(
                        ins.iter()
                            .map(|&b| {
                                if b {
                                    Dim::Known(1)
                                } else {
                                    it.next().cloned().unwrap_or(Dim::Known(1))
                                }
                            })
                            .collect(),
                    )
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Concat { axis } => {
            let fs: Vec<&Fact> = inputs.iter().flatten().copied().collect();
            if fs.is_empty() {
                crate::bail!("Concat needs at least one input");
            }
            let dt = check_same_dtype(&fs, "Concat")?;
            let shapes: Option<Vec<&Vec<Dim>>> = fs.iter().map(|f| f.shape.as_ref()).collect();
            let shape = match shapes {
                Some(ss) => {
                    let r = ss[0].len();
                    let a = dim_axis(*axis, r)?;
                    let mut out = ss[0].clone();
                    let mut total: Option<usize> = Some(0);
                    for s in &ss {
                        if s.len() != r {
                            crate::bail!("Concat inputs have ranks {} and {}", r, s.len());
                        }
                        total = match (total, &s[a]) {
                            (Some(t), Dim::Known(d)) => Some(t + d),
                            _ => None,
                        };
                    }
                    out[a] = match total {
                        Some(t) => Dim::Known(t),
                        None => Dim::Sym(format!("concat_{a}")),
                    };
                    Some(out)
                }
                None => None,
            };
            one(with_dtype(dt, shape))
        }
        Op::Split { axis, split } => {
            let x = x()?;
            let split = match split {
                Some(s) => Some(s.clone()),
                None => opt_input(inputs, 1).and_then(|f| const_ints(Some(f))),
            };
            let mut outs = Vec::with_capacity(n_out);
            for i in 0..n_out {
                let shape = match &x.shape {
                    Some(s) => {
                        let a = dim_axis(*axis, s.len())?;
                        let mut o = s.clone();
                        o[a] = match (&split, &s[a]) {
                            (Some(sp), _) => {
                                Dim::Known(*sp.get(i).ok_or_else(|| {
                                    Error::msg("split has fewer entries than outputs")
                                })? as usize)
                            }
                            (None, Dim::Known(d)) => {
                                let chunk = d.div_ceil(n_out);
                                Dim::Known(chunk.min(d.saturating_sub(chunk * i)))
                            }
                            (None, Dim::Sym(_)) => Dim::Sym(format!("split_{i}")),
                        };
                        Some(o)
                    }
                    None => None,
                };
                outs.push(with_dtype(x.dtype, shape));
            }
            Ok(outs)
        }
        Op::Shape { start, end } => {
            let x = x()?;
            let len = x.rank().map(|r| {
                let clamp =
                    |v: i64| (if v < 0 { v + r as i64 } else { v }).clamp(0, r as i64) as usize;
                let s = clamp(*start);
                let e = clamp(end.unwrap_or(r as i64));
                e.saturating_sub(s)
            });
            one(with_dtype(
                Some(DType::I64),
                len.map(|l| vec![Dim::Known(l)]),
            ))
        }
        Op::Gather { axis } => {
            let x = x()?;
            let idx = input(inputs, 1)?;
            if let Some(d) = idx.dtype {
                if d != DType::I64 && d != DType::I32 {
                    crate::bail!("indices must be i32 or i64, got {d}");
                }
            }
            let shape = match (&x.shape, &idx.shape) {
                (Some(s), Some(i)) => {
                    let a = dim_axis(*axis, s.len())?;
                    let mut o = s[..a].to_vec();
                    o.extend(i.iter().cloned());
                    o.extend(s[a + 1..].iter().cloned());
                    Some(o)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::Expand => {
            let x = x()?;
            let shape = match (const_ints(Some(input(inputs, 1)?)), &x.shape) {
                (Some(t), Some(s)) => {
                    let t: Vec<Dim> = t.iter().map(|&d| Dim::Known(d.max(0) as usize)).collect();
                    Some(broadcast_dims(s, &t)?)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::ConstantOfShape { value } => {
            let shape = const_ints(Some(input(inputs, 0)?))
                .map(|s| s.iter().map(|&d| Dim::Known(d.max(0) as usize)).collect())
                .or_else(|| {
                    input(inputs, 0).ok()?.concrete_shape().and_then(|s| {
                        s.first()
                            .map(|&r| (0..r).map(|i| Dim::Sym(format!("cos_{i}"))).collect())
                    })
                });
            one(with_dtype(Some(value.dtype()), shape))
        }
        Op::Slice { .. } => {
            // The output extent depends on the bound values; when they are
            // constants the shape is exact, else rank only.
            let x = x()?;
            let shape = x.shape.as_ref().map(|s| {
                s.iter()
                    .enumerate()
                    .map(|(i, _)| Dim::Sym(format!("slice_{i}")))
                    .collect::<Vec<_>>()
            });
            let exact = slice_shape(op, inputs, x)?;
            one(with_dtype(x.dtype, exact.or(shape)))
        }
    }
}

fn slice_shape(op: &Op, inputs: &[Option<&Fact>], x: &Fact) -> Result<Option<Vec<Dim>>> {
    let Op::Slice { starts, ends, axes } = op else {
        return Ok(None);
    };
    let Some(s) = &x.shape else { return Ok(None) };
    let (starts, ends, axes, steps) = if starts.is_some() {
        (starts.clone(), ends.clone(), axes.clone(), None)
    } else {
        (
            const_ints(opt_input(inputs, 1)),
            const_ints(opt_input(inputs, 2)),
            const_ints(opt_input(inputs, 3)),
            const_ints(opt_input(inputs, 4)),
        )
    };
    let (Some(starts), Some(ends)) = (starts, ends) else {
        return Ok(None);
    };
    if opt_input(inputs, 3).is_some() && axes.is_none()
        || opt_input(inputs, 4).is_some() && steps.is_none()
    {
        return Ok(None);
    }
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        crate::bail!("Slice starts/ends/axes/steps lengths differ");
    }
    let mut out = s.clone();
    for i in 0..starts.len() {
        let a = dim_axis(axes[i], s.len())?;
        let Dim::Known(d) = s[a] else {
            out[a] = Dim::Sym(format!("slice_{a}"));
            continue;
        };
        let step = steps[i];
        if step == 0 {
            crate::bail!("Slice step cannot be 0");
        }
        let (lo, hi) = crate::shape::slice_range(starts[i], ends[i], step, d);
        out[a] = Dim::Known(crate::shape::slice_len(lo, hi, step));
    }
    Ok(Some(out))
}

/// The element count of Reshape's known output dims (`None` when one is
/// symbolic); a count past usize is an error naming the target shape.
fn known_product(target: &[i64], dims: &[Option<Dim>]) -> Result<Option<usize>> {
    let mut p = 1usize;
    for d in dims.iter().flatten() {
        let Some(n) = d.known() else {
            return Ok(None);
        };
        p = p.checked_mul(n).ok_or_else(|| {
            Error::msg(format!(
                "shape {target:?} has more elements than fit in usize"
            ))
        })?;
    }
    Ok(Some(p))
}

fn reshape_dims(x: Option<&[Dim]>, target: &[i64], allowzero: bool) -> Result<Vec<Dim>> {
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 => {
                if infer_at.replace(i).is_some() {
                    crate::bail!("shape {:?} has more than one -1", target);
                }
                out.push(None);
            }
            0 if !allowzero => {
                let d = x.and_then(|x| x.get(i)).cloned();
                match d {
                    Some(d) => out.push(Some(d)),
                    None if x.is_some() => {
                        crate::bail!("shape {:?} copies dim {i} which the input lacks", target)
                    }
                    None => out.push(Some(Dim::Sym(format!("reshape_{i}")))),
                }
            }
            t if t < 0 => crate::bail!("shape {:?} has invalid entry {t}", target),
            t => out.push(Some(Dim::Known(t as usize))),
        }
    }
    if let Some(i) = infer_at {
        let total = x.and_then(|x| prod_dims(x).known());
        let rest = known_product(target, &out)?;
        out[i] = Some(match (total, rest) {
            (Some(t), Some(r)) if r > 0 => {
                if t % r != 0 {
                    crate::bail!("cannot reshape {} elements to {:?}", t, target);
                }
                Dim::Known(t / r)
            }
            _ => Dim::Sym(format!("reshape_{i}")),
        });
    } else if let Some(x) = x {
        let total = prod_dims(x).known();
        let new = known_product(target, &out)?;
        if let (Some(t), Some(n)) = (total, new) {
            if t != n {
                crate::bail!(
                    "cannot reshape {} ({} elements) to {:?}",
                    crate::graph::fmt_shape(x),
                    t,
                    target
                );
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}

fn matmul_shape(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>> {
    if a.is_empty() || b.is_empty() {
        crate::bail!("MatMul operands must have rank >= 1");
    }
    let a2: Vec<Dim> = if a.len() == 1 {
        vec![Dim::Known(1), a[0].clone()]
    } else {
        a.to_vec()
    };
    let b2: Vec<Dim> = if b.len() == 1 {
        vec![b[0].clone(), Dim::Known(1)]
    } else {
        b.to_vec()
    };
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if let (Dim::Known(x), Dim::Known(y)) = (ka, kb) {
        if x != y {
            crate::bail!(
                "MatMul inner dims differ: {} x {}",
                crate::graph::fmt_shape(a),
                crate::graph::fmt_shape(b)
            );
        }
    }
    let mut out = broadcast_dims(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Ok(out)
}
