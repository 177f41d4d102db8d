//! Shape and data-movement ops, for every dtype: Reshape, Flatten,
//! Transpose, Squeeze, Unsqueeze, Concat, Split, Slice, Gather, Shape,
//! Expand, Dropout and ConstantOfShape.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::util::{expand_to, gather_strided, input, opt_input, to_dim};
use crate::shape::{broadcast_shapes, slice_view};
use crate::shape::{norm_axis, numel, strides};
use crate::tensor::{Storable, Tensor};

/// An integer (shape-like) input as i64s.
fn ints(t: &Tensor, what: &str) -> Result<Vec<i64>> {
    if !t.dtype().is_int() {
        crate::bail!("{what} must be an integer tensor, got {}", t.dtype());
    }
    Ok(t.to_i64_vec())
}

/// Attribute values, else the integer input `i` (absent -> `None`).
fn attr_or_input(
    attr: Option<&[i64]>,
    inputs: &[Option<&Tensor>],
    i: usize,
    name: &str,
) -> Result<Option<Vec<i64>>> {
    match attr {
        Some(a) => Ok(Some(a.to_vec())),
        None => opt_input(inputs, i)
            .map(|t| ints(t, &format!("input {i} ({name})")))
            .transpose(),
    }
}

/// Reshape; `0` copies the input dim (unless `allowzero`), `-1` is inferred.
pub(crate) fn reshape(
    allowzero: bool,
    shape: Option<&[i64]>,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let target = match attr_or_input(shape, inputs, 1, "shape")? {
        Some(t) => t,
        None => crate::bail!("input 1 (shape) is missing"),
    };
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            -1 => crate::bail!("Reshape: more than one -1 in {:?}", target),
            0 if !allowzero => match x.shape().get(i) {
                Some(&v) => out.push(v),
                None => crate::bail!("Reshape: 0 at position {i} but input has rank {}", x.rank()),
            },
            d => out.push(to_dim(d, "Reshape shape")?),
        }
    }
    if let Some(i) = infer {
        let known = numel(&out);
        if known == 0 || x.len() % known != 0 {
            crate::bail!(
                "Reshape: cannot infer -1 to reshape {:?} into {:?}",
                x.shape(),
                target
            );
        }
        out[i] = x.len() / known;
    }
    if numel(&out) != x.len() {
        crate::bail!("Reshape: cannot reshape {:?} into {:?}", x.shape(), target);
    }
    x.clone().reshape(out)
}

/// Flatten to 2-D at `axis` (in `-r..=r`).
pub(crate) fn flatten(axis: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let r = x.rank() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a > r {
        crate::bail!("Flatten: axis {axis} out of range for rank {r}");
    }
    let s = x.shape();
    let a = a as usize;
    x.clone().reshape(vec![numel(&s[..a]), numel(&s[a..])])
}

/// Copies `x` read with `strides` from `base` into a tensor of `shape`.
fn strided_copy(x: &Tensor, shape: Vec<usize>, base: isize, st: &[isize]) -> Result<Tensor> {
    let data = crate::dispatch_data!(x.data(), v, T => <T as Storable>::wrap(gather_strided(v, &shape, base, st)));
    Tensor::new(shape, data)
}

/// Permute dims; `None` reverses them.
pub(crate) fn transpose(perm: Option<&[usize]>, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let r = x.rank();
    let perm = crate::shape::transpose_perm(perm, r)
        .map_err(|e| crate::Error::Msg(format!("Transpose: {e}")))?;
    let ist = strides(x.shape());
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let st: Vec<isize> = perm.iter().map(|&p| ist[p] as isize).collect();
    strided_copy(x, shape, 0, &st)
}

/// Remove size-1 dims: the given axes, or all of them.
pub(crate) fn squeeze(axes: Option<&[i64]>, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let s = x.shape();
    let mut drop = vec![false; s.len()];
    match attr_or_input(axes, inputs, 1, "axes")? {
        Some(axes) if !axes.is_empty() => {
            for a in axes {
                let a = norm_axis(a, s.len())?;
                if s[a] != 1 {
                    crate::bail!("Squeeze: dim {a} of {:?} is not 1", s);
                }
                drop[a] = true;
            }
        }
        _ => drop.iter_mut().zip(s).for_each(|(d, &n)| *d = n == 1),
    }
    let out: Vec<usize> = s
        .iter()
        .zip(&drop)
        .filter(|(_, &d)| !d)
        .map(|(&n, _)| n)
        .collect();
    x.clone().reshape(out)
}

