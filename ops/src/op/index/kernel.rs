//! Indexing and layout ops, for every dtype unless noted: GatherElements,
//! GatherND, ScatterElements, ScatterND, Trilu, CumSum / CumProd, TopK,
//! OneHot, NonZero, Compress, Tile, DepthToSpace, SpaceToDepth, EyeLike and
//! Pad.

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::kernels::util::{
    arith_dispatch, gather_strided, input, opt_input, out, to_dim, typed, Arith,
};
use crate::op::{PadMode, ScatterReduction};
use crate::shape::{norm_axis, numel, strides};
use crate::tensor::{Storable, Tensor};

/// An index tensor (i32 or i64) as i64s.
fn index_values(t: &Tensor, what: &str) -> Result<Vec<i64>> {
    if !matches!(t.dtype(), DType::I32 | DType::I64) {
        crate::bail!("{what}: expected i32 or i64, got {}", t.dtype());
    }
    Ok(t.to_i64_vec())
}

/// Resolves a possibly negative index against a dim of size `d`.
fn resolve(i: i64, d: usize, what: &str) -> Result<usize> {
    let di = d as i64;
    let j = if i < 0 { i + di } else { i };
    if j < 0 || j >= di {
        crate::bail!("{what}: index {i} out of range for a dim of size {d}");
    }
    Ok(j as usize)
}

/// Advances the row-major multi-index `mi` over `shape`.
fn next_index(mi: &mut [usize], shape: &[usize]) {
    for d in (0..shape.len()).rev() {
        mi[d] += 1;
        if mi[d] < shape[d] {
            return;
        }
        mi[d] = 0;
    }
}

/// The data offsets that GatherElements reads and ScatterElements writes:
/// the position of each index element with its `axis` coordinate replaced
/// by the (resolved) index.
fn element_offsets(
    name: &str,
    data_shape: &[usize],
    idx: &Tensor,
    axis: i64,
) -> Result<Vec<usize>> {
    let r = data_shape.len();
    let ish = idx.shape();
    if ish.len() != r {
        crate::bail!("{name}: data has rank {r}, indices rank {}", ish.len());
    }
    let a = norm_axis(axis, r)?;
    for d in 0..r {
        if d != a && ish[d] > data_shape[d] {
            crate::bail!(
                "{name}: indices shape {:?} exceeds data shape {:?} on axis {d}",
                ish,
                data_shape
            );
        }
    }
    let iv = index_values(idx, &format!("{name} indices"))?;
    let st = strides(data_shape);
    let mut mi = vec![0usize; r];
    let mut offs = Vec::with_capacity(iv.len());
    for &i in &iv {
        let j = resolve(i, data_shape[a], name)?;
        let off: usize = (0..r).map(|d| if d == a { j } else { mi[d] } * st[d]).sum();
        offs.push(off);
        next_index(&mut mi, ish);
    }
    Ok(offs)
}

/// GatherElements: `out[p] = data[p with axis coordinate = indices[p]]`.
pub(crate) fn gather_elements(axis: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let idx = input(inputs, 1, "indices")?;
    let offs = element_offsets("GatherElements", x.shape(), idx, axis)?;
    let data = crate::dispatch_data!(x.data(), v, T => {
        <T as Storable>::wrap(offs.iter().map(|&o| v[o]).collect())
    });
    Tensor::new(idx.shape().to_vec(), data)
}

fn combine<T: Arith>(r: ScatterReduction, a: T, b: T) -> T {
    match r {
        ScatterReduction::None => b,
        ScatterReduction::Add => a.add(b),
        ScatterReduction::Mul => a.mul(b),
        ScatterReduction::Max => {
            if b > a {
                b
            } else {
                a
            }
        }
        ScatterReduction::Min => {
            if b < a {
                b
            } else {
                a
            }
        }
    }
}

