//! Data movement for any element size (1, 2, 4 or 8 bytes): Transpose,
//! Concat, Slice, Split, Expand through one strided-copy kernel
//! (`copy_nd_*`), Gather (`gather_*`), Where (`where_*`) and Cast. Shape
//! operands (slice bounds, split sizes, expand shapes, gather indices)
//! are read on the host, from their mirrors when small. Views (Reshape,
//! Flatten, Squeeze, Unsqueeze, Identity, Dropout) run no kernel. Their
//! lines in the op table are `table`; ops over any element type name the
//! 4-byte variant of their kernel.

use super::device::{other, OpenclDevice};
use super::launch::{
    bcast_strides, contiguous_strides, round_up, u32_of, v8, Arg, Decl, In, Run, Takes, MAX_RANK,
};
use super::pool::PooledBuffer;
use crate::{Device, DeviceError, DeviceTensor, OutputSpec, Result};
use hetflow_ops::shape::{broadcast_shapes, norm_axis, slice_view};
use hetflow_ops::{DType, Op, Tensor};
use opencl3::event::Event;
use std::sync::Arc;

/// The data-movement ops and views OpenCL runs.
pub(super) fn table(op: &Op) -> Option<Decl> {
    const COPY: &[&str] = &["copy_nd_4"];
    Some(match op {
        Op::Transpose { .. } => Decl::one(COPY, Takes::Sized, |c| match c.op {
            Op::Transpose { perm } => transpose(c.dev, c.x, perm.as_deref()),
            _ => Err(c.mismatch()),
        }),
        Op::Slice { .. } => Decl::one(COPY, Takes::Sized, |c| match c.op {
            Op::Slice { starts, ends, axes } => slice(
                c.dev,
                c.ins,
                (starts.as_deref(), ends.as_deref(), axes.as_deref()),
            ),
            _ => Err(c.mismatch()),
        }),
        Op::Expand => Decl::one(COPY, Takes::Sized, |c| expand(c.dev, c.ins)),
        Op::Concat { .. } => Decl::one(COPY, Takes::Check(same_sized), |c| match c.op {
            Op::Concat { axis } => concat(c.dev, c.ins, *axis),
            _ => Err(c.mismatch()),
        }),
        Op::Split { .. } => Decl {
            kernels: COPY,
            takes: Takes::Sized,
            run: Run::Many(|c| match c.op {
                Op::Split { axis, split: s } => {
                    split(c.dev, c.ins, *axis, s.as_deref(), c.n_outputs)
                }
                _ => Err(c.mismatch()),
            }),
        },
        Op::Gather { .. } => Decl::one(&["gather_4"], Takes::Check(gather_takes), |c| match c.op {
            Op::Gather { axis } => gather(c.dev, c.ins, *axis),
            _ => Err(c.mismatch()),
        }),
        Op::Where => Decl::one(&["where_4"], Takes::Check(where_takes), |c| {
            where_(c.dev, c.ins)
        }),
        Op::Cast { .. } => Decl::one(&["cast_f32_i64"], Takes::Check(cast_takes), |c| {
            match c.op {
                Op::Cast { to, .. } => cast(c.dev, c.x, *to),
                _ => Err(c.mismatch()),
            }
        }),
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout => Decl::no_kernel(Run::View),
        _ => return None,
    })
}

fn dtype(ins: &[Option<In>], i: usize) -> Option<DType> {
    ins.get(i).and_then(Option::as_ref).map(|x| x.t.dtype)
}

fn sized(d: Option<DType>) -> bool {
    matches!(d.map(DType::size), Some(1 | 2 | 4 | 8))
}

fn same_sized(_: &Op, ins: &[Option<In>]) -> bool {
    let d0 = dtype(ins, 0);
    sized(d0) && ins.iter().flatten().all(|x| Some(x.t.dtype) == d0)
}

fn gather_takes(_: &Op, ins: &[Option<In>]) -> bool {
    sized(dtype(ins, 0)) && matches!(dtype(ins, 1), Some(DType::I64 | DType::I32))
}