/// Insert size-1 dims at `axes` (positions in the output).
pub(crate) fn unsqueeze(axes: Option<&[i64]>, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let axes = attr_or_input(axes, inputs, 1, "axes")?
        .ok_or_else(|| Error::msg("input 1 (axes) is missing"))?;
    let r = x.rank() + axes.len();
    let mut ins = vec![false; r];
    for a in axes {
        let a = norm_axis(a, r)?;
        if std::mem::replace(&mut ins[a], true) {
            crate::bail!("Unsqueeze: axis {a} repeated");
        }
    }
    let mut it = x.shape().iter();
    let out: Vec<usize> = ins
        .iter()
        .map(|&i| if i { Some(1) } else { it.next().copied() }.unwrap_or(1))
        .collect();
    x.clone().reshape(out)
}

/// Split along `axis` by sizes (attribute or input 1), else into `n_out`
/// parts of `ceil(d / n_out)` with a smaller last part.
pub(crate) fn split(
    axis: i64,
    split: Option<&[i64]>,
    inputs: &[Option<&Tensor>],
    n_out: usize,
) -> Result<Vec<Tensor>> {
    let x = input(inputs, 0, "input")?;
    let s = x.shape();
    let a = norm_axis(axis, s.len())?;
    let d = s[a];
    let sizes: Vec<usize> = match attr_or_input(split, inputs, 1, "split")? {
        Some(v) if !v.is_empty() => v
            .iter()
            .map(|&n| to_dim(n, "Split size"))
            .collect::<Result<_>>()?,
        _ => {
            if n_out == 0 {
                crate::bail!("Split: no outputs");
            }
            let chunk = d.div_ceil(n_out);
            (0..n_out)
                .map(|i| chunk.min(d.saturating_sub(chunk * i)))
                .collect()
        }
    };
    if sizes.len() != n_out || sizes.iter().sum::<usize>() != d {
        crate::bail!(
            "Split: sizes {:?} do not split dim {d} into {n_out} outputs",
            sizes
        );
    }
    let ist = strides(s);
    let st: Vec<isize> = ist.iter().map(|&v| v as isize).collect();
    let mut outs = Vec::with_capacity(n_out);
    let mut start = 0;
    for n in sizes {
        let mut sh = s.to_vec();
        sh[a] = n;
        outs.push(strided_copy(x, sh, (start * ist[a]) as isize, &st)?);
        start += n;
    }
    Ok(outs)
}

/// Strided slice with ONNX clamping; bounds from attributes or inputs 1..=4.
pub(crate) fn slice(
    starts: Option<&[i64]>,
    ends: Option<&[i64]>,
    axes: Option<&[i64]>,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let (starts, ends, axes, steps) = if let Some(st) = starts {
        let en = ends.ok_or_else(|| Error::msg("Slice: starts given without ends"))?;
        (st.to_vec(), en.to_vec(), axes.map(|a| a.to_vec()), None)
    } else {
        let st = ints(input(inputs, 1, "starts")?, "input 1 (starts)")?;
        let en = ints(input(inputs, 2, "ends")?, "input 2 (ends)")?;
        let ax = opt_input(inputs, 3)
            .map(|t| ints(t, "input 3 (axes)"))
            .transpose()?;
        let sp = opt_input(inputs, 4)
            .map(|t| ints(t, "input 4 (steps)"))
            .transpose()?;
        (st, en, ax, sp)
    };
    let k = starts.len();
    let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; k]);
    let (shape, st, base) = slice_view(x.shape(), &starts, &ends, &axes, &steps)
        .map_err(|e| Error::msg(format!("Slice: {e}")))?;
    if numel(&shape) == 0 {
        return Ok(Tensor::zeros(x.dtype(), shape));
    }
    strided_copy(x, shape, base, &st)
}

