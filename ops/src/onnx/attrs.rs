//! Typed access to a node's attributes. Each getter names the type it
//! takes; an attribute declared with another type reads as absent and is
//! remembered, and `convert_node` then refuses the node naming it
//! ([`Attrs::type_error`]) instead of reading a stale field.

use super::proto::attribute_proto::AttributeType;
use super::proto::{AttributeProto, NodeProto};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::cell::RefCell;
use std::path::Path;

/// A node's attributes by name.
pub struct Attrs<'a> {
    node: &'a NodeProto,
    /// The first attribute read with a type other than its declared one.
    mismatch: RefCell<Option<String>>,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Self {
        Attrs {
            node,
            mismatch: RefCell::new(None),
        }
    }

    /// The first type mismatch a getter met, phrased for the user.
    pub fn type_error(&self) -> Option<String> {
        self.mismatch.borrow().clone()
    }

    /// The attribute `name` when its declared type is `want` (or it has
    /// none, as in IR-1 files); a mismatch is remembered and reads as
    /// absent.
    fn get(&self, name: &str, want: AttributeType) -> Option<&'a AttributeProto> {
        let a = self.node.attribute.iter().find(|a| a.name() == name)?;
        match super::check::declared_type(a) {
            Some(t) if t != want => {
                let mut m = self.mismatch.borrow_mut();
                if m.is_none() {
                    *m = Some(format!(
                        "attribute '{name}' has type {} but {} takes {}",
                        t.as_str_name(),
                        self.node.op_type(),
                        want.as_str_name()
                    ));
                }
                None
            }
            _ => Some(a),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.node.attribute.iter().any(|a| a.name() == name)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name, AttributeType::Int).map(|a| a.i())
    }

    pub fn int_or(&self, name: &str, default: i64) -> i64 {
        self.int(name).unwrap_or(default)
    }

    pub fn float_or(&self, name: &str, default: f32) -> f32 {
        self.get(name, AttributeType::Float)
            .map(|a| a.f())
            .unwrap_or(default)
    }

    pub fn float(&self, name: &str) -> Option<f32> {
        self.get(name, AttributeType::Float).map(|a| a.f())
    }

    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.get(name, AttributeType::Floats)
            .map(|a| a.floats.clone())
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name, AttributeType::Ints).map(|a| a.ints.clone())
    }

    pub fn usizes(&self, name: &str) -> Result<Vec<usize>> {
        match self.ints(name) {
            None => Ok(Vec::new()),
            Some(v) => v
                .into_iter()
                .map(|x| {
                    usize::try_from(x).map_err(|_| {
                        crate::Error::msg(format!("attribute {name} has negative entry {x}"))
                    })
                })
                .collect(),
        }
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        self.get(name, AttributeType::Strings).map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name, AttributeType::String)
            .map(|a| String::from_utf8_lossy(a.s()).into_owned())
    }

    pub fn tensor(&self, name: &str, dir: Option<&Path>) -> Result<Option<Tensor>> {
        match self
            .get(name, AttributeType::Tensor)
            .and_then(|a| a.t.as_ref())
        {
            None => Ok(None),
            Some(t) => super::tensor::tensor_from_proto(t, dir).map(Some),
        }
    }
}

/// What a family's ONNX mapping (`op/<family>/onnx.rs`) reads: the node,
/// its attributes, and the model's default-domain opset and directory (for
/// external data).
pub(crate) struct ConvertCx<'a> {
    pub node: &'a NodeProto,
    pub op_type: &'a str,
    pub opset: i64,
    pub dir: Option<&'a Path>,
    pub attrs: &'a Attrs<'a>,
}

impl ConvertCx<'_> {
    /// The error for a node whose op type (or this opset of it) is not
    /// supported.
    pub fn unsupported(&self) -> Error {
        Error::Unsupported {
            op: self.op_type.to_string(),
            opset: self.opset,
            node: self.node.name().to_string(),
        }
    }
}
