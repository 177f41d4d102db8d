//! Attention (opset 23+): scaled dot-product attention over heads, with
//! 3-D or 4-D Q/K/V, grouped KV heads, a KV cache (past / present), an
//! additive or boolean mask, causal and sliding-window masking, padded KV
//! lengths, softcap and the optional QK output. Computed in f64 (f16 and
//! bf16 are widened by the dispatcher) and returned in Q's dtype.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input, out};
use crate::op::AttentionAttrs;
use crate::tensor::Tensor;

/// A tensor as `[B, H, L, D]` f64 (3-D `[B, L, H * D]` inputs are split
/// into `heads`).
fn heads4(t: &Tensor, heads: Option<usize>, what: &str) -> Result<(Vec<f64>, [usize; 4])> {
    let w = t.cast(DType::F64);
    let v = w.as_slice::<f64>()?;
    let s = t.shape();
    match s.len() {
        4 => Ok((v.to_vec(), [s[0], s[1], s[2], s[3]])),
        3 => {
            let h = heads.ok_or_else(|| {
                crate::Error::msg(format!(
                    "Attention: 3-D {what} needs q_num_heads and kv_num_heads"
                ))
            })?;
            if h == 0 || (s[2] / h) * h != s[2] {
                crate::bail!(
                    "Attention: {what} hidden size {} is not divisible by {h} heads",
                    s[2]
                );
            }
            let (b, l, d) = (s[0], s[1], s[2] / h);
            let mut o = vec![0f64; v.len()];
            for bi in 0..b {
                for li in 0..l {
                    for hi in 0..h {
                        for di in 0..d {
                            o[((bi * h + hi) * l + li) * d + di] =
                                v[(bi * l + li) * h * d + hi * d + di];
                        }
                    }
                }
            }
            Ok((o, [b, h, l, d]))
        }
        r => crate::bail!("Attention: {what} must be 3-D or 4-D, got rank {r}"),
    }
}

/// Appends `cur` to `past` along the sequence dim (both `[B, H, L, D]`).
fn concat_seq(
    past: Option<(Vec<f64>, [usize; 4])>,
    cur: (Vec<f64>, [usize; 4]),
    what: &str,
) -> Result<(Vec<f64>, [usize; 4])> {
    let Some((pv, ps)) = past else { return Ok(cur) };
    let (cv, cs) = cur;
    if ps[0] != cs[0] || ps[1] != cs[1] || ps[3] != cs[3] {
        crate::bail!(
            "Attention: past {what} {:?} does not fit {what} {:?}",
            ps,
            cs
        );
    }
    let (b, h, d) = (cs[0], cs[1], cs[3]);
    let l = ps[2] + cs[2];
    let mut o = Vec::with_capacity(b * h * l * d);
    for bh in 0..b * h {
        o.extend_from_slice(&pv[bh * ps[2] * d..(bh + 1) * ps[2] * d]);
        o.extend_from_slice(&cv[bh * cs[2] * d..(bh + 1) * cs[2] * d]);
    }
    Ok((o, [b, h, l, d]))
}

/// The attention mask as an additive bias readable at `[b, h, i, j]`
/// (right-aligned broadcast; columns past its last dim are masked).
struct Mask {
    v: Vec<f64>,
    dims: [usize; 4],
}

impl Mask {
    fn new(t: &Tensor, target: [usize; 4]) -> Result<Mask> {
        let s = t.shape();
        if s.is_empty() || s.len() > 4 {
            crate::bail!("Attention: attn_mask must have rank 1 to 4, got {:?}", s);
        }
        let mut dims = [1usize; 4];
        dims[4 - s.len()..].copy_from_slice(s);
        for d in 0..3 {
            if dims[d] != 1 && dims[d] != target[d] {
                crate::bail!(
                    "Attention: attn_mask {:?} does not broadcast to {:?}",
                    s,
                    target
                );
            }
        }
        if dims[3] > target[3] {
            crate::bail!(
                "Attention: attn_mask {:?} is longer than the {} keys",
                s,
                target[3]
            );
        }
        let v = if t.dtype() == DType::Bool {
            t.as_slice::<bool>()?
                .iter()
                .map(|&b| if b { 0.0 } else { f64::NEG_INFINITY })
                .collect()
        } else if t.dtype().is_float() {
            t.cast(DType::F64).as_slice::<f64>()?.to_vec()
        } else {
            crate::bail!(
                "Attention: attn_mask must be bool or float, got {}",
                t.dtype()
            );
        };
        Ok(Mask { v, dims })
    }

    fn at(&self, b: usize, h: usize, i: usize, j: usize) -> f64 {
        let d = &self.dims;
        if j >= d[3] {
            return f64::NEG_INFINITY;
        }
        let pick = |k: usize, x: usize| if d[k] == 1 { 0 } else { x };
        self.v[((pick(0, b) * d[1] + pick(1, h)) * d[2] + pick(2, i)) * d[3] + j]
    }
}