/// Gather along `axis`; negative indices count from the end.
pub(crate) fn gather(axis: i64, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let idx_t = input(inputs, 1, "indices")?;
    if !matches!(idx_t.dtype(), DType::I32 | DType::I64) {
        crate::bail!(
            "input 1 (indices): expected i32 or i64, got {}",
            idx_t.dtype()
        );
    }
    let s = x.shape();
    let a = norm_axis(axis, s.len())?;
    let d = s[a] as i64;
    let idx: Vec<usize> = idx_t
        .to_i64_vec()
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + d } else { i };
            if j < 0 || j >= d {
                Err(Error::msg(format!(
                    "Gather: index {i} out of range for axis {a} of size {d}"
                )))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Result<_>>()?;
    let mut oshape = s[..a].to_vec();
    oshape.extend(idx_t.shape());
    oshape.extend(&s[a + 1..]);
    let (outer, inner) = (numel(&s[..a]), numel(&s[a + 1..]));
    let data = crate::dispatch_data!(x.data(), v, T => {
        let mut o: Vec<T> = Vec::with_capacity(numel(&oshape));
        for k in 0..outer {
            let blk = &v[k * s[a] * inner..(k + 1) * s[a] * inner];
            for &j in &idx {
                o.extend_from_slice(&blk[j * inner..(j + 1) * inner]);
            }
        }
        <T as Storable>::wrap(o)
    });
    Tensor::new(oshape, data)
}

/// The shape of input 0 as i64, dims `start..end` (clamped).
pub(crate) fn shape_of(start: i64, end: Option<i64>, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "data")?;
    let r = x.rank() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    let dims: Vec<i64> = x.shape()[s..e.max(s)].iter().map(|&d| d as i64).collect();
    Tensor::from_vec(vec![dims.len()], dims)
}

/// Broadcast input 0 against the shape in input 1.
pub(crate) fn expand(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    let target: Vec<usize> = ints(input(inputs, 1, "shape")?, "input 1 (shape)")?
        .into_iter()
        .map(|d| to_dim(d, "Expand shape"))
        .collect::<Result<_>>()?;
    let shape = broadcast_shapes(x.shape(), &target)?;
    expand_to(x, &shape)
}

/// Dropout's `training_mode` input, when true, asks for random masking,
/// which inference does not do: refused (at load when it is a constant),
/// unless the ratio is 0, which keeps every element.
pub(crate) fn refuse_dropout_training(
    training_mode: &Tensor,
    ratio: Option<&Tensor>,
) -> Result<()> {
    if ratio.is_some_and(|r| !r.is_empty() && r.to_f32_vec().iter().all(|&v| v == 0.0)) {
        return Ok(());
    }
    if training_mode
        .to_f32_vec()
        .first()
        .is_some_and(|&v| v != 0.0)
    {
        crate::bail!("Dropout with training_mode = true is not supported (inference only)");
    }
    Ok(())
}

/// Inference dropout: the input, plus an all-true mask as second output.
pub(crate) fn dropout(inputs: &[Option<&Tensor>], n_out: usize) -> Result<Vec<Tensor>> {
    let x = input(inputs, 0, "data")?;
    if let Some(t) = inputs.get(2).copied().flatten() {
        refuse_dropout_training(t, inputs.get(1).copied().flatten())?;
    }
    let mut outs = vec![x.clone()];
    if n_out > 1 {
        outs.push(Tensor::from_vec(x.shape().to_vec(), vec![true; x.len()])?);
    }
    Ok(outs)
}

/// A tensor of the shape in input 0 filled with `value`'s one element.
pub(crate) fn constant_of_shape(value: &Tensor, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let shape: Vec<usize> = ints(input(inputs, 0, "input")?, "input 0 (shape)")?
        .into_iter()
        .map(|d| to_dim(d, "ConstantOfShape"))
        .collect::<Result<_>>()?;
    if value.len() != 1 {
        crate::bail!(
            "ConstantOfShape: value must have one element, got {}",
            value.len()
        );
    }
    let n = numel(&shape);
    let data = crate::dispatch_data!(value.data(), v, T => <T as Storable>::wrap(vec![v[0]; n]));
    Tensor::new(shape, data)
}

