//! Reverse-mode automatic differentiation over the graph IR.
//!
//! [`differentiate`] appends to a graph the nodes that compute the gradient
//! of a scalar loss with respect to chosen values (the parameters). The
//! backward pass is ordinary nodes of the same IR, so every device runs it
//! and the scheduler places it like any other op: the rules emit existing
//! ops where those express the gradient (MatMul and Transpose for MatMul,
//! ReduceSum for broadcasting, Pad for Slice, Split for Concat) and the
//! backward ops of [`crate::op`] (`ConvGradFilter`, `PoolGrad`,
//! `SoftmaxGrad`, ...) where they do not.
//!
//! Each op's rule lives with the op, in its family's `grad.rs`
//! (`op/<family>/grad.rs`); this module only walks the graph and
//! dispatches. An op without a rule is refused when the backward graph is
//! built, naming the node.
//!
//! The walk needs concrete shapes (the rules choose reduction axes and
//! reshape targets from them): bind the input shapes first
//! ([`crate::specialize::specialize`]). Gradients of a value read by
//! several nodes are summed with `Add` nodes. Only values on a path from a
//! parameter to the loss get a gradient.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, ValueId};
use crate::op::{
    conv, elementwise, loss, matmul, movement, norm, pool, reduce, BinaryOp, Family, Op,
    ReduceKind, UnaryOp,
};
use crate::tensor::Tensor;

/// Appends to `g` the backward pass of the scalar `loss` and returns, for
/// each of `wrt`, the value holding its gradient, or `None` when no
/// gradient reaches it (the loss does not depend on it, or only through
/// inputs that carry none, such as BatchNormalization's running
/// statistics).
pub fn differentiate(
    g: &mut Graph,
    loss: ValueId,
    wrt: &[ValueId],
) -> Result<Vec<Option<ValueId>>> {
    Ok(differentiate_traced(g, loss, wrt)?.0)
}

/// The gradients [`differentiate_traced`] returns, with the forward node
/// each appended node belongs to.
pub type Traced = (Vec<Option<ValueId>>, Vec<Option<usize>>);

/// [`differentiate`], also returning, for each node it appended (in
/// order), the forward node whose gradient it helps compute: the node
/// whose rule made it, or, for the `Add` that sums a value's gradient
/// contributions, the node producing that value. `None` marks the sums
/// of a parameter's contributions (a parameter has no producer). A
/// pipeline runs each backward node on its forward node's stage.
pub fn differentiate_traced(g: &mut Graph, loss: ValueId, wrt: &[ValueId]) -> Result<Traced> {
    let n_forward = g.nodes.len();
    let lf = &g.values[loss.0].fact;
    let lshape = lf
        .concrete_shape()
        .ok_or_else(|| Error::msg(format!("the loss '{}' has no known shape", g.name(loss))))?;
    if lshape.iter().product::<usize>() != 1 {
        crate::bail!(
            "the loss '{}' must be a scalar, it has shape {lshape:?}",
            g.name(loss)
        );
    }
    let ldt = float_dtype(g, loss)?;

    // Forward: which values depend on a parameter.
    let mut needs = vec![false; g.values.len()];
    for &p in wrt {
        needs[p.0] = true;
    }
    for node in &g.nodes[..n_forward] {
        if node.inputs.iter().flatten().any(|i| needs[i.0]) {
            for o in &node.outputs {
                needs[o.0] = true;
            }
        }
    }
    // Backward: which values the loss depends on.
    let mut useful = vec![false; g.values.len()];
    useful[loss.0] = true;
    for node in g.nodes[..n_forward].iter().rev() {
        if node.outputs.iter().any(|o| useful[o.0]) {
            for i in node.inputs.iter().flatten() {
                useful[i.0] = true;
            }
        }
    }

    let mut cx = Grads {
        g,
        grads: Vec::new(),
        counter: 0,
        origin: None,
        origins: Vec::new(),
    };
    cx.grads = vec![Vec::new(); cx.g.values.len()];
    let one = cx.constant(
        "loss",
        Tensor::from_vec(lshape.clone(), vec![1.0f64])?.cast(ldt),
    );
    cx.grads[loss.0].push(one);

    for ni in (0..n_forward).rev() {
        let node = cx.g.nodes[ni].clone();
        cx.origin = Some(ni);
        if !node.outputs.iter().any(|o| useful[o.0] && needs[o.0]) {
            continue;
        }
        let want: Vec<bool> = node
            .inputs
            .iter()
            .map(|i| i.is_some_and(|i| needs[i.0] && useful[i.0] && is_float(cx.g, &i)))
            .collect();
        if !want.iter().any(|&w| w) {
            continue;
        }
        let mut gys = Vec::with_capacity(node.outputs.len());
        for o in &node.outputs {
            gys.push(cx.total(*o)?);
        }
        if gys.iter().all(|g| g.is_none()) {
            continue;
        }
        let ctx = |e: Error| e.at_node(&node.name, node.op.name());
        let gx = rule(&mut cx, &node, &gys, &want).map_err(ctx)?;
        for (k, gi) in gx.into_iter().enumerate() {
            if let (Some(gi), Some(Some(inp))) = (gi, node.inputs.get(k)) {
                if want[k] {
                    cx.grads[inp.0].push(gi);
                }
            }
        }
    }

    cx.origin = None;
    let mut out = Vec::with_capacity(wrt.len());
    for &p in wrt {
        out.push(cx.total(p)?);
    }
    Ok((out, cx.origins))
}

