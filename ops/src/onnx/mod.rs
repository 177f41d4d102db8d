//! ONNX import: `ModelProto` decoding (prost types generated from the
//! `onnx.proto` of the onnx package), TensorProto conversion, and the
//! mapping of ONNX nodes to [`Op`](crate::Op)s for opsets 7 to 21.
//!
//! Load order: decode, convert initializers (external data is read from the
//! model's folder, a missing file is a clear error), map every node (an
//! unknown op fails here, before any work runs), check that every value a
//! node reads exists and that nodes are in topological order, then run shape
//! and dtype inference ([`crate::infer`]) which also folds constants.
//!
//! External data is a path the model's author chose, so it is confined to
//! the model's directory (see `read_external` in `tensor.rs`): relative locations only, no
//! `..` component, the canonical path (symlinks resolved) must stay under
//! the canonical model directory, the file must be regular, and only the
//! `offset`/`length` bytes the tensor needs are read, after checking them
//! against the file's size. A model decoded from memory has no directory,
//! so external data there is refused. Model files themselves must be
//! regular files under protobuf's 2 GiB limit ([`crate::files`]).

pub(crate) mod attrs;
mod check;
mod convert;
mod schemas;

#[allow(missing_docs, clippy::all)]
pub mod proto;
mod tensor;

use tensor::{bad, parent_dir};
pub use tensor::{
    read_tensor_pb, read_tensor_pb_bytes, tensor_from_proto, tensor_to_proto, MAX_PROTO_BYTES,
};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Dim, Fact, Graph, Node, ValueId};
use crate::op::{control, Body, Op};

use prost::Message;
use proto::tensor_proto::DataLocation;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Loads an ONNX model file into a [`Graph`] with inferred facts.
pub fn load_model(path: impl AsRef<Path>) -> Result<Graph> {
    let path = path.as_ref();
    let bytes = crate::files::read_capped(path, MAX_PROTO_BYTES, "the ONNX model")?;
    load_model_buf(bytes.into(), Some(parent_dir(path))).map_err(|e| match e {
        Error::Msg(m) => bad(path, m),
        other => other,
    })
}

/// The bytes of the ONNX file at `path` with every initializer kept in
/// external data read (through the same checks as [`load_model`]) and
/// stored inline, so the model can be sent to a process that cannot see
/// the file's folder (the other ranks of a multi-host job).
pub fn inline_external_data(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let bytes = crate::files::read_capped(path, MAX_PROTO_BYTES, "the ONNX model")?;
    let dir = parent_dir(path);
    let mut model = proto::ModelProto::decode(&bytes[..]).map_err(|e| {
        bad(
            path,
            format!("not a valid ONNX model (protobuf decode failed: {e})"),
        )
    })?;
    let mut changed = false;
    if let Some(g) = model.graph.as_mut() {
        for t in g.initializer.iter_mut() {
            if t.data_location == Some(DataLocation::External as i32) {
                let name = t.name().to_string();
                let tensor = tensor_from_proto(t, Some(dir)).map_err(|e| match e {
                    Error::Msg(m) => bad(path, m),
                    other => other,
                })?;
                *t = tensor_to_proto(&tensor, &name);
                changed = true;
            }
        }
    }
    Ok(if changed {
        model.encode_to_vec()
    } else {
        bytes
    })
}