/// Writes `updates[k]` at `offs[k]` of a copy of `x`, combined by `red`.
fn scatter_at(
    name: &str,
    x: &Tensor,
    upd: &Tensor,
    offs: &[usize],
    chunk: usize,
    red: ScatterReduction,
) -> Result<Tensor> {
    if upd.dtype() != x.dtype() {
        crate::bail!("{name}: updates are {}, data is {}", upd.dtype(), x.dtype());
    }
    if upd.len() != offs.len() * chunk {
        crate::bail!(
            "{name}: updates shape {:?} does not fit the indices",
            upd.shape()
        );
    }
    if red == ScatterReduction::None {
        let data = crate::dispatch_data!(x.data(), v, T => {
            let u = typed::<T>(upd, "updates")?;
            let mut o = v.clone();
            for (k, &off) in offs.iter().enumerate() {
                o[off..off + chunk].copy_from_slice(&u[k * chunk..(k + 1) * chunk]);
            }
            <T as Storable>::wrap(o)
        });
        return Tensor::new(x.shape().to_vec(), data);
    }
    arith_dispatch!(x.dtype(), format!("{name} with reduction {red:?}"), T => {
        let v = typed::<T>(x, "data")?;
        let u = typed::<T>(upd, "updates")?;
        let mut o = v.to_vec();
        for (k, &off) in offs.iter().enumerate() {
            for j in 0..chunk {
                o[off + j] = combine(red, o[off + j], u[k * chunk + j]);
            }
        }
        out(x.shape().to_vec(), o)
    })
}

/// ScatterElements: a copy of data with `updates[p]` written (or combined)
/// at `p` with its axis coordinate replaced by `indices[p]`.
pub(crate) fn scatter_elements(
    axis: i64,
    red: ScatterReduction,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let idx = input(inputs, 1, "indices")?;
    let upd = input(inputs, 2, "updates")?;
    if upd.shape() != idx.shape() {
        crate::bail!(
            "ScatterElements: updates shape {:?} differs from indices shape {:?}",
            upd.shape(),
            idx.shape()
        );
    }
    let offs = element_offsets("ScatterElements", x.shape(), idx, axis)?;
    scatter_at("ScatterElements", x, upd, &offs, 1, red)
}

/// For index tuples in the last dim of `idx` (after `batch` leading batch
/// dims shared with the data): each tuple's offset into the data and the
/// slice length it addresses.
fn nd_offsets(
    name: &str,
    data_shape: &[usize],
    idx: &Tensor,
    batch: usize,
) -> Result<(Vec<usize>, usize)> {
    let ish = idx.shape();
    let q = ish.len();
    if q == 0 {
        crate::bail!("{name}: indices must have rank >= 1");
    }
    let k = ish[q - 1];
    if batch >= q || batch + k > data_shape.len() {
        crate::bail!(
            "{name}: indices shape {:?} with batch_dims {batch} do not fit data shape {:?}",
            ish,
            data_shape
        );
    }
    if ish[..batch] != data_shape[..batch] {
        crate::bail!(
            "{name}: batch dims of indices {:?} and data {:?} differ",
            ish,
            data_shape
        );
    }
    let iv = index_values(idx, &format!("{name} indices"))?;
    let chunk = numel(&data_shape[batch + k..]);
    let per_batch = numel(&data_shape[batch..]);
    let tuples_per_batch = numel(&ish[batch..q - 1]);
    let n = numel(&ish[..q - 1]);
    let mut offs = Vec::with_capacity(n);
    for t in 0..n {
        let b = t.checked_div(tuples_per_batch).unwrap_or(0);
        let mut off = b * per_batch;
        for (c, &i) in iv[t * k..(t + 1) * k].iter().enumerate() {
            let d = data_shape[batch + c];
            off += resolve(i, d, name)? * numel(&data_shape[batch + c + 1..]);
        }
        offs.push(off);
    }
    Ok((offs, chunk))
}

/// GatherND with `batch_dims`.
pub(crate) fn gather_nd(batch: usize, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let idx = input(inputs, 1, "indices")?;
    let (offs, chunk) = nd_offsets("GatherND", x.shape(), idx, batch)?;
    let ish = idx.shape();
    let k = ish[ish.len() - 1];
    let mut oshape = ish[..ish.len() - 1].to_vec();
    oshape.extend(&x.shape()[batch + k..]);
    let data = crate::dispatch_data!(x.data(), v, T => {
        let mut o: Vec<T> = Vec::with_capacity(offs.len() * chunk);
        for &off in &offs {
            o.extend_from_slice(&v[off..off + chunk]);
        }
        <T as Storable>::wrap(o)
    });
    Tensor::new(oshape, data)
}

