//! Launches of the parameterised element-wise ops, comparisons, variadic
//! Sum, reductions (and the global pools), convolution, pooling, batch
//! and response normalisation; data movement is in [`super::movement`].

use super::codes::reduce_code;
use super::device::OpenclDevice;
use super::gemm::{Gemm, Operand};
use super::launch::{bcast_strides, contiguous_strides, round_up, u32_of, v8, Arg, In, MAX_RANK};
use super::movement;
use super::ops::operand;
use super::pool::PooledBuffer;
use crate::{DeviceError, DeviceTensor, Result};
use hetflow_ops::op::{resolve_window, Activation, ReduceKind};
use hetflow_ops::shape::{broadcast_shapes, norm_axis};
use hetflow_ops::{DType, Op};

fn err(msg: impl Into<String>) -> DeviceError {
    DeviceError::Other(msg.into())
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Broadcasting binary kernel `kernel` (arithmetic, or a comparison with a
/// bool output).
pub(super) fn binary(
    dev: &OpenclDevice,
    kernel: &'static str,
    a: &In,
    b: &In,
    out: DType,
) -> Result<DeviceTensor> {
    let shape = broadcast_shapes(&a.t.shape, &b.t.shape).map_err(|e| err(e.to_string()))?;
    if shape.len() > MAX_RANK {
        return Err(err(format!("rank {} > {MAX_RANK}", shape.len())));
    }
    let n = numel(&shape);
    let y = dev
        .pool
        .get(n * out.size())
        .map_err(|e| super::device::other(dev.info.id, e))?;
    let ev = dev.launch(
        kernel,
        &[
            Arg::Buf(a.c.buf.buffer()),
            Arg::Buf(b.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(n, "size")?),
            Arg::U32(shape.len() as u32),
            Arg::V8(v8(&shape)?),
            Arg::V8(v8(&bcast_strides(&a.t.shape, &shape))?),
            Arg::V8(v8(&bcast_strides(&b.t.shape, &shape))?),
        ],
        &[round_up(n, 64)],
        None,
        &[&a.c.ready, &b.c.ready],
    )?;
    Ok(dev.finish_out_as(out, shape, y, ev))
}

fn opt<'a>(ins: &'a [Option<In<'a>>], i: usize) -> Option<&'a In<'a>> {
    ins.get(i).and_then(Option::as_ref)
}

fn need<'a>(ins: &'a [Option<In<'a>>], i: usize) -> Result<&'a In<'a>> {
    opt(ins, i).ok_or_else(|| err(format!("input {i} is missing")))
}

/// Everything `ops::single` does not launch itself.
pub(super) fn other(
    dev: &OpenclDevice,
    op: &Op,
    kernels: &[&'static str],
    ins: &[Option<In>],
    x: &In,
) -> Result<DeviceTensor> {
    match op {
        Op::LeakyRelu { alpha } => {
            let n = numel(&x.t.shape);
            let y = dev.out_buf(n)?;
            let ev = dev.launch(
                kernels[0],
                &[
                    Arg::Buf(x.c.buf.buffer()),
                    Arg::Buf(y.buffer()),
                    Arg::U32(u32_of(n, "size")?),
                    Arg::F32(*alpha),
                ],
                &[round_up(n, 64)],
                None,
                &[&x.c.ready],
            )?;
            Ok(dev.finish_out(x.t.shape.clone(), y, ev))
        }
        Op::Clip { min, max } => clip(dev, ins, x, *min, *max),
        Op::Sum => {
            let xs: Vec<&In> = ins.iter().flatten().collect();
            match xs.as_slice() {
                [] => Err(err("Sum needs at least one input")),
                [only] => Ok(dev.wrap(only.t.dtype, only.t.shape.clone(), only.c.share())),
                [a, b, rest @ ..] => {
                    let mut acc = binary(dev, "b_add", a, b, DType::F32)?;
                    for t in rest {
                        let c = dev.cl(&acc)?;
                        let cur = In { t: &acc, c };
                        let next = binary(dev, "b_add", &cur, t, DType::F32)?;
                        acc = next;
                    }
                    Ok(acc)
                }
            }
        }
        Op::Where => movement::where_(dev, ins),
        Op::Cast { to, .. } => movement::cast(dev, x, *to),
        Op::Concat { axis } => movement::concat(dev, ins, *axis),
        Op::Slice { starts, ends, axes } => movement::slice(
            dev,
            ins,
            (starts.as_deref(), ends.as_deref(), axes.as_deref()),
        ),
        Op::Expand => movement::expand(dev, ins),
        Op::Gather { axis } => movement::gather(dev, ins, *axis),
        Op::BatchNorm { epsilon } => batchnorm(dev, ins, x, *epsilon),
        Op::Lrn {
            alpha,
            beta,
            bias,
            size,
        } => {
            let s = &x.t.shape;
            if s.len() < 2 || *size == 0 {
                return Err(err(format!(
                    "LRN needs rank >= 2 and size > 0, got {s:?}, {size}"
                )));
            }
            let n = numel(s);
            let y = dev.out_buf(n)?;
            let ev = dev.launch(
                "lrn",
                &[
                    Arg::Buf(x.c.buf.buffer()),
                    Arg::Buf(y.buffer()),
                    Arg::U32(u32_of(n, "size")?),
                    Arg::U32(u32_of(s[1], "size")?),
                    Arg::U32(u32_of(numel(&s[2..]), "size")?),
                    Arg::U32(u32_of(*size, "size")?),
                    Arg::F32(*alpha),
                    Arg::F32(*beta),
                    Arg::F32(*bias),
                ],
                &[round_up(n, 64)],
                None,
                &[&x.c.ready],
            )?;
            Ok(dev.finish_out(s.clone(), y, ev))
        }
        Op::Reduce {
            kind,
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            let axes: Vec<i64> = match (axes, opt(ins, 1)) {
                (Some(a), _) => a.clone(),
                (None, Some(t)) => {
                    let v = dev.host_value(t.t)?;
                    if v.dtype().is_float() || v.dtype() == DType::Bool {
                        return Err(err(format!(
                            "input 1 (axes) must be an integer tensor, got {}",
                            v.dtype()
                        )));
                    }
                    v.to_i64_vec()
                }
                (None, None) => vec![],
            };
            if axes.is_empty() && *noop_with_empty_axes {
                return Ok(dev.wrap(x.t.dtype, x.t.shape.clone(), x.c.share()));
            }
            reduce(dev, x, *kind, &axes, *keepdims)
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            let r = x.t.shape.len();
            if r < 3 {
                return Err(err(format!("needs rank >= 3, got {:?}", x.t.shape)));
            }
            let axes: Vec<i64> = (2..r as i64).collect();
            let kind = if matches!(op, Op::GlobalMaxPool) {
                ReduceKind::Max
            } else {
                ReduceKind::Mean
            };
            reduce(dev, x, kind, &axes, true)
        }
        Op::Conv(a) => conv(dev, ins, x, a),
        Op::MaxPool(p) | Op::AveragePool(p) => pool(dev, x, p, matches!(op, Op::MaxPool(_))),
        o => Err(err(format!("no OpenCL launch for {}", o.name()))),
    }
}

fn clip(
    dev: &OpenclDevice,
    ins: &[Option<In>],
    x: &In,
    min: Option<f32>,
    max: Option<f32>,
) -> Result<DeviceTensor> {
    // Bounds from attributes go in small constant buffers; bounds from
    // inputs are read on the device (no wait on the host).
    let consts = [min, max].map(|v| v.map(|v| dev.const_u32(&[v.to_bits()])));
    let mut bufs = Vec::new();
    let mut waits = vec![&x.c.ready];
    let mut has = [false; 2];
    for (k, c) in consts.into_iter().enumerate() {
        if let Some(b) = c {
            bufs.push(Some(b?));
            has[k] = true;
        } else if let Some(t) = opt(ins, k + 1).filter(|t| numel(&t.t.shape) > 0) {
            if numel(&t.t.shape) != 1 {
                return Err(err(format!("bound {} has shape {:?}", k + 1, t.t.shape)));
            }
            bufs.push(None);
            waits.push(&t.c.ready);
            has[k] = true;
        } else {
            bufs.push(None);
        }
    }
    let pick = |k: usize| match &bufs[k] {
        Some(b) => b,
        None => opt(ins, k + 1)
            .filter(|_| has[k])
            .map_or(x.c.buf.buffer(), |t| t.c.buf.buffer()),
    };
    let n = numel(&x.t.shape);
    let y = dev.out_buf(n)?;
    let ev = dev.launch(
        "u_clip",
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(n, "size")?),
            Arg::Buf(pick(0)),
            Arg::Buf(pick(1)),
            Arg::U32(has[0] as u32),
            Arg::U32(has[1] as u32),
        ],
        &[round_up(n, 64)],
        None,
        &waits,
    )?;
    Ok(dev.finish_out(x.t.shape.clone(), y, ev))
}

fn batchnorm(dev: &OpenclDevice, ins: &[Option<In>], x: &In, eps: f32) -> Result<DeviceTensor> {
    let s = &x.t.shape;
    if s.len() < 2 {
        return Err(err(format!(
            "BatchNormalization needs rank >= 2, got {s:?}"
        )));
    }
    let c = s[1];
    let mut p = Vec::new();
    for (i, what) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
        let t = need(ins, i)?;
        if numel(&t.t.shape) != c {
            return Err(err(format!(
                "input {i} ({what}) has {} elements, expected {c} (channels)",
                numel(&t.t.shape)
            )));
        }
        p.push(t);
    }
    let n = numel(s);
    let y = dev.out_buf(n)?;
    let ev = dev.launch(
        "batchnorm",
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(p[0].c.buf.buffer()),
            Arg::Buf(p[1].c.buf.buffer()),
            Arg::Buf(p[2].c.buf.buffer()),
            Arg::Buf(p[3].c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(n, "size")?),
            Arg::U32(u32_of(c, "size")?),
            Arg::U32(u32_of(numel(&s[2..]), "size")?),
            Arg::F32(eps),
        ],
        &[round_up(n, 64)],
        None,
        &[
            &x.c.ready,
            &p[0].c.ready,
            &p[1].c.ready,
            &p[2].c.ready,
            &p[3].c.ready,
        ],
    )?;
    Ok(dev.finish_out(s.clone(), y, ev))
}