fn where_takes(_: &Op, ins: &[Option<In>]) -> bool {
    dtype(ins, 0) == Some(DType::Bool)
        && dtype(ins, 1) == dtype(ins, 2)
        && matches!(dtype(ins, 1).map(DType::size), Some(1 | 4 | 8))
}

fn cast_takes(op: &Op, ins: &[Option<In>]) -> bool {
    matches!(op, Op::Cast { to, .. } if cast_kernel(dtype(ins, 0), *to).is_some())
}

/// Views: the output shares the input's buffer under the shape the runtime
/// resolved.
pub(super) fn view(
    dev: &OpenclDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    outputs: &[OutputSpec],
) -> Result<Vec<DeviceTensor>> {
    let n_outputs = outputs.len();
    let mask = matches!(op, Op::Dropout) && n_outputs == 2;
    if n_outputs != 1 && !mask {
        return Err(DeviceError::Other(format!(
            "{n_outputs} outputs asked; only the data output runs on OpenCL"
        )));
    }
    let x = inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| DeviceError::Other("input 0 is missing".into()))?;
    let shape = outputs[0]
        .shape
        .clone()
        .ok_or_else(|| DeviceError::Other("output shape not resolved".into()))?;
    let mut outs = vec![dev.share_as(x, shape.clone())?];
    if mask {
        // Inference dropout keeps everything: an all-true mask.
        let n = shape.iter().product::<usize>();
        let m = Tensor::from_vec(shape, vec![true; n])
            .map_err(|e| DeviceError::Other(e.to_string()))?;
        outs.push(dev.upload(Arc::new(m))?);
    }
    Ok(outs)
}

fn err(msg: impl Into<String>) -> DeviceError {
    DeviceError::Other(msg.into())
}

fn copy_kernel(size: usize) -> Result<&'static str> {
    Ok(match size {
        1 => "copy_nd_1",
        2 => "copy_nd_2",
        4 => "copy_nd_4",
        8 => "copy_nd_8",
        s => return Err(err(format!("no copy kernel for {s}-byte elements"))),
    })
}

fn i8v(v: &[isize]) -> Result<[i32; 8]> {
    let mut a = [0i32; 8];
    for (k, &x) in v.iter().enumerate() {
        a[k] = i32::try_from(x).map_err(|_| err(format!("stride {x} exceeds 32 bits")))?;
    }
    Ok(a)
}

fn isz(v: &[usize]) -> Vec<isize> {
    v.iter().map(|&x| x as isize).collect()
}

/// Copies the index space `dims` of `x` (strides `xs` from `xo`) into `y`
/// (strides `ys` from `yo`); `None` when there is nothing to copy.
#[allow(clippy::too_many_arguments)]
fn copy_nd(
    dev: &OpenclDevice,
    x: &In,
    y: &PooledBuffer,
    dims: &[usize],
    xs: &[isize],
    ys: &[isize],
    xo: isize,
    yo: isize,
) -> Result<Option<Event>> {
    let n: usize = dims.iter().product();
    if n == 0 {
        return Ok(None);
    }
    if dims.len() > MAX_RANK {
        return Err(err(format!("rank {} > {MAX_RANK}", dims.len())));
    }
    let off = |v: isize| i32::try_from(v).map_err(|_| err(format!("offset {v} exceeds 32 bits")));
    let ev = dev.launch(
        copy_kernel(x.t.dtype.size())?,
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(n, "size")?),
            Arg::U32(dims.len() as u32),
            Arg::V8(v8(dims)?),
            Arg::I8(i8v(xs)?),
            Arg::I8(i8v(ys)?),
            Arg::I32(off(xo)?),
            Arg::I32(off(yo)?),
        ],
        &[round_up(n, 64)],
        None,
        &[&x.c.ready],
    )?;
    Ok(Some(ev))
}

fn out_bytes(dev: &OpenclDevice, dtype: DType, shape: &[usize]) -> Result<PooledBuffer> {
    dev.pool
        .get(shape.iter().product::<usize>() * dtype.size())
        .map_err(|e| other(dev.info.id, e))
}

