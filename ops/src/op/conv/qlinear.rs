//! QLinearConv (opset 10): the integer convolution of
//! [`super::kernel::conv_integer`] (plus the i32 bias), requantized with
//! `x_scale * w_scale / y_scale` (per output channel when `w_scale` is),
//! rounded half to even, shifted by `y_zero_point` and saturated to its
//! dtype (u8 or i8).

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input};
use crate::op::ConvAttrs;
use crate::tensor::Tensor;

/// Inputs x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
/// y_zero_point, optional B (i32).
pub(crate) fn qlinear_conv(a: &ConvAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "x")?;
    let w = input(inputs, 3, "w")?;
    let acc = super::kernel::conv_integer(
        a,
        &[Some(x), Some(w), opt_input(inputs, 2), opt_input(inputs, 5)],
    )?;
    let m = w.shape().first().copied().unwrap_or(0);
    let f32s = |i: usize, what: &str| -> Result<Vec<f32>> {
        let t = input(inputs, i, what)?;
        if t.dtype() != DType::F32 {
            crate::bail!("QLinearConv: {what} must be f32, got {}", t.dtype());
        }
        Ok(t.to_f32_vec())
    };
    let (xs, ws, ys) = (
        f32s(1, "x_scale")?,
        f32s(4, "w_scale")?,
        f32s(6, "y_scale")?,
    );
    if xs.len() != 1 || ys.len() != 1 || !(ws.len() == 1 || ws.len() == m) {
        crate::bail!(
            "QLinearConv: x_scale and y_scale must be scalars and w_scale a scalar or one per output channel ({m}); got {}, {} and {}",
            xs.len(),
            ys.len(),
            ws.len()
        );
    }
    let (zdt, yz) = match opt_input(inputs, 7) {
        Some(z) if z.len() == 1 => (z.dtype(), z.to_f32_vec()[0] as f64),
        Some(z) => crate::bail!(
            "QLinearConv: y_zero_point must be one value, got {:?}",
            z.shape()
        ),
        None => (DType::U8, 0.0),
    };
    let (lo, hi) = match zdt {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        d => crate::bail!("QLinearConv: y_zero_point must be u8 or i8, got {d}"),
    };
    let bias = match opt_input(inputs, 8) {
        Some(b) if b.dtype() == DType::I32 && b.len() == m => b.to_i64_vec(),
        Some(b) => crate::bail!(
            "QLinearConv: B must be {m} i32 values, got {} {:?}",
            b.dtype(),
            b.shape()
        ),
        None => vec![0; m],
    };
    let shape = acc.shape().to_vec();
    // Elements per (image, output channel).
    let per = (acc.len() / shape[0].max(1)).checked_div(m).unwrap_or(0);
    let v: Vec<f64> = acc
        .to_i64_vec()
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            let oc = i.checked_div(per).map_or(0, |c| c % m);
            let mult = xs[0] * ws[if ws.len() == 1 { 0 } else { oc }] / ys[0];
            let q = (r + bias[oc]) as f64 * f64::from(mult) + yz;
            q.clamp(lo, hi).round_ties_even()
        })
        .collect();
    Ok(Tensor::from_vec(shape, v)?.cast(zdt))
}