fn reduce(
    dev: &OpenclDevice,
    x: &In,
    kind: ReduceKind,
    axes: &[i64],
    keepdims: bool,
) -> Result<DeviceTensor> {
    let s = &x.t.shape;
    let r = s.len();
    let mut red = vec![axes.is_empty(); r];
    for &a in axes {
        red[norm_axis(a, r).map_err(|e| err(e.to_string()))?] = true;
    }
    let st = contiguous_strides(s);
    let (mut od, mut os, mut rd, mut rs) = (vec![], vec![], vec![], vec![]);
    let mut shape = Vec::new();
    for k in 0..r {
        if red[k] {
            rd.push(s[k]);
            rs.push(st[k]);
            if keepdims {
                shape.push(1);
            }
        } else {
            od.push(s[k]);
            os.push(st[k]);
            shape.push(s[k]);
        }
    }
    let (n, count) = (numel(&od), numel(&rd));
    if count == 0 || n == 0 {
        return Err(err("empty reduction"));
    }
    let code = reduce_code(kind);
    let y = dev.out_buf(n)?;
    let ev = dev.launch(
        "reduce_nd",
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(n, "size")?),
            Arg::U32(od.len() as u32),
            Arg::V8(v8(&od)?),
            Arg::V8(v8(&os)?),
            Arg::U32(rd.len() as u32),
            Arg::V8(v8(&rd)?),
            Arg::V8(v8(&rs)?),
            Arg::U32(u32_of(count, "size")?),
            Arg::U32(code),
        ],
        &[round_up(n, 64)],
        None,
        &[&x.c.ready],
    )?;
    Ok(dev.finish_out(shape, y, ev))
}