/// ONNX Range: `max(ceil((limit - start) / delta), 0)` elements
/// `start + i * delta`, for f32, f64, i16, i32 and i64 scalars.
pub(crate) fn range(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let names = ["start", "limit", "delta"];
    let mut v = [0f64; 3];
    let mut dt = None;
    for (k, name) in names.iter().enumerate() {
        let t = input(inputs, k, name)?;
        if t.len() != 1 {
            crate::bail!("Range: {name} must be a scalar, got shape {:?}", t.shape());
        }
        if *dt.get_or_insert(t.dtype()) != t.dtype() {
            crate::bail!(
                "Range: {name} is {}, start is {}",
                t.dtype(),
                dt.unwrap_or(t.dtype())
            );
        }
        v[k] = t.cast(DType::F64).as_slice::<f64>()?[0];
    }
    let dt = dt.unwrap_or(DType::F32);
    let [start, limit, delta] = v;
    if delta == 0.0 || !delta.is_finite() {
        crate::bail!("Range: delta must be a non-zero finite number, got {delta}");
    }
    let n = ((limit - start) / delta).ceil().max(0.0);
    if !n.is_finite() || n > (1u64 << 40) as f64 {
        crate::bail!("Range: {n} elements from start {start}, limit {limit}, delta {delta}");
    }
    let n = n as usize;
    let t = match dt {
        DType::F32 | DType::F16 | DType::BF16 => {
            let (s, d) = (start as f32, delta as f32);
            Tensor::from_vec(
                vec![n],
                (0..n).map(|i| s + i as f32 * d).collect::<Vec<f32>>(),
            )?
            .cast(dt)
        }
        DType::F64 => Tensor::from_vec(
            vec![n],
            (0..n)
                .map(|i| start + i as f64 * delta)
                .collect::<Vec<f64>>(),
        )?,
        DType::I16 | DType::I32 | DType::I64 => {
            let (s, d) = (start as i64, delta as i64);
            Tensor::from_vec(
                vec![n],
                (0..n as i64).map(|i| s + i * d).collect::<Vec<i64>>(),
            )?
            .cast(dt)
        }
        other => crate::bail!("Range does not support {other}"),
    };
    Ok(t)
}

