//! The shapes of one convolution ([`Geom`]) and the im2col copy that
//! turns a conv into matrix products, shared by the generic kernel
//! (`kernel.rs`) and the f32 kernels (`depthwise.rs`, `blocked.rs`'s
//! driver in `kernel.rs`).

use crate::kernels::util::{valid_range, Float};
use crate::op::Window;
use crate::shape::{numel, strides};

/// Shapes of one convolution, all checked.
pub(super) struct Geom {
    pub n: usize,
    pub c: usize,
    pub m: usize,
    pub group: usize,
    pub spatial: Vec<usize>,
    pub win: Window,
}

impl Geom {
    /// Depthwise 2-D: one filter per channel (group == C == M).
    pub(super) fn depthwise2d(&self) -> bool {
        self.group == self.c && self.m == self.c && self.spatial.len() == 2
    }
    /// Whether the conv is one product per unit on the input planes
    /// themselves (1x1 kernel, stride 1, no padding).
    pub(super) fn pointwise(&self) -> bool {
        let win = &self.win;
        win.kernel.iter().all(|&k| k == 1)
            && win.strides.iter().all(|&s| s == 1)
            && win.pads_begin.iter().chain(&win.pads_end).all(|&p| p == 0)
    }
    /// Rows of the im2col matrix (and columns of a group's filter).
    pub(super) fn kdim(&self) -> usize {
        self.cg() * self.ksz()
    }
    pub(super) fn cg(&self) -> usize {
        self.c / self.group
    }
    pub(super) fn mg(&self) -> usize {
        self.m / self.group
    }
    pub(super) fn ksz(&self) -> usize {
        numel(&self.win.kernel)
    }
    pub(super) fn isz(&self) -> usize {
        numel(&self.spatial)
    }
    pub(super) fn osz(&self) -> usize {
        numel(&self.win.output)
    }
}

/// An im2col buffer that goes back to the pool when dropped.
pub(super) struct Scratch<F: Float>(pub Vec<F>);

impl<F: Float> Drop for Scratch<F> {
    fn drop(&mut self) {
        crate::pool::give(std::mem::take(&mut self.0));
    }
}

/// Fills `col` (`[cg * ksz, nseg * ol]`) from one group's input channels
/// `x`, for output segments `seg0 .. seg0 + nseg` (a segment is one run of
/// the last output dim).
pub(super) fn im2col<F: Float>(
    g: &Geom,
    x: &[F],
    col: &mut [F],
    seg0: usize,
    nseg: usize,
    par: bool,
) {
    let rl = nseg * *g.win.output.last().unwrap_or(&1);
    let fill = |r: usize, row: &mut [F]| im2col_tap(g, x, r, seg0, row);
    let work = if par { col.len() } else { 0 };
    crate::kernels::util::par_chunks(col, rl, work, fill);
}

/// Row `r` of the im2col matrix (channel `r / ksz` of one group's input
/// channels `x`, kernel offset `r % ksz`), for the output segments from
/// `seg0` (as many as `row` holds).
pub(super) fn im2col_tap<F: Float>(g: &Geom, x: &[F], r: usize, seg0: usize, row: &mut [F]) {
    let (ksz, isz) = (g.ksz(), g.isz());
    let (ci, kflat) = (r / ksz, r % ksz);
    let plane = &x[ci * isz..(ci + 1) * isz];
    if g.spatial.len() == 2 {
        im2col_row_2d(g, plane, kflat, seg0, row);
    } else {
        im2col_row(g, plane, kflat, seg0, row);
    }
}

/// [`im2col_row`] for 2-D convolutions: segments are output rows.
fn im2col_row_2d<F: Float>(g: &Geom, plane: &[F], kflat: usize, y0: usize, row: &mut [F]) {
    let win = &g.win;
    let (ih, iw) = (g.spatial[0] as isize, g.spatial[1]);
    let (kw, ow) = (win.kernel[1], win.output[1]);
    let (ki, kj) = (kflat / kw, kflat % kw);
    let (sh, sw) = (win.strides[0], win.strides[1]);
    let koff_y = (ki * win.dilations[0]) as isize - win.pads_begin[0] as isize;
    let koff_x = (kj * win.dilations[1]) as isize - win.pads_begin[1] as isize;
    let (lo, hi) = valid_range(koff_x, sw, ow, 0, iw as isize);
    for (i, seg) in row.chunks_exact_mut(ow).enumerate() {
        let iy = ((y0 + i) * sh) as isize + koff_y;
        if iy < 0 || iy >= ih || lo >= hi {
            seg.fill(F::ZERO);
            continue;
        }
        // The zero edges of a padded border.
        zero_edge(&mut seg[..lo]);
        zero_edge(&mut seg[hi..]);
        let start = iy as usize * iw + (koff_x + (lo * sw) as isize) as usize;
        let dst = &mut seg[lo..hi];
        match sw {
            1 => copy_run(dst, &plane[start..start + dst.len()]),
            _ => {
                let src = &plane[start..start + (dst.len() - 1) * sw + 1];
                // Zipped iterators, no index arithmetic: no bounds checks
                // and, for stride 2, a loop the compiler vectorises.
                if sw == 2 {
                    for (v, pair) in dst.iter_mut().zip(src.chunks(2)) {
                        *v = pair[0];
                    }
                } else {
                    for (v, &x) in dst.iter_mut().zip(src.iter().step_by(sw)) {
                        *v = x;
                    }
                }
            }
        }
    }
}

