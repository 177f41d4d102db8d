//! The launches that are no family of their own: cuBLAS for MatMul and
//! Gemm, and the NVRTC kernels for element-wise ops, Softmax /
//! LogSoftmax and LayerNorm (`execute_own`), plus the pieces other launch
//! files share: the broadcast layout, the strided-batched GEMM (Conv's
//! im2col uses it) and the host fallback. Which op goes where is
//! `dispatch.rs`'s table.
//!
//! Within a supported op, cases the kernels do not cover (integer or
//! mixed dtypes, rank above 8, batch broadcasting cuBLAS cannot express
//! with one stride, LayerNorm's optional statistics outputs) run through
//! the host kernel on this device's copy streams: correct, logged at
//! debug level, and visible in a trace as copies. Their lines in the op
//! table are `table`: an element-wise function with a code in `codes.rs`
//! runs here with no line of its own.

use super::codes::{binary_code, unary_code};
use super::device::{CudaBuffer, CudaDevice};
use super::geom::{bcast_strides, broadcast, norm_axis, MAX_RANK};
use super::launch::{float_suffix as suffix, grid, rows_cfg, Call, Decl, Dtypes, Needs, Out};
use crate::{DeviceTensor, Result};
use cudarc::cublas::sys as blas;
use cudarc::driver::{DeviceRepr, PushKernelArg};
use hetflow_ops::{DType, Op};
use std::sync::Arc;

/// Broadcast layout passed to the binary kernels; mirrors `hf_bcast` in
/// kernels/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Bcast {
    rank: i32,
    dims: [i64; MAX_RANK],
    a_strides: [i64; MAX_RANK],
    b_strides: [i64; MAX_RANK],
}
// SAFETY: plain-old-data with the C layout of `hf_bcast`.
unsafe impl DeviceRepr for Bcast {}

/// The ops launched here: cuBLAS GEMMs, element-wise functions and
/// broadcasting arithmetic (by their codes), Softmax / LogSoftmax and
/// LayerNorm. Their dtype and output checks are `execute_own`'s.
pub(crate) fn table(op: &Op) -> Option<Decl> {
    let needs = match op {
        // A fused activation (CPU-only sessions) is not run here.
        Op::MatMul
        | Op::Gemm {
            act: hetflow_ops::op::Activation::None,
            ..
        } => Needs::Blas,
        Op::Binary(b) if binary_code(*b).is_some() => Needs::Kernels,
        Op::Softmax { .. } | Op::LogSoftmax { .. } | Op::LayerNorm { .. } => Needs::Kernels,
        _ if unary_code(op).is_some() => Needs::Kernels,
        _ => return None,
    };
    Some(Decl {
        needs,
        dtypes: Dtypes::Any,
        one: false,
        run: own,
    })
}

fn own(c: &Call) -> Out {
    execute_own(c.dev, c.op, c.inputs, c.x, c.outputs.len()).map(Some)
}

/// The ops this file launches itself (MatMul, Gemm, element-wise,
/// Softmax / LogSoftmax, LayerNorm), `x` being input 0; cases the kernels
/// do not cover run through the host kernel.
fn execute_own(
    dev: &CudaDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    x: &DeviceTensor,
    n_outputs: usize,
) -> Result<Vec<DeviceTensor>> {
    let name = op.name();
    let same_dtype = inputs.iter().flatten().all(|t| t.dtype == x.dtype);
    let Some(sfx) = suffix(x.dtype).filter(|_| same_dtype && n_outputs == 1) else {
        return host_fallback(dev, op, inputs, n_outputs);
    };
    let plan = match op {
        Op::MatMul => matmul_plan(x, input(dev, name, inputs, 1)?),
        Op::Gemm {
            trans_a, trans_b, ..
        } => gemm_plan(x, input(dev, name, inputs, 1)?, *trans_a, *trans_b).filter(|p| {
            // C must broadcast to [M, N] (otherwise the host kernel reports it).
            let out = p.out_shape();
            inputs
                .get(2)
                .copied()
                .flatten()
                .is_none_or(|c| broadcast(&c.shape, &out).as_deref() == Some(out.as_slice()))
        }),
        Op::Binary(_) => broadcast(&x.shape, &input(dev, name, inputs, 1)?.shape).map(Shape::Out),
        Op::LayerNorm { axis, .. } => layernorm_plan(x, inputs, *axis),
        _ => Some(Shape::Out(x.shape.clone())),
    };
    let Some(plan) = plan else {
        return host_fallback(dev, op, inputs, n_outputs);
    };
    for t in inputs.iter().flatten() {
        dev.compute
            .wait(&dev.buffer(t)?.ready)
            .map_err(|e| dev.err(name, e))?;
    }
    let (start, done) = (dev.timing_event(name)?, dev.timing_event(name)?);
    let out_shape = plan.out_shape();
    let numel: usize = out_shape.iter().product();
    let bytes = numel * x.dtype.size();
    // Allocate first: reusing a block may make the stream wait on its
    // last users, which is not this kernel's time.
    let out = dev.alloc_timed(name, bytes, &dev.compute, &done, Some(&start))?;
    start.record(&dev.compute).map_err(|e| dev.err(name, e))?;
    let launched = launch(dev, op, inputs, x, sfx, &plan, &out, numel);
    // Record even after a failed launch so the output's memory is never
    // handed out while earlier work is pending.
    let recorded = done.record(&dev.compute).map_err(|e| dev.err(name, e));
    launched?;
    recorded?;
    for t in inputs.iter().flatten() {
        dev.buffer(t)?.used_until(&done);
    }
    Ok(vec![dev.wrap(x.dtype, out_shape, out)])
}

