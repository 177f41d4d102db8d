//! Shape and dtype inference of the Resize ops (from
//! [`crate::infer::infer_op`]).

use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{input, one, opt_input, other_family, with_dtype};
use crate::op::Op;
use crate::shape::dim_axis;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::Resize(ra) => {
            let x = input(inputs, 0)?;
            let shape = match &x.shape {
                Some(s) => Some(resize_dims(ra, s, inputs)?),
                None => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        _ => Err(other_family(op, "resize")),
    }
}

/// Resize output dims when the scales or sizes are constants (with the
/// stretch policy); otherwise the resized axes are symbolic.
fn resize_dims(
    ra: &crate::op::ResizeAttrs,
    s: &[Dim],
    inputs: &[Option<&Fact>],
) -> Result<Vec<Dim>> {
    let r = s.len();
    let axes: Vec<usize> = match &ra.axes {
        Some(a) => a.iter().map(|&v| dim_axis(v, r)).collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    let value = |i: usize| {
        opt_input(inputs, i)
            .and_then(|f| f.value.clone())
            .filter(|t| !t.is_empty())
    };
    let sizes = if ra.scales_input == 1 { None } else { value(3) };
    let scales = value(ra.scales_input);
    let mut o = s.to_vec();
    for (i, &d) in axes.iter().enumerate() {
        o[d] = match (&sizes, &scales, &s[d]) {
            (Some(sz), _, _) if ra.keep_aspect == crate::op::KeepAspect::Stretch => {
                match sz.to_i64_vec().get(i) {
                    Some(&n) if n >= 0 => Dim::Known(n as usize),
                    _ => crate::bail!("sizes {:?} do not fit {} axes", sz.shape(), axes.len()),
                }
            }
            (None, Some(sc), Dim::Known(n)) => match sc.to_f32_vec().get(i) {
                Some(&f) if f > 0.0 => Dim::Known((f as f64 * *n as f64) as usize),
                _ => crate::bail!("scales {:?} do not fit {} axes", sc.shape(), axes.len()),
            },
            _ => Dim::Sym(format!("resize_{d}")),
        };
    }
    Ok(o)
}
