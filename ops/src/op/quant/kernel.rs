//! Quantisation and bit reinterpretation: QuantizeLinear,
//! DequantizeLinear (per tensor, per axis or blocked),
//! DynamicQuantizeLinear and BitCast. Computed in f64; quantised values
//! round half to even and saturate to the integer type (4- and 2-bit
//! ones too), or saturate in the cast to an 8/4-bit float type.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input, out};
use crate::shape::numel;
use crate::tensor::Tensor;

/// The index into a scale / zero-point tensor for every element of a
/// tensor of shape `s`: one value, one per index along `axis`, or one per
/// block of `block` indices along `axis` (same rank as the data).
fn param_index(
    name: &str,
    s: &[usize],
    param: &[usize],
    axis: i64,
    block: usize,
) -> Result<Vec<usize>> {
    let n_el = numel(s);
    let plen = numel(param);
    if plen == 1 {
        return Ok(vec![0; n_el]);
    }
    let a = crate::shape::norm_axis(axis, s.len())?;
    let (n, inner) = (s[a], numel(&s[a + 1..]));
    if block == 0 {
        if param.len() != 1 || param[0] != n {
            crate::bail!(
                "{name}: per-axis scale {:?} must have {n} entries (axis {a} of {:?})",
                param,
                s
            );
        }
        return Ok((0..n_el).map(|p| (p / inner) % n).collect());
    }
    let nb = n.div_ceil(block);
    let mut want = s.to_vec();
    want[a] = nb;
    if param != want.as_slice() {
        crate::bail!(
            "{name}: blocked scale {:?} must be {:?} for block_size {block}",
            param,
            want
        );
    }
    Ok((0..n_el)
        .map(|p| {
            let (o, i, j) = (p / (n * inner), (p / inner) % n, p % inner);
            (o * nb + i / block) * inner + j
        })
        .collect())
}

/// The value range of an integer dtype (as f64).
fn int_range(dt: DType) -> Result<(f64, f64)> {
    Ok(match dt {
        DType::I8 => (i8::MIN as f64, i8::MAX as f64),
        DType::U8 => (0.0, u8::MAX as f64),
        DType::I16 => (i16::MIN as f64, i16::MAX as f64),
        DType::U16 => (0.0, u16::MAX as f64),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
        DType::U32 => (0.0, u32::MAX as f64),
        DType::I4 => (-8.0, 7.0),
        DType::U4 => (0.0, 15.0),
        DType::I2 => (-2.0, 1.0),
        DType::U2 => (0.0, 3.0),
        other => crate::bail!("quantisation to {other} is unsupported"),
    })
}

/// A zero point fits its scale: the same shape, or one element each
/// (`[1]` and `[]` both mean per tensor).
fn same_params(zp: &Tensor, scale: &Tensor) -> bool {
    zp.shape() == scale.shape() || (zp.len() == 1 && scale.len() == 1)
}

fn f64s(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.cast(DType::F64).as_slice::<f64>()?.to_vec())
}

/// QuantizeLinear: `saturate(round(x / scale) + zero_point)`, in the zero
/// point's dtype (else `out_dtype`, else u8).
pub(crate) fn quantize(
    axis: i64,
    block: usize,
    out_dtype: Option<DType>,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "x")?;
    let scale = input(inputs, 1, "y_scale")?;
    let zp = opt_input(inputs, 2);
    if x.dtype() == DType::Bool || !scale.dtype().is_float() {
        crate::bail!(
            "QuantizeLinear: x {} and y_scale {} must be numeric and float",
            x.dtype(),
            scale.dtype()
        );
    }
    let dt = zp.map(|z| z.dtype()).or(out_dtype).unwrap_or(DType::U8);
    // A narrow float target takes the unrounded value and saturates in the
    // cast; integers round half to even and clamp to their range.
    let range = if dt.is_narrow_float() {
        None
    } else {
        Some(int_range(dt)?)
    };
    let idx = param_index("QuantizeLinear", x.shape(), scale.shape(), axis, block)?;
    let sv = f64s(scale)?;
    let zv = match zp {
        Some(z) => {
            if !same_params(z, scale) {
                crate::bail!(
                    "QuantizeLinear: zero point shape {:?} differs from scale {:?}",
                    z.shape(),
                    scale.shape()
                );
            }
            f64s(z)?
        }
        None => vec![0.0; sv.len()],
    };
    let xv = f64s(x)?;
    // `x / scale` in f32 when both are f32, as ONNX computes it: an f64
    // quotient can fall on the other side of a rounding tie.
    let single = x.dtype() == DType::F32 && scale.dtype() == DType::F32;
    let div = |v: f64, s: f64| {
        if single {
            f64::from((v / s) as f32)
        } else {
            v / s
        }
    };
    let q: Vec<f64> = xv
        .iter()
        .zip(&idx)
        .map(|(&v, &k)| match range {
            Some((lo, hi)) => (div(v, sv[k]).round_ties_even() + zv[k]).clamp(lo, hi),
            None => div(v, sv[k]) + zv[k],
        })
        .collect();
    Ok(out(x.shape().to_vec(), q)?.cast(dt))
}

