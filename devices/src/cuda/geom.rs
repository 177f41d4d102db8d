//! Host-side geometry of the CUDA kernels: launch sizes, broadcast and
//! strided layouts, convolution / pooling windows, reduction folding.
//!
//! Pure Rust with no driver calls, so all of it is unit-tested on machines
//! without a GPU: the tests below run each layout through a host emulation
//! of the kernel's per-thread index maths (the same loops the `.cu` files
//! run) and compare with the CPU kernels of `hetflow_ops`. The `#[repr(C)]`
//! structs are passed to kernels by value and mirror the structs of
//! `kernels/common.cuh` field for field.

use hetflow_ops::op::{resolve_window, ConvAttrs, PoolAttrs, Window};

/// Largest rank the layout structs carry (`HF_MAX_RANK`).
pub const MAX_RANK: usize = 8;
/// Threads per block of the element-wise (grid-stride) kernels.
pub const THREADS: u32 = 256;
/// Blocks of a grid-stride launch are capped here; larger tensors loop.
pub const MAX_BLOCKS: usize = 65_535;

/// Blocks for a grid-stride launch over `n` elements with [`THREADS`]
/// threads each (at least 1, at most [`MAX_BLOCKS`]).
pub fn blocks_for(n: usize) -> u32 {
    n.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS) as u32
}

/// numpy broadcast of two shapes (None when incompatible or rank > 8).
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    if r > MAX_RANK {
        return None;
    }
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= r {
            s[i + s.len() - r]
        } else {
            1
        }
    };
    (0..r)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// numpy broadcast of several shapes.
pub fn broadcast_all(shapes: &[&[usize]]) -> Option<Vec<usize>> {
    shapes
        .iter()
        .try_fold(Vec::new(), |acc, s| broadcast(&acc, s))
}

/// Row-major element strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for i in (0..shape.len()).rev() {
        s[i] = acc;
        acc *= shape[i] as i64;
    }
    s
}

/// Element strides of `shape` broadcast to `out` (0 on broadcast dims),
/// one per dim of `out`.
pub fn bcast_strides(shape: &[usize], out: &[usize]) -> Vec<i64> {
    let mut s = vec![0i64; out.len()];
    let off = out.len() - shape.len();
    let mut stride = 1i64;
    for i in (0..shape.len()).rev() {
        s[i + off] = if shape[i] == 1 && out[i + off] != 1 {
            0
        } else {
            stride
        };
        stride *= shape[i] as i64;
    }
    s
}

/// An N-d walk over `dims` (row-major order of the output) with up to
/// three operands, each with an element offset and per-dim strides.
/// Mirrors `hf_layout` in kernels/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub rank: i32,
    pub dims: [i64; MAX_RANK],
    pub strides: [[i64; MAX_RANK]; 3],
    pub offsets: [i64; 3],
}

impl Layout {
    /// A layout over `dims` with the given operand strides (missing
    /// operands get zero strides). Adjacent dims that every operand walks
    /// contiguously are merged and size-1 dims dropped, so ranks above 8
    /// often still fit; `None` when the merged rank still exceeds 8.
    pub fn new(dims: &[usize], strides: &[&[i64]], offsets: [i64; 3]) -> Option<Layout> {
        let k = strides.len().min(3);
        let mut md: Vec<i64> = Vec::new();
        let mut ms: Vec<[i64; 3]> = Vec::new();
        for (d, &n) in dims.iter().enumerate() {
            if n == 1 {
                continue;
            }
            let s: [i64; 3] = std::array::from_fn(|o| if o < k { strides[o][d] } else { 0 });
            if let (Some(pd), Some(ps)) = (md.last_mut(), ms.last_mut()) {
                if (0..3).all(|o| ps[o] == s[o] * n as i64) {
                    *pd *= n as i64;
                    *ps = s;
                    continue;
                }
            }
            md.push(n as i64);
            ms.push(s);
        }
        if md.len() > MAX_RANK {
            return None;
        }
        let mut l = Layout {
            rank: md.len() as i32,
            offsets,
            ..Default::default()
        };
        for (i, (&d, s)) in md.iter().zip(&ms).enumerate() {
            l.dims[i] = d;
            for (row, &st) in l.strides.iter_mut().zip(s) {
                row[i] = st;
            }
        }
        Some(l)
    }