fn finish(
    dev: &OpenclDevice,
    dtype: DType,
    shape: Vec<usize>,
    y: PooledBuffer,
    ev: Option<Event>,
) -> Result<DeviceTensor> {
    let ev = match ev {
        Some(e) => e,
        None => dev.marker()?,
    };
    Ok(dev.finish_out_as(dtype, shape, y, ev))
}

/// One strided copy into a fresh contiguous output of `shape`.
fn gather_view(
    dev: &OpenclDevice,
    x: &In,
    shape: Vec<usize>,
    xs: &[isize],
    xo: isize,
) -> Result<DeviceTensor> {
    let y = out_bytes(dev, x.t.dtype, &shape)?;
    let ys = isz(&contiguous_strides(&shape));
    let ev = copy_nd(dev, x, &y, &shape, xs, &ys, xo, 0)?;
    finish(dev, x.t.dtype, shape, y, ev)
}

fn transpose(dev: &OpenclDevice, x: &In, perm: Option<&[usize]>) -> Result<DeviceTensor> {
    let d = &x.t.shape;
    let r = d.len();
    let perm = hetflow_ops::shape::transpose_perm(perm, r).map_err(|e| err(e.to_string()))?;
    let st = contiguous_strides(d);
    let od: Vec<usize> = perm.iter().map(|&p| d[p]).collect();
    let xs: Vec<isize> = perm.iter().map(|&p| st[p] as isize).collect();
    gather_view(dev, x, od, &xs, 0)
}

/// Integer values of a shape operand.
fn ints(dev: &OpenclDevice, x: &In, what: &str) -> Result<Vec<i64>> {
    let t = dev.host_value(x.t)?;
    if t.dtype().is_float() || t.dtype() == DType::Bool {
        return Err(err(format!(
            "{what} must be an integer tensor, got {}",
            t.dtype()
        )));
    }
    Ok(t.to_i64_vec())
}

fn opt<'a>(ins: &'a [Option<In<'a>>], i: usize) -> Option<&'a In<'a>> {
    ins.get(i).and_then(Option::as_ref)
}

fn concat(dev: &OpenclDevice, ins: &[Option<In>], axis: i64) -> Result<DeviceTensor> {
    let xs: Vec<&In> = ins.iter().flatten().collect();
    let first = *xs
        .first()
        .ok_or_else(|| err("Concat needs at least one input"))?;
    let r = first.t.shape.len();
    let a = norm_axis(axis, r).map_err(|e| err(e.to_string()))?;
    let mut shape = first.t.shape.clone();
    shape[a] = 0;
    for (i, x) in xs.iter().enumerate() {
        let s = &x.t.shape;
        if s.len() != r || (0..r).any(|d| d != a && s[d] != first.t.shape[d]) {
            return Err(err(format!(
                "input {i} shape {s:?} does not fit {:?} on axis {a}",
                first.t.shape
            )));
        }
        shape[a] += s[a];
    }
    let y = out_bytes(dev, first.t.dtype, &shape)?;
    let ys = isz(&contiguous_strides(&shape));
    let mut last = None;
    let mut at = 0isize;
    for x in &xs {
        let st = isz(&contiguous_strides(&x.t.shape));
        if let Some(e) = copy_nd(dev, x, &y, &x.t.shape, &st, &ys, 0, at * ys[a])? {
            last = Some(e);
        }
        at += x.t.shape[a] as isize;
    }
    finish(dev, first.t.dtype, shape, y, last)
}