/// One im2col row: kernel offset `kflat` over one input plane, for the
/// output segments starting at `seg0` (as many as `row` holds).
fn im2col_row<F: Float>(g: &Geom, plane: &[F], kflat: usize, seg0: usize, row: &mut [F]) {
    let win = &g.win;
    let nd = g.spatial.len();
    let ist = strides(&g.spatial);
    let kst = strides(&win.kernel);
    let kidx: Vec<usize> = (0..nd).map(|d| (kflat / kst[d]) % win.kernel[d]).collect();
    // Last dim: input position = ow * s + koff.
    let l = nd - 1;
    let (ol, il, s) = (win.output[l], g.spatial[l], win.strides[l]);
    let koff = (kidx[l] * win.dilations[l]) as isize - win.pads_begin[l] as isize;
    let (lo, hi) = valid_range(koff, s, ol, 0, il as isize);
    let outer = &win.output[..l];
    // Unravel seg0 over the outer output dims.
    let mut oidx = vec![0usize; l];
    let mut rest = seg0;
    for d in (0..l).rev() {
        oidx[d] = rest % outer[d];
        rest /= outer[d];
    }
    for seg in row.chunks_mut(ol) {
        let mut base = 0isize;
        let mut inside = true;
        for d in 0..l {
            let p = (oidx[d] * win.strides[d] + kidx[d] * win.dilations[d]) as isize
                - win.pads_begin[d] as isize;
            if p < 0 || p >= g.spatial[d] as isize {
                inside = false;
                break;
            }
            base += p * ist[d] as isize;
        }
        if !inside || lo >= hi {
            seg.fill(F::ZERO);
        } else {
            seg[..lo].fill(F::ZERO);
            seg[hi..].fill(F::ZERO);
            let start = (base + koff + (lo * s) as isize) as usize;
            if s == 1 {
                seg[lo..hi].copy_from_slice(&plane[start..start + (hi - lo)]);
            } else {
                for (v, &p) in seg[lo..hi].iter_mut().zip(plane[start..].iter().step_by(s)) {
                    *v = p;
                }
            }
        }
        // Next outer output position.
        for d in (0..l).rev() {
            oidx[d] += 1;
            if oidx[d] < outer[d] {
                break;
            }
            oidx[d] = 0;
        }
    }
}

/// Zeros a padded border of an im2col segment: mostly one value or none,
/// which a `memset` call would cost more than.
#[inline(always)]
fn zero_edge<F: Float>(e: &mut [F]) {
    match e.len() {
        0 => {}
        1 => e[0] = F::ZERO,
        _ => e.fill(F::ZERO),
    }
}

/// `dst.copy_from_slice(src)` for the short runs of an im2col row (one
/// output row of a small map, 5-60 values): fixed-size moves instead of a
/// call to `memcpy` per run, which cost LeNet's convs more than their
/// arithmetic.
#[inline(always)]
fn copy_run<F: Copy>(dst: &mut [F], src: &[F]) {
    const W: usize = 8;
    let n = dst.len();
    if (4..W).contains(&n) && src.len() == n {
        // Two overlapping runs of 4 (a 7x7 map's rows).
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
        return;
    }
    if !(W..8 * W).contains(&n) || src.len() != n {
        dst.copy_from_slice(src);
        return;
    }
    for (d, s) in dst.chunks_exact_mut(W).zip(src.chunks_exact(W)) {
        d.copy_from_slice(s);
    }
    // The tail as one more (overlapping) run of W ending at the end.
    dst[n - W..].copy_from_slice(&src[n - W..]);
}
