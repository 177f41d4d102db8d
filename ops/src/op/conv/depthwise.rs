//! Depthwise 2-D convolution (group == C == M: one filter per channel), the
//! 3x3 layers of MobileNet and ShuffleNet.
//!
//! On AVX-512, stride-1 layers whose output rows are as long as the
//! input's go to `dwflat.rs`, which reads the input in place; the padded
//! scratch below serves the rest (strided layers) and the max pool.
//!
//! f32 ([`depthwise2d_f32`]): each input plane is first copied into a
//! zero-padded scratch whose columns are split into `stride` phases
//! (padded column `c` goes to phase `c % stride`, position `c / stride`),
//! so every tap of every output row is one contiguous read, with no
//! bounds or padding tests and no strided gather. The output is computed
//! in 16-lane chunks held in registers across all kh·kw taps, [`GROUP`]
//! chunks at a time (of one output row or several, so small maps keep
//! several FMA chains in flight too); bias, residual and activation are
//! applied before the chunk's one store. The scratch rows are padded to a
//! whole number of chunks, so reads never need a mask; lanes past the
//! row's end are computed on zeros and not stored. AVX-512F with masked
//! tail stores where detected, else a portable loop of the same shape,
//! compiled once more for AVX2+FMA where present.
//!
//! The loop it replaces (one pass over the output row per tap, then a
//! pass for the activation, compiled for SSE2) ran the 3x3 layer of the
//! MobileNetV2 block (192 channels, 56x56) in 957 µs at one thread; this
//! kernel in 250-268 µs, bound by memory (2.4 MB in and out, beyond L2).
//!
//! Other float types run [`depthwise2d`], the plain loop.
//!
//! The same planes, padded with -inf, serve 2-D MaxPool
//! ([`max_pool2d_f32`], called from `op/pool/kernel.rs`).

use super::dwflat::{Flat, Plane};
use super::geom::{Geom, Scratch};
use crate::kernels::util::{isa, par_for, threads, valid_range, Float, Isa, SharedMut, PAR_MIN};
use crate::op::Activation;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Lanes per chunk.
const L: usize = 16;

/// Chunks computed together: 8 chains of kh·kw dependent FMAs in flight
/// (4 left the FMA units half idle, waiting on each chain's latency).
const GROUP: usize = 8;

/// The fixed quantities of one depthwise layer, shared by its planes.
pub(super) struct Plan {
    ih: usize,
    iw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    /// Chunks per output row.
    pub(super) chunks: usize,
    sw: usize,
    ph: usize,
    /// Padded rows and the width of one phase row of the scratch.
    prows: usize,
    pwidth: usize,
    /// Scratch elements between output rows `y` and `y + 1`.
    rowstep: usize,
    /// Scratch offset of each tap `(ki, kj)` (row-major), from the start
    /// of an output row's window.
    pub(super) taps: Vec<usize>,
    /// The value of padded cells (0 for a conv, -inf for a max pool).
    pad: f32,
    /// Per column phase: the positions `lo..hi` of a phase row that hold
    /// input columns, and the input column at `lo` (the same for every
    /// row, so the fill does no division per row).
    phases: Vec<(usize, usize, usize)>,
}

impl Plan {
    pub(super) fn new(g: &Geom) -> Plan {
        let win = &g.win;
        let (ih, iw) = (g.spatial[0], g.spatial[1]);
        let (oh, ow) = (win.output[0], win.output[1]);
        let (kh, kw) = (win.kernel[0], win.kernel[1]);
        let (sh, sw) = (win.strides[0], win.strides[1]);
        let (dh, dw) = (win.dilations[0], win.dilations[1]);
        let chunks = ow.div_ceil(L);
        let pwidth = chunks * L + (kw - 1) * dw / sw;
        let prows = (oh - 1) * sh + (kh - 1) * dh + 1;
        let mut taps = Vec::with_capacity(kh * kw);
        for ki in 0..kh {
            for kj in 0..kw {
                let (phase, pos) = ((kj * dw) % sw, (kj * dw) / sw);
                taps.push((ki * dh * sw + phase) * pwidth + pos);
            }
        }
        let pw = win.pads_begin[1];
        let phases = (0..sw)
            .map(|p| {
                let koff = p as isize - pw as isize;
                let (lo, hi) = valid_range(koff, sw, pwidth, 0, iw as isize);
                (lo, hi, (koff + (lo * sw) as isize).max(0) as usize)
            })
            .collect();
        Plan {
            ih,
            iw,
            oh,
            ow,
            chunks,
            sw,
            ph: win.pads_begin[0],
            prows,
            pwidth,
            rowstep: sh * sw * pwidth,
            taps,
            pad: 0.0,
            phases,
        }
    }

