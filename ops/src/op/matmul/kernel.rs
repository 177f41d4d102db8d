//! MatMul (numpy semantics) and Gemm, through the `gemm` crate for f32/f64
//! and a plain loop for the integer types. An f32 product whose B carries a
//! packed form (a weight prepared at session build, `packed.rs`) and whose
//! A has at most `packed::SMALL_M` rows runs the small-M kernel instead.

use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::kernels::util::{
    arith_dispatch, expand_to, input, opt_input, out, par_try_for, typed, Arith, Float, SharedMut,
};
use crate::op::matmul::packed::{self, Mat, PackedB};
use crate::op::Activation;
use crate::shape::broadcast_shapes;
use crate::shape::{bcast_strides, numel};
use crate::tensor::Tensor;

/// Work (m·n·k) above which one GEMM call uses the whole thread pool.
const PAR_GEMM: usize = 64 * 64 * 64;

/// Parallel products whose shorter output side is below this are split by
/// [`gemm_split`] rather than by the GEMM crate (measured on ResNet-50's
/// conv shapes at 2 threads: 1.3-1.6x faster below, no gain above).
const SPLIT_BELOW: usize = 1024;

/// [`gemm_into`] as `parts` serial GEMMs on disjoint row (or column)
/// blocks of the product, run side by side on the current team or pool
/// (`par_try_for`).
///
/// # Safety
/// As for [`gemm_into`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_split<F: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: SharedMut<'_, F>,
    off: usize,
    dst_rs: usize,
    read_dst: bool,
    lhs: Mat<'_, F>,
    rhs: Mat<'_, F>,
    alpha: F,
    parts: usize,
) -> Result<()> {
    // Blocks are multiples of 16 rows/columns (the microkernels' sizes).
    let by_rows = m >= n;
    let len = if by_rows { m } else { n };
    let block = (len.div_ceil(parts).div_ceil(16) * 16).max(1);
    let run = |s0: usize| {
        let bl = block.min(len - s0);
        let (mm, nn, boff, l, r) = if by_rows {
            let l = Mat {
                off: lhs.off + s0 * lhs.rs,
                ..lhs
            };
            (bl, n, off + s0 * dst_rs, l, rhs)
        } else {
            let r = Mat {
                off: rhs.off + s0 * rhs.cs,
                ..rhs
            };
            (m, bl, off + s0, lhs, r)
        };
        // SAFETY: the blocks write disjoint rows (or columns) of the
        // caller's product, which nothing else touches.
        unsafe { gemm_into(mm, nn, k, dst, boff, dst_rs, read_dst, l, r, alpha, false) }
    };
    par_try_for(len.div_ceil(block), 1, &|bs| {
        bs.into_iter().try_for_each(|b| run(b * block))
    })
}

/// `dst = (read_dst ? dst : 0) + alpha * lhs × rhs` for `m×k` lhs, `k×n` rhs
/// and a row-major `dst` with row stride `dst_rs`. `par` allows the call to
/// use the current team or pool (it still stays serial when the product
/// is small).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<F: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [F],
    dst_rs: usize,
    read_dst: bool,
    lhs: Mat<'_, F>,
    rhs: Mat<'_, F>,
    alpha: F,
    par: bool,
) -> Result<()> {
    // SAFETY: `dst` is borrowed exclusively for the call.
    unsafe {
        gemm_into(
            m,
            n,
            k,
            SharedMut::new(dst),
            0,
            dst_rs,
            read_dst,
            lhs,
            rhs,
            alpha,
            par,
        )
    }
}