fn input<'a>(
    dev: &CudaDevice,
    name: &str,
    inputs: &[Option<&'a DeviceTensor>],
    i: usize,
) -> Result<&'a DeviceTensor> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| dev.err(name, format!("input {i} is missing")))
}

/// The output shape and, for GEMMs, the cuBLAS geometry.
enum Shape {
    Out(Vec<usize>),
    Gemm(GemmGeom),
    Rows {
        shape: Vec<usize>,
        rows: usize,
        cols: usize,
    },
}

impl Shape {
    fn out_shape(&self) -> Vec<usize> {
        match self {
            Shape::Out(s) | Shape::Rows { shape: s, .. } => s.clone(),
            Shape::Gemm(g) => g.out.clone(),
        }
    }
}

/// Row-major `C[b] = op(A[b]) · op(B[b])` with per-operand batch strides
/// in elements (0 = broadcast).
pub(crate) struct GemmGeom {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub out: Vec<usize>,
}

/// The binary kernels' layout of `a` and `b` broadcast to `out`.
pub(crate) fn bcast(a: &[usize], b: &[usize], out: &[usize]) -> Bcast {
    let mut d = Bcast {
        rank: out.len() as i32,
        ..Default::default()
    };
    let (sa, sb) = (bcast_strides(a, out), bcast_strides(b, out));
    for (i, &x) in out.iter().enumerate() {
        d.dims[i] = x as i64;
        d.a_strides[i] = sa[i];
        d.b_strides[i] = sb[i];
    }
    d
}