    /// Whether a plane's scratch and output have the lengths the kernels
    /// index without checks (the furthest element a chunk reads, one
    /// output plane).
    pub(super) fn fits(&self, s: &[f32], dst: &[MaybeUninit<f32>]) -> bool {
        s.len() >= self.reach() && dst.len() == self.oh * self.ow
    }

    /// One past the furthest scratch element a chunk reads.
    pub(super) fn reach(&self) -> usize {
        let last_tap = self.taps.iter().copied().max().unwrap_or(0);
        (self.oh - 1) * self.rowstep + (self.chunks - 1) * L + last_tap + L
    }

    pub(super) fn scratch_len(&self) -> usize {
        self.prows * self.sw * self.pwidth
    }

    /// Copies one input plane into the padded, phase-split scratch.
    pub(super) fn fill(&self, src: &[f32], s: &mut [f32]) {
        self.fill_with(isa(), src, s)
    }

    /// [`Plan::fill`] on a given instruction set (the tests run each).
    pub(super) fn fill_with(&self, isa: Isa, src: &[f32], s: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 && s.len() >= self.scratch_len() && src.len() >= self.ih * self.iw {
            // SAFETY: AVX-512F was detected; the lengths are checked.
            return unsafe { self.fill_avx512(src, s) };
        }
        let (sw, pwidth, pad) = (self.sw, self.pwidth, self.pad);
        for (r, rows) in s.chunks_exact_mut(sw * pwidth).enumerate() {
            let iy = r as isize - self.ph as isize;
            if iy < 0 || iy >= self.ih as isize {
                rows.fill(pad);
                continue;
            }
            let irow = &src[iy as usize * self.iw..(iy as usize + 1) * self.iw];
            for (dst, &(lo, hi, start)) in rows.chunks_exact_mut(pwidth).zip(&self.phases) {
                dst[..lo].fill(pad);
                dst[hi..].fill(pad);
                if lo < hi {
                    gather(&mut dst[lo..hi], &irow[start..], sw);
                }
            }
        }
    }
}

