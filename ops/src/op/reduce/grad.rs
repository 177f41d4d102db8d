//! Gradients of ReduceSum and ReduceMean (from [`crate::autodiff`]): dY
//! reshaped to keep the reduced dims, broadcast back over them, and for
//! the mean divided by the number of reduced elements. The axes must be
//! attributes or constants.

use crate::autodiff::{gy0, input, no_rule, Grad, Grads};
use crate::error::Result;
use crate::graph::{Node, ValueId};
use crate::op::{BinaryOp, Op, ReduceKind};
use crate::shape::dim_axis;

/// The input gradient of a reduction node.
pub(crate) fn grad(
    cx: &mut Grads,
    node: &Node,
    gys: &[Option<ValueId>],
    _want: &[bool],
) -> Result<Grad> {
    let Op::Reduce {
        kind,
        axes,
        noop_with_empty_axes,
        ..
    } = &node.op
    else {
        return Err(no_rule(&node.op));
    };
    if !matches!(kind, ReduceKind::Sum | ReduceKind::Mean) {
        return Err(no_rule(&node.op));
    }
    let gy = gy0(gys)?;
    let x = input(node, 0)?;
    let xs = cx.shape(x)?;
    let axes = match axes {
        Some(a) => a.clone(),
        None => match node.inputs.get(1).copied().flatten() {
            None => vec![],
            Some(v) => match cx.const_value(v) {
                Some(t) => t.to_i64_vec(),
                None => crate::bail!("the gradient of a reduction needs constant axes"),
            },
        },
    };
    let r = xs.len();
    let mut red = vec![axes.is_empty() && !noop_with_empty_axes; r];
    for a in &axes {
        red[dim_axis(*a, r)?] = true;
    }
    let kept: Vec<usize> = xs
        .iter()
        .zip(&red)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let g = cx.reshape(gy, &kept)?;
    let mut g = cx.expand(g, &xs)?;
    if *kind == ReduceKind::Mean {
        let count: usize = xs
            .iter()
            .zip(&red)
            .filter(|(_, &r)| r)
            .map(|(&d, _)| d)
            .product();
        let s = cx.scalar_like(gy, 1.0 / count.max(1) as f64)?;
        g = cx.binary(BinaryOp::Mul, g, s)?;
    }
    let mut out = vec![None; node.inputs.len()];
    out[0] = Some(g);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::autodiff::check::{check, diff, Arg};
    use crate::op::{Op, ReduceKind};
    use crate::Tensor;

    #[test]
    fn reduce_sum_and_mean_gradients() {
        for kind in [ReduceKind::Sum, ReduceKind::Mean] {
            for keepdims in [false, true] {
                let op = |axes: Option<Vec<i64>>| Op::Reduce {
                    kind,
                    axes,
                    keepdims,
                    noop_with_empty_axes: false,
                };
                check(op(Some(vec![1])), vec![diff(&[2, 3, 4], 1)], 1);
                check(op(Some(vec![0, -1])), vec![diff(&[2, 3, 4], 2)], 1);
                check(op(None), vec![diff(&[2, 3], 3)], 1);
                let axes = Arg::Const(Tensor::from_vec(vec![1], vec![2i64]).unwrap());
                check(op(None), vec![diff(&[2, 3, 4], 4), axes], 1);
            }
        }
    }
}
