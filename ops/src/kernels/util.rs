//! Shared kernel plumbing: input fetching with clear errors, the
//! strided/broadcast index walker (shape arithmetic itself is in
//! [`crate::shape`]), numeric traits and dtype dispatch.

pub(crate) use super::par::{
    par_chunks, par_for, par_map, par_map2, par_map_slices, par_split, par_try_for, threads,
    SharedMut, PAR_MIN,
};
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::shape::{bcast_strides, numel};
use crate::tensor::{Storable, Tensor};

/// The x86 vector instruction sets the hand-written kernels (the small-M
/// product, the conv kernels) are compiled for, chosen at run time.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Plain,
}

/// A kernel path's switch, read once into `cell`: on unless the
/// environment variable `var` is `0` (`HETFLOW_WINOGRAD=0` and the like,
/// for comparing a path against the one it replaced on one binary).
pub(crate) fn env_switch(cell: &std::sync::OnceLock<bool>, var: &str) -> bool {
    *cell.get_or_init(|| std::env::var(var).map_or(true, |v| v != "0"))
}

/// The lanes `l` of a 16-lane access at offset `o` of a run of `n`
/// values that fall inside the run (`0 <= o + l < n`): the mask of a
/// masked load that starts before the run or reaches past its end.
#[inline(always)]
pub(crate) fn inside16(o: isize, n: usize) -> u16 {
    let lo = (-o).clamp(0, 16) as u32;
    let hi = (n as isize - o).clamp(0, 16) as u32;
    let upto = |k: u32| ((1u32 << k) - 1) as u16;
    upto(hi) & !upto(lo)
}

/// The best [`Isa`] this CPU runs (`is_x86_feature_detected!`, cached by
/// std).
pub(crate) fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Plain
}

/// Input `i` (named `name` in messages), which must be present.
pub(crate) fn input<'a>(inputs: &[Option<&'a Tensor>], i: usize, name: &str) -> Result<&'a Tensor> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| Error::msg(format!("input {i} ({name}) is missing")))
}

/// Optional input `i`.
pub(crate) fn opt_input<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}

/// The elements of `t` as `T`, with a message naming the input.
pub(crate) fn typed<'a, T: Storable>(t: &'a Tensor, what: &str) -> Result<&'a [T]> {
    T::slice(t.data())
        .ok_or_else(|| Error::msg(format!("{what}: expected {}, got {}", T::DTYPE, t.dtype())))
}

/// Builds an output tensor from a typed vector.
pub(crate) fn out<T: Storable>(shape: Vec<usize>, v: Vec<T>) -> Result<Tensor> {
    Tensor::from_vec(shape, v)
}

/// Converts a shape-like i64 to a dim, rejecting negatives.
pub(crate) fn to_dim(v: i64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::msg(format!("{what}: negative dimension {v}")))
}

/// The indices `i` in `0..count` with `lo <= base + i*step < hi`, as a
/// half-open range (`step > 0`).
pub(crate) fn valid_range(
    base: isize,
    step: usize,
    count: usize,
    lo: isize,
    hi: isize,
) -> (usize, usize) {
    let s = step as isize;
    let first = if base >= lo {
        0
    } else {
        (lo - base + s - 1) / s
    };
    let end = if hi <= base {
        0
    } else {
        (hi - base + s - 1) / s
    };
    let end = (end.max(0) as usize).min(count);
    let first = (first.max(0) as usize).min(end);
    (first, end)
}

/// A row-major walk over a shape, tracking for each of `K` operands its
/// element offset. Dims are coalesced where every operand allows it, so the
/// callback sees long inner runs: `f(out_start, offsets, inner_len,
/// inner_strides)`.
pub(crate) struct Walk<const K: usize> {
    dims: Vec<usize>,
    strides: [Vec<isize>; K],
    inner: usize,
    inner_strides: [isize; K],
    rows: usize,
}

