//! FlexAttention (`ai.onnx.preview` opset 1): scaled dot-product attention
//! over 4-D `[B, H, L, E]` Q, K, V with grouped KV heads, whose scores and
//! probabilities may pass through subgraphs (`score_mod`, `prob_mod`) run
//! by the host interpreter ([`crate::op::control::kernel::run_graph`]).
//!
//! Arithmetic is done in f64 and rounded where the ONNX definition rounds:
//! Q and K are pre-scaled by `sqrt(scale)` in their own dtype, `Q K^T` is
//! in that dtype, then the scores are cast to the softmax dtype
//! (`softmax_precision`, default f32, or f64 for f64 inputs), in which the
//! modifiers, the softmax and the product with V run; the result is cast
//! back to V's dtype.

use super::FlexAttrs;
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::input;
use crate::op::control::kernel::{run_graph, Eval};
use crate::op::Body;
use crate::tensor::Tensor;

/// `v` (of shape `shape`) rounded to `dt`'s precision.
fn round_to(v: Vec<f64>, shape: &[usize], dt: DType) -> Result<Vec<f64>> {
    if dt == DType::F64 {
        return Ok(v);
    }
    Tensor::from_vec(shape.to_vec(), v)?
        .cast(dt)
        .cast(DType::F64)
        .into_vec::<f64>()
}

/// The four dims of a rank-4 tensor.
fn dims4(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    match t.shape() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        s => crate::bail!("FlexAttention: {what} must be 4-D [B, H, L, E], got {s:?}"),
    }
}

/// Runs a modifier on `x` (dtype `cdt`, shape `shape`) with its captures;
/// the result in `cdt` precision, as f64.
fn modify(
    body: &Body,
    x: Vec<f64>,
    shape: &[usize],
    cdt: DType,
    captures: &[&Tensor],
    eval: Eval,
    what: &str,
) -> Result<Vec<f64>> {
    let t = Tensor::from_vec(shape.to_vec(), x)?.cast(cdt);
    let mut ins = vec![&t];
    ins.extend_from_slice(captures);
    let outs = run_graph(&body.graph, &ins, eval)
        .map_err(|e| crate::Error::msg(format!("FlexAttention {what}: {e}")))?;
    let y = outs
        .into_iter()
        .next()
        .ok_or_else(|| crate::Error::msg(format!("FlexAttention: {what} gave no output")))?;
    if y.shape() != shape {
        crate::bail!(
            "FlexAttention: {what} gave shape {:?}, expected {shape:?}",
            y.shape()
        );
    }
    y.cast(cdt).cast(DType::F64).into_vec::<f64>()
}

