//! Shape and dtype inference of the convolution ops (from
//! [`crate::infer::infer_op`]).

use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{input, one, other_family, with_dtype};
use crate::op::conv::{resolve_window, AutoPad};
use crate::op::Op;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::ConvInteger(c) => {
            let mut f = infer(&Op::Conv(c.clone()), &inputs[..inputs.len().min(2)], 1)?;
            f[0].dtype = Some(crate::DType::I32);
            Ok(f)
        }
        Op::Conv(c) => {
            let x = input(inputs, 0)?;
            let w = input(inputs, 1)?;
            let shape = match (&x.shape, w.concrete_shape()) {
                (Some(xs), Some(ws)) => {
                    if xs.len() < 3 || ws.len() != xs.len() {
                        crate::bail!(
                            "Conv input {} and weight {:?} ranks do not fit",
                            crate::graph::fmt_shape(xs),
                            ws
                        );
                    }
                    if let Dim::Known(cin) = xs[1] {
                        if cin != ws[1] * c.group {
                            crate::bail!("Conv input has {} channels but weight {:?} with group {} expects {}",
                                cin, ws, c.group, ws[1] * c.group);
                        }
                    }
                    if ws[0] % c.group != 0 {
                        crate::bail!(
                            "Conv output channels {} not divisible by group {}",
                            ws[0],
                            c.group
                        );
                    }
                    let kernel = c.kernel_shape.clone().unwrap_or_else(|| ws[2..].to_vec());
                    let mut out = vec![xs[0].clone(), Dim::Known(ws[0])];
                    out.extend(resolve_window_dims(
                        &xs[2..],
                        &kernel,
                        &c.strides,
                        &c.dilations,
                        &c.pads,
                        c.auto_pad,
                        false,
                    )?);
                    Some(out)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::ConvGradInput { .. } | Op::ConvGradFilter(_) => super::grad::infer(op, inputs),
        _ => Err(other_family(op, "conv")),
    }
}

/// [`resolve_window`] over possibly symbolic input dims: known dims get
/// their output size, symbolic ones stay symbolic (each spatial dim is
/// independent of the others).
pub(crate) fn resolve_window_dims(
    input: &[crate::Dim],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> crate::Result<Vec<crate::Dim>> {
    const STAND_IN: usize = 1 << 20;
    let concrete: Vec<usize> = input
        .iter()
        .map(|d| d.known().unwrap_or(STAND_IN))
        .collect();
    let w = resolve_window(
        &concrete, kernel, strides, dilations, pads, auto_pad, ceil_mode,
    )?;
    Ok(input
        .iter()
        .zip(w.output)
        .enumerate()
        .map(|(i, (d, o))| match d {
            Dim::Known(_) => Dim::Known(o),
            Dim::Sym(s) => Dim::Sym(format!("{s}_win{i}")),
        })
        .collect())
}