impl<const K: usize> Walk<K> {
    /// Plans the walk over `shape`, where operand `k` moves by
    /// `strides[k][d]` along dim `d`.
    pub(crate) fn new(shape: &[usize], strides: [&[isize]; K]) -> Walk<K> {
        // Drop size-1 dims, then merge neighbours that are contiguous for all.
        let mut dims: Vec<usize> = Vec::new();
        let mut st: [Vec<isize>; K] = std::array::from_fn(|_| Vec::new());
        for (d, &n) in shape.iter().enumerate() {
            if n == 1 {
                continue;
            }
            let mergeable = !dims.is_empty()
                && (0..K).all(|k| st[k][st[k].len() - 1] == strides[k][d] * n as isize);
            if mergeable {
                let last = dims.len() - 1;
                dims[last] *= n;
                for k in 0..K {
                    let l = st[k].len() - 1;
                    st[k][l] = strides[k][d];
                }
            } else {
                dims.push(n);
                for k in 0..K {
                    st[k].push(strides[k][d]);
                }
            }
        }
        let empty = shape.contains(&0);
        let inner = if empty { 0 } else { dims.pop().unwrap_or(1) };
        let inner_strides = std::array::from_fn(|k| st[k].pop().unwrap_or(0));
        let rows = if empty { 0 } else { numel(&dims) };
        Walk {
            dims,
            strides: st,
            inner,
            inner_strides,
            rows,
        }
    }

    /// Number of inner runs.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Visits rows `lo..hi`; offsets start at `bases`.
    pub(crate) fn run(
        &self,
        bases: [isize; K],
        lo: usize,
        hi: usize,
        mut f: impl FnMut(usize, [isize; K], usize, [isize; K]),
    ) {
        if lo >= hi || self.inner == 0 {
            return;
        }
        let nd = self.dims.len();
        let mut idx = vec![0usize; nd];
        let mut offs = bases;
        let mut r = lo;
        for d in (0..nd).rev() {
            idx[d] = r % self.dims[d];
            r /= self.dims[d];
            for (o, st) in offs.iter_mut().zip(&self.strides) {
                *o += idx[d] as isize * st[d];
            }
        }
        for row in lo..hi {
            f(row * self.inner, offs, self.inner, self.inner_strides);
            // Increment the multi-index.
            let mut d = nd;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                for (o, st) in offs.iter_mut().zip(&self.strides) {
                    *o += st[d];
                }
                if idx[d] < self.dims[d] {
                    break;
                }
                for (o, st) in offs.iter_mut().zip(&self.strides) {
                    *o -= st[d] * self.dims[d] as isize;
                }
                idx[d] = 0;
            }
        }
    }

    /// Fills `out` (row-major over the walked shape), in parallel when large:
    /// `f(chunk, offsets, inner_strides)` writes one inner run.
    pub(crate) fn fill<O: Send>(
        &self,
        out: &mut [O],
        bases: [isize; K],
        f: impl Fn(&mut [O], [isize; K], [isize; K]) + Sync,
    ) {
        let inner = self.inner;
        if inner == 0 || self.rows == 0 {
            return;
        }
        let total = self.rows * inner;
        let out = &mut out[..total];
        if total >= PAR_MIN && threads() > 1 {
            let rows_per = (PAR_MIN / 4 / inner).max(1);
            let shared = SharedMut::new(out);
            par_for(self.rows, rows_per, &|rows| {
                let lo = rows.start;
                // SAFETY: `par_for`'s pieces are disjoint row ranges, so
                // their runs of `out` are disjoint.
                let chunk = unsafe { shared.slice(lo * inner, rows.len() * inner) };
                self.run(bases, lo, rows.end, |o, offs, n, st| {
                    let s = o - lo * inner;
                    f(&mut chunk[s..s + n], offs, st)
                });
            });
        } else {
            self.run(bases, 0, self.rows, |o, offs, n, st| {
                f(&mut out[o..o + n], offs, st)
            });
        }
    }
}

/// Gathers `src` viewed through `strides` (from `base`) over `shape` into a
/// new contiguous vector. Works for every element type.
pub(crate) fn gather_strided<T: Copy + Send + Sync + Default + crate::pool::Poolable>(
    src: &[T],
    shape: &[usize],
    base: isize,
    strides: &[isize],
) -> Vec<T> {
    let n = numel(shape);
    let mut o = crate::pool::stale(n, T::default());
    let w = Walk::new(shape, [strides]);
    w.fill(&mut o, [base], |chunk, [off], [s]| {
        if s == 1 {
            let b = off as usize;
            chunk.copy_from_slice(&src[b..b + chunk.len()]);
        } else {
            for (j, c) in chunk.iter_mut().enumerate() {
                *c = src[(off + j as isize * s) as usize];
            }
        }
    });
    o
}