/// ScatterND: a copy of data with slices of updates written (or combined)
/// at the index tuples.
pub(crate) fn scatter_nd(red: ScatterReduction, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let idx = input(inputs, 1, "indices")?;
    let upd = input(inputs, 2, "updates")?;
    let (offs, chunk) = nd_offsets("ScatterND", x.shape(), idx, 0)?;
    let ish = idx.shape();
    let mut ushape = ish[..ish.len() - 1].to_vec();
    ushape.extend(&x.shape()[ish[ish.len() - 1]..]);
    if upd.shape() != ushape.as_slice() {
        crate::bail!(
            "ScatterND: updates shape {:?}, expected {:?}",
            upd.shape(),
            ushape
        );
    }
    scatter_at("ScatterND", x, upd, &offs, chunk, red)
}

/// An optional scalar integer input.
fn scalar_int(inputs: &[Option<&Tensor>], i: usize, name: &str) -> Result<Option<i64>> {
    match opt_input(inputs, i) {
        None => Ok(None),
        Some(t) => {
            let v = index_values(t, &format!("input {i} ({name})"))?;
            if v.len() != 1 {
                crate::bail!(
                    "input {i} ({name}) must hold one value, got shape {:?}",
                    t.shape()
                );
            }
            Ok(Some(v[0]))
        }
    }
}