impl Plan {
    /// [`Plan::fill`] on AVX-512F: pad cells and row copies in 16-lane
    /// stores, step-2 phases deinterleaved 32 floats at a time, with
    /// masks only on each row's last block. The portable fill (scalar pad
    /// stores, a `memmove` call per row, a gather per element) took 3-4
    /// µs per 56x56 plane, several times the plane's taps.
    ///
    /// # Safety
    /// AVX-512F is available; `s` holds [`Plan::scratch_len`] elements and
    /// `src` one input plane.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn fill_avx512(&self, src: &[f32], s: &mut [f32]) {
        let (sw, pwidth) = (self.sw, self.pwidth);
        let pad = _mm512_set1_ps(self.pad);
        let evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let tail = |n: usize| -> u16 { ((1u32 << (n % L)) - 1) as u16 };
        let sp = s.as_mut_ptr();
        for r in 0..self.prows {
            let iy = r as isize - self.ph as isize;
            let inside = iy >= 0 && iy < self.ih as isize;
            for (p, &(lo, hi, start)) in self.phases.iter().enumerate() {
                // SAFETY: row `r`, phase `p` is inside the scratch (its
                // length is checked by the caller).
                let d = unsafe { sp.add((r * sw + p) * pwidth) };
                // Pad cells: the whole row, then the input over it.
                let mut j = 0;
                while j + L <= pwidth {
                    // SAFETY: inside the row.
                    unsafe { _mm512_storeu_ps(d.add(j), pad) };
                    j += L;
                }
                if j < pwidth {
                    // SAFETY: the mask keeps the store inside the row.
                    unsafe { _mm512_mask_storeu_ps(d.add(j), tail(pwidth - j), pad) };
                }
                if !inside || lo >= hi {
                    continue;
                }
                // SAFETY: row `iy` of the plane, from column `start`:
                // `(hi - lo - 1) * sw + start < iw` (the phase ranges).
                let x = unsafe { src.as_ptr().add(iy as usize * self.iw + start) };
                let (n, d) = (hi - lo, unsafe { d.add(lo) });
                let mut j = 0;
                if sw == 1 {
                    while j + L <= n {
                        // SAFETY: `j + L <= n` on both sides.
                        unsafe { _mm512_storeu_ps(d.add(j), _mm512_loadu_ps(x.add(j))) };
                        j += L;
                    }
                    if j < n {
                        let m = tail(n - j);
                        // SAFETY: masked to the `n - j` remaining.
                        unsafe {
                            _mm512_mask_storeu_ps(d.add(j), m, _mm512_maskz_loadu_ps(m, x.add(j)))
                        };
                    }
                } else if sw == 2 {
                    // Input elements from x on: 2(n - 1) + 1.
                    let avail = 2 * n - 1;
                    while j + L <= n && 2 * j + 2 * L <= avail {
                        // SAFETY: 32 elements from 2j are inside.
                        unsafe {
                            let a = _mm512_loadu_ps(x.add(2 * j));
                            let b = _mm512_loadu_ps(x.add(2 * j + L));
                            _mm512_storeu_ps(d.add(j), _mm512_permutex2var_ps(a, evens, b));
                        }
                        j += L;
                    }
                    while j < n {
                        let k = (n - j).min(L);
                        let left = avail - 2 * j;
                        let m = |c: usize| -> u16 {
                            if c >= L {
                                u16::MAX
                            } else {
                                ((1u32 << c) - 1) as u16
                            }
                        };
                        // SAFETY: the masks keep the loads inside the
                        // `left` elements and the store inside `k`.
                        unsafe {
                            let a = _mm512_maskz_loadu_ps(m(left), x.add(2 * j));
                            let b = _mm512_maskz_loadu_ps(
                                m(left.saturating_sub(L)),
                                x.wrapping_add(2 * j + L),
                            );
                            let v = _mm512_permutex2var_ps(a, evens, b);
                            _mm512_mask_storeu_ps(d.add(j), m(k), v);
                        }
                        j += k;
                    }
                } else {
                    for j in 0..n {
                        // SAFETY: as above.
                        unsafe { *d.add(j) = *x.add(j * sw) };
                    }
                }
            }
        }
    }
}

/// `dst[j] = src[j * step]` for every `j` of `dst` (`src` reaches that
/// far): the portable fill's row copy.
fn gather(dst: &mut [f32], src: &[f32], step: usize) {
    if step == 1 {
        dst.copy_from_slice(&src[..dst.len()]);
    } else {
        for (d, &x) in dst.iter_mut().zip(src.iter().step_by(step)) {
            *d = x;
        }
    }
}

/// What one plane's output is made of besides its taps.
#[derive(Clone, Copy)]
struct Epi<'a> {
    bias: f32,
    res: Option<&'a [f32]>,
    act: Activation,
}

/// f32 depthwise 2-D convolution with fused bias, residual (`res`, the
/// output's shape) and activation: the output `[N, C, oh, ow]`. Planes go
/// to the current pool's threads when there is enough work.
///
/// Stride-1 layers with rows as long as the input's take `dwflat.rs`'s
/// in-place kernel on AVX-512, with `flat` (the plan made at session
/// build) when it was made for this geometry.
pub(super) fn depthwise2d_f32(
    g: &Geom,
    flat: Option<&Flat>,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    depthwise2d_f32_with(isa(), g, flat, x, w, b, res, act)
}