/// [`gemm`] into the block of `dst` whose element (0, 0) is at `off`, so
/// parallel tasks can fill interleaved blocks of one matrix.
///
/// # Safety
/// Nothing else reads or writes the elements the product writes (`n` from
/// `off + r * dst_rs` for each row `r < m`) during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_into<F: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: SharedMut<'_, F>,
    off: usize,
    dst_rs: usize,
    read_dst: bool,
    lhs: Mat<'_, F>,
    rhs: Mat<'_, F>,
    alpha: F,
    par: bool,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if off + (m - 1) * dst_rs + n > dst.len() || !lhs.fits(m, k) || !rhs.fits(k, n) {
        crate::bail!("internal: GEMM operands too small for {m}x{k} * {k}x{n}");
    }
    if k == 0 {
        if !read_dst {
            for r in 0..m {
                // SAFETY: this row is the caller's to write.
                unsafe { dst.slice(off + r * dst_rs, n) }.fill(F::ZERO);
            }
        }
        return Ok(());
    }
    let threads = crate::kernels::util::threads();
    let parallel = par && threads > 1 && m * n * k > PAR_GEMM;
    // Products split here along their longer side into one serial GEMM
    // per thread: skinny ones (the convs of a CNN's later layers, few
    // output columns) split poorly inside the GEMM crate, and the crate's
    // own threads are rayon's, which the CPU device's team is not. Large
    // products inside a rayon pool (the TPU device's host threads) still
    // use the crate's split.
    let in_rayon = crate::kernels::team::current_threads().is_none()
        && rayon::current_thread_index().is_some();
    if parallel && (m.min(n) < SPLIT_BELOW || !in_rayon) {
        // SAFETY: passes on the caller's guarantee.
        return unsafe {
            gemm_split(
                m, n, k, dst, off, dst_rs, read_dst, lhs, rhs, alpha, threads,
            )
        };
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: F is f32 or f64 (the only `Float` impls), which `gemm`
    // supports; every pointer plus the furthest offset the strides reach
    // lies inside its slice (checked above), and dst does not alias lhs/rhs
    // (it comes from a distinct &mut); the caller owns the elements written.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr_at(off),
            1,
            dst_rs as isize,
            read_dst,
            lhs.data.as_ptr().add(lhs.off),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.off),
            rhs.cs as isize,
            rhs.rs as isize,
            F::ONE,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// Reference-style product for the integer types (wrapping arithmetic).
fn naive<T: Arith>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    a: Mat<'_, T>,
    b: Mat<'_, T>,
) -> Result<()> {
    if !a.fits(m, k) || !b.fits(k, n) || dst.len() < m * n {
        crate::bail!("internal: matrix operands too small for {m}x{k} * {k}x{n}");
    }
    for i in 0..m {
        for p in 0..k {
            let x = a.data[a.off + i * a.rs + p * a.cs];
            for j in 0..n {
                let d = &mut dst[i * n + j];
                *d = d.add(x.mul(b.data[b.off + p * b.rs + j * b.cs]));
            }
        }
    }
    Ok(())
}

/// One `m×k · k×n` product into a zeroed row-major `dst`, any arithmetic type.
fn product<T: Arith>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    par: bool,
) -> Result<()> {
    if let (Some(d), Some(x), Some(y)) = (as_f32_mut(dst), as_f32(a), as_f32(b)) {
        return gemm(m, n, k, d, n, false, x, y, 1.0, par);
    }
    if let (Some(d), Some(x), Some(y)) = (as_f64_mut(dst), as_f64(a), as_f64(b)) {
        return gemm(m, n, k, d, n, false, x, y, 1.0, par);
    }
    naive(m, n, k, dst, a, b)
}

