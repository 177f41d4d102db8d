//! Shape specialisation: a graph with the shapes of its inputs bound.
//!
//! Exported models often compute shapes at run time (a Flatten written as
//! `Shape → Gather → Unsqueeze → Concat → Reshape`, a dynamic batch
//! reaching a `ConstantOfShape`). Once the inputs' shapes are known those
//! subgraphs are constants, as XLA's per-shape compilation makes them:
//! [`specialize`] binds the shapes, turns every `Shape` and `Size` whose
//! input shape is then concrete into a constant, lets inference fold what
//! that makes constant in turn (the Gathers, Concats and casts on shapes),
//! and drops the nodes nothing reads any more. A device without index
//! kernels (the TPU-like device has no Gather) then runs such a model
//! whole. The result is only valid for those shapes; the session builder
//! uses it when it is given them (`SessionBuilder::input_shapes`, which
//! `hetflow run` and `hetflow bench` set from their inputs).

use crate::graph::{Dim, Fact, Graph};
use crate::op::Op;
use crate::{Error, Result, Tensor};
use std::sync::Arc;

/// `g` with graph input `i` of shape `shapes[i]` (module docs). Errors
/// name an input whose shape contradicts its declared rank or a known
/// dim, and a contradiction that the bound shapes reveal in a node.
pub fn specialize(g: &Graph, shapes: &[Vec<usize>]) -> Result<Graph> {
    if shapes.len() != g.inputs.len() {
        return Err(Error::msg(format!(
            "{} input shape(s) given for a graph with {} input(s)",
            shapes.len(),
            g.inputs.len()
        )));
    }
    let mut s = g.clone();
    let mut syms: std::collections::HashMap<String, (usize, String)> = Default::default();
    for (&id, shape) in g.inputs.iter().zip(shapes) {
        let v = &mut s.values[id.0];
        // One symbolic dim, one size, across the inputs.
        for (d, &n) in v.fact.shape.iter().flatten().zip(shape) {
            if let Dim::Sym(sym) = d {
                match syms.get(sym) {
                    Some((m, other)) if *m != n => {
                        return Err(Error::msg(format!(
                            "input '{}' has '{sym}' = {n}, but input '{other}' has '{sym}' = {m}",
                            v.name
                        )))
                    }
                    _ => {
                        syms.insert(sym.clone(), (n, v.name.clone()));
                    }
                }
            }
        }
        if let Some(declared) = &v.fact.shape {
            let fits = declared.len() == shape.len()
                && declared
                    .iter()
                    .zip(shape)
                    .all(|(d, &n)| !matches!(d, Dim::Known(k) if *k != n));
            if !fits {
                return Err(Error::msg(format!(
                    "input '{}' is declared {}, not {shape:?}",
                    v.name,
                    crate::graph::fmt_shape(declared)
                )));
            }
        }
        v.fact.shape = Some(shape.iter().map(|&n| Dim::Known(n)).collect());
    }
    // Each round folds at least one Shape or Size; inference then folds
    // what depends only on them.
    loop {
        crate::infer::infer_graph(&mut s)?;
        let mut folded: Vec<(usize, Tensor)> = Vec::new();
        for (i, n) in s.nodes.iter().enumerate() {
            let Some(Some(x)) = n.inputs.first() else {
                continue;
            };
            let Some(dims) = s.values[x.0].fact.concrete_shape() else {
                continue;
            };
            let t = match &n.op {
                Op::Shape { start, end } => {
                    let r = dims.len() as i64;
                    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                    let (a, b) = (clamp(*start), clamp(end.unwrap_or(r)));
                    let v: Vec<i64> = dims[a..b.max(a)].iter().map(|&d| d as i64).collect();
                    Tensor::from_vec(vec![v.len()], v)?
                }
                Op::Size => {
                    let n = dims
                        .iter()
                        .try_fold(1i64, |a, &d| a.checked_mul(d as i64))
                        .ok_or_else(|| Error::msg(format!("size of {dims:?} overflows")))?;
                    Tensor::scalar(n)
                }
                _ => continue,
            };
            folded.push((i, t));
        }
        if folded.is_empty() {
            break;
        }
        for &(i, ref t) in folded.iter().rev() {
            let node = s.nodes.remove(i);
            let t = Arc::new(t.clone());
            let out = node.outputs[0];
            s.values[out.0].fact = Fact::constant(t.clone());
            s.constants.insert(out, t);
        }
    }
    drop_unread(&mut s);
    Ok(s)
}

/// Removes nodes none of whose outputs is read by another node or is a
/// graph output, until none is left, then the constants nothing reads.
fn drop_unread(g: &mut Graph) {
    loop {
        let read = read_values(g);
        let before = g.nodes.len();
        g.nodes.retain(|n| n.outputs.iter().any(|o| read[o.0]));
        if g.nodes.len() == before {
            break;
        }
    }
    let read = read_values(g);
    g.constants.retain(|v, _| read[v.0]);
}