    /// Element offsets of flat index `i` for the three operands: the
    /// host twin of `hf_layout_offsets`.
    pub fn offsets_of(&self, mut i: i64) -> [i64; 3] {
        let mut o = self.offsets;
        for d in (0..self.rank as usize).rev() {
            let k = i % self.dims[d];
            i /= self.dims[d];
            for (op, off) in o.iter_mut().enumerate() {
                *off += k * self.strides[op][d];
            }
        }
        o
    }
}

/// Axis in `0..rank` (negative counts from the end).
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// Transpose: output shape and the layout (operand 0 the source, 1 the
/// contiguous destination).
pub fn transpose(shape: &[usize], perm: Option<&[usize]>) -> Option<(Vec<usize>, Layout)> {
    let r = shape.len();
    let perm = hetflow_ops::shape::transpose_perm(perm, r).ok()?;
    let ist = contiguous_strides(shape);
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let src: Vec<i64> = perm.iter().map(|&p| ist[p]).collect();
    let l = Layout::new(&out, &[&src, &contiguous_strides(&out)], [0; 3])?;
    Some((out, l))
}

/// Clamped `[start, end)` of a Slice along a dim of size `d > 0` (ONNX
/// rules: negatives count from the end; for negative steps the start is
/// clamped to `d - 1` and the end may be -1, "before the first").
fn slice_bounds(start: i64, end: i64, step: i64, d: i64) -> (i64, i64) {
    let fix = |v: i64| if v < 0 { v + d } else { v };
    if step > 0 {
        (fix(start).clamp(0, d), fix(end).clamp(0, d))
    } else {
        (fix(start).clamp(0, d - 1), fix(end).clamp(-1, d - 1))
    }
}

/// Slice: output shape, source offset and source strides of each output
/// dim. `Err` names what is wrong (as the CPU kernel would).
pub fn slice(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<(Vec<usize>, i64, Vec<i64>), String> {
    let k = starts.len();
    let axes: Vec<i64> = axes.map_or_else(|| (0..k as i64).collect(), <[i64]>::to_vec);
    let steps: Vec<i64> = steps.map_or_else(|| vec![1; k], <[i64]>::to_vec);
    if ends.len() != k || axes.len() != k || steps.len() != k {
        return Err("starts, ends, axes and steps have different lengths".into());
    }
    let ist = contiguous_strides(shape);
    let mut out = shape.to_vec();
    let mut st = ist.clone();
    let mut base = 0i64;
    let mut seen = vec![false; shape.len()];
    for i in 0..k {
        let a = norm_axis(axes[i], shape.len())
            .ok_or_else(|| format!("axis {} out of range", axes[i]))?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(format!("axis {a} repeated"));
        }
        let step = steps[i];
        if step == 0 {
            return Err("step cannot be 0".into());
        }
        let d = shape[a] as i64;
        let (lo, hi) = if d == 0 {
            (0, 0)
        } else {
            slice_bounds(starts[i], ends[i], step, d)
        };
        // Elements in the half-open range, rounded up to whole steps.
        let (span, stride) = if step > 0 {
            (hi - lo, step)
        } else {
            (lo - hi, -step)
        };
        let n = if span > 0 { (span - 1) / stride + 1 } else { 0 };
        out[a] = n as usize;
        if n > 0 {
            base += lo * ist[a];
        }
        st[a] = step * ist[a];
    }
    Ok((out, base, st))
}

/// Gather along `axis`: (outer, axis length, inner) of the data and the
/// output shape.
pub fn gather(shape: &[usize], idx_shape: &[usize], axis: i64) -> Option<([usize; 3], Vec<usize>)> {
    let a = norm_axis(axis, shape.len())?;
    let mut out = shape[..a].to_vec();
    out.extend(idx_shape);
    out.extend(&shape[a + 1..]);
    let outer = shape[..a].iter().product();
    let inner = shape[a + 1..].iter().product();
    Some(([outer, shape[a], inner], out))
}