/// Attention; outputs Y, present_key, present_value, qk_matmul_output (as
/// many as asked).
pub(crate) fn attention(
    a: &AttentionAttrs,
    inputs: &[Option<&Tensor>],
    n_out: usize,
) -> Result<Vec<Tensor>> {
    let q_t = input(inputs, 0, "Q")?;
    let k_t = input(inputs, 1, "K")?;
    let v_t = input(inputs, 2, "V")?;
    let dt = q_t.dtype();
    if !matches!(dt, DType::F32 | DType::F64) {
        crate::bail!("Attention needs float Q, K and V, got {dt}");
    }
    if k_t.dtype() != dt || v_t.dtype() != dt {
        crate::bail!("Attention: Q, K and V dtypes differ");
    }
    let rank3 = q_t.rank() == 3;
    if k_t.rank() != q_t.rank() || v_t.rank() != q_t.rank() {
        crate::bail!("Attention: Q, K and V must have the same rank");
    }
    let (q, qs) = heads4(q_t, a.q_num_heads, "Q")?;
    let k = heads4(k_t, a.kv_num_heads, "K")?;
    let v = heads4(v_t, a.kv_num_heads, "V")?;
    let past_k = opt_input(inputs, 4);
    let past_v = opt_input(inputs, 5);
    if past_k.is_some() != past_v.is_some() {
        crate::bail!("Attention: past_key and past_value must be given together");
    }
    let nonpad = match opt_input(inputs, 6) {
        Some(t) => {
            if !matches!(t.dtype(), DType::I32 | DType::I64) || t.len() != qs[0] {
                crate::bail!(
                    "Attention: nonpad_kv_seqlen must be {} integers, got {} {:?}",
                    qs[0],
                    t.dtype(),
                    t.shape()
                );
            }
            if past_k.is_some() {
                crate::bail!("Attention: nonpad_kv_seqlen cannot be combined with a past cache");
            }
            Some(t.to_i64_vec())
        }
        None => None,
    };
    let past_len = past_k.map(|p| p.shape().get(2).copied().unwrap_or(0));
    let pk = past_k.map(|p| heads4(p, None, "past_key")).transpose()?;
    let pv = past_v.map(|p| heads4(p, None, "past_value")).transpose()?;
    let (k, ks) = concat_seq(pk, k, "key")?;
    let (v, vs) = concat_seq(pv, v, "value")?;
    let (b, qh, sq, dq) = (qs[0], qs[1], qs[2], qs[3]);
    let (kvh, t, dv) = (ks[1], ks[2], vs[3]);
    if ks[0] != b || vs[0] != b || vs[1] != kvh || vs[2] != t || ks[3] != dq {
        crate::bail!(
            "Attention: shapes do not fit: Q {:?}, K {:?}, V {:?} (as [B, H, L, D])",
            qs,
            ks,
            vs
        );
    }
    if kvh == 0 || qh % kvh != 0 {
        crate::bail!("Attention: {qh} query heads are not a multiple of {kvh} KV heads");
    }
    let group = qh / kvh;
    let mask = opt_input(inputs, 3)
        .map(|m| Mask::new(m, [b, qh, sq, t]))
        .transpose()?;
    let scale = match a.scale {
        Some(s) => s as f64,
        None => 1.0 / (dq as f64).sqrt(),
    };
    // The first key position a query block sits after, per batch.
    let offset = |bi: usize| -> i64 {
        match (past_len, &nonpad) {
            (Some(p), _) => p as i64,
            (None, Some(np)) => np[bi] - sq as i64,
            (None, None) => 0,
        }
    };
    let windowed = a.left_window >= 0 || a.right_window >= 0;
    let mut y = vec![0f64; b * qh * sq * dv];
    let mut qk_out = vec![0f64; b * qh * sq * t];
    let mut logits = vec![0f64; t];
    let mut bias = vec![0f64; t];
    for bi in 0..b {
        let off = offset(bi);
        for hi in 0..qh {
            let kh = hi / group;
            for i in 0..sq {
                let qrow = &q[((bi * qh + hi) * sq + i) * dq..][..dq];
                for j in 0..t {
                    let krow = &k[((bi * kvh + kh) * t + j) * dq..][..dq];
                    let mut dot: f64 = qrow.iter().zip(krow).map(|(x, y)| x * y).sum();
                    dot *= scale;
                    if a.softcap > 0.0 {
                        let c = a.softcap as f64;
                        dot = c * (dot / c).tanh();
                    }
                    logits[j] = dot;
                    let mut bj = mask.as_ref().map_or(0.0, |m| m.at(bi, hi, i, j));
                    let pos = i as i64 + off;
                    if a.is_causal && j as i64 > pos {
                        bj = f64::NEG_INFINITY;
                    }
                    if windowed {
                        let diff = pos - j as i64;
                        if (a.left_window >= 0 && diff > a.left_window)
                            || (a.right_window >= 0 && -diff > a.right_window)
                        {
                            bj = f64::NEG_INFINITY;
                        }
                    }
                    if let Some(np) = &nonpad {
                        if j as i64 >= np[bi] {
                            bj = f64::NEG_INFINITY;
                        }
                    }
                    bias[j] = bj;
                }
                let qk_row = &mut qk_out[((bi * qh + hi) * sq + i) * t..][..t];
                match a.qk_output_mode {
                    2 => {
                        for j in 0..t {
                            qk_row[j] = logits[j] + bias[j];
                        }
                    }
                    _ => qk_row.copy_from_slice(&logits),
                }
                // Softmax of logits + bias; a row whose bias masks every key
                // (or whose maximum is -inf) gets all-zero probabilities.
                for j in 0..t {
                    logits[j] += bias[j];
                }
                let all_masked = bias.iter().all(|&x| x == f64::NEG_INFINITY);
                let m = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
                if all_masked || m == f64::NEG_INFINITY {
                    logits.iter_mut().for_each(|x| *x = 0.0);
                } else {
                    let mut sum = 0.0;
                    for x in logits.iter_mut() {
                        *x = (*x - m).exp();
                        sum += *x;
                    }
                    logits.iter_mut().for_each(|x| *x /= sum);
                }
                if a.qk_output_mode == 3 {
                    qk_row.copy_from_slice(&logits);
                }
                let yrow = &mut y[((bi * qh + hi) * sq + i) * dv..][..dv];
                for (j, &p) in logits.iter().enumerate() {
                    if p != 0.0 {
                        let vrow = &v[((bi * kvh + kh) * t + j) * dv..][..dv];
                        for (o, &x) in yrow.iter_mut().zip(vrow) {
                            *o += p * x;
                        }
                    }
                }
            }
        }
    }
    let y = if rank3 {
        // [B, H, S, Dv] -> [B, S, H * Dv].
        let mut o = vec![0f64; y.len()];
        for bi in 0..b {
            for hi in 0..qh {
                for i in 0..sq {
                    for d in 0..dv {
                        o[(bi * sq + i) * qh * dv + hi * dv + d] =
                            y[((bi * qh + hi) * sq + i) * dv + d];
                    }
                }
            }
        }
        out(vec![b, sq, qh * dv], o)?
    } else {
        out(vec![b, qh, sq, dv], y)?
    };
    let mut outs = vec![y.cast(dt)];
    if n_out > 1 {
        outs.push(out(ks.to_vec(), k)?.cast(dt));
    }
    if n_out > 2 {
        outs.push(out(vs.to_vec(), v)?.cast(dt));
    }
    if n_out > 3 {
        outs.push(out(vec![b, qh, sq, t], qk_out)?.cast(dt));
    }
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::{rnd, t};
    use crate::op::{AttentionAttrs, Op};

    #[test]
    fn causal_gqa_matches_naive_f64() {
        // B=1, 4 query heads over 2 KV heads, S=3, D=2, causal.
        let (qh, kvh, s, d) = (4usize, 2usize, 3usize, 2usize);
        let q = rnd(qh * s * d, 1);
        let k = rnd(kvh * s * d, 2);
        let v = rnd(kvh * s * d, 3);
        let attrs = AttentionAttrs {
            is_causal: true,
            ..Default::default()
        };
        let qt = t(&[1, qh, s, d], q.clone());
        let kt = t(&[1, kvh, s, d], k.clone());
        let vt = t(&[1, kvh, s, d], v.clone());
        let y = eval(&Op::Attention(attrs), &[Some(&qt), Some(&kt), Some(&vt)], 1).unwrap();
        let got = y[0].as_slice::<f32>().unwrap();
        for h in 0..qh {
            let kh = h / (qh / kvh);
            for i in 0..s {
                let sc: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..d)
                            .map(|x| q[(h * s + i) * d + x] as f64 * k[(kh * s + j) * d + x] as f64)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let z: f64 = sc.iter().map(|x| x.exp()).sum();
                for x in 0..d {
                    let want: f64 = (0..=i)
                        .map(|j| sc[j].exp() / z * v[(kh * s + j) * d + x] as f64)
                        .sum();
                    let g = got[(h * s + i) * d + x] as f64;
                    assert!((g - want).abs() < 1e-5, "h{h} i{i} x{x}: {g} vs {want}");
                }
            }
        }
    }
}