/// Per value: whether a node reads it or it is a graph output.
fn read_values(g: &Graph) -> Vec<bool> {
    let mut read = vec![false; g.values.len()];
    for v in &g.outputs {
        read[v.0] = true;
    }
    for n in &g.nodes {
        for v in n.inputs.iter().flatten() {
            read[v.0] = true;
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::UnaryOp;
    use crate::DType;

    /// x[batch, 4, 2] → Relu → Reshape to [Gather(Shape, 0), 8] → Relu.
    fn dynamic_flatten() -> Graph {
        let mut g = Graph::default();
        let x = g.add_input(
            "x",
            DType::F32,
            vec![Dim::Sym("batch".into()), Dim::Known(4), Dim::Known(2)],
        );
        let h = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[x], 1)[0];
        let shp = g.add_node(
            "shape",
            Op::Shape {
                start: 0,
                end: None,
            },
            &[h],
            1,
        )[0];
        let i0 = g.add_const("i0", Tensor::scalar(0i64));
        let b = g.add_node("gather", Op::Gather { axis: 0 }, &[shp, i0], 1)[0];
        let ax = g.add_const("ax", Tensor::from_vec(vec![1], vec![0i64]).unwrap());
        let b1 = g.add_node("unsq", Op::Unsqueeze { axes: None }, &[b, ax], 1)[0];
        let eight = g.add_const("eight", Tensor::from_vec(vec![1], vec![8i64]).unwrap());
        let ns = g.add_node("concat", Op::Concat { axis: 0 }, &[b1, eight], 1)[0];
        let y = g.add_node(
            "reshape",
            Op::Reshape {
                allowzero: false,
                shape: None,
            },
            &[h, ns],
            1,
        )[0];
        let z = g.add_node("relu2", Op::Unary(UnaryOp::Relu), &[y], 1)[0];
        g.add_output(z);
        g.finish().unwrap()
    }

    #[test]
    fn a_shape_subgraph_folds_once_the_batch_is_bound() {
        let g = dynamic_flatten();
        assert_eq!(g.nodes.len(), 7);
        let s = specialize(&g, &[vec![3, 4, 2]]).unwrap();
        let ops: Vec<&str> = s.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(ops, ["Relu", "Reshape", "Relu"]);
        // The Reshape's target is the constant [3, 8], and the output is
        // known to be [3, 8].
        let target = s.nodes[1].inputs[1].unwrap();
        let t = s.constants.get(&target).expect("constant target shape");
        assert_eq!(t.as_slice::<i64>().unwrap(), &[3, 8]);
        let out = s.values[s.outputs[0].0].fact.concrete_shape();
        assert_eq!(out, Some(vec![3, 8]));
        // Same result computed on the host by both graphs.
        let x: Vec<f32> = (0..24).map(|i| i as f32 - 11.5).collect();
        let x = Arc::new(Tensor::from_vec(vec![3, 4, 2], x).unwrap());
        let run = |g: &Graph| {
            let mut vals: Vec<Option<Arc<Tensor>>> = vec![None; g.values.len()];
            vals[g.inputs[0].0] = Some(x.clone());
            for (v, t) in &g.constants {
                vals[v.0] = Some(t.clone());
            }
            for n in &g.nodes {
                let ins: Vec<Option<&Tensor>> = n
                    .inputs
                    .iter()
                    .map(|i| i.and_then(|i| vals[i.0].as_deref()))
                    .collect();
                let outs = crate::kernels::eval(&n.op, &ins, n.outputs.len()).unwrap();
                for (o, t) in n.outputs.iter().zip(outs) {
                    vals[o.0] = Some(Arc::new(t));
                }
            }
            vals[g.outputs[0].0].clone().unwrap()
        };
        let (a, b) = (run(&g), run(&s));
        assert_eq!(a.shape(), &[3, 8]);
        assert_eq!(a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
    }

    #[test]
    fn shapes_that_contradict_the_declaration_are_named() {
        let g = dynamic_flatten();
        let e = specialize(&g, &[vec![3, 5, 2]]).unwrap_err().to_string();
        assert!(
            e.contains("input 'x' is declared") && e.contains("[3, 5, 2]"),
            "{e}"
        );
        let e = specialize(&g, &[vec![3, 4]]).unwrap_err().to_string();
        assert!(e.contains("input 'x'"), "{e}");
        let e = specialize(&g, &[]).unwrap_err().to_string();
        assert!(
            e.contains("0 input shape(s) given for a graph with 1"),
            "{e}"
        );
    }
}
