//! MatMul and Gemm on the shared GEMM launch (`gemm.rs`): numpy batching
//! for MatMul, transposes and a broadcast C for Gemm; `operand` is how
//! Conv's im2col hands a tensor to the same launch. Their lines in the op
//! table are `table`.

use super::device::OpenclDevice;
use super::launch::{bcast_strides, Call, Decl, In};
use crate::{DeviceError, DeviceTensor, Result};
use hetflow_ops::shape::broadcast_shapes;
use hetflow_ops::{DType, Op};
use std::sync::Arc;

/// The GEMM kernels: register-blocked (two block widths) and the edges.
const GEMM_KERNELS: &[&str] = &["gemm_rb", "gemm_rb4", "gemm_edge"];

/// The matrix products OpenCL runs.
pub(super) fn table(op: &Op) -> Option<Decl> {
    match op {
        // A fused activation (CPU-only sessions) is not declared here.
        Op::MatMul
        | Op::Gemm {
            act: hetflow_ops::op::Activation::None,
            ..
        } => Some(Decl::f32(GEMM_KERNELS, run)),
        _ => None,
    }
}

fn run(c: &Call) -> Result<DeviceTensor> {
    match c.op {
        Op::MatMul => matmul(c.dev, c.x, c.need(1)?),
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
            ..
        } => gemm(
            c.dev,
            c.x,
            c.need(1)?,
            c.opt(2),
            *alpha,
            *beta,
            *trans_a,
            *trans_b,
        ),
        _ => Err(c.mismatch()),
    }
}

/// Numpy matmul: 1-D operands promoted and their dims dropped, batch dims
/// broadcast; one kernel over (N, M, batch).
fn matmul(dev: &OpenclDevice, a: &In, b: &In) -> Result<DeviceTensor> {
    let (mut sa, mut sb) = (a.t.shape.clone(), b.t.shape.clone());
    if sa.is_empty() || sb.is_empty() {
        return Err(DeviceError::Other("MatMul of a scalar".into()));
    }
    let (a1, b1) = (sa.len() == 1, sb.len() == 1);
    if a1 {
        sa.insert(0, 1);
    }
    if b1 {
        sb.push(1);
    }
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k != k2 {
        return Err(DeviceError::Other(format!(
            "inner dims differ: {:?} x {:?}",
            a.t.shape, b.t.shape
        )));
    }
    let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
    let batch = broadcast_shapes(ba, bb).map_err(|e| DeviceError::Other(e.to_string()))?;
    let nb: usize = batch.iter().product();
    let (sta, stb) = (bcast_strides(ba, &batch), bcast_strides(bb, &batch));
    let mut offs = Vec::with_capacity(2 * nb);
    for bi in 0..nb {
        let (mut r, mut oa, mut ob) = (bi, 0usize, 0usize);
        for d in (0..batch.len()).rev() {
            let c = r % batch[d];
            r /= batch[d];
            oa += c * sta[d];
            ob += c * stb[d];
        }
        offs.push([oa * m * k, ob * k * n, 0]);
    }
    let mut shape = batch.clone();
    if !a1 {
        shape.push(m);
    }
    if !b1 {
        shape.push(n);
    }
    launch_gemm(
        dev,
        a,
        b,
        None,
        (m, n, k),
        (k, 1, n, 1),
        offs,
        1.0,
        0.0,
        shape,
    )
}

#[allow(clippy::too_many_arguments)]
fn gemm(
    dev: &OpenclDevice,
    a: &In,
    b: &In,
    c: Option<&In>,
    alpha: f32,
    beta: f32,
    ta: bool,
    tb: bool,
) -> Result<DeviceTensor> {
    let (sa, sb) = (&a.t.shape, &b.t.shape);
    if sa.len() != 2 || sb.len() != 2 {
        return Err(DeviceError::Other(format!(
            "Gemm needs 2-D operands, got {sa:?} and {sb:?}"
        )));
    }
    let (m, k) = if ta { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
    let (k2, n) = if tb { (sb[1], sb[0]) } else { (sb[0], sb[1]) };
    if k != k2 {
        return Err(DeviceError::Other(format!(
            "inner dims differ: {sa:?} x {sb:?} (transA {ta}, transB {tb})"
        )));
    }
    let (sam, sak) = if ta { (1, m) } else { (k, 1) };
    let (sbk, sbn) = if tb { (1, k) } else { (n, 1) };
    launch_gemm(
        dev,
        a,
        b,
        c,
        (m, n, k),
        (sam, sak, sbk, sbn),
        vec![[0; 3]],
        alpha,
        beta,
        vec![m, n],
    )
}

#[allow(clippy::too_many_arguments)]
fn launch_gemm(
    dev: &OpenclDevice,
    a: &In,
    b: &In,
    c: Option<&In>,
    (m, n, k): (usize, usize, usize),
    (sam, sak, sbk, sbn): (usize, usize, usize, usize),
    offs: Vec<[usize; 3]>,
    alpha: f32,
    beta: f32,
    shape: Vec<usize>,
) -> Result<DeviceTensor> {
    // C broadcast to (M, N) by strides.
    let sc = match c.map(|c| c.t.shape.as_slice()) {
        None | Some([]) => (0, 0),
        Some([x]) if *x == n => (0, 1),
        Some([1]) => (0, 0),
        Some([r, q]) if (*r == m || *r == 1) && (*q == n || *q == 1) => {
            (if *r == 1 { 0 } else { *q }, usize::from(*q != 1))
        }
        Some(s) => {
            return Err(DeviceError::Other(format!(
                "C of shape {s:?} does not broadcast to [{m}, {n}]"
            )))
        }
    };
    let y = dev.out_buf(offs.len() * m * n)?;
    if offs.len() * m * n == 0 {
        return Ok(dev.finish_out(shape, y, dev.marker()?));
    }
    let g = super::gemm::Gemm {
        a: operand(a),
        b: operand(b),
        c: c.map(operand),
        mnk: (m, n, k),
        sa: (sam, sak),
        sb: (sbk, sbn),
        sc,
        offs,
        alpha,
        beta,
        act: (0, 0.0, 0.0),
    };
    let (first, last) = super::gemm::launch(dev, &g, y.buffer())?;
    Ok(dev.finish_span(DType::F32, shape, y, first.map(Arc::new), last))
}

/// A tensor as a GEMM operand.
pub(super) fn operand<'a>(t: &'a In) -> super::gemm::Operand<'a> {
    super::gemm::Operand {
        buf: t.c.buf.buffer(),
        ready: &t.c.ready,
    }
}
