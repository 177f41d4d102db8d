//! Gradients of MatMul and Gemm (from [`crate::autodiff`]): products with
//! the other operand transposed, in the same ops, so the backward pass
//! runs on the same tuned GEMM as the forward pass.

use crate::autodiff::{gy0, input, no_rule, Grad, Grads};
use crate::error::Result;
use crate::graph::{Node, ValueId};
use crate::op::{BinaryOp, Op};

/// The input gradients of a MatMul or Gemm node.
pub(crate) fn grad(
    cx: &mut Grads,
    node: &Node,
    gys: &[Option<ValueId>],
    want: &[bool],
) -> Result<Grad> {
    let gy = gy0(gys)?;
    match &node.op {
        Op::MatMul => matmul(cx, node, gy, want),
        // A Gemm with a fused activation is an inference-only rewrite
        // (`optimize::fuse_gemm_activations`); it has no gradient here.
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
            act: crate::op::Activation::None,
        } => {
            let a = input(node, 0)?;
            let b = input(node, 1)?;
            let gemm = |ta: bool, tb: bool| Op::Gemm {
                alpha: *alpha,
                beta: 0.0,
                trans_a: ta,
                trans_b: tb,
                act: Default::default(),
            };
            let mut g = vec![None; node.inputs.len()];
            if want[0] {
                // dA (untransposed) = alpha dY op(B)^T; transposed: alpha op(B) dY^T.
                g[0] = Some(if *trans_a {
                    cx.node1("d_gemm_a", gemm(*trans_b, true), &[b, gy])?
                } else {
                    cx.node1("d_gemm_a", gemm(false, !*trans_b), &[gy, b])?
                });
            }
            if want[1] {
                // dB (untransposed) = alpha op(A)^T dY; transposed: alpha dY^T op(A).
                g[1] = Some(if *trans_b {
                    cx.node1("d_gemm_b", gemm(true, *trans_a), &[gy, a])?
                } else {
                    cx.node1("d_gemm_b", gemm(!*trans_a, false), &[a, gy])?
                });
            }
            if want.get(2).copied().unwrap_or(false) {
                let c = input(node, 2)?;
                let sc = cx.shape(c)?;
                let mut gc = cx.sum_to(gy, &sc)?;
                if *beta != 1.0 {
                    let s = cx.scalar_like(gy, *beta as f64)?;
                    gc = cx.binary(BinaryOp::Mul, gc, s)?;
                }
                g[2] = Some(gc);
            }
            Ok(g)
        }
        _ => Err(no_rule(&node.op)),
    }
}

/// The last two dims swapped.
fn swap_last(cx: &mut Grads, v: ValueId) -> Result<ValueId> {
    let r = cx.shape(v)?.len();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    cx.transpose(v, perm)
}

fn matmul(cx: &mut Grads, node: &Node, gy: ValueId, want: &[bool]) -> Result<Grad> {
    let a = input(node, 0)?;
    let b = input(node, 1)?;
    let sa = cx.shape(a)?;
    let sb = cx.shape(b)?;
    // Vectors become matrices ([k] -> [1, k] for A, [k, 1] for B), and the
    // output gradient gets the dims the product removed back.
    let sa2 = if sa.len() == 1 {
        vec![1, sa[0]]
    } else {
        sa.clone()
    };
    let sb2 = if sb.len() == 1 {
        vec![sb[0], 1]
    } else {
        sb.clone()
    };
    let a2 = cx.reshape(a, &sa2)?;
    let b2 = cx.reshape(b, &sb2)?;
    let mut sy2 = cx.shape(gy)?;
    if sa.len() == 1 {
        let at = sy2.len() - usize::from(sb.len() != 1);
        sy2.insert(at, 1);
    }
    if sb.len() == 1 {
        sy2.push(1);
    }
    let gy2 = cx.reshape(gy, &sy2)?;
    let mut g = vec![None, None];
    if want[0] {
        let bt = swap_last(cx, b2)?;
        let ga = cx.node1("d_matmul_a", Op::MatMul, &[gy2, bt])?;
        let ga = cx.sum_to(ga, &sa2)?;
        g[0] = Some(cx.reshape(ga, &sa)?);
    }
    if want[1] {
        let at = swap_last(cx, a2)?;
        let gb = cx.node1("d_matmul_b", Op::MatMul, &[at, gy2])?;
        let gb = cx.sum_to(gb, &sb2)?;
        g[1] = Some(cx.reshape(gb, &sb)?);
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use crate::autodiff::check::{check, check_bf16, diff};
    use crate::op::Op;

    #[test]
    fn matmul_gradients_cover_batches_broadcasts_and_vectors() {
        check(Op::MatMul, vec![diff(&[3, 4], 1), diff(&[4, 5], 2)], 1);
        check(Op::MatMul, vec![diff(&[2, 3, 4], 3), diff(&[4, 2], 4)], 1);
        check(Op::MatMul, vec![diff(&[3, 4], 5), diff(&[2, 4, 2], 6)], 1);
        check(Op::MatMul, vec![diff(&[4], 7), diff(&[4, 3], 8)], 1);
        check(Op::MatMul, vec![diff(&[2, 4], 9), diff(&[4], 10)], 1);
        check(Op::MatMul, vec![diff(&[4], 11), diff(&[4], 12)], 1);
    }

    #[test]
    fn gemm_gradients_for_every_transpose_and_bias() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = if ta { [4, 3] } else { [3, 4] };
            let b = if tb { [5, 4] } else { [4, 5] };
            let op = Op::Gemm {
                alpha: 0.7,
                beta: 1.3,
                trans_a: ta,
                trans_b: tb,
                act: Default::default(),
            };
            check(op.clone(), vec![diff(&a, 1), diff(&b, 2), diff(&[5], 3)], 1);
            check(op, vec![diff(&a, 4), diff(&b, 5), diff(&[3, 1], 6)], 1);
        }
    }

    #[test]
    fn gemm_gradients_on_bf16_tensors() {
        let op = Op::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
            act: Default::default(),
        };
        check_bf16(
            op,
            vec![diff(&[3, 4], 1), diff(&[5, 4], 2), diff(&[5], 3)],
            1,
        );
    }
}
