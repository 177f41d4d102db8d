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
        Op::DeformConv(_) => {
            // The output grid is the offset's (checked by the kernel).
            let (x, w, off) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
            if let Some(dt) = x.dtype.filter(|d| !d.is_float()) {
                crate::bail!("DeformConv: X must be a float tensor, got {dt}");
            }
            if let Some(r) = x.rank().filter(|&r| r != 4) {
                crate::bail!("DeformConv: only 2-D convolutions are supported, X has rank {r}");
            }
            let shape = match (&x.shape, &w.shape, &off.shape) {
                (Some(xs), Some(ws), Some(os)) if os.len() == 4 && !ws.is_empty() => Some(vec![
                    xs[0].clone(),
                    ws[0].clone(),
                    os[2].clone(),
                    os[3].clone(),
                ]),
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::QLinearConv(c) => {
            let (x, w) = (input(inputs, 0)?, input(inputs, 3)?);
            let mut f = infer(&Op::Conv(c.clone()), &[Some(x), Some(w)], 1)?;
            f[0].dtype = Some(
                inputs
                    .get(7)
                    .copied()
                    .flatten()
                    .and_then(|z| z.dtype)
                    .unwrap_or(crate::DType::U8),
            );
            Ok(f)
        }
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