fn rule(cx: &mut Grads, node: &Node, gys: &[Option<ValueId>], want: &[bool]) -> Result<Grad> {
    match node.op.family() {
        Family::Elementwise => elementwise::grad::grad(cx, node, gys, want),
        Family::MatMul => matmul::grad::grad(cx, node, gys, want),
        Family::Conv => conv::grad::grad(cx, node, gys, want),
        Family::Pool => pool::grad::grad(cx, node, gys, want),
        Family::Norm => norm::grad::grad(cx, node, gys, want),
        Family::Movement => movement::grad::grad(cx, node, gys, want),
        Family::Reduce => reduce::grad::grad(cx, node, gys, want),
        Family::Loss => loss::grad::grad(cx, node, gys, want),
        _ => Err(no_rule(&node.op)),
    }
}

/// The error for an op the backward pass cannot go through.
pub(crate) fn no_rule(op: &Op) -> Error {
    Error::msg(format!(
        "training cannot differentiate through {} (no gradient rule; \
         docs/training.md lists the ops that have one)",
        op.name()
    ))
}

fn is_float(g: &Graph, v: &ValueId) -> bool {
    g.values[v.0].fact.dtype.is_some_and(|d| d.is_float())
}

fn float_dtype(g: &Graph, v: ValueId) -> Result<DType> {
    match g.values[v.0].fact.dtype {
        Some(d) if d.is_float() => Ok(d),
        Some(d) => crate::bail!("'{}' is {d}, not a float tensor", g.name(v)),
        None => crate::bail!("'{}' has no known dtype", g.name(v)),
    }
}

/// Per-input gradients a rule returns (`None`: no gradient flows there).
pub(crate) type Grad = Vec<Option<ValueId>>;

/// The graph being extended, for the rules: adds nodes with their facts
/// inferred on the spot, and the helpers most rules share.
pub(crate) struct Grads<'g> {
    g: &'g mut Graph,
    /// Gradient contributions per value, summed on first read.
    grads: Vec<Vec<ValueId>>,
    counter: usize,
    /// The forward node being differentiated.
    origin: Option<usize>,
    /// `origin` of every node appended so far.
    origins: Vec<Option<usize>>,
}