/// [`depthwise2d_f32`] on a given instruction set (the tests run each).
#[allow(clippy::too_many_arguments)]
pub(super) fn depthwise2d_f32_with(
    isa: Isa,
    g: &Geom,
    flat: Option<&Flat>,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        let made;
        let flat = match flat.filter(|f| f.is_for(g)) {
            Some(f) => Some(f),
            None => {
                made = Flat::new(g);
                made.as_ref()
            }
        };
        if let Some(f) = flat {
            let (osz, isz, ksz) = f.sizes();
            let plane = |i: usize, _: &mut [f32], dst: &mut [MaybeUninit<f32>]| {
                let ch = i % g.c;
                let p = Plane {
                    x: &x[i * isz..(i + 1) * isz],
                    w: &w[ch * ksz..(ch + 1) * ksz],
                    bias: b.map_or(0.0, |b| b[ch]),
                    res: res.map(|r| &r[i * osz..(i + 1) * osz]),
                    act,
                };
                // SAFETY: AVX-512F was detected (`isa()`, or the tests
                // chose it only where detected).
                unsafe { f.plane512(&p, dst) };
            };
            // SAFETY: `plane512` stores every chunk of the plane, the last
            // one masked to its end: every element of `dst`.
            return unsafe { planes_out(osz, 0, ksz, g.n * g.c, plane) };
        }
    }
    let plan = Plan::new(g);
    let (isz, osz, ksz) = (plan.ih * plan.iw, plan.oh * plan.ow, plan.taps.len());
    let plane = |i: usize, s: &mut [f32], dst: &mut [MaybeUninit<f32>]| {
        let ch = i % g.c;
        plan.fill_with(isa, &x[i * isz..(i + 1) * isz], s);
        let epi = Epi {
            bias: b.map_or(0.0, |b| b[ch]),
            res: res.map(|r| &r[i * osz..(i + 1) * osz]),
            act,
        };
        run_plane(isa, &plan, s, &w[ch * ksz..(ch + 1) * ksz], epi, dst);
    };
    // SAFETY: `run_plane` stores each output row's chunks, the last one
    // masked to the row's end: every element of `dst`.
    unsafe { planes_out(osz, plan.scratch_len(), ksz, g.n * g.c, plane) }
}

