//! Control flow: If, Loop and Scan, ops that carry subgraphs ([`Body`]).
//!
//! A body is a [`Graph`] of its own, imported and inferred with the model
//! (`onnx/mod.rs`). A body may read values of the graphs around it by
//! name; the importer turns each such outer value into a *capture*: an
//! extra input of the body, after the inputs ONNX declares, and an extra
//! input of the node, after the node's own inputs (for If the then
//! branch's captures come before the else branch's). A body nested in a
//! body captures through every level, so a node only ever reads values of
//! the graph it is in, and placement, transfers and liveness see every
//! value a control-flow node needs.
//!
//! The scheduler treats a control-flow node as one task on one device (a
//! CPU device: the body runs with the host interpreter, `kernel.rs`); its
//! cost is its body's (`cost.rs`, see [`crate::cost::op_cost`]).

pub mod cost;
pub(crate) mod eval;
pub mod infer;
pub mod kernel;
pub mod onnx;

use crate::graph::Graph;
use std::sync::Arc;

/// A subgraph attribute: the body graph and how many of its inputs ONNX
/// declares (`formal`); the rest of its inputs are captures of outer
/// values, fed from the node's trailing inputs in order.
#[derive(Clone, Debug)]
pub struct Body {
    /// The body, inferred; shared by clones of the op.
    pub graph: Arc<Graph>,
    /// The number of declared (non-capture) inputs.
    pub formal: usize,
}

impl Body {
    /// The number of captured outer values.
    pub fn captures(&self) -> usize {
        self.graph.inputs.len().saturating_sub(self.formal)
    }
}

/// Bodies are equal when they are the same imported graph.
impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        Arc::ptr_eq(&self.graph, &other.graph) && self.formal == other.formal
    }
}

/// Scan's per-input and per-output axes and directions (opset 9+),
/// normalised to one entry per scan input / scan output.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanAttrs {
    /// Scan inputs M (the last M declared inputs).
    pub num_scan_inputs: usize,
    /// The axis each scan input is sliced along (may be negative).
    pub input_axes: Vec<i64>,
    /// True where a scan input is walked from its end.
    pub input_reverse: Vec<bool>,
    /// The axis each scan output is stacked along (may be negative).
    pub output_axes: Vec<i64>,
    /// True where a scan output is stacked in reverse order.
    pub output_reverse: Vec<bool>,
    /// Opset 8's form: input 0 is the optional sequence_lens, every state
    /// and scan input has a leading batch axis, the scan axis is 1, and
    /// each batch entry is scanned on its own.
    pub batched: bool,
}
