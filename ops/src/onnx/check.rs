//! Strict loading: the model-level checks onnxruntime makes before it runs
//! anything, so that a model hetflow runs is one the ONNX tools accept.
//!
//! - The IR version is set and no newer than the onnx release the loader
//!   was checked against (`schemas::MAX_IR_VERSION`).
//! - Opset imports: at most one per domain, versions ≥ 1, the default
//!   domain's no newer than `schemas::MAX_OPSET`, and present whenever a
//!   node uses the default domain (IR ≥ 3; older files mean opset 1).
//! - Every default-domain op exists in the imported opset: not added later,
//!   not removed earlier (`schemas::DEFAULT_DOMAIN`, generated from the
//!   onnx package by `scripts/gen_onnx_schemas.py`).
//! - Attributes: unique names, a type, exactly the value field that type
//!   names (an INT attribute holding a float is refused, not read as 0);
//!   the typed getters of `attrs.rs` then refuse a type the op does not
//!   take.
//! - Names: graph inputs, initializers and non-empty node names unique; at
//!   least one graph output, each listed once.

use super::proto::{
    attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, NodeProto,
};
use super::schemas::{DEFAULT_DOMAIN, MAX_IR_VERSION, MAX_OPSET, ONNX_RELEASE};
use crate::error::{Error, Result};
use std::collections::HashSet;

/// Checks the IR version and the opset imports; returns the default
/// domain's opset.
pub(super) fn model_opset(model: &ModelProto, graph: &GraphProto) -> Result<i64> {
    let ir = model.ir_version.unwrap_or(0);
    if ir <= 0 {
        crate::bail!("the model sets no ir_version (every ONNX file must)");
    }
    if ir > MAX_IR_VERSION {
        crate::bail!(
            "IR version {ir} is newer than hetflow reads (up to {MAX_IR_VERSION}, onnx {})",
            ONNX_RELEASE
        );
    }
    let mut seen = HashSet::new();
    let mut opset = None;
    for imp in &model.opset_import {
        let d = if default_domain(imp.domain()) {
            "ai.onnx"
        } else {
            imp.domain()
        };
        if !seen.insert(d.to_string()) {
            crate::bail!("opset_import lists domain '{d}' twice");
        }
        let v = imp.version.unwrap_or(0);
        if v < 1 {
            crate::bail!("opset_import for domain '{d}' has version {v}; versions start at 1");
        }
        if d == "ai.onnx" {
            if v > MAX_OPSET {
                crate::bail!(
                    "opset {v} of domain ai.onnx is newer than hetflow supports (opsets 1 to {MAX_OPSET}, onnx {})",
                    ONNX_RELEASE
                );
            }
            opset = Some(v);
        }
    }
    match opset {
        Some(v) => Ok(v),
        // IR 1 and 2 predate opset_import: opset 1 is implied.
        None if ir < 3 => Ok(1),
        None => {
            if let Some(n) = graph.node.iter().find(|n| is_default_domain(n)) {
                crate::bail!(
                    "the model imports no opset for the default domain (ai.onnx), yet node '{}' ({}) uses it",
                    n.name(),
                    n.op_type()
                );
            }
            Ok(1)
        }
    }
}

/// The opset the model imports for each domain other than the default one
/// (`ai.onnx.ml`, `ai.onnx.preview.training`, ...). Nodes of a domain not
/// listed are refused as unsupported.
pub(super) fn domain_opsets(model: &ModelProto) -> std::collections::HashMap<String, i64> {
    model
        .opset_import
        .iter()
        .filter(|imp| !default_domain(imp.domain()))
        .map(|imp| (imp.domain().to_string(), imp.version.unwrap_or(1)))
        .collect()
}

/// Whether `domain` names the default ONNX domain (empty or `ai.onnx`).
fn default_domain(domain: &str) -> bool {
    matches!(domain, "" | "ai.onnx")
}

pub(super) fn is_default_domain(n: &NodeProto) -> bool {
    default_domain(n.domain())
}

/// Refuses a default-domain op that is not in `opset`: added in a later
/// opset, or removed by then. Ops the table does not know pass (the
/// converter refuses them as unsupported).
pub(super) fn op_in_opset(op: &str, opset: i64) -> std::result::Result<(), String> {
    let Ok(i) = DEFAULT_DOMAIN.binary_search_by(|(name, _, _)| (*name).cmp(op)) else {
        return Ok(());
    };
    let (_, since, removed) = DEFAULT_DOMAIN[i];
    if since[0] > opset {
        return Err(format!(
            "{op} is not in opset {opset}: it was added in opset {}",
            since[0]
        ));
    }
    if removed != 0 && opset >= removed {
        return Err(format!(
            "{op} was removed from the default domain in opset {removed}"
        ));
    }
    Ok(())
}