/// A new output of `planes` planes of `osz` elements, each written by
/// `plane(i, scratch, dst)` with a scratch of `scratch` elements; on the
/// pool's threads when there is enough work (`taps` per output element).
///
/// # Safety
/// `plane` writes every element of its `dst` (the output is returned
/// without a zero fill).
unsafe fn planes_out(
    osz: usize,
    scratch: usize,
    taps: usize,
    planes: usize,
    plane: impl Fn(usize, &mut [f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let total = planes * osz;
    // The output is written once, by the planes' stores: no zero fill
    // first (a pass over a MobileNet layer's 2.4 MB output).
    let mut o: Vec<f32> = crate::pool::take(total);
    if total == 0 {
        return o;
    }
    let run = |i: usize, dst: &mut [MaybeUninit<f32>], s: &mut Vec<f32>| {
        s.resize(scratch, 0.0);
        plane(i, s, dst);
    };
    let spare = &mut o.spare_capacity_mut()[..total];
    if threads() > 1 && total * taps >= PAR_MIN && planes > 1 {
        let shared = SharedMut::new(spare);
        par_for(planes, 1, &|is| {
            let mut s = Scratch(crate::pool::take(scratch));
            for i in is {
                // SAFETY: plane `i` owns its `osz` elements.
                let dst = unsafe { shared.slice(i * osz, osz) };
                run(i, dst, &mut s.0);
            }
        });
    } else {
        let mut s = Scratch(crate::pool::take(scratch));
        for (i, dst) in spare.chunks_mut(osz).enumerate() {
            run(i, dst, &mut s.0);
        }
    }
    // SAFETY: every plane wrote all `osz` of its elements (the caller's
    // guarantee).
    unsafe { o.set_len(total) };
    o
}

/// One plane on `isa`: `s` is the filled scratch, `w` the plane's kh·kw
/// taps, `dst` its `oh × ow` output.
fn run_plane(isa: Isa, p: &Plan, s: &[f32], w: &[f32], epi: Epi<'_>, dst: &mut [MaybeUninit<f32>]) {
    let osz = p.oh * p.ow;
    if !p.fits(s, dst) || w.len() != p.taps.len() || epi.res.is_some_and(|r| r.len() != osz) {
        // Unreachable by construction (`Plan` sizes the scratch, the
        // caller the rest); the output would stay unwritten.
        panic!("internal: depthwise plane buffers mis-sized");
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F was detected at run time (`isa()`, or the tests
        // chose it only where detected); the lengths are checked above.
        Isa::Avx512 => unsafe { plane_avx512(p, s, w, epi, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected at run time.
        Isa::Avx2 => unsafe { plane_avx2(p, s, w, epi, dst) },
        _ => plane_portable(p, s, w, epi, dst),
    }
}

/// The portable plane: one chunk at a time in a `[f32; L]`.
#[inline(always)]
fn plane_portable(p: &Plan, s: &[f32], w: &[f32], epi: Epi<'_>, dst: &mut [MaybeUninit<f32>]) {
    for y in 0..p.oh {
        for c in 0..p.chunks {
            let base = y * p.rowstep + c * L;
            let mut acc = [epi.bias; L];
            for (&off, &wv) in p.taps.iter().zip(w) {
                let src = &s[base + off..base + off + L];
                for (a, &v) in acc.iter_mut().zip(src) {
                    *a += wv * v;
                }
            }
            let x0 = c * L;
            let n = L.min(p.ow - x0);
            let o = y * p.ow + x0;
            if let Some(r) = epi.res {
                for (a, &v) in acc.iter_mut().zip(&r[o..o + n]) {
                    *a += v;
                }
            }
            let out = &mut dst[o..o + n];
            for (d, &a) in out.iter_mut().zip(&acc) {
                d.write(super::act::scalar(epi.act, a));
            }
        }
    }
}

/// [`plane_portable`] compiled for AVX2 and FMA.
///
/// # Safety
/// AVX2 and FMA are available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(p: &Plan, s: &[f32], w: &[f32], epi: Epi<'_>, dst: &mut [MaybeUninit<f32>]) {
    plane_portable(p, s, w, epi, dst)
}

/// The AVX-512 plane: [`GROUP`] chunks at a time in registers.
///
/// # Safety
/// AVX-512F is available; `s`, `w`, `dst` and the residual have the
/// lengths [`run_plane`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512(p: &Plan, s: &[f32], w: &[f32], epi: Epi<'_>, dst: &mut [MaybeUninit<f32>]) {
    let items = p.oh * p.chunks;
    let mut it = 0;
    while it + GROUP <= items {
        // SAFETY: the caller's guarantee.
        unsafe { group512::<GROUP>(p, s, w, epi, dst, it) };
        it += GROUP;
    }
    while it < items {
        // SAFETY: as above.
        unsafe { group512::<1>(p, s, w, epi, dst, it) };
        it += 1;
    }
}

/// Chunks `it .. it + G` (row-major over output rows and chunks).
///
/// # Safety
/// As for [`plane_avx512`]; `it + G` is at most the number of chunks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn group512<const G: usize>(
    p: &Plan,
    s: &[f32],
    w: &[f32],
    epi: Epi<'_>,
    dst: &mut [MaybeUninit<f32>],
    it: usize,
) {
    // SAFETY: the caller's guarantee.
    let (src, out) = unsafe { chunks::<G>(p, s, it) };
    let mut acc = [_mm512_set1_ps(epi.bias); G];
    for (&off, &wv) in p.taps.iter().zip(w) {
        let wv = _mm512_set1_ps(wv);
        for (a, &sp) in acc.iter_mut().zip(&src) {
            // SAFETY: the chunk's start + off + L <= the furthest
            // element, checked.
            *a = _mm512_fmadd_ps(wv, unsafe { _mm512_loadu_ps(sp.add(off)) }, *a);
        }
    }
    let dp = dst.as_mut_ptr() as *mut f32;
    for (a, &(o, mask)) in acc.iter_mut().zip(&out) {
        if let Some(r) = epi.res {
            // SAFETY: the masked lanes are inside the plane's residual.
            *a = _mm512_add_ps(*a, unsafe {
                _mm512_maskz_loadu_ps(mask, r.as_ptr().add(o))
            });
        }
        let v = super::act::lanes512(epi.act, *a);
        // SAFETY: the masked lanes are inside the plane's output.
        unsafe { _mm512_mask_storeu_ps(dp.add(o), mask, v) };
    }
}

/// For chunks `it .. it + G`: where each reads the scratch `s` from, and
/// where its output starts with the mask of its lanes inside the row.
///
/// # Safety
/// `s` fits the plan ([`Plan::fits`]); `it + G` is at most the number of
/// chunks.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn chunks<const G: usize>(
    p: &Plan,
    s: &[f32],
    it: usize,
) -> ([*const f32; G], [(usize, u16); G]) {
    let mut src = [s.as_ptr(); G];
    let mut out = [(0usize, 0u16); G];
    // One division for the group; the chunks after it step along.
    let (mut y, mut c) = (it / p.chunks, it % p.chunks);
    for (sp, o) in src.iter_mut().zip(out.iter_mut()) {
        // SAFETY: inside the scratch (the caller's guarantee).
        *sp = unsafe { sp.add(y * p.rowstep + c * L) };
        let n = L.min(p.ow - c * L);
        *o = (
            y * p.ow + c * L,
            if n == L { u16::MAX } else { (1u16 << n) - 1 },
        );
        c += 1;
        if c == p.chunks {
            (y, c) = (y + 1, 0);
        }
    }
    (src, out)
}

/// 2-D MaxPool of f32 planes (`x` is `[n, c, h, w]`, `spatial` = `[h, w]`)
/// over `win`, through the padded, phase-split planes of the depthwise
/// kernel with -inf as padding (a window with no input cell gives -inf, as
/// the generic kernel of `op/pool/kernel.rs` does): `None` without
/// AVX-512F. NaN wins, as there. The generic kernel reduced each window
/// with scalar selects and strided reads: SqueezeNet's three 3x3/2 pools
/// took 1.3 ms, a quarter of its run.
pub(crate) fn max_pool2d_f32(
    n: usize,
    c: usize,
    spatial: &[usize],
    win: &crate::op::Window,
    x: &[f32],
) -> Option<Vec<f32>> {
    if isa() != Isa::Avx512 || spatial.len() != 2 || win.output.contains(&0) || spatial.contains(&0)
    {
        return None;
    }
    let g = Geom {
        n,
        c,
        m: c,
        group: c,
        spatial: spatial.to_vec(),
        win: win.clone(),
    };
    let mut plan = Plan::new(&g);
    plan.pad = f32::NEG_INFINITY;
    let isz = plan.ih * plan.iw;
    if x.len() != n * c * isz {
        return None;
    }
    let plane = |i: usize, s: &mut [f32], dst: &mut [MaybeUninit<f32>]| {
        plan.fill(&x[i * isz..(i + 1) * isz], s);
        if !plan.fits(s, dst) {
            // Unreachable by construction (`Plan` sizes both).
            panic!("internal: max-pool plane buffers mis-sized");
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F was detected; the lengths are checked above.
        unsafe {
            max_plane512(&plan, s, dst)
        };
    };
    // SAFETY: `max_plane512` stores each output row's chunks, the last one
    // masked to the row's end: every element of `dst`.
    let osz = plan.oh * plan.ow;
    Some(unsafe { planes_out(osz, plan.scratch_len(), plan.taps.len(), n * c, plane) })
}

/// One max-pool plane with AVX-512: [`GROUP`] chunks at a time.
///
/// # Safety
/// AVX-512F is available; `s` and `dst` fit the plan ([`Plan::fits`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_plane512(p: &Plan, s: &[f32], dst: &mut [MaybeUninit<f32>]) {
    let items = p.oh * p.chunks;
    let mut it = 0;
    while it + GROUP <= items {
        // SAFETY: the caller's guarantee.
        unsafe { max_group512::<GROUP>(p, s, dst, it) };
        it += GROUP;
    }
    while it < items {
        // SAFETY: as above.
        unsafe { max_group512::<1>(p, s, dst, it) };
        it += 1;
    }
}

/// Max-pool chunks `it .. it + G`: the max over the taps, NaN where any
/// tap is NaN.
///
/// # Safety
/// As for [`max_plane512`]; `it + G` is at most the number of chunks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn max_group512<const G: usize>(
    p: &Plan,
    s: &[f32],
    dst: &mut [MaybeUninit<f32>],
    it: usize,
) {
    // SAFETY: the caller's guarantee.
    let (src, out) = unsafe { chunks::<G>(p, s, it) };
    let mut acc = [_mm512_set1_ps(f32::NEG_INFINITY); G];
    let mut nan = [0u16; G];
    for &off in &p.taps {
        for ((a, m), &sp) in acc.iter_mut().zip(nan.iter_mut()).zip(&src) {
            // SAFETY: the chunk's start + off + L <= the furthest
            // element, checked.
            let v = unsafe { _mm512_loadu_ps(sp.add(off)) };
            *m |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            *a = _mm512_max_ps(*a, v);
        }
    }
    let dp = dst.as_mut_ptr() as *mut f32;
    for ((a, m), &(o, mask)) in acc.iter().zip(&nan).zip(&out) {
        let v = _mm512_mask_mov_ps(*a, *m, _mm512_set1_ps(f32::NAN));
        // SAFETY: the masked lanes are inside the plane's output.
        unsafe { _mm512_mask_storeu_ps(dp.add(o), mask, v) };
    }
}

