//! ONNX import: `ModelProto` decoding (prost types generated from the
//! `onnx.proto` of the onnx package), TensorProto conversion, and the
//! mapping of ONNX nodes to [`Op`]s for opsets 7 to 21.
//!
//! Load order: decode, convert initializers (external data is read from the
//! model's folder, a missing file is a clear error), map every node (an
//! unknown op fails here, before any work runs), check that every value a
//! node reads exists and that nodes are in topological order, then run shape
//! and dtype inference ([`crate::infer`]) which also folds constants.
//!
//! External data is a path the model's author chose, so it is confined to
//! the model's directory (see `read_external`): relative locations only, no
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
pub mod proto {
    //! Generated ONNX protobuf types.
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Dim, Fact, Graph, Node, ValueId};
use crate::tensor::{Data, Tensor};
use prost::Message;
use proto::tensor_proto::DataLocation;
use std::collections::HashMap;
use std::path::{Component, Path};
use std::sync::Arc;

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// The largest model or `.pb` file read: protobuf's own 2 GiB limit
/// (larger models keep their weights as external data).
pub const MAX_PROTO_BYTES: u64 = (2 << 30) - 1;

/// The directory a file's relative references resolve in (`.` for a bare
/// file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Loads an ONNX model file into a [`Graph`] with inferred facts.
pub fn load_model(path: impl AsRef<Path>) -> Result<Graph> {
    let path = path.as_ref();
    let bytes = crate::files::read_capped(path, MAX_PROTO_BYTES, "the ONNX model")?;
    load_model_bytes(&bytes, Some(parent_dir(path))).map_err(|e| match e {
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

/// Decodes an ONNX model from memory. External data is looked up in `dir`
/// (confined to it); with `None` (a model that never was a file) a tensor
/// with external data is an error.
pub fn load_model_bytes(bytes: &[u8], dir: Option<&Path>) -> Result<Graph> {
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
    let mut g = import_graph(graph, opset, ir, dir)?;
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

fn import_graph(gp: &proto::GraphProto, opset: i64, ir: i64, dir: Option<&Path>) -> Result<Graph> {
    check::names(gp)?;
    let mut g = Graph {
        opset,
        ..Default::default()
    };
    let mut by_name: HashMap<String, ValueId> = HashMap::new();
    let mut anon = 0usize;

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
            match by_name.get(iname.as_str()) {
                Some(&id) => inputs.push(Some(id)),
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
        let converted =
            convert::convert_node(np, op_opset, dir).map_err(|e| e.at_node(&name, np.op_type()))?;
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
        let id = by_name.get(out.name()).copied().ok_or_else(|| {
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
    Ok(g)
}

fn need(t: &proto::TensorProto, n: usize, have: usize) -> Result<()> {
    if n != have {
        crate::bail!(
            "tensor '{}' declares {} elements but holds {}",
            t.name(),
            n,
            have
        );
    }
    Ok(())
}

/// Converts an ONNX TensorProto (raw or typed fields, or external data
/// inside `dir`; `None` refuses external data) into a host [`Tensor`].
pub fn tensor_from_proto(t: &proto::TensorProto, dir: Option<&Path>) -> Result<Tensor> {
    let dtype = DType::from_onnx(t.data_type()).ok_or_else(|| {
        Error::msg(format!(
            "tensor '{}' has element type {} which hetflow does not support",
            t.name(),
            DType::onnx_name(t.data_type())
        ))
    })?;
    if t.dims.iter().any(|&d| d < 0) {
        crate::bail!("tensor '{}' has negative dims {:?}", t.name(), t.dims);
    }
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size()).map(|_| n))
        .ok_or_else(|| {
            Error::msg(format!(
                "tensor '{}' has dims {:?} whose size overflows",
                t.name(),
                t.dims
            ))
        })?;
    if t.data_location == Some(DataLocation::External as i32) {
        let bytes = read_external(t, dir, n * dtype.size())?;
        return Tensor::from_le_bytes(dtype, shape, &bytes);
    }
    if let Some(raw) = &t.raw_data {
        return Tensor::from_le_bytes(dtype, shape, raw);
    }
    let data = match dtype {
        DType::F32 => {
            need(t, n, t.float_data.len())?;
            Data::F32(t.float_data.clone())
        }
        DType::F64 => {
            need(t, n, t.double_data.len())?;
            Data::F64(t.double_data.clone())
        }
        DType::I64 => {
            need(t, n, t.int64_data.len())?;
            Data::I64(t.int64_data.clone())
        }
        DType::U32 | DType::U64 => {
            need(t, n, t.uint64_data.len())?;
            if dtype == DType::U32 {
                Data::U32(t.uint64_data.iter().map(|&v| v as u32).collect())
            } else {
                Data::U64(t.uint64_data.clone())
            }
        }
        _ => {
            // int32_data carries i32, i16, i8, u16, u8, bool, and f16/bf16 bits.
            need(t, n, t.int32_data.len())?;
            let v = &t.int32_data;
            match dtype {
                DType::I32 => Data::I32(v.clone()),
                DType::I16 => Data::I16(v.iter().map(|&x| x as i16).collect()),
                DType::I8 => Data::I8(v.iter().map(|&x| x as i8).collect()),
                DType::U16 => Data::U16(v.iter().map(|&x| x as u16).collect()),
                DType::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
                DType::Bool => Data::Bool(v.iter().map(|&x| x != 0).collect()),
                DType::F16 => {
                    Data::F16(v.iter().map(|&x| half::f16::from_bits(x as u16)).collect())
                }
                DType::BF16 => {
                    Data::BF16(v.iter().map(|&x| half::bf16::from_bits(x as u16)).collect())
                }
                _ => unreachable!("handled above"),
            }
        }
    };
    Tensor::new(shape, data)
}

/// Reads the bytes of a tensor kept in an external file: only inside `dir`,
/// only a regular file, only the `offset`/`length` range (checked against
/// the file's size and against `len`, the tensor's byte count, before any
/// byte is read).
fn read_external(t: &proto::TensorProto, dir: Option<&Path>, len: usize) -> Result<Vec<u8>> {
    let mut location = None;
    let mut offset = None;
    let mut length = None;
    for kv in &t.external_data {
        match kv.key() {
            "location" => location = Some(kv.value()),
            "offset" => offset = Some(kv.value()),
            "length" => length = Some(kv.value()),
            _ => {} // "checksum" and keys of later versions
        }
    }
    let Some(location) = location else {
        crate::bail!(
            "tensor '{}' uses external data but names no location",
            t.name()
        );
    };
    let fail = |msg: String| {
        Error::msg(format!(
            "tensor '{}': external data '{}': {msg}",
            t.name(),
            location.escape_debug()
        ))
    };
    let number = |key: &str, v: Option<&str>| -> Result<Option<u64>> {
        v.map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| fail(format!("{key} '{}' is not a byte count", v.escape_debug())))
        })
        .transpose()
    };
    let offset = number("offset", offset)?.unwrap_or(0);
    let length = number("length", length)?;
    let Some(dir) = dir else {
        return Err(fail(
            "the model was loaded from memory, so there is no directory to read external data from; load it from its file".into(),
        ));
    };
    let rel = Path::new(location);
    if location.is_empty() {
        return Err(fail("the location is empty".into()));
    }
    if rel.is_absolute() {
        return Err(fail(
            "absolute locations are refused; external data must lie in the model's directory"
                .into(),
        ));
    }
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(fail(
            "locations with '..' are refused; external data must lie in the model's directory"
                .into(),
        ));
    }
    // Symlinks are followed only while the target stays inside the
    // (canonical) model directory.
    let root = dir
        .canonicalize()
        .map_err(|e| fail(format!("model directory '{}': {e}", dir.display())))?;
    let file = root
        .join(rel)
        .canonicalize()
        .map_err(|e| fail(format!("cannot be read: {e}")))?;
    if !file.starts_with(&root) {
        return Err(fail(format!(
            "resolves to '{}', outside the model's directory '{}'",
            file.display(),
            root.display()
        )));
    }
    if let Some(l) = length {
        if l != len as u64 {
            return Err(fail(format!(
                "length is {l} bytes but the tensor's dims {:?} need {len}",
                t.dims
            )));
        }
    }
    let mut f = crate::files::open_regular_nofollow(&file).map_err(|e| fail(e.to_string()))?;
    if offset.checked_add(len as u64).is_none_or(|end| end > f.len) {
        return Err(fail(format!(
            "{len} bytes at offset {offset} do not fit in the file's {} bytes",
            f.len
        )));
    }
    crate::files::read_exact_at(&file, &mut f, offset, len as u64).map_err(|e| fail(e.to_string()))
}

/// Converts a host tensor into an ONNX TensorProto (raw data).
pub fn tensor_to_proto(t: &Tensor, name: &str) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.to_string()),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(t.dtype().to_onnx()),
        raw_data: Some(t.to_le_bytes().into_owned()),
        ..Default::default()
    }
}

/// Reads a serialized TensorProto file (`.pb`, as in the ONNX test data):
/// a regular file of at most [`MAX_PROTO_BYTES`]; external data it names
/// is confined to the file's directory as for models.
pub fn read_tensor_pb(path: impl AsRef<Path>) -> Result<(String, Tensor)> {
    let path = path.as_ref();
    let bytes = crate::files::read_capped(path, MAX_PROTO_BYTES, "the TensorProto file")?;
    read_tensor_pb_bytes(&bytes, Some(parent_dir(path))).map_err(|e| bad(path, e.to_string()))
}

/// Decodes a serialized TensorProto from memory into its name and tensor.
/// External data is looked up in `dir` (confined to it, as for models);
/// with `None` a tensor with external data is an error.
pub fn read_tensor_pb_bytes(bytes: &[u8], dir: Option<&Path>) -> Result<(String, Tensor)> {
    let tp = proto::TensorProto::decode(bytes)
        .map_err(|e| Error::msg(format!("not a valid ONNX TensorProto: {e}")))?;
    let t = tensor_from_proto(&tp, dir)?;
    Ok((tp.name().to_string(), t))
}
