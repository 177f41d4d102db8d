//! Shape and dtype inference of the matrix-product ops (from
//! [`crate::infer::infer_op`]).

use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{check_same_dtype, input, one, other_family, with_dtype};
use crate::op::Op;
use crate::shape::broadcast_dims;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::MatMul => {
            let a = input(inputs, 0)?;
            let b = input(inputs, 1)?;
            let dt = check_same_dtype(&[a, b], "MatMul")?;
            let shape = match (&a.shape, &b.shape) {
                (Some(sa), Some(sb)) => Some(matmul_shape(sa, sb)?),
                _ => None,
            };
            one(with_dtype(dt, shape))
        }
        Op::Gemm {
            trans_a, trans_b, ..
        } => {
            let a = input(inputs, 0)?;
            let b = input(inputs, 1)?;
            let dt = check_same_dtype(&[a, b], "Gemm")?;
            let shape = match (&a.shape, &b.shape) {
                (Some(sa), Some(sb)) => {
                    if sa.len() != 2 || sb.len() != 2 {
                        crate::bail!(
                            "Gemm needs 2-D A and B, got {} and {}",
                            crate::graph::fmt_shape(sa),
                            crate::graph::fmt_shape(sb)
                        );
                    }
                    let (m, ka) = if *trans_a {
                        (&sa[1], &sa[0])
                    } else {
                        (&sa[0], &sa[1])
                    };
                    let (kb, n) = if *trans_b {
                        (&sb[1], &sb[0])
                    } else {
                        (&sb[0], &sb[1])
                    };
                    if let (Dim::Known(x), Dim::Known(y)) = (ka, kb) {
                        if x != y {
                            crate::bail!(
                                "Gemm inner dims differ: A {} vs B {}",
                                crate::graph::fmt_shape(sa),
                                crate::graph::fmt_shape(sb)
                            );
                        }
                    }
                    Some(vec![m.clone(), n.clone()])
                }
                _ => None,
            };
            one(with_dtype(dt, shape))
        }
        _ => Err(other_family(op, "matmul")),
    }
}

/// MatMul's output shape (numpy batching); also QLinearMatMul's and
/// MatMulInteger's.
pub(crate) fn matmul_shape(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>> {
    if a.is_empty() || b.is_empty() {
        crate::bail!("MatMul operands must have rank >= 1");
    }
    let a2: Vec<Dim> = if a.len() == 1 {
        vec![Dim::Known(1), a[0].clone()]
    } else {
        a.to_vec()
    };
    let b2: Vec<Dim> = if b.len() == 1 {
        vec![b[0].clone(), Dim::Known(1)]
    } else {
        b.to_vec()
    };
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if let (Dim::Known(x), Dim::Known(y)) = (ka, kb) {
        if x != y {
            crate::bail!(
                "MatMul inner dims differ: {} x {}",
                crate::graph::fmt_shape(a),
                crate::graph::fmt_shape(b)
            );
        }
    }
    let mut out = broadcast_dims(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Ok(out)
}