fn matmul_plan(a: &DeviceTensor, b: &DeviceTensor) -> Option<Shape> {
    if a.shape.is_empty() || b.shape.is_empty() {
        return None;
    }
    let a2: Vec<usize> = if a.shape.len() == 1 {
        vec![1, a.shape[0]]
    } else {
        a.shape.clone()
    };
    let b2: Vec<usize> = if b.shape.len() == 1 {
        vec![b.shape[0], 1]
    } else {
        b.shape.clone()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != kb {
        return None;
    }
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let batch_dims = broadcast(ab, bb)?;
    let batch: usize = batch_dims.iter().product();
    let stride = |dims: &[usize], mat: usize| -> Option<usize> {
        let count: usize = dims.iter().product();
        if count == 1 {
            Some(0)
        } else if dims.len() == batch_dims.len() && dims == batch_dims.as_slice() {
            Some(mat)
        } else {
            None
        }
    };
    let mut out = batch_dims.clone();
    if a.shape.len() > 1 {
        out.push(m);
    }
    if b.shape.len() > 1 {
        out.push(n);
    }
    Some(Shape::Gemm(GemmGeom {
        m,
        n,
        k,
        trans_a: false,
        trans_b: false,
        batch,
        stride_a: stride(ab, m * k)?,
        stride_b: stride(bb, k * n)?,
        out,
    }))
}

fn gemm_plan(a: &DeviceTensor, b: &DeviceTensor, trans_a: bool, trans_b: bool) -> Option<Shape> {
    let ([a0, a1], [b0, b1]) = (a.shape.as_slice(), b.shape.as_slice()) else {
        return None;
    };
    let [a0, a1, b0, b1] = [*a0, *a1, *b0, *b1];
    let (m, k) = if trans_a { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if trans_b { (b1, b0) } else { (b0, b1) };
    (k == kb).then(|| {
        Shape::Gemm(GemmGeom {
            m,
            n,
            k,
            trans_a,
            trans_b,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            out: vec![m, n],
        })
    })
}

fn layernorm_plan(x: &DeviceTensor, inputs: &[Option<&DeviceTensor>], axis: i64) -> Option<Shape> {
    let ax = norm_axis(axis, x.shape.len()).filter(|&a| a < x.shape.len())?;
    let rows: usize = x.shape[..ax].iter().product();
    let cols: usize = x.shape[ax..].iter().product();
    // Scale and bias must cover the normalised dims exactly (no broadcast).
    let fits = |i: usize| {
        inputs
            .get(i)
            .copied()
            .flatten()
            .is_none_or(|t| t.shape.iter().product::<usize>() == cols)
    };
    (inputs.get(1).copied().flatten().is_some() && fits(1) && fits(2) && rows <= i32::MAX as usize)
        .then(|| Shape::Rows {
            shape: x.shape.clone(),
            rows,
            cols,
        })
}

#[allow(clippy::too_many_arguments)]
fn launch(
    dev: &CudaDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    x: &DeviceTensor,
    sfx: &str,
    plan: &Shape,
    out: &Arc<CudaBuffer>,
    numel: usize,
) -> Result<()> {
    let name = op.name();
    let e = |m: String| dev.err(name, m);
    let ptr = |i: usize| -> Result<u64> { Ok(dev.buffer(input(dev, name, inputs, i)?)?.ptr()) };
    let y = out.ptr();
    let n = numel as i64;
    if numel == 0 {
        return Ok(());
    }
    let kernels = dev.kernels.as_ref().map_err(|m| e(m.clone()));
    match (op, plan) {
        (Op::MatMul | Op::Gemm { .. }, Shape::Gemm(g)) => {
            let (alpha, beta, c) = match op {
                Op::Gemm { alpha, beta, .. } => {
                    let c = inputs.get(2).copied().flatten().filter(|_| *beta != 0.0);
                    (*alpha, if c.is_some() { *beta } else { 0.0 }, c)
                }
                _ => (1.0, 0.0, None),
            };
            if let Some(c) = c {
                // out = broadcast(C), then the GEMM accumulates into it.
                let f = kernels?.get("bcast_copy", sfx).map_err(e)?;
                let s = bcast(&c.shape, &c.shape, &g.out);
                let cp = dev.buffer(c)?.ptr();
                let mut b = dev.compute.launch_builder(f);
                b.arg(&cp).arg(&y).arg(&n).arg(&s);
                // SAFETY: the kernel reads `numel` broadcast elements of C
                // and writes `numel` elements of `out`.
                unsafe { b.launch(grid(numel)) }.map_err(|er| e(er.to_string()))?;
            }
            gemm(dev, x.dtype, g, alpha, beta, ptr(0)?, ptr(1)?, y).map_err(e)
        }
        (Op::Binary(bop), Shape::Out(shape)) => {
            let code = binary_code(*bop).unwrap_or(-1);
            let b_t = input(dev, name, inputs, 1)?;
            let s = bcast(&x.shape, &b_t.shape, shape);
            let (pa, pb) = (ptr(0)?, ptr(1)?);
            let f = kernels?.get("binary", sfx).map_err(e)?;
            let mut b = dev.compute.launch_builder(f);
            b.arg(&pa).arg(&pb).arg(&y).arg(&n).arg(&code).arg(&s);
            // SAFETY: offsets stay within each operand by construction of `s`.
            unsafe { b.launch(grid(numel)) }
                .map(|_| ())
                .map_err(|er| e(er.to_string()))
        }
        (Op::Softmax { axis, legacy } | Op::LogSoftmax { axis, legacy }, Shape::Out(shape)) => {
            let ax = norm_axis(*axis, shape.len())
                .filter(|&a| a < shape.len())
                .ok_or_else(|| e(format!("axis {axis} out of range for rank {}", shape.len())))?;
            let outer: usize = shape[..ax].iter().product();
            let (len, inner) = if *legacy {
                (shape[ax..].iter().product::<usize>(), 1usize)
            } else {
                (shape[ax], shape[ax + 1..].iter().product::<usize>())
            };
            let rows = outer * inner;
            if rows > i32::MAX as usize {
                return Err(e(format!("{rows} rows exceed one grid")));
            }
            let (len, inner, log) = (
                len as i64,
                inner as i64,
                matches!(op, Op::LogSoftmax { .. }) as i32,
            );
            let px = ptr(0)?;
            let f = kernels?.get("softmax", sfx).map_err(e)?;
            let mut b = dev.compute.launch_builder(f);
            b.arg(&px).arg(&y).arg(&len).arg(&inner).arg(&log);
            // SAFETY: one block per row of `len` elements.
            unsafe { b.launch(rows_cfg(rows)) }
                .map(|_| ())
                .map_err(|er| e(er.to_string()))
        }
        (Op::LayerNorm { epsilon, .. }, Shape::Rows { rows, cols, .. }) => {
            let has_bias = inputs.get(2).copied().flatten().is_some();
            let (px, ps) = (ptr(0)?, ptr(1)?);
            let pb = if has_bias { ptr(2)? } else { ps };
            let (cols, hb) = (*cols as i64, has_bias as i32);
            let f = kernels?.get("layernorm", sfx).map_err(e)?;
            let mut b = dev.compute.launch_builder(f);
            b.arg(&px)
                .arg(&ps)
                .arg(&pb)
                .arg(&y)
                .arg(&cols)
                .arg(epsilon)
                .arg(&hb);
            // SAFETY: one block per row of `cols` elements; scale and bias hold `cols`.
            unsafe { b.launch(rows_cfg(*rows)) }
                .map(|_| ())
                .map_err(|er| e(er.to_string()))
        }
        (_, Shape::Out(_)) => {
            let (code, p) = unary_code(op).ok_or_else(|| e("no kernel".into()))?;
            let px = ptr(0)?;
            let f = kernels?.get("unary", sfx).map_err(e)?;
            let mut b = dev.compute.launch_builder(f);
            b.arg(&px).arg(&y).arg(&n).arg(&code).arg(&p).arg(&0f32);
            // SAFETY: reads and writes `numel` elements.
            unsafe { b.launch(grid(numel)) }
                .map(|_| ())
                .map_err(|er| e(er.to_string()))
        }
        _ => Err(e("internal: op and launch plan disagree".into())),
    }
}

/// cuBLAS on the compute stream. Row-major C = op(A)·op(B) is computed as
/// column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, so B's data goes first and nothing is
/// transposed in memory. f16/bf16 use tensor cores with f32 accumulation
/// (CUBLAS_COMPUTE_32F); f32 stays true f32 (no TF32).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    dev: &CudaDevice,
    dt: DType,
    g: &GemmGeom,
    alpha: f32,
    beta: f32,
    a: u64,
    b: u64,
    c: u64,
) -> std::result::Result<(), String> {
    let ty = match dt {
        DType::F32 => blas::cudaDataType::CUDA_R_32F,
        DType::F16 => blas::cudaDataType::CUDA_R_16F,
        DType::BF16 => blas::cudaDataType::CUDA_R_16BF,
        other => return Err(format!("cuBLAS path has no {other}")),
    };
    let too_big = |v: usize| v > i32::MAX as usize;
    if [g.m, g.n, g.k, g.batch].into_iter().any(too_big) {
        return Err(format!(
            "GEMM {}x{}x{} (batch {}) exceeds cuBLAS's int sizes",
            g.m, g.n, g.k, g.batch
        ));
    }
    let op = |t: bool| {
        if t {
            blas::cublasOperation_t::CUBLAS_OP_T
        } else {
            blas::cublasOperation_t::CUBLAS_OP_N
        }
    };
    // Row-major X (r x c) is column-major Xᵀ with leading dimension c.
    let ldb = if g.trans_b { g.k } else { g.n };
    let lda = if g.trans_a { g.m } else { g.k };
    let handle = dev.blas.as_ref().map_err(Clone::clone)?;
    let handle = handle
        .lock()
        .map_err(|_| "cuBLAS lock poisoned".to_string())?;
    // SAFETY: pointers are live device buffers sized by the plan; alpha
    // and beta are host f32 (the handle's default pointer mode).
    unsafe {
        cudarc::cublas::result::gemm_strided_batched_ex(
            *handle.handle(),
            op(g.trans_b),
            op(g.trans_a),
            g.n as i32,
            g.m as i32,
            g.k as i32,
            (&alpha) as *const f32 as *const _,
            b as *const _,
            ty,
            ldb as i32,
            g.stride_b as i64,
            a as *const _,
            ty,
            lda as i32,
            g.stride_a as i64,
            (&beta) as *const f32 as *const _,
            c as *mut _,
            ty,
            g.n as i32,
            (g.m * g.n) as i64,
            g.batch as i32,
            blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| format!("cublasGemmStridedBatchedEx: {e}"))
}

/// Runs `op` with the host kernel: download, evaluate, upload.
pub(crate) fn host_fallback(
    dev: &CudaDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    n_outputs: usize,
) -> Result<Vec<DeviceTensor>> {
    use crate::Device;
    tracing::debug!("{}: {} through the host kernel", dev.info.id, op.name());
    let host: Vec<Option<Arc<hetflow_ops::Tensor>>> = inputs
        .iter()
        .map(|t| t.map(|t| dev.download(t)).transpose())
        .collect::<Result<_>>()?;
    let refs: Vec<Option<&hetflow_ops::Tensor>> = host.iter().map(|t| t.as_deref()).collect();
    let outs =
        hetflow_ops::kernels::eval(op, &refs, n_outputs).map_err(|e| dev.err(op.name(), e))?;
    outs.into_iter().map(|t| dev.upload(Arc::new(t))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> DeviceTensor {
        let id = crate::DeviceId {
            kind: crate::DeviceKind::Cuda,
            index: 0,
        };
        DeviceTensor::new(id, DType::F32, shape.to_vec(), Arc::new(()))
    }

    fn geom(s: Option<Shape>) -> GemmGeom {
        match s {
            Some(Shape::Gemm(g)) => g,
            _ => panic!("expected a GEMM plan"),
        }
    }

    #[test]
    fn matmul_batching_and_vectors() {
        // Batched both sides.
        let g = geom(matmul_plan(&t(&[2, 3, 4, 5]), &t(&[2, 3, 5, 6])));
        assert_eq!((g.m, g.k, g.n, g.batch), (4, 5, 6, 6));
        assert_eq!((g.stride_a, g.stride_b), (20, 30));
        assert_eq!(g.out, [2, 3, 4, 6]);
        // Weights shared by every batch: stride 0.
        let g = geom(matmul_plan(&t(&[8, 4, 5]), &t(&[5, 6])));
        assert_eq!((g.batch, g.stride_a, g.stride_b), (8, 20, 0));
        assert_eq!(g.out, [8, 4, 6]);
        // Vectors drop their dim from the result.
        let g = geom(matmul_plan(&t(&[5]), &t(&[5, 6])));
        assert_eq!((g.m, g.out.as_slice()), (1, &[6][..]));
        let g = geom(matmul_plan(&t(&[4, 5]), &t(&[5])));
        assert_eq!((g.n, g.out.as_slice()), (1, &[4][..]));
        // Cross broadcasting needs more than one stride: host path.
        assert!(matmul_plan(&t(&[2, 1, 4, 5]), &t(&[1, 3, 5, 6])).is_none());
        assert!(matmul_plan(&t(&[4, 5]), &t(&[4, 6])).is_none());
    }

    #[test]
    fn gemm_transposes() {
        let g = geom(gemm_plan(&t(&[5, 4]), &t(&[6, 5]), true, true));
        assert_eq!((g.m, g.k, g.n), (4, 5, 6));
        assert_eq!(g.out, [4, 6]);
        assert!(gemm_plan(&t(&[5, 4]), &t(&[6, 5]), false, false).is_none());
    }

    #[test]
    fn layernorm_rows() {
        let x = t(&[2, 3, 8]);
        let (s, b) = (t(&[8]), t(&[8]));
        match layernorm_plan(&x, &[Some(&x), Some(&s), Some(&b)], -1) {
            Some(Shape::Rows { rows, cols, .. }) => assert_eq!((rows, cols), (6, 8)),
            _ => panic!("rows"),
        }
        match layernorm_plan(&x, &[Some(&x), Some(&t(&[3, 8])), None], 1) {
            Some(Shape::Rows { rows, cols, .. }) => assert_eq!((rows, cols), (2, 24)),
            _ => panic!("rows"),
        }
        // A scale that would need broadcasting goes to the host path.
        assert!(layernorm_plan(&x, &[Some(&x), Some(&t(&[1])), None], -1).is_none());
    }

    #[test]
    fn broadcasting_layout() {
        assert_eq!(broadcast(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast(&[2, 3], &[4]), None);
        let s = bcast(&[2, 1, 4], &[3, 1], &[2, 3, 4]);
        assert_eq!(s.rank, 3);
        assert_eq!(&s.a_strides[..3], &[4, 0, 1]);
        assert_eq!(&s.b_strides[..3], &[0, 1, 0]);
        assert_eq!(&s.dims[..3], &[2, 3, 4]);
        // The C struct has an int, 4 bytes of padding, then 3 x 8 longs.
        assert_eq!(std::mem::size_of::<Bcast>(), 8 + 3 * 8 * MAX_RANK);
    }
}
