//! The graph IR: values (edges) and nodes (ops), with the facts shape and
//! dtype inference established for each value.
//!
//! Values are numbered; a node refers to its inputs and outputs by
//! [`ValueId`]. Nodes are kept in topological order (the importer checks it),
//! so a single forward pass evaluates a graph.

use crate::dtype::DType;
use crate::op::Op;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Index of a value in [`Graph::values`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ValueId(pub usize);

/// Index of a node in [`Graph::nodes`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct NodeId(pub usize);

/// One dimension: known, or a named symbol (e.g. `batch`) fixed at run time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size.
    Known(usize),
    /// A symbolic size; the name is the ONNX `dim_param` (or a generated one).
    Sym(String),
}

impl Dim {
    /// The size when known.
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// Formats a symbolic shape as `[batch,3,224,224]`.
pub fn fmt_shape(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// What is known about a value before running: dtype, shape (rank and dims,
/// possibly symbolic), and the value itself when it is a constant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fact {
    /// Element type, when known.
    pub dtype: Option<DType>,
    /// Shape, when the rank is known.
    pub shape: Option<Vec<Dim>>,
    /// The constant value (initializers and folded constants).
    pub value: Option<Arc<Tensor>>,
}

impl Fact {
    /// The fact of a known tensor.
    pub fn constant(t: Arc<Tensor>) -> Fact {
        Fact {
            dtype: Some(t.dtype()),
            shape: Some(t.shape().iter().map(|&d| Dim::Known(d)).collect()),
            value: Some(t),
        }
    }
    /// A fact with dtype and concrete shape.
    pub fn known(dtype: DType, shape: &[usize]) -> Fact {
        Fact {
            dtype: Some(dtype),
            shape: Some(shape.iter().map(|&d| Dim::Known(d)).collect()),
            value: None,
        }
    }
    /// The concrete shape if every dim is known.
    pub fn concrete_shape(&self) -> Option<Vec<usize>> {
        self.shape.as_ref()?.iter().map(|d| d.known()).collect()
    }
    /// Rank when known.
    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(|s| s.len())
    }
}

/// A value: an edge of the graph.
#[derive(Clone, Debug)]
pub struct Value {
    /// The ONNX name.
    pub name: String,
    /// What inference established.
    pub fact: Fact,
}

/// A node: an op applied to values.
#[derive(Clone, Debug)]
pub struct Node {
    /// The ONNX node name (generated when the model left it empty).
    pub name: String,
    /// The op and its attributes.
    pub op: Op,
    /// Positional inputs; `None` for an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs; an omitted optional output still gets a value.
    pub outputs: Vec<ValueId>,
}

/// A computation graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Every value, indexed by [`ValueId`].
    pub values: Vec<Value>,
    /// Nodes in topological order, indexed by [`NodeId`].
    pub nodes: Vec<Node>,
    /// Inputs the caller feeds, in declaration order (initializers excluded).
    pub inputs: Vec<ValueId>,
    /// Graph outputs in declaration order.
    pub outputs: Vec<ValueId>,
    /// Constant values: initializers and folded constants.
    pub constants: HashMap<ValueId, Arc<Tensor>>,
    /// The default-domain opset the model imports.
    pub opset: i64,
}

impl Graph {
    /// The value with this id.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0]
    }
    /// The value's name.
    pub fn name(&self, id: ValueId) -> &str {
        &self.values[id.0].name
    }
    /// Looks a value up by name.
    pub fn find(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name).map(ValueId)
    }
    /// Adds a value and returns its id.
    pub fn add_value(&mut self, name: impl Into<String>, fact: Fact) -> ValueId {
        self.values.push(Value {
            name: name.into(),
            fact,
        });
        ValueId(self.values.len() - 1)
    }
    /// For each value, the node that produces it (None for inputs/constants).
    pub fn producers(&self) -> Vec<Option<NodeId>> {
        let mut p = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for o in &n.outputs {
                p[o.0] = Some(NodeId(i));
            }
        }
        p
    }
    /// For each value, the nodes that read it (once per node).
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut c: Vec<Vec<NodeId>> = vec![Vec::new(); self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for v in n.inputs.iter().flatten() {
                if !c[v.0].contains(&NodeId(i)) {
                    c[v.0].push(NodeId(i));
                }
            }
        }
        c
    }
    /// Total bytes of constant tensors (the model's weights).
    pub fn weight_bytes(&self) -> usize {
        self.constants.values().map(|t| t.byte_len()).sum()
    }
    /// A short summary of a node for messages: `'name' (Op)`.
    pub fn describe(&self, n: NodeId) -> String {
        let node = &self.nodes[n.0];
        format!("'{}' ({})", node.name, node.op.name())
    }
}

/// Building graphs in code (tests, examples, generated workloads).
impl Graph {
    /// Declares a graph input the caller feeds.
    pub fn add_input(&mut self, name: &str, dtype: DType, shape: Vec<Dim>) -> ValueId {
        let id = self.add_value(
            name,
            Fact {
                dtype: Some(dtype),
                shape: Some(shape),
                value: None,
            },
        );
        self.inputs.push(id);
        id
    }
    /// Adds a constant (weight).
    pub fn add_const(&mut self, name: &str, t: Tensor) -> ValueId {
        let t = Arc::new(t);
        let id = self.add_value(name, Fact::constant(t.clone()));
        self.constants.insert(id, t);
        id
    }
    /// Appends a node with `n_outputs` fresh outputs named `<name>:<i>`
    /// (or `name` itself when there is one output).
    pub fn add_node(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[ValueId],
        n_outputs: usize,
    ) -> Vec<ValueId> {
        let outputs: Vec<ValueId> = (0..n_outputs)
            .map(|i| {
                let vname = if n_outputs == 1 {
                    name.to_string()
                } else {
                    format!("{name}:{i}")
                };
                self.add_value(vname, Fact::default())
            })
            .collect();
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.iter().map(|&i| Some(i)).collect(),
            outputs: outputs.clone(),
        });
        outputs
    }
    /// Marks a value as a graph output.
    pub fn add_output(&mut self, v: ValueId) {
        self.outputs.push(v);
    }
}
