//! Launches of the neural-network ops: Softmax / LogSoftmax, LayerNorm,
//! reductions (and the global pools), convolution, pooling, batch and
//! response normalisation; their lines in the op table are `table`.

use super::codes::{act_code, reduce_code};
use super::device::OpenclDevice;
use super::gemm::{Gemm, Operand};
use super::launch::{contiguous_strides, round_up, u32_of, v8, Arg, Call, Decl, In, Takes};
use super::ops::operand;
use super::pool::PooledBuffer;
use crate::{DeviceError, DeviceTensor, Result};
use hetflow_ops::op::{resolve_window, ReduceKind};
use hetflow_ops::shape::norm_axis;
use hetflow_ops::{DType, Op};

fn err(msg: impl Into<String>) -> DeviceError {
    DeviceError::Other(msg.into())
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Kernels of Conv: im2col and the GEMM, or the direct depthwise kernel.
const CONV_KERNELS: &[&str] = &["conv_direct", "im2col", "gemm_rb", "gemm_rb4", "gemm_edge"];

/// The neural-network ops OpenCL runs.
pub(super) fn table(op: &Op) -> Option<Decl> {
    Some(match op {
        Op::Softmax { .. } => Decl::f32(&["softmax_axis"], softmax),
        Op::LogSoftmax { .. } => Decl::f32(&["logsoftmax_axis"], softmax),
        Op::LayerNorm { .. } => Decl::f32(&["layernorm_rows"], layer_norm),
        Op::BatchNorm { .. } => Decl::f32(&["batchnorm"], |c| match c.op {
            Op::BatchNorm { epsilon } => batchnorm(c.dev, c.ins, c.x, *epsilon),
            _ => Err(c.mismatch()),
        }),
        Op::Lrn { .. } => Decl::f32(&["lrn"], lrn),
        // Empty inputs go through the host kernel.
        Op::Reduce { .. } => Decl::one(&["reduce_nd"], Takes::Check(nonempty_f32), reduce_op),
        Op::GlobalAveragePool | Op::GlobalMaxPool => Decl::f32(&["reduce_nd"], global_pool),
        Op::Conv(_) => Decl::f32(CONV_KERNELS, conv_op),
        Op::MaxPool(_) | Op::AveragePool(_) => Decl::f32(&["pool_nd"], pool_op),
        _ => return None,
    })
}

fn nonempty_f32(_: &Op, ins: &[Option<In>]) -> bool {
    ins.first()
        .and_then(Option::as_ref)
        .is_some_and(|x| x.t.dtype == DType::F32 && numel(&x.t.shape) > 0)
}

fn opt<'a>(ins: &'a [Option<In<'a>>], i: usize) -> Option<&'a In<'a>> {
    ins.get(i).and_then(Option::as_ref)
}

fn need<'a>(ins: &'a [Option<In<'a>>], i: usize) -> Result<&'a In<'a>> {
    opt(ins, i).ok_or_else(|| err(format!("input {i} is missing")))
}

/// Softmax and LogSoftmax over one axis (or, in the legacy form, over the
/// flattened trailing dims): one work-item per row.
fn softmax(c: &Call) -> Result<DeviceTensor> {
    let (Op::Softmax { axis, legacy } | Op::LogSoftmax { axis, legacy }) = c.op else {
        return Err(c.mismatch());
    };
    let (dev, x) = (c.dev, c.x);
    let d = &x.t.shape;
    let ax = norm_axis(*axis, d.len()).map_err(|e| err(e.to_string()))?;
    let outer: usize = d[..ax].iter().product();
    let (dd, inner) = if *legacy {
        (d[ax..].iter().product::<usize>(), 1)
    } else {
        (d[ax], d[ax + 1..].iter().product::<usize>())
    };
    let n = outer * dd * inner;
    let y = dev.out_buf(n)?;
    let ev = dev.launch(
        c.kernel(),
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(outer, "size")?),
            Arg::U32(u32_of(dd, "size")?),
            Arg::U32(u32_of(inner, "size")?),
        ],
        &[round_up(outer * inner, 64)],
        None,
        &[&x.c.ready],
    )?;
    Ok(dev.finish_out(d.clone(), y, ev))
}