/// Broadcasts `t` to `shape` (which must be a broadcast of `t`'s shape).
pub(crate) fn expand_to(t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let b = crate::shape::broadcast_shapes(t.shape(), shape)?;
    if b != shape {
        crate::bail!("cannot broadcast {:?} to {:?}", t.shape(), shape);
    }
    if t.shape() == shape {
        return Ok(t.clone());
    }
    let st = bcast_strides(t.shape(), shape);
    let data = crate::dispatch_data!(t.data(), v, T => <T as Storable>::wrap(gather_strided(v, shape, 0, &st)));
    Tensor::new(shape.to_vec(), data)
}

/// Arithmetic over the numeric element types (not bool, not f16/bf16, which
/// the dispatcher widens to f32). Integer ops wrap; division by zero gives 0.
pub(crate) trait Arith: Element + Storable {
    const ZERO: Self;
    const ONE: Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// Remainder with the sign of the dividend (C `fmod`); integer
    /// remainder by zero gives 0.
    fn rem(self, o: Self) -> Self;
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    /// Lowest value (-inf for floats).
    fn lowest() -> Self;
    /// Highest value (+inf for floats).
    fn highest() -> Self;
}

macro_rules! arith_int {
    ($abs:expr; $($t:ty),*) => {$(
        impl Arith for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            #[inline] fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline] fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            #[inline] fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline] fn div(self, o: Self) -> Self { self.checked_div(o).unwrap_or(0) }
            #[inline] fn rem(self, o: Self) -> Self { self.checked_rem(o).unwrap_or(0) }
            #[inline] fn neg(self) -> Self { self.wrapping_neg() }
            #[inline] fn abs(self) -> Self { let f: fn($t) -> $t = $abs; f(self) }
            fn lowest() -> Self { <$t>::MIN }
            fn highest() -> Self { <$t>::MAX }
        }
    )*};
}
arith_int!(|v| v.wrapping_abs(); i8, i16, i32, i64);
arith_int!(|v| v; u8, u16, u32, u64);

macro_rules! arith_float {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline] fn add(self, o: Self) -> Self { self + o }
            #[inline] fn sub(self, o: Self) -> Self { self - o }
            #[inline] fn mul(self, o: Self) -> Self { self * o }
            #[inline] fn div(self, o: Self) -> Self { self / o }
            #[inline] fn rem(self, o: Self) -> Self { self % o }
            #[inline] fn neg(self) -> Self { -self }
            #[inline] fn abs(self) -> Self { <$t>::abs(self) }
            fn lowest() -> Self { <$t>::NEG_INFINITY }
            fn highest() -> Self { <$t>::INFINITY }
        }
    )*};
}
arith_float!(f32, f64);

/// Float math for f32 and f64 (the types the `gemm` crate takes too).
pub(crate) trait Float:
    Arith
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::AddAssign
    + std::ops::Neg<Output = Self>
{
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn erf(self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    fn max(self, o: Self) -> Self;
    fn c(v: f64) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tan(self) -> Self;
    fn asin(self) -> Self;
    fn acos(self) -> Self;
    fn atan(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn asinh(self) -> Self;
    fn acosh(self) -> Self;
    fn atanh(self) -> Self;
    /// Round half to even.
    fn round_even(self) -> Self;
    /// `ln(1 + self)`, accurate near 0.
    fn ln_1p(self) -> Self;
}

macro_rules! float_impl {
    ($t:ty, $erf:path) => {
        impl Float for $t {
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline]
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            #[inline]
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            #[inline]
            fn max(self, o: Self) -> Self {
                <$t>::max(self, o)
            }
            #[inline]
            fn c(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline]
            fn tan(self) -> Self {
                <$t>::tan(self)
            }
            #[inline]
            fn asin(self) -> Self {
                <$t>::asin(self)
            }
            #[inline]
            fn acos(self) -> Self {
                <$t>::acos(self)
            }
            #[inline]
            fn atan(self) -> Self {
                <$t>::atan(self)
            }
            #[inline]
            fn sinh(self) -> Self {
                <$t>::sinh(self)
            }
            #[inline]
            fn cosh(self) -> Self {
                <$t>::cosh(self)
            }
            #[inline]
            fn asinh(self) -> Self {
                <$t>::asinh(self)
            }
            #[inline]
            fn acosh(self) -> Self {
                <$t>::acosh(self)
            }
            #[inline]
            fn atanh(self) -> Self {
                <$t>::atanh(self)
            }
            #[inline]
            fn round_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
            #[inline]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
        }
    };
}
float_impl!(f32, libm::erff);
float_impl!(f64, libm::erf);

/// Runs `$body` with `$T` bound to the element type of `$dt` for the types
/// with [`Arith`]; other dtypes are an error naming `$what`.
macro_rules! arith_dispatch {
    ($dt:expr, $what:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DType::U16 => {
                type $T = u16;
                $body
            }
            $crate::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DType::U64 => {
                type $T = u64;
                $body
            }
            other => $crate::bail!("{} does not support {} tensors", $what, other),
        }
    };
}