#[cfg(test)]
pub(super) mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::t;
    use crate::op::Op;
    use crate::tensor::Tensor;

    /// The op's first output (the movement tests' runner; `concat.rs`'s
    /// tests use it too).
    pub(in crate::op::movement) fn run(op: Op, ins: &[Option<&Tensor>]) -> Tensor {
        eval(&op, ins, 1).expect("eval").remove(0)
    }

    /// `0, 1, 2, ...` as i64 in `shape`.
    pub(in crate::op::movement) fn range(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        t(shape, (0..n as i64).collect::<Vec<i64>>())
    }

    #[test]
    fn reshape_zero_and_minus_one() {
        let x = range(&[2, 3, 4]);
        let r = run(
            Op::Reshape {
                allowzero: false,
                shape: None,
            },
            &[Some(&x), Some(&t(&[3], vec![0i64, -1, 2]))],
        );
        assert_eq!(r.shape(), &[2, 6, 2]);
        let r = run(
            Op::Reshape {
                allowzero: false,
                shape: Some(vec![-1]),
            },
            &[Some(&x)],
        );
        assert_eq!(r.shape(), &[24]);
        let e = eval(
            &Op::Reshape {
                allowzero: false,
                shape: Some(vec![5, -1]),
            },
            &[Some(&x)],
            1,
        );
        assert!(e.is_err());
        let e = eval(
            &Op::Reshape {
                allowzero: true,
                shape: Some(vec![0, 24]),
            },
            &[Some(&x)],
            1,
        );
        assert!(e.is_err());
    }

    #[test]
    fn transpose_flatten_squeeze_unsqueeze() {
        let x = range(&[2, 3, 4]);
        let r = run(
            Op::Transpose {
                perm: Some(vec![2, 0, 1]),
            },
            &[Some(&x)],
        );
        assert_eq!(r.shape(), &[4, 2, 3]);
        let v = r.as_slice::<i64>().unwrap();
        for k in 0..4 {
            for i in 0..2 {
                for j in 0..3 {
                    assert_eq!(v[k * 6 + i * 3 + j], (i * 12 + j * 4 + k) as i64);
                }
            }
        }
        assert_eq!(
            run(Op::Transpose { perm: None }, &[Some(&x)]).shape(),
            &[4, 3, 2]
        );
        assert_eq!(run(Op::Flatten { axis: -1 }, &[Some(&x)]).shape(), &[6, 4]);
        assert_eq!(run(Op::Flatten { axis: 3 }, &[Some(&x)]).shape(), &[24, 1]);
        let y = range(&[1, 3, 1]);
        assert_eq!(run(Op::Squeeze { axes: None }, &[Some(&y)]).shape(), &[3]);
        assert_eq!(
            run(
                Op::Squeeze { axes: None },
                &[Some(&y), Some(&t(&[1], vec![-1i64]))]
            )
            .shape(),
            &[1, 3]
        );
        assert!(eval(
            &Op::Squeeze {
                axes: Some(vec![1])
            },
            &[Some(&y)],
            1
        )
        .is_err());
        assert_eq!(
            run(
                Op::Unsqueeze {
                    axes: Some(vec![0, -1])
                },
                &[Some(&y)]
            )
            .shape(),
            &[1, 1, 3, 1, 1]
        );
    }

    #[test]
    fn concat_and_split() {
        let a = range(&[2, 2]);
        let b = t(&[2, 1], vec![10i64, 11]);
        let r = run(Op::Concat { axis: 1 }, &[Some(&a), Some(&b)]);
        assert_eq!(r.as_slice::<i64>().unwrap(), &[0, 1, 10, 2, 3, 11]);
        // Even split with an uneven last chunk: 5 -> 2, 2, 1.
        let x = range(&[5]);
        let r = eval(
            &Op::Split {
                axis: 0,
                split: None,
            },
            &[Some(&x)],
            3,
        )
        .unwrap();
        let got: Vec<Vec<i64>> = r
            .iter()
            .map(|t| t.as_slice::<i64>().unwrap().to_vec())
            .collect();
        assert_eq!(got, vec![vec![0, 1], vec![2, 3], vec![4]]);
        let y = range(&[2, 3]);
        let r = eval(
            &Op::Split {
                axis: 1,
                split: None,
            },
            &[Some(&y), Some(&t(&[2], vec![1i64, 2]))],
            2,
        )
        .unwrap();
        assert_eq!(r[0].as_slice::<i64>().unwrap(), &[0, 3]);
        assert_eq!(r[1].as_slice::<i64>().unwrap(), &[1, 2, 4, 5]);
        assert!(eval(
            &Op::Split {
                axis: 1,
                split: Some(vec![1, 1])
            },
            &[Some(&y)],
            2
        )
        .is_err());
    }

    #[test]
    fn slice_negative_steps_and_clamping() {
        // ONNX slice_neg_steps: x[20,10,5], starts [20,10,4], ends [0,0,1], axes [0,1,2], steps [-1,-3,-2] -> [19,3,2].
        let x = range(&[20, 10, 5]);
        let i = |v: Vec<i64>| t(&[v.len()], v);
        let (st, en, ax, sp) = (
            i(vec![20, 10, 4]),
            i(vec![0, 0, 1]),
            i(vec![0, 1, 2]),
            i(vec![-1, -3, -2]),
        );
        let r = run(
            Op::Slice {
                starts: None,
                ends: None,
                axes: None,
            },
            &[Some(&x), Some(&st), Some(&en), Some(&ax), Some(&sp)],
        );
        assert_eq!(r.shape(), &[19, 3, 2]);
        let v = r.as_slice::<i64>().unwrap();
        let mut want = vec![];
        for a in (1..=19).rev() {
            for b in [9, 6, 3] {
                for c in [4, 2] {
                    want.push((a * 50 + b * 5 + c) as i64);
                }
            }
        }
        assert_eq!(v, &want[..]);
        // Clamped end and negative start, attribute form.
        let r = run(
            Op::Slice {
                starts: Some(vec![-3]),
                ends: Some(vec![i64::MAX]),
                axes: Some(vec![1]),
            },
            &[Some(&range(&[2, 5]))],
        );
        assert_eq!(r.as_slice::<i64>().unwrap(), &[2, 3, 4, 7, 8, 9]);
        // Empty result.
        let r = run(
            Op::Slice {
                starts: Some(vec![3]),
                ends: Some(vec![1]),
                axes: None,
            },
            &[Some(&range(&[5]))],
        );
        assert_eq!(r.shape(), &[0]);
    }

    #[test]
    fn gather_negative_indices() {
        let x = t(&[3, 2], vec![1.0f32, 1.2, 2.3, 3.4, 4.5, 5.7]);
        let idx = t(&[2, 2], vec![0i64, 1, -1, 2]);
        let r = run(Op::Gather { axis: 0 }, &[Some(&x), Some(&idx)]);
        assert_eq!(r.shape(), &[2, 2, 2]);
        assert_eq!(
            r.as_slice::<f32>().unwrap(),
            &[1.0, 1.2, 2.3, 3.4, 4.5, 5.7, 4.5, 5.7]
        );
        let idx = t(&[1], vec![-2i32]);
        let r = run(Op::Gather { axis: 1 }, &[Some(&x), Some(&idx)]);
        assert_eq!(r.as_slice::<f32>().unwrap(), &[1.0, 2.3, 4.5]);
        assert!(eval(
            &Op::Gather { axis: 0 },
            &[Some(&x), Some(&t(&[1], vec![3i64]))],
            1
        )
        .is_err());
    }

    #[test]
    fn shape_expand_dropout_constant() {
        let x = range(&[2, 3, 4]);
        assert_eq!(
            run(
                Op::Shape {
                    start: 0,
                    end: None
                },
                &[Some(&x)]
            )
            .as_slice::<i64>()
            .unwrap(),
            &[2, 3, 4]
        );
        assert_eq!(
            run(
                Op::Shape {
                    start: -2,
                    end: Some(10)
                },
                &[Some(&x)]
            )
            .as_slice::<i64>()
            .unwrap(),
            &[3, 4]
        );
        let r = run(
            Op::Expand,
            &[
                Some(&t(&[3, 1], vec![1u8, 2, 3])),
                Some(&t(&[3], vec![2i64, 1, 2])),
            ],
        );
        assert_eq!(r.shape(), &[2, 3, 2]);
        assert_eq!(
            r.as_slice::<u8>().unwrap(),
            &[1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]
        );
        let r = eval(&Op::Dropout, &[Some(&x)], 2).unwrap();
        assert_eq!(r[0], x);
        assert!(r[1].as_slice::<bool>().unwrap().iter().all(|&b| b));
        let r = run(
            Op::ConstantOfShape {
                value: Tensor::scalar(7i32),
            },
            &[Some(&t(&[2], vec![2i64, 2]))],
        );
        assert_eq!(r.as_slice::<i32>().unwrap(), &[7; 4]);
        let r = run(
            Op::Cast {
                to: crate::DType::I32,
                saturate: true,
                round: Default::default(),
            },
            &[Some(&t(&[2], vec![1.7f32, -1.7]))],
        );
        assert_eq!(r.as_slice::<i32>().unwrap(), &[1, -1]);
    }
}

#[cfg(test)]
mod dropout_tests {
    use crate::kernels::eval;
    use crate::op::Op;
    use crate::tensor::Tensor;

    #[test]
    fn dropout_passes_through_and_refuses_training_mode() {
        let x = Tensor::from_vec(vec![3], vec![1f32, -2.0, 3.0]).unwrap();
        let off = Tensor::scalar(false);
        let on = Tensor::scalar(true);
        let r = eval(&Op::Dropout, &[Some(&x), None, Some(&off)], 2).unwrap();
        assert_eq!(r[0], x);
        assert_eq!(r[1].as_slice::<bool>().unwrap(), &[true; 3]);
        let e = eval(&Op::Dropout, &[Some(&x), None, Some(&on)], 1).unwrap_err();
        assert!(e.to_string().contains("training_mode"), "{e}");
    }
}
