//! STFT and MelWeightMatrix (opset 17), computed in f64.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input};
use crate::tensor::Tensor;

/// A scalar integer input.
fn int_scalar(t: &Tensor, what: &str) -> Result<i64> {
    if t.len() != 1 || !t.dtype().is_int() {
        crate::bail!(
            "{what} must be one integer, got {} {:?}",
            t.dtype(),
            t.shape()
        );
    }
    Ok(t.to_i64_vec()[0])
}

/// A scalar float input.
fn float_scalar(t: &Tensor, what: &str) -> Result<f64> {
    if t.len() != 1 || !t.dtype().is_float() {
        crate::bail!(
            "{what} must be one float, got {} {:?}",
            t.dtype(),
            t.shape()
        );
    }
    Ok(t.cast(DType::F64).as_slice::<f64>()?[0])
}

/// STFT: inputs signal `[B, L, 1 | 2]` (real or complex), frame_step,
/// optional window `[W]`, optional frame_length; output `[B, frames,
/// bins, 2]` with `frames = 1 + (L - W) / step` and `bins = W / 2 + 1`
/// when `onesided`, else `W`.
pub(crate) fn stft(onesided: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "signal")?;
    let s = x.shape();
    if !x.dtype().is_float() || s.len() != 3 || !(s[2] == 1 || s[2] == 2) {
        crate::bail!(
            "STFT: signal must be a float [batch, length, 1 | 2], got {} {s:?}",
            x.dtype()
        );
    }
    let (b, l, comp) = (s[0], s[1], s[2]);
    let step = int_scalar(input(inputs, 1, "frame_step")?, "frame_step")?;
    let window = opt_input(inputs, 2).filter(|t| !t.is_empty());
    let flen = opt_input(inputs, 3)
        .filter(|t| !t.is_empty())
        .map(|t| int_scalar(t, "frame_length"))
        .transpose()?;
    if let Some(wt) = window.filter(|wt| wt.rank() != 1) {
        crate::bail!("STFT: window must be 1-D, got {:?}", wt.shape());
    }
    let w = match (window, flen) {
        (Some(wt), Some(f)) if wt.len() as i64 != f => {
            crate::bail!(
                "STFT: frame_length {f} differs from the window's {}",
                wt.len()
            )
        }
        (Some(wt), _) => wt.len(),
        (None, Some(f)) => usize::try_from(f)
            .map_err(|_| crate::Error::msg(format!("STFT: frame_length {f} is negative")))?,
        (None, None) => l,
    };
    if step < 1 || w < 1 || w > l {
        crate::bail!(
            "STFT: frame_step {step} and frame length {w} do not fit a signal of length {l}"
        );
    }
    let step = step as usize;
    let frames = 1 + (l - w) / step;
    let bins = if onesided { w / 2 + 1 } else { w };
    let win = match window {
        Some(t) => t.cast(DType::F64).into_vec::<f64>()?,
        None => vec![1.0; w],
    };
    let xv = x.cast(DType::F64).into_vec::<f64>()?;
    // Twiddles e^{-2 pi i k n / w}, indexed by (k * n) mod w.
    let tw: Vec<(f64, f64)> = (0..w)
        .map(|j| {
            let a = -2.0 * std::f64::consts::PI * j as f64 / w as f64;
            (a.cos(), a.sin())
        })
        .collect();
    let mut out = vec![0f64; b * frames * bins * 2];
    for bi in 0..b {
        for f in 0..frames {
            let start = f * step;
            for k in 0..bins {
                let (mut re, mut im) = (0.0, 0.0);
                for (n, &wn) in win.iter().enumerate() {
                    let at = (bi * l + start + n) * comp;
                    let (xr, xi) = (xv[at] * wn, if comp == 2 { xv[at + 1] * wn } else { 0.0 });
                    let (c, sn) = tw[(k * n) % w];
                    re += xr * c - xi * sn;
                    im += xr * sn + xi * c;
                }
                let o = ((bi * frames + f) * bins + k) * 2;
                out[o] = re;
                out[o + 1] = im;
            }
        }
    }
    Ok(Tensor::from_vec(vec![b, frames, bins, 2], out)?.cast(x.dtype()))
}

/// MelWeightMatrix: inputs num_mel_bins, dft_length, sample_rate,
/// lower_edge_hertz, upper_edge_hertz (scalars); output
/// `[dft_length / 2 + 1, num_mel_bins]` of triangular filters in `dtype`,
/// on the integer spectrogram bins of the ONNX definition.
pub(crate) fn mel_weight_matrix(dtype: DType, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let mels = int_scalar(input(inputs, 0, "num_mel_bins")?, "num_mel_bins")?;
    let dft = int_scalar(input(inputs, 1, "dft_length")?, "dft_length")?;
    let rate = int_scalar(input(inputs, 2, "sample_rate")?, "sample_rate")?;
    let lo = float_scalar(input(inputs, 3, "lower_edge_hertz")?, "lower_edge_hertz")?;
    let hi = float_scalar(input(inputs, 4, "upper_edge_hertz")?, "upper_edge_hertz")?;
    if mels < 1 || dft < 1 || rate < 1 || !(0.0..=hi).contains(&lo) {
        crate::bail!(
            "MelWeightMatrix: needs positive num_mel_bins ({mels}), dft_length ({dft}) and sample_rate ({rate}), and 0 <= lower_edge_hertz ({lo}) <= upper_edge_hertz ({hi})"
        );
    }
    let (mels, spec) = (mels as usize, dft as usize / 2 + 1);
    let mel = |hz: f64| 2595.0 * (hz / 700.0).ln_1p() / 10f64.ln();
    let (lo_mel, hi_mel) = (mel(lo), mel(hi));
    let step = (hi_mel - lo_mel) / (mels + 2) as f64;
    // The spectrogram bin of each of the mels + 2 edge frequencies.
    let edges: Vec<usize> = (0..mels + 2)
        .map(|i| {
            let hz = 700.0 * ((i as f64 * step + lo_mel) / 2595.0 * 10f64.ln()).exp_m1();
            (((dft + 1) as f64 * hz) / rate as f64).floor().max(0.0) as usize
        })
        .collect();
    let mut out = vec![0f64; spec * mels];
    let mut set = |j: usize, i: usize, v: f64| -> Result<()> {
        if j >= spec {
            crate::bail!("MelWeightMatrix: upper_edge_hertz {hi} lies above the Nyquist bin");
        }
        out[j * mels + i] = v;
        Ok(())
    };
    for i in 0..mels {
        let (l, c, h) = (edges[i], edges[i + 1], edges[i + 2]);
        if c == l {
            set(c, i, 1.0)?;
        } else {
            for j in l..=c {
                set(j, i, (j - l) as f64 / (c - l) as f64)?;
            }
        }
        for j in c..h {
            set(j, i, (h - j) as f64 / (h - c) as f64)?;
        }
    }
    Ok(Tensor::from_vec(vec![spec, mels], out)?.cast(dtype))
}