/// Depthwise 2-D convolution for any float type, parallel over planes: a
/// direct loop, one pass over each output row per tap. The caller adds
/// the residual and the activation.
pub(super) fn depthwise2d<F: Float>(g: &Geom, x: &[F], w: &[F], b: Option<&[F]>, o: &mut [F]) {
    let win = &g.win;
    let (ih, iw) = (g.spatial[0], g.spatial[1]);
    let (oh, ow) = (win.output[0], win.output[1]);
    let (kh, kw) = (win.kernel[0], win.kernel[1]);
    let (sh, sw) = (win.strides[0], win.strides[1]);
    let (dh, dw) = (win.dilations[0], win.dilations[1]);
    let (ph, pw) = (win.pads_begin[0] as isize, win.pads_begin[1] as isize);
    let work = g.n * g.c * oh * ow * kh * kw;
    // Valid output columns and first input column for each kernel column.
    let cols: Vec<(usize, usize, usize)> = (0..kw)
        .map(|kj| {
            let koff = (kj * dw) as isize - pw;
            let (lo, hi) = valid_range(koff, sw, ow, 0, iw as isize);
            (lo, hi, (koff + (lo * sw) as isize).max(0) as usize)
        })
        .collect();
    crate::kernels::util::par_chunks(o, oh * ow, work, |plane_i, dst| {
        let ch = plane_i % g.c;
        let src = &x[plane_i * ih * iw..(plane_i + 1) * ih * iw];
        let kern = &w[ch * kh * kw..(ch + 1) * kh * kw];
        dst.fill(b.map_or(F::ZERO, |b| b[ch]));
        for y in 0..oh {
            let orow = &mut dst[y * ow..(y + 1) * ow];
            for ki in 0..kh {
                let iy = (y * sh + ki * dh) as isize - ph;
                if iy < 0 || iy >= ih as isize {
                    continue;
                }
                let irow = &src[iy as usize * iw..(iy as usize + 1) * iw];
                for (kj, &(lo, hi, start)) in cols.iter().enumerate() {
                    let wv = kern[ki * kw + kj];
                    if lo >= hi {
                        continue;
                    }
                    if sw == 1 {
                        for (v, &xv) in orow[lo..hi].iter_mut().zip(&irow[start..start + hi - lo]) {
                            *v += wv * xv;
                        }
                    } else {
                        for (v, &xv) in orow[lo..hi]
                            .iter_mut()
                            .zip(irow[start..].iter().step_by(sw))
                        {
                            *v += wv * xv;
                        }
                    }
                }
            }
        }
    });
}
