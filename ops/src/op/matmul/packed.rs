//! Prepared GEMM weights and the small-M product that reads them.
//!
//! The `gemm` crate packs its right-hand operand into panels on every call.
//! For a layer's weight (MatMul's or Gemm's B when it is a constant) that
//! is the same work every run, and for a product with few rows (an MLP at
//! batch 1-32, a classifier head) it is most of the work: the packing reads
//! and writes the whole weight, the product then reads it once more. Here
//! the weight is packed once, when the session is built
//! ([`crate::kernels::prepare`] attaches a [`PackedB`] to the constant
//! tensor), and products with at most [`SMALL_M`] rows run [`small_m`],
//! which streams the packed weight once.
//!
//! Layout: `op(B)` (K×N, after Gemm's `transB`) cut into panels of [`NR`]
//! = 16 columns, the last one zero-padded; panel `p` holds row `k` of its
//! columns at `p*K*NR + k*NR`, so the kernel reads each panel as one
//! contiguous stream of 16-float rows, a 64-byte cache line (one AVX-512
//! register, two AVX2 ones) per `k`.
//!
//! Kernel: for each panel and each block of up to `R` rows of A (A is
//! first copied into `[k][R]` blocks, zero rows padding a block to a power
//! of two), the `R×16` accumulators live in registers across the whole K
//! loop; each step broadcasts `R` values of A and does `R` fused
//! multiply-adds with the panel row. A block of few rows splits K into `U`
//! interleaved partial sums, added at the end, so several independent FMA
//! chains are in flight (one row's single chain runs at a quarter of the
//! FMA rate). Written with `std::arch` intrinsics and chosen at run time
//! (`is_x86_feature_detected!`): AVX-512F (`R` ≤ 8, `R·U` = 8 or 16
//! registers) or AVX2+FMA (two registers per row, `R` ≤ 2), with a plain
//! loop elsewhere. Measured on the 784×512 weight of an MLP (Zen 4, one
//! thread, weight in L2/L3): 1 row 14 µs, 8 rows 31 µs (210 GFLOP/s);
//! a 16-row block was slower than two 8-row blocks (93 µs: 16 broadcasts
//! per step), and an autovectorised version of the same loop spilled its
//! accumulators (2 ms at 8 rows), hence the intrinsics.
//!
//! Threads: panels are split over the team's threads when the product has
//! at least [`PAR_WORK`] multiply-adds. The CPU device hands a product to
//! its team only when it is worth it (`kernels::parallel_work`, which
//! counts a few-row product by the weight it streams), so the bar here
//! is low: at batch 1 each core then streams its half of the weight.

use crate::error::Result;
use crate::kernels::util::{isa, par_split, Isa, SharedMut};

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// A strided matrix operand: element `(i, j)` is at `off + i*rs + j*cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    pub(crate) fn new(data: &'a [T], off: usize, rs: usize, cs: usize) -> Self {
        Mat { data, off, rs, cs }
    }
    pub(crate) fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || self.off + (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Columns per panel.
pub(crate) const NR: usize = 16;

/// Products with at most this many rows use [`small_m`] when B is packed.
/// At 32 (an MLP at batch 32: 0.43 → 0.25 ms) the `gemm` crate's packing
/// of B on every call costs more than its larger tiles save. At 64 rows
/// the crate was once faster (a transformer layer at sequence 64: 0.83 →
/// 0.94 ms with 64 here); since the kernel team and the FMA-bound 8×16
/// tile, 128 rows measured faster (2026-12-04, alternated binaries, one /
/// two threads: BERT-base layer at sequence 128 20.5 → 18.9 / 10.9 →
/// 10.3 ms, the crate re-packing its 768×3072 weights on every call;
/// the sequence-64 transformer block 1.27 → 1.22 / 0.78 → 0.78 ms).
pub(crate) const SMALL_M: usize = 128;

/// Multiply-adds (m·n·k) from which [`small_m`] splits its panels over the
/// team's threads (an MLP's 784x512 layer at batch 1 is 401K).
const PAR_WORK: usize = 1 << 17;

/// A GEMM right-hand operand `op(B)` (K×N) packed into column panels (see
/// the module docs). Made once per weight tensor by
/// [`crate::kernels::prepare`].
pub struct PackedB {
    k: usize,
    n: usize,
    trans: bool,
    panels: Vec<f32>,
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedB({}x{}, trans={})", self.k, self.n, self.trans)
    }
}