/// The window geometry buffer of the conv and pool kernels (see
/// kernels_nn.cl), spatial dims lifted to 3.
fn geometry(
    dev: &OpenclDevice,
    spatial: &[usize],
    w: &hetflow_ops::op::Window,
) -> Result<opencl3::memory::Buffer<u8>> {
    if spatial.len() > 3 {
        return Err(err(format!(
            "{} spatial dims; the kernels take up to 3",
            spatial.len()
        )));
    }
    let lift = |v: &[usize], fill: usize| -> Vec<usize> {
        let mut o = vec![fill; 3 - v.len()];
        o.extend(v);
        o
    };
    let mut g = Vec::with_capacity(21);
    for (v, fill) in [
        (spatial, 1),
        (&w.output[..], 1),
        (&w.kernel[..], 1),
        (&w.strides[..], 1),
        (&w.dilations[..], 1),
        (&w.pads_begin[..], 0),
        (&w.pads_end[..], 0),
    ] {
        for d in lift(v, fill) {
            g.push(
                u32::try_from(d)
                    .ok()
                    .filter(|&d| d <= i32::MAX as u32)
                    .ok_or_else(|| err(format!("window size {d} exceeds 31 bits")))?,
            );
        }
    }
    dev.const_u32(&g)
}

fn conv(
    dev: &OpenclDevice,
    ins: &[Option<In>],
    x: &In,
    a: &hetflow_ops::op::ConvAttrs,
) -> Result<DeviceTensor> {
    let w = need(ins, 1)?;
    let b = opt(ins, 2).filter(|b| numel(&b.t.shape) > 0);
    let (xs, ws) = (&x.t.shape, &w.t.shape);
    if xs.len() < 3 || ws.len() != xs.len() {
        return Err(err(format!(
            "Conv needs X of rank >= 3 and W of the same rank, got {xs:?} and {ws:?}"
        )));
    }
    let group = a.group.max(1);
    let (n, c, m) = (xs[0], xs[1], ws[0]);
    if c != ws[1] * group || m % group != 0 {
        return Err(err(format!(
            "X {xs:?} and W {ws:?} do not fit group {group}"
        )));
    }
    let kernel = ws[2..].to_vec();
    if let Some(ks) = &a.kernel_shape {
        if *ks != kernel {
            return Err(err(format!(
                "kernel_shape {ks:?} differs from W's {kernel:?}"
            )));
        }
    }
    if kernel.contains(&0) || xs[2..].contains(&0) {
        return Err(err(format!("empty kernel {kernel:?} or input {xs:?}")));
    }
    if let Some(b) = b {
        if numel(&b.t.shape) != m {
            return Err(err(format!(
                "bias has {} elements, expected {m}",
                numel(&b.t.shape)
            )));
        }
    }
    let win = resolve_window(
        &xs[2..],
        &kernel,
        &a.strides,
        &a.dilations,
        &a.pads,
        a.auto_pad,
        false,
    )
    .map_err(|e| err(e.to_string()))?;
    let g = geometry(dev, &xs[2..], &win)?;
    let mut shape = vec![n, m];
    shape.extend(&win.output);
    let osz = numel(&win.output);
    let y = dev.out_buf(numel(&shape))?;
    if numel(&shape) == 0 {
        return Ok(dev.finish_out(shape, y, dev.marker()?));
    }
    let (act, lo, hi) = match a.activation {
        Activation::None => (0, 0.0, 0.0),
        Activation::Relu => (1, 0.0, 0.0),
        Activation::Clip { lo, hi } => (2, lo, hi),
    };
    let kc = c / group * numel(&kernel);
    let col_bytes = n * group * kc * osz * 4;
    let col_max = dev.im2col_limit.load(std::sync::atomic::Ordering::Relaxed);
    // im2col + GEMM also for depthwise convs: measured on PoCL (64 channels
    // 56x56 and 128 channels 28x28, 3x3) it took 0.6-0.75x the time of the
    // direct kernel (docs/opencl.md).
    if col_bytes <= col_max {
        return conv_gemm(
            dev,
            (x, w, b),
            &g,
            &win,
            (c, m, group),
            (act, lo, hi),
            shape,
            y,
        );
    }
    // An im2col buffer too large for one allocation: the direct kernel,
    // one work-item per output element.
    let bb = b.unwrap_or(w);
    let ev = dev.launch(
        "conv_direct",
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(w.c.buf.buffer()),
            Arg::Buf(bb.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::Buf(&g),
            Arg::U32(u32_of(c, "channels")?),
            Arg::U32(u32_of(m, "channels")?),
            Arg::U32(u32_of(group, "group")?),
            Arg::U32(b.is_some() as u32),
            Arg::U32(act),
            Arg::F32(lo),
            Arg::F32(hi),
        ],
        &[round_up(osz, 16), m, n],
        None,
        &[&x.c.ready, &w.c.ready, &bb.c.ready],
    )?;
    Ok(dev.finish_out(shape, y, ev))
}

