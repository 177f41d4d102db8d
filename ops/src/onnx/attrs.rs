//! Typed access to a node's attributes.

use super::proto::{AttributeProto, NodeProto};
use crate::error::Result;
use crate::tensor::Tensor;
use std::path::Path;

/// A node's attributes by name.
pub struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Self {
        Attrs { node }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i())
    }

    pub fn int_or(&self, name: &str, default: i64) -> i64 {
        self.int(name).unwrap_or(default)
    }

    pub fn float_or(&self, name: &str, default: f32) -> f32 {
        self.get(name).map(|a| a.f()).unwrap_or(default)
    }

    pub fn float(&self, name: &str) -> Option<f32> {
        self.get(name).map(|a| a.f())
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
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
        self.get(name).map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|a| String::from_utf8_lossy(a.s()).into_owned())
    }

    pub fn tensor(&self, name: &str, dir: Option<&Path>) -> Result<Option<Tensor>> {
        match self.get(name).and_then(|a| a.t.as_ref()) {
            None => Ok(None),
            Some(t) => super::tensor_from_proto(t, dir).map(Some),
        }
    }
}