/// The ONNX model `bytes` (external data already inline, see
/// [`inline_external_data`]) with the initializers named in `tensors` set
/// to those values: an existing initializer is replaced; a value the model
/// computes (a weight that load-time folding turned into a constant) loses
/// its producing node and becomes an initializer. This is how training
/// writes its result: the graph is the author's, only weights change.
pub fn with_initializers(bytes: &[u8], tensors: &[(String, crate::Tensor)]) -> Result<Vec<u8>> {
    let mut model = proto::ModelProto::decode(bytes).map_err(|e| {
        Error::msg(format!(
            "not a valid ONNX model (protobuf decode failed: {e})"
        ))
    })?;
    let g = model
        .graph
        .as_mut()
        .ok_or_else(|| Error::msg("the ONNX model has no graph"))?;
    for (name, t) in tensors {
        let proto = tensor_to_proto(t, name);
        if let Some(init) = g.initializer.iter_mut().find(|i| i.name() == name) {
            *init = proto;
            continue;
        }
        let before = g.node.len();
        g.node.retain(|n| !n.output.iter().any(|o| o == name));
        if g.node.len() == before {
            return Err(Error::msg(format!(
                "the model has no initializer or node output named '{name}'"
            )));
        }
        g.initializer.push(proto);
    }
    Ok(model.encode_to_vec())
}

/// Decodes an ONNX model from memory. External data is looked up in `dir`
/// (confined to it); with `None` (a model that never was a file) a tensor
/// with external data is an error.
pub fn load_model_bytes(bytes: &[u8], dir: Option<&Path>) -> Result<Graph> {
    load_model_buf(prost::bytes::Bytes::copy_from_slice(bytes), dir)
}

/// [`load_model_bytes`] from a shared buffer: the initializers' raw
/// bytes are decoded as slices of it, not copied (ResNet-50 peaked at
/// three copies of its weights while loading: the file, the decoded
/// message and the tensors).
fn load_model_buf(bytes: prost::bytes::Bytes, dir: Option<&Path>) -> Result<Graph> {
    let model = proto::ModelProto::decode(bytes).map_err(|e| {
        Error::msg(format!(
            "not a valid ONNX model (protobuf decode failed: {e})"
        ))
    })?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::msg("ONNX model has no graph"))?;
    let opset = check::model_opset(&model, graph)?;
    let ir = model.ir_version.unwrap_or(0);
    let domains = check::domain_opsets(&model);
    let mut g = import_scope(
        graph,
        &Scope {
            opset,
            ir,
            dir,
            domains: &domains,
        },
        &HashMap::new(),
    )?
    .0;
    crate::infer::infer_graph(&mut g)?;
    Ok(g)
}

fn fact_from_value_info(vi: &proto::ValueInfoProto, anon: &mut usize) -> Result<Fact> {
    use proto::type_proto::Value as TV;
    let mut fact = Fact::default();
    let Some(tp) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(fact);
    };
    let TV::TensorType(tt) = tp else {
        crate::bail!(
            "value '{}' is not a tensor (sequences, maps and optionals are unsupported)",
            vi.name()
        );
    };
    if tt.elem_type() != 0 {
        fact.dtype = Some(DType::from_onnx(tt.elem_type()).ok_or_else(|| {
            Error::msg(format!(
                "value '{}' has element type {} which hetflow does not support",
                vi.name(),
                DType::onnx_name(tt.elem_type())
            ))
        })?);
    }
    if let Some(shape) = &tt.shape {
        use proto::tensor_shape_proto::dimension::Value as DV;
        let dims = shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(DV::DimValue(v)) if *v >= 0 => Dim::Known(*v as usize),
                Some(DV::DimParam(p)) if !p.is_empty() => Dim::Sym(p.clone()),
                _ => {
                    *anon += 1;
                    Dim::Sym(format!("unk__{}", *anon))
                }
            })
            .collect();
        fact.shape = Some(dims);
    }
    Ok(fact)
}

/// What every graph of a model is imported with: the default-domain
/// opset, the IR version, the model's directory (external data) and the
/// opset of each other domain the model imports.
struct Scope<'a> {
    opset: i64,
    ir: i64,
    dir: Option<&'a Path>,
    domains: &'a HashMap<String, i64>,
}

/// The values of the graphs around a subgraph, by name, with their facts.
type Outer = HashMap<String, Fact>;