impl PackedB {
    /// Packs `op(B)`: `b` holds B row-major as `[k, n]`, or as `[n, k]`
    /// when `trans` (Gemm's `transB = 1`).
    pub(crate) fn pack(b: &[f32], k: usize, n: usize, trans: bool) -> Result<PackedB> {
        if b.len() != k * n {
            crate::bail!(
                "internal: packing a {k}x{n} weight from {} elements",
                b.len()
            );
        }
        let np = n.div_ceil(NR);
        let mut panels = vec![0f32; np * k * NR];
        for (p, panel) in panels.chunks_exact_mut((k * NR).max(1)).enumerate() {
            let j0 = p * NR;
            let w = NR.min(n - j0);
            for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
                if trans {
                    for (j, v) in row[..w].iter_mut().enumerate() {
                        *v = b[(j0 + j) * k + kk];
                    }
                } else {
                    row[..w].copy_from_slice(&b[kk * n + j0..kk * n + j0 + w]);
                }
            }
        }
        Ok(PackedB {
            k,
            n,
            trans,
            panels,
        })
    }

    /// Whether this is `op(B)` for a `k×n` product with the given `trans`.
    pub(crate) fn is(&self, k: usize, n: usize, trans: bool) -> bool {
        self.k == k && self.n == n && self.trans == trans
    }
}

/// Rows per block for an instruction set (the accumulators it holds).
fn max_rows(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 8,
        Isa::Avx2 => 2,
        Isa::Plain => 4,
    }
}

/// `dst = (read_dst ? dst : 0) + alpha * lhs × op(B)` for an `m×k` lhs and
/// the packed `k×n` `op(B)`, into the row-major block of `dst` at `off`
/// with row stride `dst_rs` (the contract of `gemm_into`). `par` allows the
/// pool's threads when the product is large enough.
///
/// # Safety
/// Nothing else reads or writes the elements the product writes during
/// the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn small_m(
    m: usize,
    dst: SharedMut<'_, f32>,
    off: usize,
    dst_rs: usize,
    read_dst: bool,
    lhs: Mat<'_, f32>,
    b: &PackedB,
    alpha: f32,
    par: bool,
) -> Result<()> {
    small_m_with(isa(), m, dst, off, dst_rs, read_dst, lhs, b, alpha, par)
}

/// [`small_m`] on a given instruction set (the tests run each one).
#[allow(clippy::too_many_arguments)]
unsafe fn small_m_with(
    isa: Isa,
    m: usize,
    dst: SharedMut<'_, f32>,
    off: usize,
    dst_rs: usize,
    read_dst: bool,
    lhs: Mat<'_, f32>,
    b: &PackedB,
    alpha: f32,
    par: bool,
) -> Result<()> {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return Ok(());
    }
    if off + (m - 1) * dst_rs + n > dst.len() || !lhs.fits(m, k) {
        crate::bail!("internal: small-M GEMM operands too small for {m}x{k} * {k}x{n}");
    }
    // A in blocks of `rows` (a power of two up to the ISA's maximum), each
    // stored `[k][rows]` with zero rows padding the last block. Copied a
    // row at a time (a contiguous read, a strided write within the
    // block): the copy runs on the caller's thread before the panels
    // split, and column-at-a-time copying was 7% of an MLP's time.
    let mr = max_rows(isa);
    let mut blocks = Vec::new();
    let (mut r0, mut total) = (0, 0);
    while r0 < m {
        let rows = (m - r0).min(mr).next_power_of_two().min(mr);
        let valid = rows.min(m - r0);
        blocks.push((r0, rows, valid, total));
        total += k * rows;
        r0 += valid;
    }
    // Every element is written below.
    let mut apack = crate::pool::stale(total, f32::NAN);
    for &(r0, rows, valid, start) in &blocks {
        let block = &mut apack[start..start + k * rows];
        for r in 0..rows {
            let lane = block[r..].iter_mut().step_by(rows);
            let at = lhs.off + (r0 + r) * lhs.rs;
            if r >= valid {
                lane.for_each(|d| *d = 0.0);
            } else {
                let row = lhs.data[at..].iter().step_by(lhs.cs);
                lane.zip(row).for_each(|(d, &v)| *d = v);
            }
        }
    }
    let np = n.div_ceil(NR);
    let ctx = Ctx {
        isa,
        k,
        n,
        dst,
        off,
        dst_rs,
        read_dst,
        alpha,
        a: &apack,
        blocks: &blocks,
        b,
    };
    let threads = crate::kernels::util::threads();
    if par && threads > 1 && np > 1 && m * n * k >= PAR_WORK {
        // SAFETY: each piece writes the columns of its own panels.
        par_split(np, &|ps| unsafe { ctx.panels(ps) });
    } else {
        // SAFETY: the caller's guarantee.
        unsafe { ctx.panels(0..np) };
    }
    crate::pool::give(apack);
    Ok(())
}