fn split(
    dev: &OpenclDevice,
    ins: &[Option<In>],
    axis: i64,
    split: Option<&[i64]>,
    n_out: usize,
) -> Result<Vec<DeviceTensor>> {
    let x = opt(ins, 0).ok_or_else(|| err("input 0 is missing"))?;
    let s = &x.t.shape;
    let a = norm_axis(axis, s.len()).map_err(|e| err(e.to_string()))?;
    let d = s[a];
    let given = match (split, opt(ins, 1)) {
        (Some(v), _) => Some(v.to_vec()),
        (None, Some(t)) => Some(ints(dev, t, "input 1 (split)")?),
        _ => None,
    };
    let sizes: Vec<usize> = match given {
        Some(v) if !v.is_empty() => v
            .iter()
            .map(|&n| usize::try_from(n).map_err(|_| err(format!("split size {n} < 0"))))
            .collect::<Result<_>>()?,
        _ => {
            if n_out == 0 {
                return Err(err("no outputs"));
            }
            let chunk = d.div_ceil(n_out);
            (0..n_out)
                .map(|i| chunk.min(d.saturating_sub(chunk * i)))
                .collect()
        }
    };
    if sizes.len() != n_out || sizes.iter().sum::<usize>() != d {
        return Err(err(format!(
            "sizes {sizes:?} do not split dim {d} into {n_out} outputs"
        )));
    }
    let st = isz(&contiguous_strides(s));
    let mut outs = Vec::with_capacity(n_out);
    let mut start = 0usize;
    for n in sizes {
        let mut sh = s.clone();
        sh[a] = n;
        outs.push(gather_view(dev, x, sh, &st, start as isize * st[a])?);
        start += n;
    }
    Ok(outs)
}

/// Slice's attribute form (opset < 10): starts, ends, axes.
type SliceAttrs<'a> = (Option<&'a [i64]>, Option<&'a [i64]>, Option<&'a [i64]>);

fn slice(dev: &OpenclDevice, ins: &[Option<In>], attrs: SliceAttrs) -> Result<DeviceTensor> {
    let x = opt(ins, 0).ok_or_else(|| err("input 0 is missing"))?;
    let (starts, ends, axes, steps) = match attrs {
        (Some(st), en, ax) => (
            st.to_vec(),
            en.ok_or_else(|| err("starts given without ends"))?.to_vec(),
            ax.map(<[i64]>::to_vec),
            None,
        ),
        _ => {
            let need = |i: usize, w: &str| -> Result<Vec<i64>> {
                ints(
                    dev,
                    opt(ins, i).ok_or_else(|| err(format!("{w} is missing")))?,
                    w,
                )
            };
            let axes = opt(ins, 3)
                .map(|t| ints(dev, t, "input 3 (axes)"))
                .transpose()?;
            let steps = opt(ins, 4)
                .map(|t| ints(dev, t, "input 4 (steps)"))
                .transpose()?;
            (
                need(1, "input 1 (starts)")?,
                need(2, "input 2 (ends)")?,
                axes,
                steps,
            )
        }
    };
    let k = starts.len();
    let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; k]);
    let (shape, st, base) =
        slice_view(&x.t.shape, &starts, &ends, &axes, &steps).map_err(|e| err(e.to_string()))?;
    gather_view(dev, x, shape, &st, base)
}

fn expand(dev: &OpenclDevice, ins: &[Option<In>]) -> Result<DeviceTensor> {
    let x = opt(ins, 0).ok_or_else(|| err("input 0 is missing"))?;
    let target = ints(
        dev,
        opt(ins, 1).ok_or_else(|| err("input 1 is missing"))?,
        "input 1 (shape)",
    )?;
    let target: Vec<usize> = target
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| err(format!("shape entry {d} < 0"))))
        .collect::<Result<_>>()?;
    let shape = broadcast_shapes(&x.t.shape, &target).map_err(|e| err(e.to_string()))?;
    let xs = isz(&bcast_strides(&x.t.shape, &shape));
    gather_view(dev, x, shape, &xs, 0)
}