/// A graph that may read the values of enclosing graphs (`outer`, empty at
/// the top): each outer value it reads becomes a capture, an input added
/// after its declared ones; the captures' names are returned in order
/// (see [`crate::op::control`]).
fn import_scope(gp: &proto::GraphProto, sc: &Scope, outer: &Outer) -> Result<(Graph, Vec<String>)> {
    let (opset, ir, dir) = (sc.opset, sc.ir, sc.dir);
    check::names(gp)?;
    let mut g = Graph {
        opset,
        ..Default::default()
    };
    let mut by_name: HashMap<String, ValueId> = HashMap::new();
    let mut captures: Vec<String> = Vec::new();
    let mut anon = 0usize;
    // A name of this graph, or else of an enclosing one (captured).
    let mut resolve = |name: &str, g: &mut Graph, by_name: &mut HashMap<String, ValueId>| {
        if let Some(&id) = by_name.get(name) {
            return Some(id);
        }
        let fact = outer.get(name)?.clone();
        let id = g.add_value(name, fact);
        g.inputs.push(id);
        by_name.insert(name.to_string(), id);
        captures.push(name.to_string());
        Some(id)
    };

    for init in &gp.initializer {
        let t = tensor_from_proto(init, dir).map_err(|e| {
            let m = e.to_string();
            if m.starts_with(&format!("tensor '{}'", init.name())) {
                Error::msg(m) // already names it
            } else {
                Error::msg(format!("initializer '{}': {m}", init.name()))
            }
        })?;
        let t = Arc::new(t);
        let id = g.add_value(init.name(), Fact::constant(t.clone()));
        g.constants.insert(id, t);
        by_name.insert(init.name().to_string(), id);
    }
    for inp in &gp.input {
        if by_name.contains_key(inp.name()) {
            continue; // an initializer that is also listed as an input keeps its value
        }
        let fact = fact_from_value_info(inp, &mut anon)?;
        let id = g.add_value(inp.name(), fact);
        by_name.insert(inp.name().to_string(), id);
        g.inputs.push(id);
    }
    let declared: HashMap<&str, &proto::ValueInfoProto> = gp
        .value_info
        .iter()
        .chain(gp.output.iter())
        .map(|v| (v.name(), v))
        .collect();

    for (idx, np) in gp.node.iter().enumerate() {
        let name = if np.name().is_empty() {
            format!("{}_{}", np.op_type(), idx)
        } else {
            np.name().to_string()
        };
        let op_opset = if check::is_default_domain(np) {
            check::op_in_opset(np.op_type(), opset)
                .and_then(|()| check::attributes(np, ir))
                .map_err(|m| check::node_error(np, &name, m))?;
            opset
        } else if let Some(&v) = sc.domains.get(np.domain()) {
            // Another domain the model imports: its families match the
            // qualified op type (`ai.onnx.ml.Binarizer`).
            v
        } else {
            return Err(Error::Unsupported {
                op: format!("{}.{}", np.domain(), np.op_type()),
                opset,
                node: name,
            });
        };
        let mut inputs = Vec::with_capacity(np.input.len());
        for (slot, iname) in np.input.iter().enumerate() {
            if iname.is_empty() {
                inputs.push(None);
                continue;
            }
            match resolve(iname, &mut g, &mut by_name) {
                Some(id) => inputs.push(Some(id)),
                None => {
                    return Err(Error::Node {
                        node: name,
                        op: np.op_type().to_string(),
                        msg: format!(
                            "input {slot} '{iname}' is not a graph input, an initializer or the output of an earlier node"
                        ),
                    })
                }
            }
        }
        let converted = if control::onnx::has_bodies(np.domain(), np.op_type()) {
            // The bodies see this graph's values and those around it.
            let mut visible = outer.clone();
            for (n, id) in &by_name {
                visible.insert(n.clone(), g.values[id.0].fact.clone());
            }
            let op = control_node(np, op_opset, sc, &visible, np.output.len())
                .map_err(|e| e.at_node(&name, np.op_type()))?;
            // The captures, read from this graph (capturing in turn).
            for b in control::onnx::bodies(&op) {
                for id in &b.graph.inputs[b.formal..] {
                    let cname = &b.graph.values[id.0].name;
                    let v = resolve(cname, &mut g, &mut by_name).ok_or_else(|| Error::Node {
                        node: name.clone(),
                        op: np.op_type().to_string(),
                        msg: format!("the body reads '{cname}', which no enclosing graph has"),
                    })?;
                    inputs.push(Some(v));
                }
            }
            convert::Converted::Op(op)
        } else {
            convert::convert_node(np, op_opset, dir).map_err(|e| e.at_node(&name, np.op_type()))?
        };
        let op = match converted {
            convert::Converted::Op(op) => op,
            convert::Converted::Constant(t) => {
                // Constant nodes become constants of the graph.
                let out = np.output.first().ok_or_else(|| Error::Node {
                    node: name.clone(),
                    op: "Constant".into(),
                    msg: "has no output".into(),
                })?;
                let t = Arc::new(t);
                let id = g.add_value(out.clone(), Fact::constant(t.clone()));
                g.constants.insert(id, t);
                by_name.insert(out.clone(), id);
                continue;
            }
        };
        let mut outputs = Vec::with_capacity(np.output.len());
        for oname in &np.output {
            let fact = match declared.get(oname.as_str()) {
                Some(vi) => fact_from_value_info(vi, &mut anon)?,
                None => Fact::default(),
            };
            let vname = if oname.is_empty() {
                format!("{name}:unused{}", outputs.len())
            } else {
                oname.clone()
            };
            let id = g.add_value(vname, fact);
            if !oname.is_empty() && by_name.insert(oname.clone(), id).is_some() {
                return Err(Error::Node {
                    node: name,
                    op: np.op_type().to_string(),
                    msg: format!("output '{oname}' is already produced elsewhere"),
                });
            }
            outputs.push(id);
        }
        g.nodes.push(Node {
            name,
            op,
            inputs,
            outputs,
        });
    }
    for out in &gp.output {
        let id = resolve(out.name(), &mut g, &mut by_name).ok_or_else(|| {
            Error::msg(format!(
                "graph output '{}' is not produced by any node",
                out.name()
            ))
        })?;
        // Declared output type/shape is a fact too (used when the producer
        // is an initializer or the producer's own inference is weaker).
        if g.values[id.0].fact.dtype.is_none() && g.values[id.0].fact.shape.is_none() {
            g.values[id.0].fact = fact_from_value_info(out, &mut anon)?;
        }
        g.outputs.push(id);
    }
    Ok((g, captures))
}