/// Where each input of a Concat lands: (layout copying it into the
/// output, with operand 1 at its offset in the output), and the output
/// shape.
pub fn concat(shapes: &[&[usize]], axis: i64) -> Option<(Vec<usize>, Vec<Layout>)> {
    let first = *shapes.first()?;
    let a = norm_axis(axis, first.len())?;
    let fits =
        |s: &[usize]| s.len() == first.len() && (0..s.len()).all(|d| d == a || s[d] == first[d]);
    if !shapes.iter().all(|s| fits(s)) {
        return None;
    }
    let mut out = first.to_vec();
    out[a] = shapes.iter().map(|s| s[a]).sum();
    let ost = contiguous_strides(&out);
    let mut at = 0i64;
    let mut parts = Vec::with_capacity(shapes.len());
    for s in shapes {
        let l = Layout::new(s, &[&contiguous_strides(s), &ost], [0, at * ost[a], 0])?;
        parts.push(l);
        at += s[a] as i64;
    }
    Some((out, parts))
}

/// Split along `axis` into `sizes`: per output its shape and the layout
/// reading it from the input (operand 0 the input at its offset, 1 the
/// contiguous output).
pub fn split(shape: &[usize], axis: i64, sizes: &[usize]) -> Option<Vec<(Vec<usize>, Layout)>> {
    let a = norm_axis(axis, shape.len())?;
    if sizes.iter().sum::<usize>() != shape[a] {
        return None;
    }
    let ist = contiguous_strides(shape);
    let mut at = 0i64;
    sizes
        .iter()
        .map(|&n| {
            let mut s = shape.to_vec();
            s[a] = n;
            let l = Layout::new(&s, &[&ist, &contiguous_strides(&s)], [at * ist[a], 0, 0])?;
            at += n as i64;
            Some((s, l))
        })
        .collect()
}

/// Split sizes when none are given: `ceil(d / n)` each, the last smaller.
pub fn even_split(d: usize, n: usize) -> Vec<usize> {
    let chunk = d.div_ceil(n.max(1));
    (0..n)
        .map(|i| chunk.min(d.saturating_sub(chunk * i)))
        .collect()
}

/// A convolution or pooling window lifted to three spatial dims (leading
/// dims of size 1). Mirrors `hf_win` in kernels/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Win3 {
    pub input: [i64; 3],
    pub output: [i64; 3],
    pub kernel: [i64; 3],
    pub strides: [i64; 3],
    pub dil: [i64; 3],
    pub pads_begin: [i64; 3],
    pub pads_end: [i64; 3],
}

impl Win3 {
    /// Lifts a resolved window over `spatial` (1 to 3 dims).
    pub fn lift(spatial: &[usize], w: &Window) -> Option<Win3> {
        if spatial.is_empty() || spatial.len() > 3 {
            return None;
        }
        let off = 3 - spatial.len();
        let f = |v: &[usize], fill: usize| -> [i64; 3] {
            std::array::from_fn(|i| if i < off { fill } else { v[i - off] } as i64)
        };
        Some(Win3 {
            input: f(spatial, 1),
            output: f(&w.output, 1),
            kernel: f(&w.kernel, 1),
            strides: f(&w.strides, 1),
            dil: f(&w.dilations, 1),
            pads_begin: f(&w.pads_begin, 0),
            pads_end: f(&w.pads_end, 0),
        })
    }
    pub fn in_size(&self) -> i64 {
        self.input.iter().product()
    }
    pub fn out_size(&self) -> i64 {
        self.output.iter().product()
    }
    pub fn kernel_size(&self) -> i64 {
        self.kernel.iter().product()
    }

