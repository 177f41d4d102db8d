//! The f32 GEMM launch shared by MatMul, Gemm and Conv (im2col).
//!
//! Three kernels (kernels.cl) split the output: `gemm_rb` computes the
//! interior blocks of `WM x GW` outputs per work-item (register blocking,
//! `GW`-wide vector loads of B rows), `gemm_rb4` the next columns up to a
//! multiple of 4 in `WM x 4` blocks, `gemm_edge` the last `M mod WM` rows
//! and `N mod 4` columns one output per work-item. Both take any strides
//! (transposed operands, broadcast batches through per-batch offsets), an
//! optional C with its own strides, and Conv's fused activation.

use super::device::OpenclDevice;
use super::launch::{round_up, u32_of, Arg};
use crate::Result;
use opencl3::event::Event;
use opencl3::memory::Buffer;
use std::sync::Arc;

/// A buffer and the event that writes it.
pub(super) struct Operand<'a> {
    pub buf: &'a Buffer<u8>,
    pub ready: &'a Option<Arc<Event>>,
}

/// One batched GEMM: `Y[bt] = act(alpha * A[bt] B[bt] + beta * C[bt])`.
pub(super) struct Gemm<'a> {
    pub a: Operand<'a>,
    pub b: Operand<'a>,
    pub c: Option<Operand<'a>>,
    /// M, N, K.
    pub mnk: (usize, usize, usize),
    /// Strides of A (row, k), B (k, column), C (row, column).
    pub sa: (usize, usize),
    pub sb: (usize, usize),
    pub sc: (usize, usize),
    /// Element offsets of A, B and C per batch.
    pub offs: Vec<[usize; 3]>,
    pub alpha: f32,
    pub beta: f32,
    /// Activation code (0 none, 1 relu, 2 clamp) and clamp bounds.
    pub act: (u32, f32, f32),
}

/// Launches `g` writing `y` (`batches x M x N`, contiguous); returns the
/// event of the first kernel when there were several, and of the last (all
/// run on the in-order compute queue).
pub(super) fn launch(
    dev: &OpenclDevice,
    g: &Gemm,
    y: &Buffer<u8>,
) -> Result<(Option<Event>, Event)> {
    let (m, n, k) = g.mnk;
    let nb = g.offs.len();
    let cfg = dev.gemm;
    let (mf, nf, nf4) = (m / cfg.wm * cfg.wm, n / cfg.gw * cfg.gw, n / 4 * 4);
    let mut offs = Vec::with_capacity(3 * nb);
    for o in &g.offs {
        for &v in o {
            offs.push(u32_of(v, "GEMM offset")?);
        }
    }
    let offs = dev.const_u32(&offs)?;
    let c = g.c.as_ref().unwrap_or(&g.a);
    let args = |n0: usize, nend: usize| -> Result<Vec<Arg>> {
        Ok(vec![
            Arg::Buf(g.a.buf),
            Arg::Buf(g.b.buf),
            Arg::Buf(c.buf),
            Arg::Buf(y),
            Arg::Buf(&offs),
            Arg::U32(u32_of(m, "M")?),
            Arg::U32(u32_of(n, "N")?),
            Arg::U32(u32_of(k, "K")?),
            Arg::U32(u32_of(g.sa.0, "stride")?),
            Arg::U32(u32_of(g.sa.1, "stride")?),
            Arg::U32(u32_of(g.sb.0, "stride")?),
            Arg::U32(u32_of(g.sb.1, "stride")?),
            Arg::F32(g.alpha),
            Arg::F32(g.beta),
            Arg::U32(g.c.is_some() as u32),
            Arg::U32(u32_of(g.sc.0, "stride")?),
            Arg::U32(u32_of(g.sc.1, "stride")?),
            Arg::U32(g.act.0),
            Arg::F32(g.act.1),
            Arg::F32(g.act.2),
            Arg::U32(u32_of(mf, "M")?),
            Arg::U32(u32_of(n0, "N")?),
            Arg::U32(u32_of(nend, "N")?),
        ])
    };
    let waits = [g.a.ready, g.b.ready, c.ready];
    let mut evs: Vec<Event> = Vec::with_capacity(3);
    // Column ranges of the blocked kernels: [0, nf) in GW-wide blocks,
    // [nf, nf4) in 4-wide ones.
    for (name, n0, nend, width) in [("gemm_rb", 0, nf, cfg.gw), ("gemm_rb4", nf, nf4, 4)] {
        if mf == 0 || nend <= n0 {
            continue;
        }
        let max = dev.kernel_work_group(name)?;
        let lc = cfg.local[0].min(max).max(1);
        let lr = cfg.local[1].min(max / lc).max(1);
        let global = [
            round_up((nend - n0) / width, lc),
            round_up(mf / cfg.wm, lr),
            nb,
        ];
        evs.push(dev.launch(name, &args(n0, nend)?, &global, Some(&[lc, lr, 1]), &waits)?);
    }
    let nf = if mf > 0 { nf4 } else { 0 };
    let edge = m * n - mf * nf;
    if edge > 0 {
        evs.push(dev.launch(
            "gemm_edge",
            &args(0, nf)?,
            &[round_up(edge, 64), nb],
            None,
            &waits,
        )?);
    }
    let last = match evs.pop() {
        Some(ev) => ev,
        None => dev.marker()?,
    };
    let first = if evs.is_empty() {
        None
    } else {
        Some(evs.swap_remove(0))
    };
    Ok((first, last))
}