/// LayerNormalization over the dims from `axis` on: one work-item per row.
fn layer_norm(c: &Call) -> Result<DeviceTensor> {
    let Op::LayerNorm { axis, epsilon } = c.op else {
        return Err(c.mismatch());
    };
    let (dev, x) = (c.dev, c.x);
    let d = &x.t.shape;
    let ax = norm_axis(*axis, d.len()).map_err(|e| err(e.to_string()))?;
    let rows: usize = d[..ax].iter().product();
    let dd: usize = d[ax..].iter().product();
    let scale = c.need(1)?;
    let bias = c.opt(2);
    for (what, t) in [("scale", Some(scale)), ("bias", bias)] {
        if let Some(t) = t {
            let n: usize = t.t.shape.iter().product();
            if n != dd {
                return Err(err(format!(
                    "{what} has {n} elements, the normalised dims {dd}"
                )));
            }
        }
    }
    let y = dev.out_buf(rows * dd)?;
    let bias_buf = bias.unwrap_or(scale);
    let ev = dev.launch(
        c.kernel(),
        &[
            Arg::Buf(x.c.buf.buffer()),
            Arg::Buf(scale.c.buf.buffer()),
            Arg::Buf(bias_buf.c.buf.buffer()),
            Arg::Buf(y.buffer()),
            Arg::U32(u32_of(rows, "size")?),
            Arg::U32(u32_of(dd, "size")?),
            Arg::F32(*epsilon),
            Arg::U32(bias.is_some() as u32),
        ],
        &[round_up(rows, 64)],
        None,
        &[&x.c.ready, &scale.c.ready, &bias_buf.c.ready],
    )?;
    Ok(dev.finish_out(d.clone(), y, ev))
}

fn lrn(c: &Call) -> Result<DeviceTensor> {
    let Op::Lrn {
        alpha,
        beta,
        bias,
        size,
    } = c.op
    else {
        return Err(c.mismatch());
    };
    let (dev, x) = (c.dev, c.x);
    let s = &x.t.shape;
    if s.len() < 2 || *size == 0 {
        return Err(err(format!(
            "LRN needs rank >= 2 and size > 0, got {s:?}, {size}"
        )));
    }
    let n = numel(s);
    let y = dev.out_buf(n)?;
    let ev = dev.launch(
        c.kernel(),
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

/// ReduceX with axes from the attribute or from input 1 (read on the host).
fn reduce_op(c: &Call) -> Result<DeviceTensor> {
    let Op::Reduce {
        kind,
        axes,
        keepdims,
        noop_with_empty_axes,
    } = c.op
    else {
        return Err(c.mismatch());
    };
    let (dev, x) = (c.dev, c.x);
    let axes: Vec<i64> = match (axes, c.opt(1)) {
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

/// GlobalAveragePool and GlobalMaxPool: a reduction over the spatial dims.
fn global_pool(c: &Call) -> Result<DeviceTensor> {
    let x = c.x;
    let r = x.t.shape.len();
    if r < 3 {
        return Err(err(format!("needs rank >= 3, got {:?}", x.t.shape)));
    }
    let axes: Vec<i64> = (2..r as i64).collect();
    let kind = if matches!(c.op, Op::GlobalMaxPool) {
        ReduceKind::Max
    } else {
        ReduceKind::Mean
    };
    reduce(c.dev, x, kind, &axes, true)
}

fn conv_op(c: &Call) -> Result<DeviceTensor> {
    let Op::Conv(a) = c.op else {
        return Err(c.mismatch());
    };
    conv(c.dev, c.ins, c.x, a)
}

fn pool_op(c: &Call) -> Result<DeviceTensor> {
    let (Op::MaxPool(p) | Op::AveragePool(p)) = c.op else {
        return Err(c.mismatch());
    };
    pool(c.dev, c.x, p, matches!(c.op, Op::MaxPool(_)))
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
    let (act, lo, hi) = act_code(a.activation);
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