    /// Input position in dim `d` of kernel index `k` for output index `o`
    /// (may lie in the padding: < 0 or >= input).
    pub fn pos(&self, d: usize, o: i64, k: i64) -> i64 {
        o * self.strides[d] - self.pads_begin[d] + k * self.dil[d]
    }

    /// Flat input offset (within one plane) of kernel cell `k` for output
    /// cell `o`, or `None` in the padding: the host twin of
    /// `hf_win_offset` that im2col, depthwise and pool kernels use.
    pub fn offset(&self, o: [i64; 3], k: [i64; 3]) -> Option<i64> {
        let mut off = 0;
        for d in 0..3 {
            let p = self.pos(d, o[d], k[d]);
            if p < 0 || p >= self.input[d] {
                return None;
            }
            off = off * self.input[d] + p;
        }
        Some(off)
    }

    /// Whether cell `k` of output `o` lies inside the input plus its
    /// padding (AveragePool's count_include_pad divisor).
    pub fn in_padded(&self, o: [i64; 3], k: [i64; 3]) -> bool {
        (0..3).all(|d| {
            let p = self.pos(d, o[d], k[d]);
            p >= -self.pads_begin[d] && p < self.input[d] + self.pads_end[d]
        })
    }
}

/// Splits a flat index over `dims` (row-major) into its three coordinates.
pub fn unflatten3(mut i: i64, dims: &[i64; 3]) -> [i64; 3] {
    let mut c = [0; 3];
    for d in (0..3).rev() {
        c[d] = i % dims[d];
        i /= dims[d];
    }
    c
}

/// A convolution: batch, channels, filters, groups and the window.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub m: usize,
    pub group: usize,
    pub win: Win3,
    /// Output spatial dims as ONNX gives them.
    pub out_spatial: Vec<usize>,
}

impl ConvGeom {
    /// Checks X `[N, C, d..]` and W `[M, C/group, k..]` (1 to 3 spatial
    /// dims) against the attributes, as the CPU kernel does.
    pub fn new(a: &ConvAttrs, xs: &[usize], ws: &[usize]) -> Result<ConvGeom, String> {
        if xs.len() < 3 || xs.len() > 5 || ws.len() != xs.len() {
            return Err(format!(
                "X {xs:?} and W {ws:?}: 1 to 3 spatial dims, same rank"
            ));
        }
        let group = a.group.max(1);
        let (n, c, m) = (xs[0], xs[1], ws[0]);
        if c != ws[1] * group || m % group != 0 {
            return Err(format!("X {xs:?} and W {ws:?} do not fit group {group}"));
        }
        let kernel = &ws[2..];
        if a.kernel_shape.as_deref().is_some_and(|k| k != kernel) {
            return Err(format!(
                "kernel_shape {:?} differs from W's {kernel:?}",
                a.kernel_shape
            ));
        }
        if kernel.contains(&0) || xs[2..].contains(&0) {
            return Err(format!("empty kernel {kernel:?} or input {xs:?}"));
        }
        let w = resolve_window(
            &xs[2..],
            kernel,
            &a.strides,
            &a.dilations,
            &a.pads,
            a.auto_pad,
            false,
        )
        .map_err(|e| e.to_string())?;
        Ok(ConvGeom {
            n,
            c,
            m,
            group,
            win: Win3::lift(&xs[2..], &w).ok_or("1 to 3 spatial dims")?,
            out_spatial: w.output,
        })
    }
    pub fn out_shape(&self) -> Vec<usize> {
        let mut s = vec![self.n, self.m];
        s.extend(&self.out_spatial);
        s
    }
    /// Channels per group.
    pub fn cg(&self) -> usize {
        self.c / self.group
    }
    /// Filters per group.
    pub fn mg(&self) -> usize {
        self.m / self.group
    }
    /// GEMM depth: channels per group times kernel cells.
    pub fn kdim(&self) -> usize {
        self.cg() * self.win.kernel_size() as usize
    }
    pub fn osz(&self) -> usize {
        self.win.out_size() as usize
    }
    /// 1x1 kernel, stride 1, no padding: X itself is the GEMM operand.
    pub fn pointwise(&self) -> bool {
        let w = &self.win;
        w.kernel == [1; 3] && w.strides == [1; 3] && w.pads_begin == [0; 3] && w.pads_end == [0; 3]
    }
    /// One filter per channel (the direct depthwise kernel).
    pub fn depthwise(&self) -> bool {
        self.group == self.c && self.m == self.c && self.group > 1
    }
}