/// FlexAttention: inputs Q, K, V, then the captures of `score_mod` and
/// of `prob_mod`; output Y `[B, Hq, L, Ev]` in V's dtype.
pub(crate) fn flex(a: &FlexAttrs, inputs: &[Option<&Tensor>], eval: Eval) -> Result<Vec<Tensor>> {
    let (q, k, v) = (
        input(inputs, 0, "Q")?,
        input(inputs, 1, "K")?,
        input(inputs, 2, "V")?,
    );
    let dt = q.dtype();
    if !matches!(dt, DType::F16 | DType::BF16 | DType::F32 | DType::F64) {
        crate::bail!("FlexAttention: Q must be f16, bf16, f32 or f64, got {dt}");
    }
    if k.dtype() != dt || v.dtype() != dt {
        crate::bail!(
            "FlexAttention: Q, K and V must share a dtype, got {dt}, {} and {}",
            k.dtype(),
            v.dtype()
        );
    }
    let [b, hq, l, e] = dims4(q, "Q")?;
    let [bk, hkv, s, ek] = dims4(k, "K")?;
    let [bv, hv, sv, ev] = dims4(v, "V")?;
    if bk != b || bv != b {
        crate::bail!("FlexAttention: batch sizes differ: Q {b}, K {bk}, V {bv}");
    }
    if hv != hkv || sv != s {
        crate::bail!(
            "FlexAttention: K {:?} and V {:?} must share heads and length",
            k.shape(),
            v.shape()
        );
    }
    if ek != e {
        crate::bail!("FlexAttention: Q and K head sizes differ ({e} and {ek})");
    }
    if hkv == 0 || hq % hkv != 0 {
        crate::bail!("FlexAttention: {hq} query heads are not a multiple of {hkv} KV heads");
    }
    let (n_score, n_prob) = (
        a.score_mod.as_ref().map_or(0, Body::captures),
        a.prob_mod.as_ref().map_or(0, Body::captures),
    );
    let caps: Vec<&Tensor> = (3..3 + n_score + n_prob)
        .map(|i| input(inputs, i, "captured value"))
        .collect::<Result<_>>()?;
    let cdt = a.softmax_precision.unwrap_or(if dt == DType::F64 {
        DType::F64
    } else {
        DType::F32
    });

    // sqrt(scale), computed in f32 and cast to the input dtype.
    let scale = a.scale.unwrap_or((1.0 / (e as f64).sqrt()) as f32);
    let sq = round_to(vec![f64::from(scale.sqrt())], &[1], dt)?[0];
    let scaled = |t: &Tensor| -> Result<Vec<f64>> {
        let x = t.cast(DType::F64).into_vec::<f64>()?;
        round_to(x.into_iter().map(|x| x * sq).collect(), t.shape(), dt)
    };
    let (qs, ks) = (scaled(q)?, scaled(k)?);
    let vv = round_to(v.cast(DType::F64).into_vec::<f64>()?, v.shape(), cdt)?;
    let group = hq / hkv;

    // Scores [B, Hq, L, S] in the input dtype, then the softmax dtype.
    let sshape = [b, hq, l, s];
    let mut sc = vec![0f64; b * hq * l * s];
    for bi in 0..b {
        for h in 0..hq {
            let kh = h / group;
            for i in 0..l {
                let qrow = &qs[((bi * hq + h) * l + i) * e..][..e];
                for j in 0..s {
                    let krow = &ks[((bi * hkv + kh) * s + j) * e..][..e];
                    sc[((bi * hq + h) * l + i) * s + j] =
                        qrow.iter().zip(krow).map(|(x, y)| x * y).sum();
                }
            }
        }
    }
    let mut sc = round_to(round_to(sc, &sshape, dt)?, &sshape, cdt)?;
    if let Some(m) = &a.score_mod {
        sc = modify(m, sc, &sshape, cdt, &caps[..n_score], eval, "score_mod")?;
    }
    // Softmax over the keys.
    if s > 0 {
        for row in sc.chunks_mut(s) {
            let mx = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for x in row.iter_mut() {
                *x = (*x - mx).exp();
                sum += *x;
            }
            for x in row.iter_mut() {
                *x /= sum;
            }
        }
    }
    let mut p = round_to(sc, &sshape, cdt)?;
    if let Some(m) = &a.prob_mod {
        p = modify(m, p, &sshape, cdt, &caps[n_score..], eval, "prob_mod")?;
    }
    // Y = P V in the softmax dtype, returned in V's.
    let yshape = vec![b, hq, l, ev];
    let mut y = vec![0f64; b * hq * l * ev];
    for bi in 0..b {
        for h in 0..hq {
            let kh = h / group;
            for i in 0..l {
                let prow = &p[((bi * hq + h) * l + i) * s..][..s];
                let yrow = &mut y[((bi * hq + h) * l + i) * ev..][..ev];
                for (j, &pj) in prow.iter().enumerate() {
                    let vrow = &vv[((bi * hkv + kh) * s + j) * ev..][..ev];
                    for (o, &x) in yrow.iter_mut().zip(vrow) {
                        *o += pj * x;
                    }
                }
            }
        }
    }
    let y = Tensor::from_vec(yshape, y)?.cast(cdt).cast(dt);
    Ok(vec![y])
}