/// Runs `$body` with `$F` bound to f32 or f64; other dtypes are an error.
macro_rules! float_dispatch {
    ($dt:expr, $what:expr, $F:ident => $body:expr) => {
        match $dt {
            $crate::DType::F32 => {
                type $F = f32;
                $body
            }
            $crate::DType::F64 => {
                type $F = f64;
                $body
            }
            other => $crate::bail!("{} needs a float tensor, got {}", $what, other),
        }
    };
}

/// Runs `$body` with `$T` bound to the element type of `$dt` for the
/// integer types; other dtypes are an error naming `$what`.
macro_rules! int_dispatch {
    ($dt:expr, $what:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DType::U16 => {
                type $T = u16;
                $body
            }
            $crate::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DType::U64 => {
                type $T = u64;
                $body
            }
            other => $crate::bail!("{} does not support {} tensors", $what, other),
        }
    };
}

pub(crate) use arith_dispatch;
pub(crate) use float_dispatch;
pub(crate) use int_dispatch;

#[cfg(test)]
pub(crate) mod testutil {
    /// Runs `f` inside a 2-thread rayon pool, so kernels take their
    /// parallel paths (outside a pool they run serially).
    pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool")
            .install(f)
    }
    /// Runs `f` with a two-thread [`crate::kernels::team::Team`] current,
    /// as the CPU device runs its kernels.
    pub fn in_team<R>(f: impl FnOnce() -> R) -> R {
        crate::kernels::team::Team::new(2, |i| format!("test-team-{i}"), |_| {})
            .expect("team")
            .run(f)
    }
    use crate::tensor::{Storable, Tensor};

    /// Every [`crate::kernels::util::Isa`] this CPU runs, the portable one first.
    pub fn isas() -> Vec<crate::kernels::util::Isa> {
        let mut v = vec![crate::kernels::util::Isa::Plain];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(crate::kernels::util::Isa::Avx2);
            }
            if is_x86_feature_detected!("avx512f") {
                v.push(crate::kernels::util::Isa::Avx512);
            }
        }
        v
    }

    pub fn t<T: Storable>(shape: &[usize], v: Vec<T>) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v).expect("test tensor")
    }

    pub fn close(a: &[f32], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len(), "length");
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x as f64 - y).abs() <= tol * (1.0 + y.abs()),
                "at {i}: {x} vs {y}"
            );
        }
    }

    /// Deterministic pseudo-random values in [-1, 1).
    pub fn rnd(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_coalesces_and_offsets() {
        // Transposed read of a 2x3 matrix.
        let src = [0, 1, 2, 3, 4, 5];
        let v = gather_strided(&src, &[3, 2], 0, &[1, 3]);
        assert_eq!(v, vec![0, 3, 1, 4, 2, 5]);
        // Negative stride.
        let v = gather_strided(&src, &[2, 3], 5, &[-3, -1]);
        assert_eq!(v, vec![5, 4, 3, 2, 1, 0]);
    }

    #[test]
    fn missing_input_message() {
        let e = input(&[None], 0, "A").unwrap_err().to_string();
        assert_eq!(e, "input 0 (A) is missing");
        let t = Tensor::scalar(1i64);
        let e = typed::<f32>(&t, "input 1 (B)").unwrap_err().to_string();
        assert_eq!(e, "input 1 (B): expected f32, got i64");
    }
}

/// One output tensor as a kernel's result list.
pub(crate) fn one(t: Result<Tensor>) -> Result<Vec<Tensor>> {
    t.map(|t| vec![t])
}
