//! Shape and dtype inference of the reduction ops (from
//! [`crate::infer::infer_op`]).

use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{const_ints, input, one, opt_input, other_family, with_dtype};
use crate::op::Op;
use crate::shape::dim_axis;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::ArgExtreme { axis, keepdims, .. } => {
            let x = input(inputs, 0)?;
            let shape = match &x.shape {
                Some(s) => {
                    let ax = dim_axis(*axis, s.len())?;
                    let mut o = s.clone();
                    if *keepdims {
                        o[ax] = Dim::Known(1);
                    } else {
                        o.remove(ax);
                    }
                    Some(o)
                }
                None => None,
            };
            one(with_dtype(Some(DType::I64), shape))
        }
        Op::Reduce {
            axes,
            keepdims,
            noop_with_empty_axes,
            ..
        } => {
            let x = input(inputs, 0)?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => match opt_input(inputs, 1) {
                    None => Some(vec![]),
                    Some(f) => const_ints(Some(f)),
                },
            };
            let shape = match (&x.shape, axes) {
                (Some(s), Some(axes)) => {
                    if axes.is_empty() && *noop_with_empty_axes {
                        Some(s.clone())
                    } else {
                        let r = s.len();
                        let mut red = vec![axes.is_empty(); r];
                        for a in axes {
                            red[dim_axis(a, r)?] = true;
                        }
                        Some(
                            s.iter()
                                .zip(red)
                                .filter_map(|(d, r)| match (r, *keepdims) {
                                    (true, true) => Some(Dim::Known(1)),
                                    (true, false) => None,
                                    (false, _) => Some(d.clone()),
                                })
                                .collect(),
                        )
                    }
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        _ => Err(other_family(op, "reduce")),
    }
}