/// What every panel task reads.
struct Ctx<'a, 'd> {
    isa: Isa,
    k: usize,
    n: usize,
    dst: SharedMut<'d, f32>,
    off: usize,
    dst_rs: usize,
    read_dst: bool,
    alpha: f32,
    a: &'a [f32],
    /// (first row, rows in the block, valid rows, offset in `a`)
    blocks: &'a [(usize, usize, usize, usize)],
    b: &'a PackedB,
}

impl Ctx<'_, '_> {
    /// Computes the panels in `ps` for every row block.
    ///
    /// # Safety
    /// Nothing else touches the columns of these panels in `dst`.
    unsafe fn panels(&self, ps: std::ops::Range<usize>) {
        let k = self.k;
        for p in ps {
            let bp = &self.b.panels[p * k * NR..(p + 1) * k * NR];
            let j0 = p * NR;
            let w = NR.min(self.n - j0);
            for &(r0, rows, valid, start) in self.blocks {
                let a = &self.a[start..start + k * rows];
                let mut acc = [[0f32; NR]; 16];
                run_block(self.isa, rows, a, bp, &mut acc);
                for (r, acc_row) in acc.iter().enumerate().take(valid) {
                    // SAFETY: row r0+r, columns j0..j0+w of this call's
                    // block, which only this task writes.
                    let d = unsafe { self.dst.slice(self.off + (r0 + r) * self.dst_rs + j0, w) };
                    let alpha = self.alpha;
                    if self.read_dst {
                        d.iter_mut()
                            .zip(acc_row)
                            .for_each(|(d, &v)| *d += alpha * v);
                    } else {
                        d.iter_mut().zip(acc_row).for_each(|(d, &v)| *d = alpha * v);
                    }
                }
            }
        }
    }
}

/// `acc[..rows] = a-block × panel` on `isa`.
fn run_block(isa: Isa, rows: usize, a: &[f32], b: &[f32], acc: &mut [[f32; NR]; 16]) {
    let k = b.len() / NR;
    if a.len() < k * rows {
        // Unreachable by construction (`small_m_with` sizes both); a
        // short A must not be read past its end.
        return;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F was detected at run time (`isa()`, or the tests
        // chose it only where detected); the lengths are checked above.
        Isa::Avx512 => unsafe {
            match rows {
                1 => block512::<1, 8>(k, a, b, acc),
                2 => block512::<2, 8>(k, a, b, acc),
                4 => block512::<4, 4>(k, a, b, acc),
                _ => block512::<8, 2>(k, a, b, acc),
            }
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 and FMA.
        Isa::Avx2 => unsafe {
            match rows {
                1 => block256::<1, 4>(k, a, b, acc),
                _ => block256::<2, 2>(k, a, b, acc),
            }
        },
        _ => match rows {
            1 => block_plain::<1>(a, b, acc),
            2 => block_plain::<2>(a, b, acc),
            _ => block_plain::<4>(a, b, acc),
        },
    }
}

/// The portable block: `R` rows of A (`[k][R]`) times one panel
/// (`[k][NR]`), plain multiply and add.
fn block_plain<const R: usize>(a: &[f32], b: &[f32], out: &mut [[f32; NR]; 16]) {
    let mut acc = [[0f32; NR]; R];
    for (av, bv) in a.chunks_exact(R).zip(b.chunks_exact(NR)) {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let x = av[r];
            for (v, &w) in acc_r.iter_mut().zip(bv) {
                *v += x * w;
            }
        }
    }
    out[..R].copy_from_slice(&acc);
}

/// Rows `R` of A (`[k][R]`) times one panel (`[k][NR]`) with AVX-512: one
/// register per row, `U` partial sums over interleaved steps of K.
///
/// # Safety
/// AVX-512F is available; `a.len() >= k * R` and `b.len() >= k * NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block512<const R: usize, const U: usize>(
    k: usize,
    a: &[f32],
    b: &[f32],
    out: &mut [[f32; NR]; 16],
) {
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); R]; U];
    let mut kk = 0;
    while kk + U <= k {
        for (u, acc_u) in acc.iter_mut().enumerate() {
            let bv = _mm512_loadu_ps(b.add((kk + u) * NR));
            for (r, v) in acc_u.iter_mut().enumerate() {
                *v = _mm512_fmadd_ps(_mm512_set1_ps(*a.add((kk + u) * R + r)), bv, *v);
            }
        }
        kk += U;
    }
    while kk < k {
        let bv = _mm512_loadu_ps(b.add(kk * NR));
        for (r, v) in acc[0].iter_mut().enumerate() {
            *v = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(kk * R + r)), bv, *v);
        }
        kk += 1;
    }
    for (r, o) in out.iter_mut().take(R).enumerate() {
        let mut v = acc[0][r];
        for acc_u in acc.iter().skip(1) {
            v = _mm512_add_ps(v, acc_u[r]);
        }
        _mm512_storeu_ps(o.as_mut_ptr(), v);
    }
}