/// Conv as im2col + GEMM: per image and group, Y (M/group x P) = W (M/group
/// x K) times col (K x P), K = C/group * kernel cells, P output positions;
/// the bias is GEMM's C broadcast along rows and the activation its
/// epilogue. A 1x1 conv with unit strides and no padding reads X as col.
#[allow(clippy::too_many_arguments)]
fn conv_gemm(
    dev: &OpenclDevice,
    (x, w, b): (&In, &In, Option<&In>),
    g: &opencl3::memory::Buffer<u8>,
    win: &hetflow_ops::op::Window,
    (c, m, group): (usize, usize, usize),
    act: (u32, f32, f32),
    shape: Vec<usize>,
    y: PooledBuffer,
) -> Result<DeviceTensor> {
    let n = shape[0];
    let (cpg, mpg) = (c / group, m / group);
    let ksz = numel(&win.kernel);
    let (kc, p) = (cpg * ksz, numel(&win.output));
    let pointwise = win.kernel.iter().all(|&k| k == 1)
        && win.strides.iter().all(|&s| s == 1)
        && win.pads_begin.iter().chain(&win.pads_end).all(|&q| q == 0);
    let col = if pointwise {
        None
    } else {
        let col = dev.out_buf(n * group * kc * p)?;
        let ev = dev.launch(
            "im2col",
            &[
                Arg::Buf(x.c.buf.buffer()),
                Arg::Buf(col.buffer()),
                Arg::Buf(g),
                Arg::U32(u32_of(c, "channels")?),
                Arg::U32(u32_of(group, "group")?),
            ],
            &[
                win.output[..win.output.len() - 1].iter().product(),
                kc,
                n * group,
            ],
            None,
            &[&x.c.ready],
        )?;
        Some((col, Some(std::sync::Arc::new(ev))))
    };
    let bop = match &col {
        Some((buf, ev)) => Operand {
            buf: buf.buffer(),
            ready: ev,
        },
        None => operand(x),
    };
    let offs = (0..n * group)
        .map(|bg| {
            let grp = bg % group;
            [grp * mpg * kc, bg * kc * p, grp * mpg]
        })
        .collect();
    let gm = Gemm {
        a: operand(w),
        b: bop,
        c: b.map(operand),
        mnk: (mpg, p, kc),
        sa: (kc, 1),
        sb: (p, 1),
        sc: (1, 0),
        offs,
        alpha: 1.0,
        beta: 1.0,
        act,
    };
    let (first, last) = super::gemm::launch(dev, &gm, y.buffer())?;
    // The op's report spans im2col too.
    let first = match &col {
        Some((_, ev)) => ev.clone(),
        None => first.map(std::sync::Arc::new),
    };
    // The col buffer returns to the pool when dropped here; a later upload
    // into it waits on a compute-queue marker, and kernels are in order.
    drop(col);
    Ok(dev.finish_span(DType::F32, shape, y, first, last))
}

fn pool(
    dev: &OpenclDevice,
    x: &In,
    p: &hetflow_ops::op::PoolAttrs,
    is_max: bool,
) -> Result<DeviceTensor> {
    let xs = &x.t.shape;
    let win = p.window(xs).map_err(|e| err(e.to_string()))?;
    let spatial = &xs[2..];
    let g = geometry(dev, spatial, &win)?;
    let mut shape = xs[..2].to_vec();
    shape.extend(&win.output);
    let (osz, planes) = (numel(&win.output), xs[0] * xs[1]);
    let y = dev.out_buf(numel(&shape))?;
    if numel(&shape) == 0 {
        return Ok(dev.finish_out(shape, y, dev.marker()?));
    }
    let ev = dev.launch(
        "pool_nd",
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::Buf(&g),
            Arg::U32(is_max as u32),
            Arg::U32(p.count_include_pad as u32),
        ],
        &[round_up(osz, 16), planes],
        None,
        &[&x.c.ready],
    )?;
    Ok(dev.finish_out(shape, y, ev))
}
