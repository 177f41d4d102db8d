//! Checking a caller's inputs against the graph before anything runs.

use crate::error::{Result, RuntimeError};
use hetflow_ops::graph::fmt_shape;
use hetflow_ops::{Dim, Graph, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// Checks caller inputs against the graph's declared inputs.
pub fn check_inputs(g: &Graph, inputs: &[Arc<Tensor>]) -> Result<()> {
    if inputs.len() != g.inputs.len() {
        let names: Vec<&str> = g.inputs.iter().map(|i| g.name(*i)).collect();
        return Err(RuntimeError::Input(format!(
            "the graph takes {} input(s) ({}), got {}",
            g.inputs.len(),
            names.join(", "),
            inputs.len()
        )));
    }
    let mut syms: HashMap<&str, usize> = HashMap::new();
    for (id, t) in g.inputs.iter().zip(inputs) {
        let v = g.value(*id);
        if let Some(dt) = v.fact.dtype {
            if dt != t.dtype() {
                return Err(RuntimeError::Input(format!(
                    "input '{}' must be {dt}, got {}",
                    v.name,
                    t.dtype()
                )));
            }
        }
        if let Some(shape) = &v.fact.shape {
            if shape.len() != t.rank() {
                return Err(RuntimeError::Input(format!(
                    "input '{}' must have rank {} {}, got shape {:?}",
                    v.name,
                    shape.len(),
                    fmt_shape(shape),
                    t.shape()
                )));
            }
            for (i, (d, &n)) in shape.iter().zip(t.shape()).enumerate() {
                match d {
                    Dim::Known(k) if *k != n => {
                        return Err(RuntimeError::Input(format!(
                            "input '{}' dim {i} must be {k} (shape {}), got shape {:?}",
                            v.name,
                            fmt_shape(shape),
                            t.shape()
                        )))
                    }
                    Dim::Sym(s) => {
                        if let Some(&prev) = syms.get(s.as_str()) {
                            if prev != n {
                                return Err(RuntimeError::Input(format!(
                                    "input '{}' dim {i} is '{s}' = {n}, but another input has '{s}' = {prev}",
                                    v.name
                                )));
                            }
                        }
                        syms.insert(s, n);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}