/// [`block512`] with AVX2: two registers per row.
///
/// # Safety
/// AVX2 and FMA are available; `a.len() >= k * R` and `b.len() >= k * NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block256<const R: usize, const U: usize>(
    k: usize,
    a: &[f32],
    b: &[f32],
    out: &mut [[f32; NR]; 16],
) {
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[[_mm256_setzero_ps(); 2]; R]; U];
    let mut kk = 0;
    while kk + U <= k {
        for (u, acc_u) in acc.iter_mut().enumerate() {
            let b0 = _mm256_loadu_ps(b.add((kk + u) * NR));
            let b1 = _mm256_loadu_ps(b.add((kk + u) * NR + 8));
            for (r, v) in acc_u.iter_mut().enumerate() {
                let x = _mm256_set1_ps(*a.add((kk + u) * R + r));
                v[0] = _mm256_fmadd_ps(x, b0, v[0]);
                v[1] = _mm256_fmadd_ps(x, b1, v[1]);
            }
        }
        kk += U;
    }
    while kk < k {
        let b0 = _mm256_loadu_ps(b.add(kk * NR));
        let b1 = _mm256_loadu_ps(b.add(kk * NR + 8));
        for (r, v) in acc[0].iter_mut().enumerate() {
            let x = _mm256_set1_ps(*a.add(kk * R + r));
            v[0] = _mm256_fmadd_ps(x, b0, v[0]);
            v[1] = _mm256_fmadd_ps(x, b1, v[1]);
        }
        kk += 1;
    }
    for (r, o) in out.iter_mut().take(R).enumerate() {
        let mut v = acc[0][r];
        for acc_u in acc.iter().skip(1) {
            v[0] = _mm256_add_ps(v[0], acc_u[r][0]);
            v[1] = _mm256_add_ps(v[1], acc_u[r][1]);
        }
        _mm256_storeu_ps(o.as_mut_ptr(), v[0]);
        _mm256_storeu_ps(o.as_mut_ptr().add(8), v[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::util::testutil::rnd;

    /// f64 reference of `alpha * A op(B) + (c)`.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        a: &[f32],
        b: &[f32],
        c: Option<&[f32]>,
        m: usize,
        n: usize,
        k: usize,
        trans: bool,
        alpha: f32,
    ) -> Vec<f64> {
        let mut o = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    let bv = if trans { b[j * k + p] } else { b[p * n + j] };
                    s += a[i * k + p] as f64 * bv as f64;
                }
                o[i * n + j] = alpha as f64 * s + c.map_or(0.0, |c| c[i * n + j] as f64);
            }
        }
        o
    }

    /// Every instruction set, each row-block size and remainder, N not a
    /// multiple of 16, K = 1, both layouts of B, alpha, accumulation into
    /// dst, and a row stride wider than N; serial and split over threads.
    #[test]
    fn small_m_matches_f64_reference() {
        let shapes = [
            (1, 1, 1),
            (1, 10, 784),
            (1, 17, 1),
            (2, 33, 5),
            (3, 16, 64),
            (5, 512, 96),
            (7, 100, 31),
            (9, 47, 200),
            (16, 48, 128),
            (13, 1024, 2048),
            (33, 70, 129),
            (64, 256, 64),
        ];
        for isa in crate::kernels::util::testutil::isas() {
            for &(m, n, k) in &shapes {
                for trans in [false, true] {
                    for (alpha, accumulate) in [(1.0f32, false), (0.5, true)] {
                        let a = rnd(m * k, 1 + m as u64);
                        let b = rnd(k * n, 2 + n as u64);
                        let c = rnd(m * n, 3);
                        let pb = PackedB::pack(&b, k, n, trans).expect("pack");
                        assert!(pb.is(k, n, trans));
                        let rs = n + 3;
                        let mut d = vec![f32::NAN; m * rs];
                        if accumulate {
                            for i in 0..m {
                                d[i * rs..i * rs + n].copy_from_slice(&c[i * n..i * n + n]);
                            }
                        }
                        let want =
                            reference(&a, &b, accumulate.then_some(&c), m, n, k, trans, alpha);
                        let run = |d: &mut [f32]| {
                            // SAFETY: `d` is borrowed exclusively.
                            unsafe {
                                small_m_with(
                                    isa,
                                    m,
                                    SharedMut::new(d),
                                    0,
                                    rs,
                                    accumulate,
                                    Mat::new(&a, 0, k, 1),
                                    &pb,
                                    alpha,
                                    true,
                                )
                            }
                            .expect("small_m");
                        };
                        let mut d2 = d.clone();
                        crate::kernels::util::testutil::in_pool(|| run(&mut d));
                        crate::kernels::util::testutil::in_team(|| run(&mut d2));
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&d), bits(&d2), "team and pool split the panels alike");
                        for i in 0..m {
                            for j in 0..n {
                                let (got, w) = (d[i * rs + j] as f64, want[i * n + j]);
                                assert!(
                                    (got - w).abs() <= 1e-4 * (1.0 + w.abs()),
                                    "{isa:?} m={m} n={n} k={k} trans={trans} ({i},{j}): {got} vs {w}"
                                );
                            }
                            // The padding between rows is untouched.
                            assert!(d[i * rs + n..i * rs + rs].iter().all(|v| v.is_nan()));
                        }
                    }
                }
            }
        }
    }

    /// A strided (transposed) A, as Gemm's transA gives.
    #[test]
    fn small_m_strided_lhs() {
        let (m, n, k) = (3, 20, 9);
        let at = rnd(k * m, 4); // A^T stored [k, m]
        let b = rnd(k * n, 5);
        let mut a = vec![0f32; m * k];
        for i in 0..m {
            for p in 0..k {
                a[i * k + p] = at[p * m + i];
            }
        }
        let pb = PackedB::pack(&b, k, n, false).expect("pack");
        let mut d = vec![0f32; m * n];
        // SAFETY: `d` is borrowed exclusively.
        unsafe {
            small_m(
                m,
                SharedMut::new(&mut d),
                0,
                n,
                false,
                Mat::new(&at, 0, 1, m),
                &pb,
                1.0,
                false,
            )
        }
        .expect("small_m");
        let want = reference(&a, &b, None, m, n, k, false, 1.0);
        crate::kernels::util::testutil::close(&d, &want, 1e-5);
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(PackedB::pack(&[0.0; 5], 2, 3, false).is_err());
        let pb = PackedB::pack(&[0.0; 6], 2, 3, false).expect("pack");
        let mut d = vec![0f32; 2];
        // SAFETY: `d` is borrowed exclusively.
        let r = unsafe {
            small_m(
                1,
                SharedMut::new(&mut d),
                0,
                3,
                false,
                Mat::new(&[0.0; 2], 0, 2, 1),
                &pb,
                1.0,
                false,
            )
        };
        assert!(r.is_err());
    }
}
