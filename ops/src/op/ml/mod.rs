//! Classical machine-learning ops of the `ai.onnx.ml` domain: Binarizer
//! (opset 1), ArrayFeatureExtractor (opset 1) and TreeEnsemble (opset 5).
//! The importer hands them to `onnx.rs` under their qualified names
//! (`ai.onnx.ml.Binarizer`).
//!
//! This module holds the family's attributes; `onnx.rs` its ONNX mapping;
//! `infer.rs` its shape and type inference; `cost.rs` its flops and cost
//! class; `kernel.rs` its host kernels (dispatched from [`crate::kernels`]).

pub(crate) mod cost;
pub(crate) mod eval;
pub(crate) mod infer;
pub(crate) mod kernel;
pub(crate) mod onnx;

/// How a tree node compares its feature with its split value (the
/// `nodes_modes` codes 0 to 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeMode {
    /// `x <= split`
    Leq,
    /// `x < split`
    Lt,
    /// `x >= split`
    Gte,
    /// `x > split`
    Gt,
    /// `x == split`
    Eq,
    /// `x != split`
    Neq,
    /// `x` is one of the node's members
    Member,
}

/// How the leaves reached in each tree are combined per target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeAggregate {
    /// Mean over the trees.
    Average,
    /// Sum.
    Sum,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

/// One interior node of a tree ensemble.
#[derive(Clone, Debug, PartialEq)]
pub struct TreeNode {
    /// The compared feature (column of X).
    pub feature: usize,
    /// The comparison.
    pub mode: TreeMode,
    /// The split value (unused for [`TreeMode::Member`]).
    pub split: f64,
    /// The members of a [`TreeMode::Member`] node.
    pub members: Vec<f64>,
    /// Whether a NaN feature takes the true branch.
    pub missing_true: bool,
    /// Where the true branch goes.
    pub on_true: TreeRef,
    /// Where the false branch goes.
    pub on_false: TreeRef,
}

/// A branch target: an interior node or a leaf, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeRef {
    /// Index into the nodes.
    Node(usize),
    /// Index into the leaves.
    Leaf(usize),
}

/// TreeEnsemble (`ai.onnx.ml` opset 5), validated at import: every
/// reference is in range.
#[derive(Clone, Debug, PartialEq)]
pub struct TreeEnsembleAttrs {
    /// Interior nodes.
    pub nodes: Vec<TreeNode>,
    /// Each leaf's (target, weight).
    pub leaves: Vec<(usize, f64)>,
    /// Each tree's root.
    pub roots: Vec<TreeRef>,
    /// Output columns.
    pub n_targets: usize,
    /// How leaves combine.
    pub aggregate: TreeAggregate,
}
