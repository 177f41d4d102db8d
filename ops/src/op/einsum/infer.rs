//! Shape and dtype inference of the Einsum ops (from
//! [`crate::infer::infer_op`]).

use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{check_same_dtype, one, other_family, with_dtype};
use crate::op::Op;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::Einsum { equation } => {
            let fs: Vec<&Fact> = inputs.iter().flatten().copied().collect();
            let dt = check_same_dtype(&fs, "Einsum")?;
            let shapes: Option<Vec<Vec<usize>>> = fs.iter().map(|f| f.concrete_shape()).collect();
            let shape = match shapes {
                Some(ss) => {
                    let refs: Vec<&[usize]> = ss.iter().map(|s| s.as_slice()).collect();
                    Some(
                        super::kernel::einsum_shape(equation, &refs)?
                            .into_iter()
                            .map(Dim::Known)
                            .collect(),
                    )
                }
                None => None,
            };
            one(with_dtype(dt, shape))
        }
        _ => Err(other_family(op, "einsum")),
    }
}
