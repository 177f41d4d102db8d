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
//!
//! [`infer_op`] only dispatches: each op's rules live in its family's
//! `infer.rs` under [`crate::op`].

use crate::error::{Error, Result};
use crate::graph::{Dim, Fact, Graph};
use crate::op::{
    attention, control, conv, einsum, elementwise, index, loss, matmul, misc, ml, movement, norm,
    optim, pool, quant, reduce, resize, rnn, seq, signal, Family, Op,
};
use std::sync::Arc;

impl Graph {
    /// Runs shape inference and constant folding (as the ONNX loader does).
    /// (Defined here rather than in `graph.rs` so that the IR does not
    /// depend on inference.)
    pub fn finish(mut self) -> Result<Graph> {
        infer_graph(&mut self)?;
        Ok(self)
    }

    /// The facts of `op`'s `n_out` outputs when it reads `inputs`, from
    /// their facts; an error names node `name`.
    pub fn infer_outputs(
        &self,
        name: &str,
        op: &Op,
        inputs: &[Option<crate::ValueId>],
        n_out: usize,
    ) -> Result<Vec<Fact>> {
        let refs: Vec<Option<&Fact>> = inputs
            .iter()
            .map(|i| i.map(|i| &self.values[i.0].fact))
            .collect();
        infer_op(op, &refs, n_out).map_err(|e| e.at_node(name, op.name()))
    }

    /// Appends node `name` with its outputs' facts inferred at once (and
    /// nothing folded), for graphs extended after loading: the backward
    /// pass, a training loss. Outputs are named `name`, or `name:k` when
    /// there are several.
    pub fn add_inferred(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[Option<crate::ValueId>],
        n_out: usize,
    ) -> Result<Vec<crate::ValueId>> {
        let facts = self.infer_outputs(name, &op, inputs, n_out)?;
        let ids: Vec<crate::ValueId> = facts
            .into_iter()
            .enumerate()
            .map(|(k, f)| {
                let vname = if n_out == 1 {
                    name.to_string()
                } else {
                    format!("{name}:{k}")
                };
                self.add_value(vname, Fact { value: None, ..f })
            })
            .collect();
        self.nodes.push(crate::graph::Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            outputs: ids.clone(),
        });
        Ok(ids)
    }
}

/// Folding evaluates a node only when its inputs together and each of its
/// outputs stay this small (elements).
const FOLD_LIMIT: usize = 1 << 22;

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
        // Constant folding. A node with no inputs (OptionalHasElement of
        // nothing) is constant too: folded here, it never reaches the
        // runtime, where a node nothing feeds would never fire.
        if foldable(&node.op) && refs.iter().flatten().all(|f| f.value.is_some()) {
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
    !matches!(op, Op::Dropout | Op::DropoutTrain { .. })
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

/// Infers the facts of one op's outputs from its inputs' facts. Unknowns
/// stay unknown; contradictions are errors. The rules are the op family's
/// (`op/<family>/infer.rs`).
pub fn infer_op(op: &Op, inputs: &[Option<&Fact>], n_out: usize) -> Result<Vec<Fact>> {
    match op.family() {
        Family::Elementwise => elementwise::infer::infer(op, inputs, n_out),
        Family::Movement => movement::infer::infer(op, inputs, n_out),
        Family::Reduce => reduce::infer::infer(op, inputs, n_out),
        Family::MatMul => matmul::infer::infer(op, inputs, n_out),
        Family::Norm => norm::infer::infer(op, inputs, n_out),
        Family::Conv => conv::infer::infer(op, inputs, n_out),
        Family::Pool => pool::infer::infer(op, inputs, n_out),
        Family::Index => index::infer::infer(op, inputs, n_out),
        Family::Loss => loss::infer::infer(op, inputs, n_out),
        Family::Attention => attention::infer::infer(op, inputs, n_out),
        Family::Resize => resize::infer::infer(op, inputs, n_out),
        Family::Einsum => einsum::infer::infer(op, inputs, n_out),
        Family::Misc => misc::infer::infer(op, inputs, n_out),
        Family::Rnn => rnn::infer::infer(op, inputs, n_out),
        Family::Signal => signal::infer::infer(op, inputs, n_out),
        Family::Seq => seq::infer::infer(op, inputs, n_out),
        Family::Quant => quant::infer::infer(op, inputs, n_out),
        Family::Control => control::infer::infer(op, inputs, n_out),
        Family::Optim => optim::infer::infer(op, inputs, n_out),
        Family::Ml => ml::infer::infer(op, inputs, n_out),
    }
}

/// True for ops whose inputs after the first may carry shapes, axes or
/// bounds that decide the output shape (opset 10+ moved them from
/// attributes to inputs). Inference cannot tell such an input's absence
/// from its value being unknown, so whoever resolves output shapes for a
/// run (the runtime, before handing an op to a device) passes those
/// inputs' values as constants whenever they are present.
pub fn reads_shape_operands(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape { shape: None, .. }
            | Op::Squeeze { axes: None }
            | Op::Unsqueeze { axes: None }
            | Op::Split { split: None, .. }
            | Op::Slice { starts: None, .. }
            | Op::Reduce { axes: None, .. }
            | Op::Expand
            | Op::AffineGrid { .. }
            | Op::MaxUnpool { .. }
    )
}
