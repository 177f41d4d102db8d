//! Conv on the GPU: the direct depthwise kernel when every group has one
//! channel and one filter; otherwise, per image, im2col (NVRTC) into a
//! scratch `[C * k, out]` matrix (skipped for pointwise convolutions, whose
//! input already is that matrix) and one cuBLAS strided-batched GEMM over
//! the groups, `W_g [M/g, C/g * k] x col_g`; then one pass adds the bias
//! and applies the activation the optimizer fused into [`ConvAttrs`].
//! f32 GEMMs run in true f32, f16 / bf16 on tensor cores with f32
//! accumulation. The index maths is `geom::ConvGeom` / `Win3`, checked on
//! the host against the CPU kernel.

use super::codes::act_code;
use super::device::CudaDevice;
use super::geom::ConvGeom;
use super::launch::{grid, run, Decl, Dtypes, Needs};
use super::ops::{gemm, GemmGeom};
use crate::{DeviceTensor, Result};
use cudarc::driver::PushKernelArg;
use hetflow_ops::op::ConvAttrs;
use hetflow_ops::Op;

/// Conv's line in the op table: cuBLAS and the NVRTC kernels, every input
/// in input 0's float type.
pub(crate) fn table(op: &Op) -> Option<Decl> {
    match op {
        Op::Conv(_) => Some(Decl {
            needs: Needs::BlasAndKernels,
            dtypes: Dtypes::SameFloat,
            one: true,
            run: |c| match (c.op, c.get(1)) {
                (Op::Conv(a), Some(w)) => conv(c.dev, a, c.x, w, c.get(2), c.sfx),
                _ => Ok(None),
            },
        }),
        _ => None,
    }
}

/// Runs the convolution, or `Ok(None)` when a case belongs to the host
/// kernel (mismatched dtypes, for instance, which it reports).
fn conv(
    dev: &CudaDevice,
    a: &ConvAttrs,
    x: &DeviceTensor,
    w: &DeviceTensor,
    b: Option<&DeviceTensor>,
    sfx: &str,
) -> Result<Option<Vec<DeviceTensor>>> {
    let name = "Conv";
    let g = ConvGeom::new(a, &x.shape, &w.shape).map_err(|m| dev.err(name, m))?;
    let b = b.filter(|b| b.shape.iter().product::<usize>() > 0);
    if w.dtype != x.dtype
        || b.is_some_and(|b| b.dtype != x.dtype || b.shape.iter().product::<usize>() != g.m)
    {
        return Ok(None);
    }
    let dt = x.dtype;
    let es = dt.size() as u64;
    let out_shape = g.out_shape();
    let numel: usize = out_shape.iter().product();
    let (act, lo, hi) = act_code(a.activation);
    let has_bias = b.is_some() as i32;
    let mut ins = vec![x, w];
    ins.extend(b);
    let outs = run(dev, name, &ins, vec![(dt, out_shape)], |l| {
        if numel == 0 {
            return Ok(());
        }
        let (xp, wp, y) = (l.ptr(x)?, l.ptr(w)?, l.outs[0]);
        let bp = match b {
            Some(b) => l.ptr(b)?,
            None => y,
        };
        let win = g.win;
        if g.depthwise() {
            let (planes, ch) = ((g.n * g.c) as i64, g.c as i64);
            let f = l.func("depthwise", sfx)?;
            let mut k = dev.compute.launch_builder(f);
            k.arg(&xp).arg(&wp).arg(&bp).arg(&y).arg(&planes).arg(&ch);
            k.arg(&has_bias).arg(&act).arg(&lo).arg(&hi).arg(&win);
            // SAFETY: reads N*C planes of X and C*k weights, writes N*C*out.
            return l.check(unsafe { k.launch(grid(numel)) });
        }
        let (osz, kdim, mg) = (g.osz(), g.kdim(), g.mg());
        let isz = win.in_size() as usize;
        let col = if g.pointwise() {
            None
        } else {
            Some(l.scratch(g.c * win.kernel_size() as usize * osz * es as usize)?)
        };
        let geom = GemmGeom {
            m: mg,
            n: osz,
            k: kdim,
            trans_a: false,
            trans_b: false,
            batch: g.group,
            stride_a: mg * kdim,
            stride_b: kdim * osz,
            out: Vec::new(),
        };
        for img in 0..g.n as u64 {
            let xi = xp + img * (g.c * isz) as u64 * es;
            let rhs = match &col {
                Some(col) => {
                    let (cp, ch) = (col.ptr(), g.c as i64);
                    let f = l.func("im2col", sfx)?;
                    let mut k = dev.compute.launch_builder(f);
                    k.arg(&xi).arg(&cp).arg(&ch).arg(&win);
                    // SAFETY: reads one image, writes C*k*out column elements.
                    l.check(unsafe { k.launch(grid(g.c * win.kernel_size() as usize * osz)) })?;
                    cp
                }
                None => xi,
            };
            let yi = y + img * (g.m * osz) as u64 * es;
            gemm(dev, dt, &geom, 1.0, 0.0, wp, rhs, yi).map_err(|m| l.err(m))?;
        }
        if has_bias == 0 && act == 0 {
            return Ok(());
        }
        let (n, ch, o) = (numel as i64, g.m as i64, osz as i64);
        let f = l.func("bias_act", sfx)?;
        let mut k = dev.compute.launch_builder(f);
        k.arg(&y).arg(&bp).arg(&n).arg(&ch).arg(&o);
        k.arg(&has_bias).arg(&act).arg(&lo).arg(&hi);
        // SAFETY: in place over the output; bias holds M elements.
        l.check(unsafe { k.launch(grid(numel)) })
    })?;
    Ok(Some(outs))
}