impl Grads<'_> {
    /// The summed gradient of `v` so far (None when nothing flows to it).
    fn total(&mut self, v: ValueId) -> Result<Option<ValueId>> {
        let parts = std::mem::take(&mut self.grads[v.0]);
        let mut it = parts.into_iter();
        let Some(mut acc) = it.next() else {
            return Ok(None);
        };
        for p in it {
            acc = self.binary(BinaryOp::Add, acc, p)?;
        }
        self.grads[v.0] = vec![acc];
        Ok(Some(acc))
    }

    /// Appends a node; its outputs' facts are inferred at once.
    pub(crate) fn node(
        &mut self,
        what: &str,
        op: Op,
        inputs: &[Option<ValueId>],
        n_out: usize,
    ) -> Result<Vec<ValueId>> {
        self.counter += 1;
        let name = format!("grad{}/{what}", self.counter);
        let before = self.g.nodes.len();
        let out = self.g.add_inferred(&name, op, inputs, n_out)?;
        let added = self.g.nodes.len() - before;
        self.origins.extend(std::iter::repeat_n(self.origin, added));
        Ok(out)
    }

    /// One-output node with every input present.
    pub(crate) fn node1(&mut self, what: &str, op: Op, inputs: &[ValueId]) -> Result<ValueId> {
        let ins: Vec<Option<ValueId>> = inputs.iter().map(|&i| Some(i)).collect();
        Ok(self.node(what, op, &ins, 1)?[0])
    }

    /// Adds a constant.
    pub(crate) fn constant(&mut self, what: &str, t: Tensor) -> ValueId {
        self.counter += 1;
        let name = format!("grad{}/{what}", self.counter);
        self.g.add_const(&name, t)
    }

    /// An i64 vector constant (shapes, axes, pads).
    pub(crate) fn ints(&mut self, what: &str, v: &[i64]) -> Result<ValueId> {
        Ok(self.constant(what, Tensor::from_vec(vec![v.len()], v.to_vec())?))
    }

    /// A scalar of `v`'s float dtype.
    pub(crate) fn scalar_like(&mut self, v: ValueId, x: f64) -> Result<ValueId> {
        let dt = float_dtype(self.g, v)?;
        Ok(self.constant("scalar", Tensor::scalar(x).cast(dt)))
    }

    /// The concrete shape of `v`.
    pub(crate) fn shape(&self, v: ValueId) -> Result<Vec<usize>> {
        self.g.values[v.0].fact.concrete_shape().ok_or_else(|| {
            Error::msg(format!(
                "'{}' has no concrete shape (bind the input shapes before building the backward pass)",
                self.g.name(v)
            ))
        })
    }

    /// The element type of `v`, when known.
    pub(crate) fn dtype(&self, v: ValueId) -> Option<DType> {
        self.g.values[v.0].fact.dtype
    }

    /// The constant value of `v`, if it is one.
    pub(crate) fn const_value(&self, v: ValueId) -> Option<&Tensor> {
        self.g
            .constants
            .get(&v)
            .map(|t| &**t)
            .or(self.g.values[v.0].fact.value.as_deref())
    }

    pub(crate) fn binary(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> Result<ValueId> {
        self.node1("binary", Op::Binary(b), &[x, y])
    }

    pub(crate) fn unary(&mut self, u: UnaryOp, x: ValueId) -> Result<ValueId> {
        self.node1("unary", Op::Unary(u), &[x])
    }

    /// `v` reshaped to `shape` (no node when it already has it).
    pub(crate) fn reshape(&mut self, v: ValueId, shape: &[usize]) -> Result<ValueId> {
        if self.shape(v)? == shape {
            return Ok(v);
        }
        let s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let sv = self.ints("shape", &s)?;
        self.node1(
            "reshape",
            Op::Reshape {
                allowzero: false,
                shape: None,
            },
            &[v, sv],
        )
    }

    /// `v` transposed by `perm`.
    pub(crate) fn transpose(&mut self, v: ValueId, perm: Vec<usize>) -> Result<ValueId> {
        self.node1("transpose", Op::Transpose { perm: Some(perm) }, &[v])
    }

    /// Sum of `v` over `axes`, dims kept.
    pub(crate) fn reduce_sum(&mut self, v: ValueId, axes: &[usize]) -> Result<ValueId> {
        self.node1(
            "reduce_sum",
            Op::Reduce {
                kind: ReduceKind::Sum,
                axes: Some(axes.iter().map(|&a| a as i64).collect()),
                keepdims: true,
                noop_with_empty_axes: false,
            },
            &[v],
        )
    }

    /// `v` broadcast to `shape`.
    pub(crate) fn expand(&mut self, v: ValueId, shape: &[usize]) -> Result<ValueId> {
        if self.shape(v)? == shape {
            return Ok(v);
        }
        let s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let sv = self.ints("shape", &s)?;
        self.node1("expand", Op::Expand, &[v, sv])
    }

    /// The gradient of a value of shape `to` that was broadcast to `v`'s
    /// shape: `v` summed over the broadcast dims, reshaped to `to`.
    pub(crate) fn sum_to(&mut self, v: ValueId, to: &[usize]) -> Result<ValueId> {
        let from = self.shape(v)?;
        if from == to {
            return Ok(v);
        }
        if to.len() > from.len() {
            crate::bail!("cannot reduce a gradient of shape {from:?} to {to:?}");
        }
        let lead = from.len() - to.len();
        let axes: Vec<usize> = (0..from.len())
            .filter(|&a| a < lead || (to[a - lead] == 1 && from[a] != 1))
            .collect();
        let r = if axes.is_empty() {
            v
        } else {
            self.reduce_sum(v, &axes)?
        };
        self.reshape(r, to)
    }

    /// The shape of input `k` of `node`.
    pub(crate) fn in_shape(&self, node: &Node, k: usize) -> Result<Vec<usize>> {
        let v = input(node, k)?;
        self.shape(v)
    }
}

/// Input `k` of `node`, which must be present.
pub(crate) fn input(node: &Node, k: usize) -> Result<ValueId> {
    node.inputs
        .get(k)
        .copied()
        .flatten()
        .ok_or_else(|| Error::msg(format!("input {k} is missing")))
}

/// The single output gradient of a one-output op.
pub(crate) fn gy0(gys: &[Option<ValueId>]) -> Result<ValueId> {
    gys.first()
        .copied()
        .flatten()
        .ok_or_else(|| Error::msg("no gradient reaches output 0"))
}

#[cfg(test)]
pub(crate) mod check;