fn gather(dev: &OpenclDevice, ins: &[Option<In>], axis: i64) -> Result<DeviceTensor> {
    let x = opt(ins, 0).ok_or_else(|| err("input 0 is missing"))?;
    let it = opt(ins, 1).ok_or_else(|| err("input 1 is missing"))?;
    let s = &x.t.shape;
    let a = norm_axis(axis, s.len()).map_err(|e| err(e.to_string()))?;
    let d = s[a] as i64;
    let idx: Vec<u32> = ints(dev, it, "input 1 (indices)")?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + d } else { i };
            if j < 0 || j >= d {
                Err(err(format!(
                    "index {i} out of range for axis {a} of size {d}"
                )))
            } else {
                Ok(j as u32)
            }
        })
        .collect::<Result<_>>()?;
    let mut shape = s[..a].to_vec();
    shape.extend(&it.t.shape);
    shape.extend(&s[a + 1..]);
    let y = out_bytes(dev, x.t.dtype, &shape)?;
    let n: usize = shape.iter().product();
    if n == 0 {
        return finish(dev, x.t.dtype, shape, y, None);
    }
    let kernel = match x.t.dtype.size() {
        1 => "gather_1",
        2 => "gather_2",
        4 => "gather_4",
        _ => "gather_8",
    };
    let ib = dev.const_u32(&idx)?;
    let inner: usize = s[a + 1..].iter().product();
    let ev = dev.launch(
        kernel,
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(&ib),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(n, "size")?),
            Arg::U32(u32_of(idx.len(), "size")?),
            Arg::U32(u32_of(s[a], "size")?),
            Arg::U32(u32_of(inner, "size")?),
        ],
        &[round_up(n, 64)],
        None,
        &[&x.c.ready],
    )?;
    finish(dev, x.t.dtype, shape, y, Some(ev))
}

fn where_(dev: &OpenclDevice, ins: &[Option<In>]) -> Result<DeviceTensor> {
    let get = |i: usize| opt(ins, i).ok_or_else(|| err(format!("input {i} is missing")));
    let (c, a, b) = (get(0)?, get(1)?, get(2)?);
    let shape = broadcast_shapes(&a.t.shape, &b.t.shape)
        .and_then(|s| broadcast_shapes(&c.t.shape, &s))
        .map_err(|e| err(e.to_string()))?;
    let kernel = match a.t.dtype.size() {
        1 => "where_1",
        4 => "where_4",
        _ => "where_8",
    };
    let y = out_bytes(dev, a.t.dtype, &shape)?;
    let n: usize = shape.iter().product();
    if n == 0 {
        return finish(dev, a.t.dtype, shape, y, None);
    }
    let ev = dev.launch(
        kernel,
        &[
            Arg::Buf(c.c.buf.buffer()),
            Arg::Buf(a.c.buf.buffer()),
            Arg::Buf(b.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(n, "size")?),
            Arg::U32(shape.len() as u32),
            Arg::V8(v8(&shape)?),
            Arg::V8(v8(&bcast_strides(&c.t.shape, &shape))?),
            Arg::V8(v8(&bcast_strides(&a.t.shape, &shape))?),
            Arg::V8(v8(&bcast_strides(&b.t.shape, &shape))?),
        ],
        &[round_up(n, 64)],
        None,
        &[&c.c.ready, &a.c.ready, &b.c.ready],
    )?;
    finish(dev, a.t.dtype, shape, y, Some(ev))
}

/// The cast kernel from `from` to `to`; `Some("")` when they are equal
/// (the output shares the input's buffer).
fn cast_kernel(from: Option<DType>, to: DType) -> Option<&'static str> {
    Some(match (from?, to) {
        (f, t) if f == t => "",
        (DType::F32, DType::I64) => "cast_f32_i64",
        (DType::F32, DType::I32) => "cast_f32_i32",
        (DType::F32, DType::Bool) => "cast_f32_bool",
        (DType::I64, DType::F32) => "cast_i64_f32",
        (DType::I32, DType::F32) => "cast_i32_f32",
        (DType::U8 | DType::Bool, DType::F32) => "cast_u8_f32",
        _ => return None,
    })
}

fn cast(dev: &OpenclDevice, x: &In, to: DType) -> Result<DeviceTensor> {
    let kernel = cast_kernel(Some(x.t.dtype), to)
        .ok_or_else(|| err(format!("no cast kernel {} -> {to}", x.t.dtype)))?;
    if kernel.is_empty() {
        return Ok(dev.wrap(to, x.t.shape.clone(), x.c.share()));
    }
    let y = out_bytes(dev, to, &x.t.shape)?;
    let n: usize = x.t.shape.iter().product();
    if n == 0 {
        return finish(dev, to, x.t.shape.clone(), y, None);
    }
    let ev = dev.launch(
        kernel,
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(n, "size")?),
        ],
        &[round_up(n, 64)],
        None,
        &[&x.c.ready],
    )?;
    finish(dev, to, x.t.shape.clone(), y, Some(ev))
}