/// DequantizeLinear: `(x - zero_point) * scale`, in the scale's dtype (or
/// `out_dtype`).
pub(crate) fn dequantize(
    axis: i64,
    block: usize,
    out_dtype: Option<DType>,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "x")?;
    let scale = input(inputs, 1, "x_scale")?;
    let zp = opt_input(inputs, 2);
    if !(x.dtype().is_int() || x.dtype().is_narrow_float()) || !scale.dtype().is_float() {
        crate::bail!(
            "DequantizeLinear: x {} must be an integer or 8/4-bit float and x_scale {} a float tensor",
            x.dtype(),
            scale.dtype()
        );
    }
    let idx = param_index("DequantizeLinear", x.shape(), scale.shape(), axis, block)?;
    let sv = f64s(scale)?;
    let zv = match zp {
        Some(z) => {
            if z.dtype() != x.dtype() || !same_params(z, scale) {
                crate::bail!(
                    "DequantizeLinear: zero point {} {:?} must match x's dtype and the scale's shape",
                    z.dtype(),
                    z.shape()
                );
            }
            f64s(z)?
        }
        None => vec![0.0; sv.len()],
    };
    let xv = f64s(x)?;
    let y: Vec<f64> = xv
        .iter()
        .zip(&idx)
        .map(|(&v, &k)| (v - zv[k]) * sv[k])
        .collect();
    Ok(out(x.shape().to_vec(), y)?.cast(out_dtype.unwrap_or(scale.dtype())))
}

/// DynamicQuantizeLinear: u8 quantisation over the range of x (widened to
/// include 0); outputs y, the f32 scale and the u8 zero point.
pub(crate) fn dynamic_quantize(inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    let x = input(inputs, 0, "x")?;
    if x.dtype() != DType::F32 {
        crate::bail!(
            "DynamicQuantizeLinear needs an f32 tensor, got {}",
            x.dtype()
        );
    }
    let xv = x.as_slice::<f32>()?;
    let mx = xv.iter().fold(0f32, |m, &v| m.max(v));
    let mn = xv.iter().fold(0f32, |m, &v| m.min(v));
    let scale = (mx - mn) / 255.0;
    let zp = if scale == 0.0 {
        0.0
    } else {
        (-mn / scale).round_ties_even().clamp(0.0, 255.0)
    };
    let y: Vec<u8> = xv
        .iter()
        .map(|&v| {
            let q = if scale == 0.0 {
                zp
            } else {
                (v / scale).round_ties_even() + zp
            };
            q.clamp(0.0, 255.0) as u8
        })
        .collect();
    Ok(vec![
        out(x.shape().to_vec(), y)?,
        Tensor::scalar(scale),
        Tensor::scalar(zp as u8),
    ])
}

/// BitCast: the same bytes read as `to` (same element size).
pub(crate) fn bit_cast(to: DType, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    if x.dtype().size() != to.size() {
        crate::bail!(
            "BitCast from {} ({} bytes) to {to} ({} bytes): sizes differ",
            x.dtype(),
            x.dtype().size(),
            to.size()
        );
    }
    Tensor::from_le_bytes(to, x.shape().to_vec(), &x.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::t;
    use crate::op::Op;
    use crate::DType;

    #[test]
    fn quantize_rounds_half_even_and_saturates_per_axis() {
        // x [2, 3], per-axis (axis 1) scales and zero points.
        let x = t(&[2, 3], vec![0.5f32, 3.0, -1000.0, 1.5, 2.5, 7.0]);
        let s = t(&[3], vec![1.0f32, 2.0, 0.5]);
        let z = t(&[3], vec![0u8, 10, 128]);
        let op = Op::QuantizeLinear {
            axis: 1,
            block_size: 0,
            dtype: None,
        };
        let q = eval(&op, &[Some(&x), Some(&s), Some(&z)], 1)
            .unwrap()
            .remove(0);
        // round(0.5)=0, round(1.5)=2, -2000+128 saturates to 0, round(1.5)=2,
        // round(1.25)=1 -> 11, 14+128.
        assert_eq!(q.as_slice::<u8>().unwrap(), &[0, 12, 0, 2, 11, 142]);
        let op = Op::DequantizeLinear {
            axis: 1,
            block_size: 0,
            dtype: None,
        };
        let d = eval(&op, &[Some(&q), Some(&s), Some(&z)], 1)
            .unwrap()
            .remove(0);
        assert_eq!(
            d.as_slice::<f32>().unwrap(),
            &[0.0, 4.0, -64.0, 2.0, 2.0, 7.0]
        );
        let b = eval(
            &Op::BitCast { to: DType::I32 },
            &[Some(&t(&[1], vec![1.0f32]))],
            1,
        )
        .unwrap()
        .remove(0);
        assert_eq!(b.as_slice::<i32>().unwrap(), &[0x3f80_0000]);
    }
}
