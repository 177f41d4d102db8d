//! Pooling, BatchNormalization, LRN, reductions, variadic Sum and Clip on
//! the GPU (kernels in `pool.cu`, `reduce.cu`, `elementwise.cu`). Each
//! returns `Ok(None)` for a case its kernels do not cover, which then runs
//! through the host kernel (see `ops.rs`). Their lines in the op table
//! are `table`.

use super::codes::{reduce_code, CLIP_CODE};
use super::device::CudaDevice;
use super::geom::{self, broadcast_all, ReduceLayout};
use super::launch::{grid, host_ints, host_value, rows_cfg, run, Decl, Dtypes, Out};
use super::ops::bcast;
use crate::{DeviceTensor, Result};
use cudarc::driver::PushKernelArg;
use hetflow_ops::op::PoolAttrs;
use hetflow_ops::Op;

/// The pooling, normalisation and reduction ops CUDA runs.
pub(crate) fn table(op: &Op) -> Option<Decl> {
    use Dtypes::{Float, SameFloat};
    Some(match op {
        Op::MaxPool(_) | Op::AveragePool(_) => Decl::kernels(Float, |c| match c.op {
            Op::MaxPool(p) | Op::AveragePool(p) => {
                pool(c.dev, p, matches!(c.op, Op::MaxPool(_)), c.x, c.sfx)
            }
            _ => Err(c.mismatch()),
        }),
        Op::GlobalAveragePool | Op::GlobalMaxPool => Decl::kernels(Float, |c| {
            global_pool(c.dev, matches!(c.op, Op::GlobalMaxPool), c.x, c.sfx)
        }),
        Op::BatchNorm { .. } => Decl::kernels(SameFloat, |c| match (c.op, c.all()) {
            (Op::BatchNorm { epsilon }, Some(all)) => batch_norm(c.dev, *epsilon, &all, c.sfx),
            _ => Ok(None),
        }),
        Op::Lrn { .. } => Decl::kernels(Float, |c| lrn(c.dev, c.op, c.x, c.sfx)),
        Op::Reduce { kind, .. } if reduce_code(*kind).is_some() => {
            Decl::kernels(Float, |c| reduce(c.dev, c.op, c.inputs, c.x, c.sfx))
        }
        Op::Sum => Decl::kernels(SameFloat, |c| match c.all() {
            Some(all) => sum(c.dev, &all, c.sfx),
            None => Ok(None),
        }),
        Op::Clip { .. } => Decl::kernels(Float, |c| clip(c.dev, c.op, c.inputs, c.x, c.sfx)),
        _ => return None,
    })
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// MaxPool / AveragePool.
fn pool(dev: &CudaDevice, p: &PoolAttrs, is_max: bool, x: &DeviceTensor, sfx: &str) -> Out {
    let name = if is_max { "MaxPool" } else { "AveragePool" };
    let (out, win) = geom::pool(p, &x.shape).map_err(|m| dev.err(name, m))?;
    let n = numel(&out);
    let planes = (x.shape[0] * x.shape[1]) as i64;
    let (mx, incl) = (is_max as i32, p.count_include_pad as i32);
    run(dev, name, &[x], vec![(x.dtype, out)], |l| {
        if n == 0 {
            return Ok(());
        }
        let (xp, y) = (l.ptr(x)?, l.outs[0]);
        let mut k = dev.compute.launch_builder(l.func("pool", sfx)?);
        k.arg(&xp)
            .arg(&y)
            .arg(&planes)
            .arg(&mx)
            .arg(&incl)
            .arg(&win);
        // SAFETY: one thread per output element; reads stay in its plane.
        l.check(unsafe { k.launch(grid(n)) })
    })
    .map(Some)
}

/// GlobalAveragePool / GlobalMaxPool: one block per (N, C) plane.
fn global_pool(dev: &CudaDevice, is_max: bool, x: &DeviceTensor, sfx: &str) -> Out {
    let name = if is_max {
        "GlobalMaxPool"
    } else {
        "GlobalAveragePool"
    };
    if x.shape.len() < 2 {
        return Ok(None);
    }
    let mut out = x.shape[..2].to_vec();
    out.extend(std::iter::repeat_n(1, x.shape.len() - 2));
    let planes = x.shape[0] * x.shape[1];
    if planes > i32::MAX as usize {
        return Ok(None);
    }
    let sp = numel(&x.shape[2..]) as i64;
    let mx = is_max as i32;
    run(dev, name, &[x], vec![(x.dtype, out)], |l| {
        if planes == 0 {
            return Ok(());
        }
        let (xp, y) = (l.ptr(x)?, l.outs[0]);
        let mut k = dev.compute.launch_builder(l.func("global_pool", sfx)?);
        k.arg(&xp).arg(&y).arg(&sp).arg(&mx);
        // SAFETY: one block per plane of `sp` elements.
        l.check(unsafe { k.launch(rows_cfg(planes)) })
    })
    .map(Some)
}

/// Inference BatchNormalization: x, scale, B, mean, var (each `[C]`).
fn batch_norm(dev: &CudaDevice, eps: f32, ins: &[&DeviceTensor], sfx: &str) -> Out {
    let x = ins[0];
    if ins.len() != 5 || x.shape.len() < 2 || ins[1..].iter().any(|t| numel(&t.shape) != x.shape[1])
    {
        return Ok(None);
    }
    let n = numel(&x.shape);
    let (ch, sp) = (x.shape[1] as i64, numel(&x.shape[2..]) as i64);
    run(
        dev,
        "BatchNormalization",
        ins,
        vec![(x.dtype, x.shape.clone())],
        |l| {
            if n == 0 {
                return Ok(());
            }
            let p: Vec<u64> = ins.iter().map(|t| l.ptr(t)).collect::<Result<_>>()?;
            let (y, nn) = (l.outs[0], n as i64);
            let mut k = dev.compute.launch_builder(l.func("batchnorm", sfx)?);
            k.arg(&p[0])
                .arg(&p[1])
                .arg(&p[2])
                .arg(&p[3])
                .arg(&p[4])
                .arg(&y);
            k.arg(&nn).arg(&ch).arg(&sp).arg(&eps);
            // SAFETY: element-wise; the per-channel inputs hold C elements.
            l.check(unsafe { k.launch(grid(n)) })
        },
    )
    .map(Some)
}

/// Local response normalisation across channels.
fn lrn(dev: &CudaDevice, op: &Op, x: &DeviceTensor, sfx: &str) -> Out {
    let Op::Lrn {
        alpha,
        beta,
        bias,
        size,
    } = *op
    else {
        return Ok(None);
    };
    if x.shape.len() < 2 || size == 0 {
        return Ok(None);
    }
    let n = numel(&x.shape);
    let (ch, sp, sz) = (x.shape[1] as i64, numel(&x.shape[2..]) as i64, size as i64);
    let alpha_n = (alpha as f64 / size as f64) as f32;
    run(dev, "LRN", &[x], vec![(x.dtype, x.shape.clone())], |l| {
        if n == 0 {
            return Ok(());
        }
        let (xp, y, nn) = (l.ptr(x)?, l.outs[0], n as i64);
        let mut k = dev.compute.launch_builder(l.func("lrn", sfx)?);
        k.arg(&xp).arg(&y).arg(&nn).arg(&ch).arg(&sp).arg(&sz);
        k.arg(&alpha_n).arg(&beta).arg(&bias);
        // SAFETY: element-wise; the channel window stays inside the image.
        l.check(unsafe { k.launch(grid(n)) })
    })
    .map(Some)
}

/// ReduceSum / Mean / Max / Min / SumSquare / L1 / L2 over attribute or
/// input axes.
fn reduce(
    dev: &CudaDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    x: &DeviceTensor,
    sfx: &str,
) -> Out {
    let Op::Reduce {
        kind,
        axes,
        keepdims,
        noop_with_empty_axes,
    } = op
    else {
        return Ok(None);
    };
    let Some(code) = reduce_code(*kind) else {
        return Ok(None);
    };
    let axes = match axes {
        Some(a) => a.clone(),
        None => host_ints(dev, inputs, 1)?.unwrap_or_default(),
    };
    if axes.is_empty() && *noop_with_empty_axes {
        return Ok(Some(vec![dev.view(x, x.shape.clone())?]));
    }
    let name = op.name();
    let Some((out, layout)) = ReduceLayout::new(&x.shape, &axes, *keepdims) else {
        return Ok(None);
    };
    let n_out = numel(&out);
    if layout.count == 0 && n_out > 0 {
        return Ok(None);
    }
    run(dev, name, &[x], vec![(x.dtype, out)], |l| {
        if n_out == 0 {
            return Ok(());
        }
        let (xp, y, no) = (l.ptr(x)?, l.outs[0], n_out as i64);
        let mut k = dev.compute.launch_builder(l.func("reduce", sfx)?);
        k.arg(&xp).arg(&y).arg(&no).arg(&code).arg(&layout);
        // SAFETY: one block per output (looping past the grid's limit);
        // offsets from the folded layout stay inside X.
        l.check(unsafe { k.launch(rows_cfg(n_out)) })
    })
    .map(Some)
}

/// Variadic Sum with broadcasting: the first pair into the output, then
/// each further input added in place.
fn sum(dev: &CudaDevice, ins: &[&DeviceTensor], sfx: &str) -> Out {
    let shapes: Vec<&[usize]> = ins.iter().map(|t| t.shape.as_slice()).collect();
    let Some(out) = broadcast_all(&shapes) else {
        return Ok(None);
    };
    if ins.len() == 1 {
        return Ok(Some(vec![dev.view(ins[0], out)?]));
    }
    let n = numel(&out);
    let nn = n as i64;
    let add = 0i32;
    run(dev, "Sum", ins, vec![(ins[0].dtype, out.clone())], |l| {
        if n == 0 {
            return Ok(());
        }
        let y = l.outs[0];
        for (i, t) in ins.iter().enumerate().skip(1) {
            let (a, ash) = if i == 1 {
                (l.ptr(ins[0])?, ins[0].shape.as_slice())
            } else {
                (y, out.as_slice())
            };
            let s = bcast(ash, &t.shape, &out);
            let b = l.ptr(t)?;
            let mut k = dev.compute.launch_builder(l.func("binary", sfx)?);
            k.arg(&a).arg(&b).arg(&y).arg(&nn).arg(&add).arg(&s);
            // SAFETY: element i reads its own output element (in place) and
            // broadcast offsets of the input.
            l.check(unsafe { k.launch(grid(n)) })?;
        }
        Ok(())
    })
    .map(Some)
}

/// Clip with bounds from the attributes or from inputs 1 and 2.
fn clip(
    dev: &CudaDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    x: &DeviceTensor,
    sfx: &str,
) -> Out {
    let Op::Clip { min, max } = *op else {
        return Ok(None);
    };
    let bound = |attr: Option<f32>, i: usize, none: f32| -> Result<f32> {
        if let Some(v) = attr {
            return Ok(v);
        }
        match inputs.get(i).copied().flatten() {
            Some(t) if numel(&t.shape) > 0 => Ok(host_value(dev, t)?
                .to_f32_vec()
                .first()
                .copied()
                .unwrap_or(none)),
            _ => Ok(none),
        }
    };
    let (lo, hi) = (
        bound(min, 1, f32::NEG_INFINITY)?,
        bound(max, 2, f32::INFINITY)?,
    );
    let n = numel(&x.shape);
    let (nn, code) = (n as i64, CLIP_CODE);
    run(dev, "Clip", &[x], vec![(x.dtype, x.shape.clone())], |l| {
        if n == 0 {
            return Ok(());
        }
        let (xp, y) = (l.ptr(x)?, l.outs[0]);
        let mut k = dev.compute.launch_builder(l.func("unary", sfx)?);
        k.arg(&xp).arg(&y).arg(&nn).arg(&code).arg(&lo).arg(&hi);
        // SAFETY: element-wise over n elements.
        l.check(unsafe { k.launch(grid(n)) })
    })
    .map(Some)
}
