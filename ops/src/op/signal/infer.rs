//! Shape and dtype inference of the signal ops (from
//! [`crate::infer::infer_op`]).

use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Dim, Fact};
use crate::op::common::{const_ints, input, one, opt_input, other_family, with_dtype};
use crate::op::matmul::infer::matmul_shape;
use crate::op::Op;
use crate::shape::norm_axis;

/// Infers the output facts of one of this family's ops from its inputs'
/// facts (dispatched from [`crate::infer::infer_op`]).
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>], _n_out: usize) -> Result<Vec<Fact>> {
    match op {
        Op::Dft {
            axis,
            inverse,
            onesided,
        } => {
            let x = input(inputs, 0)?;
            let shape = x.shape.as_ref().map(|s| {
                let r = s.len();
                let ax = match axis {
                    Some(a) => Some(*a),
                    None => match opt_input(inputs, 2) {
                        None => Some(-2),
                        f => const_ints(f).and_then(|v| v.first().copied()),
                    },
                };
                let mut o: Vec<Dim> = (0..r).map(|i| Dim::Sym(format!("dft_{i}"))).collect();
                for (i, d) in s.iter().enumerate().take(r.saturating_sub(1)) {
                    let is_axis = ax.and_then(|a| norm_axis(a, r).ok()) == Some(i);
                    if !is_axis && ax.is_some() {
                        o[i] = d.clone();
                    }
                }
                if r > 0 {
                    o[r - 1] = Dim::Known(if *inverse && *onesided { 1 } else { 2 });
                }
                // The transform's length: dft_length (a constant, or read
                // by the runtime), else the signal's along the axis.
                if let Some(a) = ax.and_then(|a| norm_axis(a, r).ok()).filter(|&a| a + 1 < r) {
                    let n = match opt_input(inputs, 1) {
                        None => s[a].known(),
                        f => const_ints(f)
                            .and_then(|v| v.first().copied())
                            .and_then(|l| usize::try_from(l).ok()),
                    };
                    if let Some(n) = n.filter(|&n| n > 0) {
                        o[a] = Dim::Known(match (*inverse, *onesided) {
                            (false, true) => n / 2 + 1,
                            (false, false) | (true, false) => n,
                            // A one-sided inverse without dft_length
                            // restores 2 (n - 1) samples.
                            (true, true) if opt_input(inputs, 1).is_none() => {
                                2 * n.saturating_sub(1)
                            }
                            (true, true) => n,
                        });
                    }
                }
                o
            });
            one(with_dtype(x.dtype, shape))
        }
        Op::Stft { onesided } => {
            let x = input(inputs, 0)?;
            if let Some(r) = x.rank().filter(|&r| r != 3) {
                crate::bail!("STFT: signal must be [batch, length, 1 | 2], got rank {r}");
            }
            // Frames and bins follow the values of frame_step, window and
            // frame_length; known when those are constants.
            let step = const_ints(opt_input(inputs, 1)).and_then(|v| v.first().copied());
            let wlen = match (opt_input(inputs, 2), opt_input(inputs, 3)) {
                (Some(w), _) => w
                    .shape
                    .as_ref()
                    .and_then(|s| s.first())
                    .and_then(|d| d.known()),
                (None, f) => const_ints(f)
                    .and_then(|v| v.first().copied())
                    .map(|v| v.max(0) as usize),
            };
            let shape = x.shape.as_ref().map(|s| {
                let len = s.get(1).and_then(|d| d.known());
                let frames = match (len, wlen, step) {
                    (Some(l), Some(w), Some(st)) if st > 0 && w >= 1 && w <= l => {
                        Dim::Known(1 + (l - w) / st as usize)
                    }
                    _ => Dim::Sym("stft_frames".into()),
                };
                let bins = match wlen {
                    Some(w) if *onesided => Dim::Known(w / 2 + 1),
                    Some(w) => Dim::Known(w),
                    None => Dim::Sym("stft_bins".into()),
                };
                vec![s[0].clone(), frames, bins, Dim::Known(2)]
            });
            one(with_dtype(x.dtype, shape))
        }
        Op::MelWeightMatrix { dtype } => {
            let dims = (
                const_ints(opt_input(inputs, 1)).and_then(|v| v.first().copied()),
                const_ints(opt_input(inputs, 0)).and_then(|v| v.first().copied()),
            );
            let shape = vec![
                dims.0.map_or(Dim::Sym("mel_spec".into()), |d| {
                    Dim::Known(d.max(0) as usize / 2 + 1)
                }),
                dims.1.map_or(Dim::Sym("mel_bins".into()), |d| {
                    Dim::Known(d.max(0) as usize)
                }),
            ];
            one(with_dtype(Some(*dtype), Some(shape)))
        }
        Op::Col2Im { .. } => {
            let x = input(inputs, 0)?;
            let img = const_ints(Some(input(inputs, 1)?));
            let shape = match (&x.shape, img) {
                (Some(s), Some(img)) if s.len() == 3 => {
                    let mut o = vec![s[0].clone(), Dim::Sym("col2im_c".into())];
                    o.extend(img.iter().map(|&d| Dim::Known(d.max(0) as usize)));
                    Some(o)
                }
                _ => None,
            };
            one(with_dtype(x.dtype, shape))
        }
        Op::NonMaxSuppression { .. } => one(with_dtype(
            Some(DType::I64),
            Some(vec![Dim::Sym("nms_selected".into()), Dim::Known(3)]),
        )),
        Op::QLinearMatMul | Op::MatMulInteger => {
            let (ai, bi) = if matches!(op, Op::QLinearMatMul) {
                (0, 3)
            } else {
                (0, 1)
            };
            let a = input(inputs, ai)?;
            let b = input(inputs, bi)?;
            let dt = if matches!(op, Op::QLinearMatMul) {
                opt_input(inputs, 7).and_then(|z| z.dtype)
            } else {
                Some(DType::I32)
            };
            let shape = match (&a.shape, &b.shape) {
                (Some(sa), Some(sb)) => Some(matmul_shape(sa, sb)?),
                _ => None,
            };
            one(with_dtype(dt, shape))
        }
        _ => Err(other_family(op, "signal")),
    }
}