macro_rules! reinterpret {
    ($name:ident, $name_mut:ident, $t:ty) => {
        fn $name<T: Arith>(m: Mat<'_, T>) -> Option<Mat<'_, $t>> {
            if std::any::TypeId::of::<T>() != std::any::TypeId::of::<$t>() {
                return None;
            }
            // SAFETY: T is $t (same TypeId).
            let s =
                unsafe { std::slice::from_raw_parts(m.data.as_ptr() as *const $t, m.data.len()) };
            Some(Mat::new(s, m.off, m.rs, m.cs))
        }
        fn $name_mut<T: Arith>(d: &mut [T]) -> Option<&mut [$t]> {
            if std::any::TypeId::of::<T>() != std::any::TypeId::of::<$t>() {
                return None;
            }
            // SAFETY: T is $t (same TypeId).
            Some(unsafe { std::slice::from_raw_parts_mut(d.as_mut_ptr() as *mut $t, d.len()) })
        }
    };
}
reinterpret!(as_f32, as_f32_mut, f32);
reinterpret!(as_f64, as_f64_mut, f64);

/// Attaches the packed form of a 2-D f32 weight `b` of MatMul (`trans`
/// false) or Gemm, unless the product's rows (`rows`, when known at build
/// time) are too many for the small-M kernel. Returns whether `b` carries
/// a packing afterwards.
pub(crate) fn prepare_b(b: &Tensor, trans: bool, rows: Option<usize>) -> Result<bool> {
    if b.dtype() != DType::F32 || b.rank() != 2 || rows.is_some_and(|r| r > packed::SMALL_M) {
        return Ok(false);
    }
    let (r, c) = (b.shape()[0], b.shape()[1]);
    let (k, n) = if trans { (c, r) } else { (r, c) };
    b.prepare_with(|| PackedB::pack(typed::<f32>(b, "weight")?, k, n, trans))
}

/// `init + alpha * lhs × op(b)` through `b`'s packing, when it has one for
/// this product and `m` is small; `None` otherwise. `init` (already scaled
/// by Gemm's beta) is the `m×n` starting value, zeros when absent.
#[allow(clippy::too_many_arguments)]
fn packed_product(
    b: &Tensor,
    trans: bool,
    m: usize,
    n: usize,
    k: usize,
    lhs: Mat<'_, f32>,
    init: Option<Vec<f32>>,
    alpha: f32,
) -> Result<Option<Vec<f32>>> {
    let Some(pb) = b.prepared::<PackedB>() else {
        return Ok(None);
    };
    if m > packed::SMALL_M || !pb.is(k, n, trans) {
        return Ok(None);
    }
    let read = init.is_some();
    // Without a starting value the product overwrites every element.
    let mut o = init.unwrap_or_else(|| crate::pool::stale(m * n, f32::NAN));
    // SAFETY: `o` is owned here for the call.
    unsafe { packed::small_m(m, SharedMut::new(&mut o), 0, n, read, lhs, pb, alpha, true)? };
    Ok(Some(o))
}

/// Numpy matmul: 1-D operands are promoted (and the added dim removed), the
/// batch dims broadcast.
pub(crate) fn matmul(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let a = input(inputs, 0, "A")?;
    let b = input(inputs, 1, "B")?;
    if a.dtype() != b.dtype() {
        crate::bail!("MatMul: A is {}, B is {}", a.dtype(), b.dtype());
    }
    if a.rank() == 0 || b.rank() == 0 {
        crate::bail!(
            "MatMul operands must have rank >= 1, got {:?} and {:?}",
            a.shape(),
            b.shape()
        );
    }
    let mut ash = a.shape().to_vec();
    let mut bsh = b.shape().to_vec();
    let (a1, b1) = (ash.len() == 1, bsh.len() == 1);
    if a1 {
        ash.insert(0, 1);
    }
    if b1 {
        bsh.push(1);
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        crate::bail!(
            "MatMul inner dims differ: A {:?}, B {:?}",
            a.shape(),
            b.shape()
        );
    }
    let (abatch, bbatch) = (&ash[..ash.len() - 2], &bsh[..bsh.len() - 2]);
    let batch = broadcast_shapes(abatch, bbatch)?;
    let mut oshape = batch.clone();
    if !a1 {
        oshape.push(m);
    }
    if !b1 {
        oshape.push(n);
    }
    if b.rank() == 2 && a.dtype() == DType::F32 {
        // B is one matrix: A's batch folds into the rows.
        let rows = numel(&batch) * m;
        let x = typed::<f32>(a, "input 0 (A)")?;
        if let Some(o) = packed_product(b, false, rows, n, k, Mat::new(x, 0, k, 1), None, 1.0)? {
            return out(oshape, o);
        }
    }
    arith_dispatch!(a.dtype(), "MatMul", T => {
        let (x, y) = (typed::<T>(a, "input 0 (A)")?, typed::<T>(b, "input 1 (B)")?);
        let nb = numel(&batch);
        let mut o = crate::pool::filled(nb * m * n, T::ZERO);
        if numel(bbatch) == 1 {
            // B is one matrix: fold A's batch into its rows.
            let rows = nb * m;
            product(rows, n, k, &mut o, Mat::new(x, 0, k, 1), Mat::new(y, 0, n, 1), true)?;
        } else {
            let sa = bcast_strides(abatch, &batch);
            let sb = bcast_strides(bbatch, &batch);
            let bst = crate::shape::strides(&batch);
            let offs = |i: usize| {
                let (mut oa, mut ob) = (0usize, 0usize);
                for d in 0..batch.len() {
                    let c = (i / bst[d]) % batch[d];
                    oa += c * sa[d] as usize;
                    ob += c * sb[d] as usize;
                }
                (oa * m * k, ob * k * n)
            };
            let big = m * n * k > PAR_GEMM;
            let one = |i: usize, d: &mut [T]| {
                let (oa, ob) = offs(i);
                product(m, n, k, d, Mat::new(x, oa, k, 1), Mat::new(y, ob, n, 1), big)
            };
            let o_len = o.len();
            if !big && crate::kernels::util::threads() > 1 && m * n > 0 {
                let (per, shared) = (m * n, SharedMut::new(&mut o));
                par_try_for(o_len / per, 1, &|is| {
                    // SAFETY: batch `i` owns its `m * n` outputs.
                    is.into_iter()
                        .try_for_each(|i| one(i, unsafe { shared.slice(i * per, per) }))
                })?;
            } else if m * n > 0 {
                for (i, d) in o.chunks_mut(m * n).enumerate() {
                    one(i, d)?;
                }
            }
        }
        out(oshape, o)
    })
}

/// `alpha * op(A) op(B) + beta * C`, C broadcast to `[M, N]`.
pub(crate) fn gemm_op(
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
    act: Activation,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let a = input(inputs, 0, "A")?;
    let b = input(inputs, 1, "B")?;
    let c = opt_input(inputs, 2);
    if a.rank() != 2 || b.rank() != 2 {
        crate::bail!(
            "Gemm needs 2-D A and B, got {:?} and {:?}",
            a.shape(),
            b.shape()
        );
    }
    if a.dtype() != b.dtype() {
        crate::bail!("Gemm: A is {}, B is {}", a.dtype(), b.dtype());
    }
    let (ar, ac) = (a.shape()[0], a.shape()[1]);
    let (br, bc) = (b.shape()[0], b.shape()[1]);
    let (m, k, a_rs, a_cs) = if trans_a {
        (ac, ar, 1, ac)
    } else {
        (ar, ac, ac, 1)
    };
    let (k2, n, b_rs, b_cs) = if trans_b {
        (bc, br, 1, bc)
    } else {
        (br, bc, bc, 1)
    };
    if k != k2 {
        crate::bail!(
            "Gemm inner dims differ: A {:?}, B {:?} (trans_a={trans_a}, trans_b={trans_b})",
            a.shape(),
            b.shape()
        );
    }
    let c = match c {
        Some(c) if beta != 0.0 && !c.is_empty() => {
            if c.dtype() != a.dtype() {
                crate::bail!("Gemm: C is {}, A is {}", c.dtype(), a.dtype());
            }
            // A bias row (`[N]` or `[1, N]`) is repeated into the output
            // by `c_init`; other shapes are broadcast here.
            let row = c.len() == n && c.shape().last() == Some(&n) && c.rank() <= 2;
            Some(if row {
                c.clone()
            } else {
                expand_to(c, &[m, n])?
            })
        }
        _ => None,
    };
    if a.dtype() == DType::F32 && m <= packed::SMALL_M && b.prepared::<PackedB>().is_some() {
        let init = c
            .as_ref()
            .map(|c| c_init::<f32>(c, m, n, beta))
            .transpose()?;
        let lhs = Mat::new(typed::<f32>(a, "input 0 (A)")?, 0, a_rs, a_cs);
        if let Some(mut o) = packed_product(b, trans_b, m, n, k, lhs, init, alpha)? {
            crate::op::conv::act::apply(act, &mut o);
            return out(vec![m, n], o);
        }
    }
    match a.dtype() {
        DType::F32 | DType::F64 => crate::kernels::util::float_dispatch!(a.dtype(), "Gemm", F => {
            let (x, y) = (typed::<F>(a, "input 0 (A)")?, typed::<F>(b, "input 1 (B)")?);
            let (mut o, read) = match &c {
                Some(c) => (c_init::<F>(c, m, n, beta)?, true),
                // Overwritten by the product (read = false).
                None => (crate::pool::stale(m * n, F::c(f64::NAN)), false),
            };
            gemm(m, n, k, &mut o, n, read, Mat::new(x, 0, a_rs, a_cs), Mat::new(y, 0, b_rs, b_cs), F::c(alpha as f64), true)?;
            crate::op::conv::act::apply(act, &mut o);
            out(vec![m, n], o)
        }),
        dt => arith_dispatch!(dt, "Gemm", T => {
            if act != Activation::None {
                crate::bail!("Gemm: a fused activation needs float inputs, got {dt}");
            }
            let (x, y) = (typed::<T>(a, "input 0 (A)")?, typed::<T>(b, "input 1 (B)")?);
            let mut o = crate::pool::filled(m * n, T::ZERO);
            naive(m, n, k, &mut o, Mat::new(x, 0, a_rs, a_cs), Mat::new(y, 0, b_rs, b_cs))?;
            let (al, bt) = (T::from_f64(alpha as f64), T::from_f64(beta as f64));
            match &c {
                Some(c) => {
                    let cv = typed::<T>(c, "input 2 (C)")?;
                    let rows = cv.iter().cycle();
                    o.iter_mut().zip(rows).for_each(|(v, &w)| *v = al.mul(*v).add(bt.mul(w)));
                }
                None => o.iter_mut().for_each(|v| *v = al.mul(*v)),
            }
            out(vec![m, n], o)
        }),
    }
}

/// Gemm's output before the product: `beta * C`, with C either `[M, N]`
/// or one row repeated (`[N]`, `[1, N]`: a layer's bias).
fn c_init<F: Float>(c: &Tensor, m: usize, n: usize, beta: f32) -> Result<Vec<F>> {
    let cv = typed::<F>(c, "input 2 (C)")?;
    let bt = F::c(beta as f64);
    let mut o = crate::pool::take(m * n);
    if cv.len() == n {
        for _ in 0..m {
            o.extend(cv.iter().map(|&v| v * bt));
        }
    } else {
        o.extend(cv.iter().map(|&v| v * bt));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::{close, rnd, t};
    use crate::op::Op;
    use crate::tensor::Tensor;

    /// f64 reference matmul of row-major [m,k] x [k,n].
    fn mm_ref(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut o = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    o[i * n + j] += a[i * k + p] as f64 * b[p * n + j] as f64;
                }
            }
        }
        o
    }

    fn run(op: Op, ins: &[Option<&Tensor>]) -> Tensor {
        eval(&op, ins, 1).expect("eval").remove(0)
    }

    #[test]
    fn matmul_2d_large_parallel() {
        crate::kernels::util::testutil::in_pool(matmul_2d_large_cases);
        crate::kernels::util::testutil::in_team(matmul_2d_large_cases);
    }

    fn matmul_2d_large_cases() {
        {
            // Split by columns, by rows (uneven last block), and a square
            // product left to the GEMM crate's own threading.
            for (m, n, k) in [(70, 90, 80), (130, 50, 60), (1030, 1024, 8)] {
                let (a, b) = (rnd(m * k, 1), rnd(k * n, 2));
                let r = run(
                    Op::MatMul,
                    &[Some(&t(&[m, k], a.clone())), Some(&t(&[k, n], b.clone()))],
                );
                assert_eq!(r.shape(), &[m, n]);
                close(r.as_slice::<f32>().unwrap(), &mm_ref(&a, &b, m, n, k), 1e-5);
            }
        }
    }

    #[test]
    fn matmul_1d_operands() {
        let a = vec![1f32, 2., 3.];
        let b: Vec<f32> = (0..6).map(|v| v as f32).collect();
        // [3] x [3,2] -> [2]
        let r = run(
            Op::MatMul,
            &[Some(&t(&[3], a.clone())), Some(&t(&[3, 2], b.clone()))],
        );
        assert_eq!(r.shape(), &[2]);
        close(r.as_slice::<f32>().unwrap(), &mm_ref(&a, &b, 1, 2, 3), 1e-6);
        // [2,3] x [3] -> [2]
        let r = run(
            Op::MatMul,
            &[Some(&t(&[2, 3], b.clone())), Some(&t(&[3], a.clone()))],
        );
        assert_eq!(r.shape(), &[2]);
        close(r.as_slice::<f32>().unwrap(), &mm_ref(&b, &a, 2, 1, 3), 1e-6);
        // [3] x [3] -> scalar
        let r = run(
            Op::MatMul,
            &[Some(&t(&[3], a.clone())), Some(&t(&[3], a.clone()))],
        );
        assert_eq!(r.shape(), &[] as &[usize]);
        assert_eq!(r.as_slice::<f32>().unwrap(), &[14.0]);
    }

    #[test]
    fn matmul_batch_broadcast() {
        // [2,1,2,3] x [3,3,2] -> [2,3,2,2]
        let (a, b) = (rnd(2 * 2 * 3, 3), rnd(3 * 3 * 2, 4));
        let r = run(
            Op::MatMul,
            &[
                Some(&t(&[2, 1, 2, 3], a.clone())),
                Some(&t(&[3, 3, 2], b.clone())),
            ],
        );
        assert_eq!(r.shape(), &[2, 3, 2, 2]);
        let mut want = vec![];
        for i in 0..2 {
            for j in 0..3 {
                want.extend(mm_ref(&a[i * 6..i * 6 + 6], &b[j * 6..j * 6 + 6], 2, 2, 3));
            }
        }
        close(r.as_slice::<f32>().unwrap(), &want, 1e-6);
        // Batched A with a single B, f64 and i64.
        let a64: Vec<f64> = (0..12).map(|v| v as f64).collect();
        let r = run(
            Op::MatMul,
            &[
                Some(&t(&[2, 2, 3], a64)),
                Some(&t(&[3, 1], vec![1f64, 1., 1.])),
            ],
        );
        assert_eq!(r.as_slice::<f64>().unwrap(), &[3., 12., 21., 30.]);
        let ai: Vec<i64> = (0..12).collect();
        let r = run(
            Op::MatMul,
            &[
                Some(&t(&[2, 2, 3], ai)),
                Some(&t(&[3, 1], vec![1i64, 1, 1])),
            ],
        );
        assert_eq!(r.as_slice::<i64>().unwrap(), &[3, 12, 21, 30]);
    }

    #[test]
    fn gemm_transposes_and_c_broadcast() {
        let (m, n, k) = (3, 4, 5);
        let (a, b) = (rnd(m * k, 5), rnd(k * n, 6));
        // A^T stored [k,m], B^T stored [n,k].
        let mut at = vec![0f32; k * m];
        let mut bt = vec![0f32; n * k];
        for i in 0..m {
            for p in 0..k {
                at[p * m + i] = a[i * k + p];
            }
        }
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        let c = vec![1f32, 2., 3., 4.];
        let op = Op::Gemm {
            alpha: 0.5,
            beta: 2.0,
            trans_a: true,
            trans_b: true,
            act: Default::default(),
        };
        let r = run(
            op,
            &[
                Some(&t(&[k, m], at)),
                Some(&t(&[n, k], bt)),
                Some(&t(&[n], c.clone())),
            ],
        );
        let want: Vec<f64> = mm_ref(&a, &b, m, n, k)
            .iter()
            .enumerate()
            .map(|(i, v)| 0.5 * v + 2.0 * c[i % n] as f64)
            .collect();
        close(r.as_slice::<f32>().unwrap(), &want, 1e-6);
        // No C.
        let op = Op::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
            act: Default::default(),
        };
        let r = run(
            op,
            &[
                Some(&t(&[m, k], a.clone())),
                Some(&t(&[k, n], b.clone())),
                None,
            ],
        );
        close(r.as_slice::<f32>().unwrap(), &mm_ref(&a, &b, m, n, k), 1e-6);
    }

    /// MatMul and Gemm with a weight prepared as at session build: the
    /// small-M path (A batch folded into rows, 1-D A, transposes, alpha,
    /// beta with a broadcast C) against an f64 reference, and products the
    /// packing does not fit (too many rows) through the general GEMM.
    #[test]
    fn prepared_weights_match_reference() {
        use crate::kernels::prepare;
        // MatMul: [2,3,k] x [k,n] (6 rows), [k] x [k,n], and 40 and 70
        // rows (past the small-M kernel).
        for (ashape, n) in [
            (vec![2usize, 3, 37], 45usize),
            (vec![37], 10),
            (vec![40, 37], 20),
            (vec![70, 37], 20),
            (vec![130, 37], 20),
        ] {
            let k = *ashape.last().unwrap();
            let rows: usize = ashape[..ashape.len() - 1].iter().product();
            let (a, b) = (rnd(rows * k, 7), rnd(k * n, 8));
            let w = t(&[k, n], b.clone());
            assert_eq!(
                prepare(&Op::MatMul, 1, &w, Some(&ashape)).unwrap(),
                rows <= crate::op::matmul::packed::SMALL_M
            );
            // Prepared regardless of rows when A's shape is unknown.
            assert!(prepare(&Op::MatMul, 1, &w, None).unwrap());
            let r = run(Op::MatMul, &[Some(&t(&ashape, a.clone())), Some(&w)]);
            close(
                r.as_slice::<f32>().unwrap(),
                &mm_ref(&a, &b, rows, n, k),
                1e-5,
            );
        }
        // Gemm, every transpose, with and without C.
        let (m, n, k) = (5, 33, 19);
        let (a, b, c) = (rnd(m * k, 9), rnd(k * n, 10), rnd(n, 11));
        let transpose = |v: &[f32], r: usize, cl: usize| {
            let mut o = vec![0f32; r * cl];
            for i in 0..r {
                for j in 0..cl {
                    o[j * r + i] = v[i * cl + j];
                }
            }
            o
        };
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for with_c in [false, true] {
                    let op = Op::Gemm {
                        alpha: 0.75,
                        beta: 1.5,
                        trans_a,
                        trans_b,
                        act: Default::default(),
                    };
                    let ta = if trans_a {
                        t(&[k, m], transpose(&a, m, k))
                    } else {
                        t(&[m, k], a.clone())
                    };
                    let w = if trans_b {
                        t(&[n, k], transpose(&b, k, n))
                    } else {
                        t(&[k, n], b.clone())
                    };
                    assert!(prepare(&op, 1, &w, Some(ta.shape())).unwrap());
                    let ct = t(&[n], c.clone());
                    let r = run(op, &[Some(&ta), Some(&w), with_c.then_some(&ct)]);
                    let want: Vec<f64> = mm_ref(&a, &b, m, n, k)
                        .iter()
                        .enumerate()
                        .map(|(i, v)| 0.75 * v + if with_c { 1.5 * c[i % n] as f64 } else { 0.0 })
                        .collect();
                    close(r.as_slice::<f32>().unwrap(), &want, 1e-5);
                }
            }
        }
        // A weight packed for MatMul read by a Gemm with transB: the
        // packing does not match and the general path runs.
        let (m, n, k) = (2, 4, 4);
        let (a, b) = (rnd(m * k, 12), rnd(k * n, 13));
        let w = t(&[k, n], b.clone());
        assert!(prepare(&Op::MatMul, 1, &w, None).unwrap());
        let op = Op::Gemm {
            alpha: 1.0,
            beta: 0.0,
            trans_a: false,
            trans_b: true,
            act: Default::default(),
        };
        let r = run(op, &[Some(&t(&[m, k], a.clone())), Some(&w), None]);
        close(
            r.as_slice::<f32>().unwrap(),
            &mm_ref(&a, &transpose(&b, k, n), m, n, k),
            1e-5,
        );
        // Nothing to prepare: other ops, other slots, integer weights.
        assert!(!prepare(&Op::MatMul, 0, &w, None).unwrap());
        assert!(!prepare(&Op::MatMul, 1, &t(&[2, 2], vec![1i64, 2, 3, 4]), None).unwrap());
    }

    #[test]
    fn bad_shapes_error() {
        let r = eval(
            &Op::MatMul,
            &[
                Some(&t(&[2, 3], vec![0f32; 6])),
                Some(&t(&[2, 3], vec![0f32; 6])),
            ],
            1,
        );
        assert!(r.is_err());
    }
}