/// Unique graph inputs, initializers and node names; at least one output,
/// each once.
pub(super) fn names(g: &GraphProto) -> Result<()> {
    let mut seen = HashSet::new();
    for i in &g.input {
        if !seen.insert(i.name()) {
            crate::bail!("graph input '{}' is listed twice", i.name());
        }
    }
    seen.clear();
    for t in &g.initializer {
        if !seen.insert(t.name()) {
            crate::bail!("initializer '{}' is defined twice", t.name());
        }
    }
    seen.clear();
    for n in &g.node {
        if !n.name().is_empty() && !seen.insert(n.name()) {
            crate::bail!("two nodes are named '{}'", n.name());
        }
    }
    if g.output.is_empty() {
        crate::bail!("the graph declares no outputs");
    }
    seen.clear();
    for o in &g.output {
        if !seen.insert(o.name()) {
            crate::bail!("graph output '{}' is listed twice", o.name());
        }
    }
    Ok(())
}

/// Every attribute of `n`: a unique name, a type, and exactly the value
/// field that type names.
pub(super) fn attributes(n: &NodeProto, ir_version: i64) -> std::result::Result<(), String> {
    let mut seen = HashSet::new();
    for a in &n.attribute {
        if a.name().is_empty() {
            return Err("an attribute has no name".into());
        }
        if !seen.insert(a.name()) {
            return Err(format!("attribute '{}' is given twice", a.name()));
        }
        attribute(a, ir_version).map_err(|m| format!("attribute '{}' {m}", a.name()))?;
    }
    Ok(())
}

fn attribute(a: &AttributeProto, ir_version: i64) -> std::result::Result<(), String> {
    use AttributeType as T;
    if a.ref_attr_name.is_some() {
        return Err(
            "refers to a function's attribute (ref_attr_name), which only a function body may do"
                .into(),
        );
    }
    // Which value fields are set, by the type that names each.
    let set: Vec<T> = [
        (a.f.is_some(), T::Float),
        (a.i.is_some(), T::Int),
        (a.s.is_some(), T::String),
        (a.t.is_some(), T::Tensor),
        (a.g.is_some(), T::Graph),
        (a.sparse_tensor.is_some(), T::SparseTensor),
        (a.tp.is_some(), T::TypeProto),
        (!a.floats.is_empty(), T::Floats),
        (!a.ints.is_empty(), T::Ints),
        (!a.strings.is_empty(), T::Strings),
        (!a.tensors.is_empty(), T::Tensors),
        (!a.graphs.is_empty(), T::Graphs),
        (!a.sparse_tensors.is_empty(), T::SparseTensors),
        (!a.type_protos.is_empty(), T::TypeProtos),
    ]
    .into_iter()
    .filter_map(|(on, t)| on.then_some(t))
    .collect();
    let ty = match a.r#type {
        None | Some(0) if ir_version < 2 => return Ok(()), // IR 1 had no type field
        None | Some(0) => return Err("has no type".into()),
        Some(raw) => T::try_from(raw).map_err(|_| format!("has unknown type {raw}"))?,
    };
    let list = matches!(
        ty,
        T::Floats
            | T::Ints
            | T::Strings
            | T::Tensors
            | T::Graphs
            | T::SparseTensors
            | T::TypeProtos
    );
    match set.as_slice() {
        [one] if *one == ty => Ok(()),
        [] if list => Ok(()), // an empty list
        [] => Err(format!("is typed {} but holds no value", ty.as_str_name())),
        [one] => Err(format!(
            "is typed {} but holds a {} value",
            ty.as_str_name(),
            one.as_str_name()
        )),
        many => Err(format!(
            "holds {} values ({}); an attribute holds exactly one",
            many.len(),
            many.iter()
                .map(|t| t.as_str_name())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The attribute's type as a getter checks it: `None` for IR-1 files that
/// never set it.
pub(super) fn declared_type(a: &AttributeProto) -> Option<AttributeType> {
    a.r#type
        .and_then(|t| AttributeType::try_from(t).ok())
        .filter(|t| *t != AttributeType::Undefined)
}

/// Wraps a message as a node error.
pub(super) fn node_error(n: &NodeProto, name: &str, msg: String) -> Error {
    Error::Node {
        node: name.to_string(),
        op: n.op_type().to_string(),
        msg,
    }
}