/// Trilu: zero outside the upper (`j - i >= k`) or lower (`j - i <= k`)
/// triangle of each matrix in the last two dims.
pub(crate) fn trilu(upper: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let k = scalar_int(inputs, 1, "k")?.unwrap_or(0);
    let s = x.shape();
    if s.len() < 2 {
        crate::bail!("Trilu needs rank >= 2, got {:?}", s);
    }
    let (n, m) = (s[s.len() - 2], s[s.len() - 1]);
    let data = crate::dispatch_data!(x.data(), v, T => {
        let mut o = v.clone();
        for (p, e) in o.iter_mut().enumerate() {
            let (i, j) = (((p / m.max(1)) % n.max(1)) as i64, (p % m.max(1)) as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            if !keep {
                *e = T::default();
            }
        }
        <T as Storable>::wrap(o)
    });
    Tensor::new(s.to_vec(), data)
}

/// CumSum / CumProd along the axis in input 1.
pub(crate) fn cumulative(
    prod: bool,
    exclusive: bool,
    reverse: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let name = if prod { "CumProd" } else { "CumSum" };
    let x = input(inputs, 0, "x")?;
    let axis = scalar_int(inputs, 1, "axis")?
        .ok_or_else(|| Error::msg(format!("{name}: input 1 (axis) is missing")))?;
    let s = x.shape();
    let a = norm_axis(axis, s.len())?;
    let (outer, n, inner) = (numel(&s[..a]), s[a], numel(&s[a + 1..]));
    arith_dispatch!(x.dtype(), name, T => {
        let v = typed::<T>(x, "input 0 (x)")?;
        let mut o = vec![T::ZERO; v.len()];
        for oi in 0..outer {
            for ii in 0..inner {
                let mut acc = if prod { T::ONE } else { T::ZERO };
                for step in 0..n {
                    let k = if reverse { n - 1 - step } else { step };
                    let p = (oi * n + k) * inner + ii;
                    let next = if prod { acc.mul(v[p]) } else { acc.add(v[p]) };
                    o[p] = if exclusive { acc } else { next };
                    acc = next;
                }
            }
        }
        out(s.to_vec(), o)
    })
}

/// A total order for sorting: NaN above everything, NaNs equal.
fn total<T: PartialOrd>(a: &T, b: &T) -> std::cmp::Ordering {
    #[allow(clippy::eq_op)]
    a.partial_cmp(b).unwrap_or_else(|| (a != a).cmp(&(b != b)))
}

/// TopK: the `k` largest (or smallest) along `axis`, sorted, with their
/// i64 indices; equal values keep the lower index first.
pub(crate) fn top_k(
    axis: i64,
    largest: bool,
    k_attr: Option<i64>,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>> {
    let x = input(inputs, 0, "X")?;
    let k = match k_attr {
        Some(k) => k,
        None => {
            let t = input(inputs, 1, "K")?;
            let v = index_values(t, "input 1 (K)")?;
            if v.len() != 1 {
                crate::bail!("TopK: K must hold one value, got shape {:?}", t.shape());
            }
            v[0]
        }
    };
    let s = x.shape();
    let a = norm_axis(axis, s.len())?;
    let n = s[a];
    let k = to_dim(k, "TopK k")?;
    if k > n {
        crate::bail!("TopK: k = {k} exceeds axis {a} of size {n}");
    }
    let (outer, inner) = (numel(&s[..a]), numel(&s[a + 1..]));
    let mut oshape = s.to_vec();
    oshape[a] = k;
    let mut idx_out = vec![0i64; outer * k * inner];
    let vals = crate::dispatch_data!(x.data(), v, T => {
        let mut o: Vec<T> = vec![T::default(); outer * k * inner];
        let mut order: Vec<usize> = Vec::with_capacity(n);
        for oi in 0..outer {
            for ii in 0..inner {
                let at = |j: usize| v[(oi * n + j) * inner + ii];
                order.clear();
                order.extend(0..n);
                order.sort_by(|&p, &q| {
                    let c = total(&at(p), &at(q));
                    let c = if largest { c.reverse() } else { c };
                    c.then(p.cmp(&q))
                });
                for (r, &j) in order.iter().take(k).enumerate() {
                    let dst = (oi * k + r) * inner + ii;
                    o[dst] = at(j);
                    idx_out[dst] = j as i64;
                }
            }
        }
        <T as Storable>::wrap(o)
    });
    Ok(vec![
        Tensor::new(oshape.clone(), vals)?,
        Tensor::from_vec(oshape, idx_out)?,
    ])
}

/// OneHot: `values[1]` where the position along `axis` equals the index
/// (negative indices count from `depth`), `values[0]` elsewhere.
pub(crate) fn one_hot(axis: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let idx = input(inputs, 0, "indices")?;
    let depth_t = input(inputs, 1, "depth")?;
    let values = input(inputs, 2, "values")?;
    if idx.dtype() == DType::Bool || depth_t.dtype() == DType::Bool {
        crate::bail!("OneHot: indices and depth must be numeric");
    }
    if depth_t.len() != 1 {
        crate::bail!(
            "OneHot: depth must hold one value, got shape {:?}",
            depth_t.shape()
        );
    }
    if values.len() != 2 {
        crate::bail!(
            "OneHot: values must hold [off, on], got shape {:?}",
            values.shape()
        );
    }
    let depth_f = depth_t.cast(DType::F64).as_slice::<f64>()?[0];
    if depth_f.is_nan() || depth_f < 1.0 || depth_f > (1u64 << 32) as f64 {
        crate::bail!("OneHot: depth must be positive, got {depth_f}");
    }
    let depth = depth_f as usize;
    let ish = idx.shape();
    let a = norm_axis(axis, ish.len() + 1)?;
    let (outer, inner) = (numel(&ish[..a]), numel(&ish[a..]));
    let mut oshape = ish.to_vec();
    oshape.insert(a, depth);
    let iv = idx.cast(DType::F64);
    let iv = iv.as_slice::<f64>()?;
    let data = crate::dispatch_data!(values.data(), vv, T => {
        let (off, on) = (vv[0], vv[1]);
        let mut o: Vec<T> = vec![off; outer * depth * inner];
        for oi in 0..outer {
            for ii in 0..inner {
                let i = iv[oi * inner + ii].trunc();
                let j = if i < 0.0 { i + depth as f64 } else { i };
                if j >= 0.0 && j < depth as f64 {
                    o[(oi * depth + j as usize) * inner + ii] = on;
                }
            }
        }
        <T as Storable>::wrap(o)
    });
    Tensor::new(oshape, data)
}

/// NonZero: `[rank, n]` i64 coordinates of the non-zero elements, in
/// row-major order.
pub(crate) fn non_zero(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let s = x.shape();
    let nz: Vec<usize> = crate::dispatch_data!(x.data(), v, _T => {
        v.iter().enumerate().filter(|(_, e)| e.to_f64() != 0.0).map(|(i, _)| i).collect()
    });
    let r = s.len();
    let st = strides(s);
    let mut o = vec![0i64; r * nz.len()];
    for (c, &flat) in nz.iter().enumerate() {
        for d in 0..r {
            o[d * nz.len() + c] = ((flat / st[d]) % s[d]) as i64;
        }
    }
    Tensor::from_vec(vec![r, nz.len()], o)
}

/// Compress: the slices along `axis` (or the elements of the flattened
/// input) where the bool condition is true.
pub(crate) fn compress(axis: Option<i64>, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let c = typed::<bool>(input(inputs, 1, "condition")?, "input 1 (condition)")?;
    let (s, a) = match axis {
        Some(ax) => (x.shape().to_vec(), norm_axis(ax, x.rank())?),
        None => (vec![x.len()], 0),
    };
    let n = s[a];
    if c.len() > n && c[n..].iter().any(|&b| b) {
        crate::bail!(
            "Compress: condition has {} entries (true past {n}) for axis {a} of size {n}",
            c.len()
        );
    }
    let keep: Vec<usize> = (0..n.min(c.len())).filter(|&i| c[i]).collect();
    let (outer, inner) = (numel(&s[..a]), numel(&s[a + 1..]));
    let mut oshape = s.clone();
    oshape[a] = keep.len();
    let data = crate::dispatch_data!(x.data(), v, T => {
        let mut o: Vec<T> = Vec::with_capacity(outer * keep.len() * inner);
        for oi in 0..outer {
            for &j in &keep {
                let b = (oi * n + j) * inner;
                o.extend_from_slice(&v[b..b + inner]);
            }
        }
        <T as Storable>::wrap(o)
    });
    Tensor::new(oshape, data)
}

/// Reads `x` through strides over `shape` into a tensor of `oshape`.
fn strided(x: &Tensor, shape: &[usize], st: &[isize], oshape: Vec<usize>) -> Result<Tensor> {
    let data = crate::dispatch_data!(x.data(), v, T => {
        <T as Storable>::wrap(gather_strided(v, shape, 0, st))
    });
    Tensor::new(oshape, data)
}

/// Tile: input 0 repeated `repeats[d]` times along each dim d.
pub(crate) fn tile(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let reps = index_values(input(inputs, 1, "repeats")?, "input 1 (repeats)")?;
    let s = x.shape();
    if reps.len() != s.len() {
        crate::bail!(
            "Tile: repeats has {} entries for rank {}",
            reps.len(),
            s.len()
        );
    }
    // Read as [r0, s0, r1, s1, ...] with stride 0 on the repeat dims.
    let st = strides(s);
    let mut shape = Vec::with_capacity(2 * s.len());
    let mut sst = Vec::with_capacity(2 * s.len());
    let mut oshape = Vec::with_capacity(s.len());
    for d in 0..s.len() {
        let r = to_dim(reps[d], "Tile repeats")?;
        shape.extend([r, s[d]]);
        sst.extend([0, st[d] as isize]);
        oshape.push(r * s[d]);
    }
    strided(x, &shape, &sst, oshape)
}

/// DepthToSpace (DCR or CRD order) and SpaceToDepth on `[N, C, H, W]`.
pub(crate) fn space_depth(
    to_space: bool,
    b: usize,
    crd: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let s = x.shape();
    if s.len() != 4 || b == 0 {
        crate::bail!("input must be 4-D (with a positive blocksize), got {:?}", s);
    }
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    // The input as a 6-D view, then the permutation to read it in.
    let (view, perm, oshape): ([usize; 6], [usize; 6], Vec<usize>) = if to_space {
        if c % (b * b) != 0 {
            crate::bail!("channels {c} are not divisible by blocksize^2 = {}", b * b);
        }
        let c2 = c / (b * b);
        if crd {
            (
                [n, c2, b, b, h, w],
                [0, 1, 4, 2, 5, 3],
                vec![n, c2, h * b, w * b],
            )
        } else {
            (
                [n, b, b, c2, h, w],
                [0, 3, 4, 1, 5, 2],
                vec![n, c2, h * b, w * b],
            )
        }
    } else {
        if h % b != 0 || w % b != 0 {
            crate::bail!("spatial dims {h}x{w} are not divisible by blocksize {b}");
        }
        // CRD puts the block offsets after the channel, DCR before it.
        let perm = if crd {
            [0, 1, 3, 5, 2, 4]
        } else {
            [0, 3, 5, 1, 2, 4]
        };
        (
            [n, c, h / b, b, w / b, b],
            perm,
            vec![n, c * b * b, h / b, w / b],
        )
    };
    let vst = strides(&view);
    let shape: Vec<usize> = perm.iter().map(|&p| view[p]).collect();
    let st: Vec<isize> = perm.iter().map(|&p| vst[p] as isize).collect();
    strided(x, &shape, &st, oshape)
}

/// EyeLike: ones on diagonal `k` of a matrix shaped like input 0.
pub(crate) fn eye_like(dtype: Option<DType>, k: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let s = x.shape();
    if s.len() != 2 {
        crate::bail!("EyeLike input must be 2-D, got {:?}", s);
    }
    let dt = dtype.unwrap_or(x.dtype());
    let (n, m) = (s[0], s[1]);
    let data = crate::dispatch_dtype!(dt, T => {
        let mut o = vec![T::default(); n * m];
        for i in 0..n {
            let j = i as i64 + k;
            if j >= 0 && (j as usize) < m {
                o[i * m + j as usize] = T::from_f64(1.0);
            }
        }
        <T as Storable>::wrap(o)
    });
    Tensor::new(s.to_vec(), data)
}

/// The source index along one dim of size `n` for output position `o`
/// with `begin` cells of padding before; `None` for the constant.
fn pad_source(mode: PadMode, o: i64, begin: i64, n: usize) -> Option<usize> {
    let i = o - begin;
    let ni = n as i64;
    if (0..ni).contains(&i) {
        return Some(i as usize);
    }
    if n == 0 {
        return None;
    }
    match mode {
        PadMode::Constant => None,
        PadMode::Edge => Some(i.clamp(0, ni - 1) as usize),
        PadMode::Wrap => Some(i.rem_euclid(ni) as usize),
        PadMode::Reflect => {
            if n == 1 {
                return Some(0);
            }
            let period = 2 * (ni - 1);
            let m = i.rem_euclid(period);
            Some(if m < ni { m } else { period - m } as usize)
        }
    }
}

/// Pad: `pads` (attribute, else input 1) as `[begins.., ends..]` over all
/// dims or the `axes` in input 3; the constant from the attribute or
/// input 2. Negative pads crop.
pub(crate) fn pad(
    mode: PadMode,
    pads_attr: Option<&[i64]>,
    value_attr: f32,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let s = x.shape();
    let r = s.len();
    let pads: Vec<i64> = match pads_attr {
        Some(p) => p.to_vec(),
        None => {
            let t = input(inputs, 1, "pads")?;
            if t.dtype() != DType::I64 {
                crate::bail!("input 1 (pads): expected i64, got {}", t.dtype());
            }
            t.to_i64_vec()
        }
    };
    let axes: Vec<usize> = match opt_input(inputs, 3) {
        Some(t) => index_values(t, "input 3 (axes)")?
            .into_iter()
            .map(|a| norm_axis(a, r))
            .collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    if pads.len() != 2 * axes.len() {
        crate::bail!(
            "Pad: pads has {} entries for {} axes",
            pads.len(),
            axes.len()
        );
    }
    let mut begin = vec![0i64; r];
    let mut end = vec![0i64; r];
    for (i, &a) in axes.iter().enumerate() {
        begin[a] = pads[i];
        end[a] = pads[i + axes.len()];
    }
    let mut oshape = Vec::with_capacity(r);
    for d in 0..r {
        let n = s[d] as i64 + begin[d] + end[d];
        if n < 0 {
            crate::bail!("Pad: pads {:?} leave a negative size on axis {d}", pads);
        }
        if n > 0 && s[d] == 0 && mode != PadMode::Constant {
            crate::bail!("Pad: cannot {mode:?}-pad the empty axis {d}");
        }
        oshape.push(n as usize);
    }
    // Per dim, the source index of every output position.
    let maps: Vec<Vec<Option<usize>>> = (0..r)
        .map(|d| {
            (0..oshape[d] as i64)
                .map(|o| pad_source(mode, o, begin[d], s[d]))
                .collect()
        })
        .collect();
    let st = strides(s);
    let total = numel(&oshape);
    let cval = match opt_input(inputs, 2) {
        Some(t) if pads_attr.is_none() && !t.is_empty() => {
            if t.dtype() != x.dtype() {
                crate::bail!(
                    "Pad: constant_value is {}, data is {}",
                    t.dtype(),
                    x.dtype()
                );
            }
            Some(t)
        }
        _ => None,
    };
    let data = crate::dispatch_data!(x.data(), v, T => {
        let fill: T = match cval {
            Some(t) => typed::<T>(t, "input 2 (constant_value)")?[0],
            None => T::from_f64(value_attr as f64),
        };
        let mut o: Vec<T> = Vec::with_capacity(total);
        let mut mi = vec![0usize; r];
        for _ in 0..total {
            let mut off = Some(0usize);
            for d in 0..r {
                off = match (off, maps[d][mi[d]]) {
                    (Some(acc), Some(i)) => Some(acc + i * st[d]),
                    _ => None,
                };
            }
            o.push(match off {
                Some(p) => v[p],
                None => fill,
            });
            next_index(&mut mi, &oshape);
        }
        <T as Storable>::wrap(o)
    });
    Tensor::new(oshape, data)
}
