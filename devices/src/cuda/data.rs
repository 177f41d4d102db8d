//! Shape ops and data movement on the GPU. Reshape, Flatten, Squeeze,
//! Unsqueeze, Identity and Dropout are views (the output shares the
//! input's memory under the shape the runtime resolved); Transpose,
//! Slice, Concat, Split and Expand are strided copies (`data.cu`, any
//! element type) with layouts from `geom.rs`; Gather, Where, Equal and
//! Cast have kernels of their own. Shape-like inputs (axes, starts, target
//! shapes, split sizes) are read on the host: from the copy kept at upload
//! when small, else by a download. Their lines in the op table are
//! `table`.

use super::codes::type_code;
use super::device::CudaDevice;
use super::geom::{self, bcast_strides, broadcast, broadcast_all, contiguous_strides, Layout};
use super::launch::{
    byte_suffix, grid, host_ints, host_value, run, Call, Decl, Dtypes, Launch, Needs, Out,
};
use crate::{DeviceTensor, OutputSpec, Result};
use cudarc::driver::PushKernelArg;
use hetflow_ops::op::BinaryOp;
use hetflow_ops::{DType, Op};

/// The views and data-movement ops CUDA runs (any element type).
pub(crate) fn table(op: &Op) -> Option<Decl> {
    let k = |run: fn(&Call) -> Out| Decl::kernels(Dtypes::Any, run);
    Some(match op {
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout => Decl {
            needs: Needs::Nothing,
            dtypes: Dtypes::Any,
            one: true,
            run: |c| match c.outputs.first() {
                Some(out) => view(c.dev, c.x, out),
                None => Ok(None),
            },
        },
        Op::Transpose { .. } => k(|c| match c.op {
            Op::Transpose { perm } => transpose(c.dev, perm.as_deref(), c.x),
            _ => Err(c.mismatch()),
        }),
        Op::Slice { .. } => k(|c| slice(c.dev, c.op, c.inputs, c.x)),
        Op::Expand => k(|c| expand(c.dev, c.inputs, c.x)),
        Op::Concat { .. } => k(|c| match (c.op, c.all()) {
            (Op::Concat { axis }, Some(all)) => concat(c.dev, *axis, &all),
            _ => Ok(None),
        }),
        Op::Split { .. } => Decl {
            one: false,
            ..k(|c| split(c.dev, c.op, c.inputs, c.x, c.outputs.len()))
        },
        Op::Gather { .. } => k(|c| match (c.op, c.get(1)) {
            (Op::Gather { axis }, Some(idx)) => gather(c.dev, *axis, c.x, idx),
            _ => Ok(None),
        }),
        Op::Where => k(|c| match (c.get(1), c.get(2)) {
            (Some(a), Some(b)) => where_(c.dev, c.x, a, b),
            _ => Ok(None),
        }),
        Op::Binary(BinaryOp::Equal) => k(|c| match c.get(1) {
            Some(b) => equal(c.dev, c.x, b),
            None => Ok(None),
        }),
        Op::Cast { to, .. } if type_code(*to).is_some() => k(|c| match c.op {
            Op::Cast { to, .. } => cast(c.dev, *to, c.x),
            _ => Err(c.mismatch()),
        }),
        _ => return None,
    })
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Views: the output shares `x`'s memory under the shape the runtime
/// resolved (`Ok(None)`, the host path, when it is unknown or does not fit).
fn view(dev: &CudaDevice, x: &DeviceTensor, out: &OutputSpec) -> Out {
    let Some((dtype, shape)) = out.concrete() else {
        return Ok(None);
    };
    if numel(shape) != numel(&x.shape) || dtype != x.dtype {
        return Ok(None);
    }
    Ok(Some(vec![dev.view(x, shape.to_vec())?]))
}

/// Queues `strided_copy` of `src` into `dst` over `l`.
fn copy(l: &Launch, src: u64, dst: u64, layout: &Layout, dt: DType) -> Result<()> {
    let n: i64 = layout.dims[..layout.rank as usize].iter().product();
    if n == 0 {
        return Ok(());
    }
    let mut k = l
        .dev
        .compute
        .launch_builder(l.func("strided_copy", byte_suffix(dt))?);
    k.arg(&src).arg(&dst).arg(&n).arg(layout);
    // SAFETY: the layout's offsets stay inside both buffers (geom.rs).
    l.check(unsafe { k.launch(grid(n as usize)) })
}

/// One strided copy of `x` into a new tensor of `shape`.
fn copy_op(
    dev: &CudaDevice,
    name: &str,
    x: &DeviceTensor,
    shape: Vec<usize>,
    layout: Option<Layout>,
) -> Out {
    let Some(layout) = layout else {
        return Ok(None);
    };
    let dt = x.dtype;
    run(dev, name, &[x], vec![(dt, shape)], |l| {
        copy(l, l.ptr(x)?, l.outs[0], &layout, dt)
    })
    .map(Some)
}

fn transpose(dev: &CudaDevice, perm: Option<&[usize]>, x: &DeviceTensor) -> Out {
    let Some((out, layout)) = geom::transpose(&x.shape, perm) else {
        return Ok(None);
    };
    copy_op(dev, "Transpose", x, out, Some(layout))
}

fn slice(dev: &CudaDevice, op: &Op, inputs: &[Option<&DeviceTensor>], x: &DeviceTensor) -> Out {
    let Op::Slice { starts, ends, axes } = op else {
        return Ok(None);
    };
    let (st, en, ax, sp) = match starts {
        Some(st) => {
            let Some(en) = ends else { return Ok(None) };
            (st.clone(), en.clone(), axes.clone(), None)
        }
        None => {
            let (Some(st), Some(en)) = (host_ints(dev, inputs, 1)?, host_ints(dev, inputs, 2)?)
            else {
                return Ok(None);
            };
            (
                st,
                en,
                host_ints(dev, inputs, 3)?,
                host_ints(dev, inputs, 4)?,
            )
        }
    };
    let (out, base, strides) = geom::slice(&x.shape, &st, &en, ax.as_deref(), sp.as_deref())
        .map_err(|m| dev.err("Slice", m))?;
    let layout = Layout::new(&out, &[&strides, &contiguous_strides(&out)], [base, 0, 0]);
    copy_op(dev, "Slice", x, out, layout)
}

fn expand(dev: &CudaDevice, inputs: &[Option<&DeviceTensor>], x: &DeviceTensor) -> Out {
    let Some(target) = host_ints(dev, inputs, 1)? else {
        return Ok(None);
    };
    if target.iter().any(|&d| d < 0) {
        return Ok(None);
    }
    let target: Vec<usize> = target.iter().map(|&d| d as usize).collect();
    let Some(out) = broadcast(&x.shape, &target) else {
        return Ok(None);
    };
    let layout = Layout::new(
        &out,
        &[&bcast_strides(&x.shape, &out), &contiguous_strides(&out)],
        [0; 3],
    );
    copy_op(dev, "Expand", x, out, layout)
}

fn concat(dev: &CudaDevice, axis: i64, ins: &[&DeviceTensor]) -> Out {
    let dt = ins[0].dtype;
    let shapes: Vec<&[usize]> = ins.iter().map(|t| t.shape.as_slice()).collect();
    if ins.iter().any(|t| t.dtype != dt) {
        return Ok(None);
    }
    let Some((out, parts)) = geom::concat(&shapes, axis) else {
        return Ok(None);
    };
    run(dev, "Concat", ins, vec![(dt, out)], |l| {
        for (t, layout) in ins.iter().zip(&parts) {
            copy(l, l.ptr(t)?, l.outs[0], layout, dt)?;
        }
        Ok(())
    })
    .map(Some)
}

fn split(
    dev: &CudaDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    x: &DeviceTensor,
    n_outputs: usize,
) -> Out {
    let Op::Split { axis, split } = op else {
        return Ok(None);
    };
    let Some(a) = geom::norm_axis(*axis, x.shape.len()) else {
        return Ok(None);
    };
    let sizes = match split.clone() {
        Some(s) if !s.is_empty() => Some(s),
        _ => host_ints(dev, inputs, 1)?,
    };
    let sizes: Vec<usize> = match sizes {
        Some(s) if s.iter().all(|&v| v >= 0) => s.iter().map(|&v| v as usize).collect(),
        Some(_) => return Ok(None),
        None => geom::even_split(x.shape[a], n_outputs),
    };
    if sizes.len() != n_outputs {
        return Ok(None);
    }
    let Some(parts) = geom::split(&x.shape, *axis, &sizes) else {
        return Ok(None);
    };
    let dt = x.dtype;
    let outs = parts.iter().map(|(s, _)| (dt, s.clone())).collect();
    run(dev, "Split", &[x], outs, |l| {
        for ((_, layout), &y) in parts.iter().zip(&l.outs) {
            copy(l, l.ptr(x)?, y, layout, dt)?;
        }
        Ok(())
    })
    .map(Some)
}

fn gather(dev: &CudaDevice, axis: i64, x: &DeviceTensor, idx: &DeviceTensor) -> Out {
    if !matches!(idx.dtype, DType::I64 | DType::I32) {
        return Ok(None);
    }
    let Some(([outer, len, inner], out)) = geom::gather(&x.shape, &idx.shape, axis) else {
        return Ok(None);
    };
    // Out-of-range indices are an error on the CPU; check them here
    // (indices are small: usually constants mirrored at upload).
    let d = len as i64;
    if let Some(bad) = host_value(dev, idx)?
        .to_i64_vec()
        .into_iter()
        .find(|&i| !(-d..d).contains(&i))
    {
        return Err(dev.err(
            "Gather",
            format!("index {bad} out of range for an axis of size {len}"),
        ));
    }
    let n = numel(&out);
    let dt = x.dtype;
    let (o, ln, ni, inn) = (
        outer as i64,
        len as i64,
        numel(&idx.shape) as i64,
        inner as i64,
    );
    let is64 = (idx.dtype == DType::I64) as i32;
    run(dev, "Gather", &[x, idx], vec![(dt, out)], |l| {
        if n == 0 {
            return Ok(());
        }
        let (xp, ip, y) = (l.ptr(x)?, l.ptr(idx)?, l.outs[0]);
        let mut k = dev
            .compute
            .launch_builder(l.func("gather", byte_suffix(dt))?);
        k.arg(&xp)
            .arg(&ip)
            .arg(&is64)
            .arg(&y)
            .arg(&o)
            .arg(&ln)
            .arg(&ni)
            .arg(&inn);
        // SAFETY: indices were checked against the axis length above.
        l.check(unsafe { k.launch(grid(n)) })
    })
    .map(Some)
}

/// A layout broadcasting `shapes` (up to three) to their common shape.
fn bcast_layout(shapes: &[&[usize]]) -> Option<(Vec<usize>, Layout)> {
    let out = broadcast_all(shapes)?;
    let st: Vec<Vec<i64>> = shapes.iter().map(|s| bcast_strides(s, &out)).collect();
    let refs: Vec<&[i64]> = st.iter().map(Vec::as_slice).collect();
    Some((out.clone(), Layout::new(&out, &refs, [0; 3])?))
}

fn where_(dev: &CudaDevice, c: &DeviceTensor, x: &DeviceTensor, y: &DeviceTensor) -> Out {
    if c.dtype != DType::Bool || x.dtype != y.dtype {
        return Ok(None);
    }
    let Some((out, layout)) = bcast_layout(&[&c.shape, &x.shape, &y.shape]) else {
        return Ok(None);
    };
    let n = numel(&out);
    run(dev, "Where", &[c, x, y], vec![(x.dtype, out)], |l| {
        if n == 0 {
            return Ok(());
        }
        let (cp, xp, yp, o, nn) = (l.ptr(c)?, l.ptr(x)?, l.ptr(y)?, l.outs[0], n as i64);
        let mut k = dev
            .compute
            .launch_builder(l.func("where", byte_suffix(x.dtype))?);
        k.arg(&cp).arg(&xp).arg(&yp).arg(&o).arg(&nn).arg(&layout);
        // SAFETY: broadcast offsets stay inside each operand.
        l.check(unsafe { k.launch(grid(n)) })
    })
    .map(Some)
}

fn equal(dev: &CudaDevice, a: &DeviceTensor, b: &DeviceTensor) -> Out {
    let Some(t) = type_code(a.dtype).filter(|_| a.dtype == b.dtype) else {
        return Ok(None);
    };
    let Some((out, layout)) = bcast_layout(&[&a.shape, &b.shape]) else {
        return Ok(None);
    };
    let n = numel(&out);
    run(dev, "Equal", &[a, b], vec![(DType::Bool, out)], |l| {
        if n == 0 {
            return Ok(());
        }
        let (ap, bp, y, nn) = (l.ptr(a)?, l.ptr(b)?, l.outs[0], n as i64);
        let mut k = dev.compute.launch_builder(l.func("equal", "any")?);
        k.arg(&ap).arg(&bp).arg(&y).arg(&nn).arg(&t).arg(&layout);
        // SAFETY: broadcast offsets stay inside each operand.
        l.check(unsafe { k.launch(grid(n)) })
    })
    .map(Some)
}

fn cast(dev: &CudaDevice, to: DType, x: &DeviceTensor) -> Out {
    if to == x.dtype {
        return Ok(Some(vec![dev.view(x, x.shape.clone())?]));
    }
    let (Some(from), Some(tc)) = (type_code(x.dtype), type_code(to)) else {
        return Ok(None);
    };
    let n = numel(&x.shape);
    run(dev, "Cast", &[x], vec![(to, x.shape.clone())], |l| {
        if n == 0 {
            return Ok(());
        }
        let (xp, y, nn) = (l.ptr(x)?, l.outs[0], n as i64);
        let mut k = dev.compute.launch_builder(l.func("cast", "any")?);
        k.arg(&xp).arg(&y).arg(&nn).arg(&from).arg(&tc);
        // SAFETY: element-wise over n elements of each type.
        l.check(unsafe { k.launch(grid(n)) })
    })
    .map(Some)
}