/// Imports the subgraph attributes of an If, Loop, Scan or FlexAttention
/// node (each with `visible` as its outer scope, then inferred) and builds
/// the op.
fn control_node(
    np: &proto::NodeProto,
    opset: i64,
    sc: &Scope,
    visible: &Outer,
    n_outputs: usize,
) -> Result<Op> {
    let dir = sc.dir;
    let mut bodies = Vec::new();
    for a in &np.attribute {
        let Some(sub) = a.g.as_ref() else { continue };
        let (mut graph, caps) = import_scope(sub, sc, visible)
            .map_err(|e| Error::msg(format!("in subgraph '{}': {e}", a.name())))?;
        crate::infer::infer_graph(&mut graph)
            .map_err(|e| Error::msg(format!("in subgraph '{}': {e}", a.name())))?;
        let formal = graph.inputs.len() - caps.len();
        bodies.push((
            a.name().to_string(),
            Body {
                graph: Arc::new(graph),
                formal,
            },
        ));
    }
    let attrs = attrs::Attrs::new(np);
    let cx = attrs::ConvertCx {
        node: np,
        op_type: np.op_type(),
        opset,
        dir,
        attrs: &attrs,
    };
    let op = if check::is_default_domain(np) {
        control::onnx::convert(&cx, bodies, np.input.len(), n_outputs)?
    } else {
        crate::op::attention::onnx::convert_flex(&cx, bodies)?
    };
    match attrs.type_error() {
        Some(m) => Err(Error::msg(m)),
        None => Ok(op),
    }
}