/// Resolves a MaxPool / AveragePool window over X `[N, C, d..]`.
pub fn pool(p: &PoolAttrs, xs: &[usize]) -> Result<(Vec<usize>, Win3), String> {
    let w = p.window(xs).map_err(|e| e.to_string())?;
    let spatial = &xs[2..];
    let mut out = xs[..2].to_vec();
    out.extend(&w.output);
    Ok((out, Win3::lift(spatial, &w).ok_or("1 to 3 spatial dims")?))
}

/// A reduction folded for the kernel: kept dims (output order) and reduced
/// dims, each with their input strides, adjacent dims merged. Mirrors
/// `hf_reduce` in kernels/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReduceLayout {
    pub kept_rank: i32,
    pub red_rank: i32,
    pub kept_dims: [i64; MAX_RANK],
    pub kept_strides: [i64; MAX_RANK],
    pub red_dims: [i64; MAX_RANK],
    pub red_strides: [i64; MAX_RANK],
    /// Elements reduced into each output.
    pub count: i64,
}

impl ReduceLayout {
    /// Folds the reduction of `shape` over `axes` (empty: all). Returns the
    /// output shape (with or without kept size-1 dims) and the layout.
    pub fn new(
        shape: &[usize],
        axes: &[i64],
        keepdims: bool,
    ) -> Option<(Vec<usize>, ReduceLayout)> {
        let r = shape.len();
        let mut red = vec![axes.is_empty(); r];
        for &a in axes {
            red[norm_axis(a, r)?] = true;
        }
        let ist = contiguous_strides(shape);
        let group = |want: bool| -> Option<(Vec<i64>, Vec<i64>)> {
            let dims: Vec<usize> = (0..r)
                .filter(|&d| red[d] == want)
                .map(|d| shape[d])
                .collect();
            let st: Vec<i64> = (0..r).filter(|&d| red[d] == want).map(|d| ist[d]).collect();
            let l = Layout::new(&dims, &[&st], [0; 3])?;
            let n = l.rank as usize;
            Some((l.dims[..n].to_vec(), l.strides[0][..n].to_vec()))
        };
        let (kd, ks) = group(false)?;
        let (rd, rs) = group(true)?;
        let mut l = ReduceLayout {
            kept_rank: kd.len() as i32,
            red_rank: rd.len() as i32,
            count: (0..r)
                .filter(|&d| red[d])
                .map(|d| shape[d] as i64)
                .product(),
            ..Default::default()
        };
        l.kept_dims[..kd.len()].copy_from_slice(&kd);
        l.kept_strides[..ks.len()].copy_from_slice(&ks);
        l.red_dims[..rd.len()].copy_from_slice(&rd);
        l.red_strides[..rs.len()].copy_from_slice(&rs);
        let out: Vec<usize> = (0..r)
            .filter(|&d| keepdims || !red[d])
            .map(|d| if red[d] { 1 } else { shape[d] })
            .collect();
        Some((out, l))
    }

    /// Input offset of reduced element `j` of output `o`: the host twin of
    /// the kernel's index maths.
    pub fn offset(&self, o: i64, j: i64) -> i64 {
        let walk = |mut i: i64, dims: &[i64], st: &[i64]| {
            let mut off = 0;
            for d in (0..dims.len()).rev() {
                off += (i % dims[d]) * st[d];
                i /= dims[d];
            }
            off
        };
        let (k, r) = (self.kept_rank as usize, self.red_rank as usize);
        walk(o, &self.kept_dims[..k], &self.kept_strides[..k])
            + walk(j, &self.red_dims[..r], &self.red_strides[..r])
    }
}

#[cfg(test)]
mod tests;
