//! Sequence-model building blocks: LinearAttention (recurrent linear,
//! gated and delta-rule attention), CausalConvWithState, TensorScatter (KV
//! cache writes) and SwiGLU. Arithmetic in f64, results in the input
//! dtype.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input, out};
use crate::op::LinearAttentionRule;
use crate::shape::{norm_axis, numel};
use crate::tensor::{Storable, Tensor};

/// True when `n` splits into `parts` equal whole parts.
fn splits(n: usize, parts: usize) -> bool {
    parts > 0 && (n / parts) * parts == n
}

fn f64s(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.cast(DType::F64).as_slice::<f64>()?.to_vec())
}

/// LinearAttention over 3-D packed `[B, T, H * D]` inputs; outputs
/// `[B, T, Hq * Dv]` and the final state `[B, Hkv, Dk, Dv]`.
pub(crate) fn linear_attention(
    rule: LinearAttentionRule,
    q_heads: usize,
    kv_heads: usize,
    scale: f32,
    inputs: &[Option<&Tensor>],
) -> Result<Vec<Tensor>> {
    let name = "LinearAttention";
    let q = input(inputs, 0, "query")?;
    let k = input(inputs, 1, "key")?;
    let v = input(inputs, 2, "value")?;
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    if qs.len() != 3 || ks.len() != 3 || vs.len() != 3 || !q.dtype().is_float() {
        crate::bail!("{name}: query, key and value must be 3-D float tensors");
    }
    if !splits(q_heads, kv_heads) {
        crate::bail!(
            "{name}: q_num_heads {q_heads} must be a positive multiple of kv_num_heads {kv_heads}"
        );
    }
    let (b, t) = (qs[0], qs[1]);
    if !splits(qs[2], q_heads) || !splits(vs[2], kv_heads) {
        crate::bail!("{name}: hidden sizes do not split into heads");
    }
    let (dk, dv) = (qs[2] / q_heads, vs[2] / kv_heads);
    if ks != [b, t, kv_heads * dk] || vs[..2] != [b, t] {
        crate::bail!(
            "{name}: key {:?} / value {:?} do not fit query {:?}",
            ks,
            vs,
            qs
        );
    }
    let group = q_heads / kv_heads;
    let gating = matches!(
        rule,
        LinearAttentionRule::Gated | LinearAttentionRule::GatedDelta
    );
    let delta = matches!(
        rule,
        LinearAttentionRule::Delta | LinearAttentionRule::GatedDelta
    );
    let decay = opt_input(inputs, 4);
    let beta = opt_input(inputs, 5);
    if gating != decay.is_some() || delta != beta.is_some() {
        crate::bail!("{name}: update rule {rule:?} needs decay exactly when gated and beta exactly for the delta rule");
    }
    // Decay per (b, t, head) or per (b, t, head, dk).
    let decay = match decay {
        Some(d) => {
            let per_dim = match d.shape() {
                [db, dt, last] if *db == b && *dt == t && *last == kv_heads => false,
                [db, dt, last] if *db == b && *dt == t && *last == kv_heads * dk => true,
                s => crate::bail!("{name}: decay shape {:?} does not fit", s),
            };
            Some((f64s(d)?, per_dim))
        }
        None => None,
    };
    let beta = match beta {
        Some(bt) => {
            let per_head = match bt.shape() {
                [bb, bt_, last] if *bb == b && *bt_ == t && *last == kv_heads => true,
                [bb, bt_, 1] if *bb == b && *bt_ == t => false,
                s => crate::bail!("{name}: beta shape {:?} does not fit", s),
            };
            Some((f64s(bt)?, per_head))
        }
        None => None,
    };
    let state_len = b * kv_heads * dk * dv;
    let (mut state, state_dtype) = match opt_input(inputs, 3) {
        Some(p) => {
            if p.shape() != [b, kv_heads, dk, dv] {
                crate::bail!(
                    "{name}: past_state {:?} must be [{b}, {kv_heads}, {dk}, {dv}]",
                    p.shape()
                );
            }
            (f64s(p)?, p.dtype())
        }
        None => (vec![0f64; state_len], q.dtype()),
    };
    let sc = if scale == 0.0 {
        1.0 / (dk as f64).sqrt()
    } else {
        scale as f64
    };
    let (qv, kv, vv) = (f64s(q)?, f64s(k)?, f64s(v)?);
    let mut o = vec![0f64; b * t * q_heads * dv];
    let mut vt = vec![0f64; dv];
    for bi in 0..b {
        for ti in 0..t {
            for h in 0..kv_heads {
                let st = &mut state[((bi * kv_heads + h) * dk) * dv..][..dk * dv];
                let kt = &kv[(bi * t + ti) * kv_heads * dk + h * dk..][..dk];
                vt.copy_from_slice(&vv[(bi * t + ti) * kv_heads * dv + h * dv..][..dv]);
                if let Some((dg, per_dim)) = &decay {
                    for d in 0..dk {
                        let g = if *per_dim {
                            dg[(bi * t + ti) * kv_heads * dk + h * dk + d]
                        } else {
                            dg[(bi * t + ti) * kv_heads + h]
                        };
                        let e = g.exp();
                        st[d * dv..(d + 1) * dv].iter_mut().for_each(|x| *x *= e);
                    }
                }
                if let Some((bv, per_head)) = &beta {
                    let bt = if *per_head {
                        bv[(bi * t + ti) * kv_heads + h]
                    } else {
                        bv[bi * t + ti]
                    };
                    for (m, x) in vt.iter_mut().enumerate() {
                        let retrieved: f64 = (0..dk).map(|d| st[d * dv + m] * kt[d]).sum();
                        *x = bt * (*x - retrieved);
                    }
                }
                for d in 0..dk {
                    for m in 0..dv {
                        st[d * dv + m] += kt[d] * vt[m];
                    }
                }
                for qh in h * group..(h + 1) * group {
                    let qt = &qv[(bi * t + ti) * q_heads * dk + qh * dk..][..dk];
                    let dst = &mut o[(bi * t + ti) * q_heads * dv + qh * dv..][..dv];
                    for (m, y) in dst.iter_mut().enumerate() {
                        *y = sc * (0..dk).map(|d| qt[d] * st[d * dv + m]).sum::<f64>();
                    }
                }
            }
        }
    }
    Ok(vec![
        out(vec![b, t, q_heads * dv], o)?.cast(q.dtype()),
        out(vec![b, kv_heads, dk, dv], state)?.cast(state_dtype),
    ])
}

/// CausalConvWithState: depthwise causal 1-D convolution of `[B, C, L]`
/// with weight `[C, 1, K]`, preceded by the `K - 1` past positions (zeros
/// without a past state); optional bias and SiLU. Outputs y and the last
/// `K - 1` positions as the new state.
pub(crate) fn causal_conv(silu: bool, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    let name = "CausalConvWithState";
    let x = input(inputs, 0, "input")?;
    let w = input(inputs, 1, "weight")?;
    let s = x.shape();
    if s.len() != 3 || !x.dtype().is_float() {
        crate::bail!(
            "{name}: input must be a float [B, C, L] tensor, got {:?}",
            s
        );
    }
    let (b, c, l) = (s[0], s[1], s[2]);
    let ws = w.shape();
    if ws.len() != 3 || ws[0] != c || ws[1] != 1 || ws[2] == 0 {
        crate::bail!("{name}: weight {:?} must be [{c}, 1, K]", ws);
    }
    let kk = ws[2];
    let bias = match opt_input(inputs, 2) {
        Some(bt) if bt.len() == c => Some(f64s(bt)?),
        Some(bt) => crate::bail!("{name}: bias has {} elements for {c} channels", bt.len()),
        None => None,
    };
    let past = match opt_input(inputs, 3) {
        Some(p) if p.shape() == [b, c, kk - 1] => f64s(p)?,
        Some(p) => crate::bail!(
            "{name}: past_state {:?} must be [{b}, {c}, {}]",
            p.shape(),
            kk - 1
        ),
        None => vec![0f64; b * c * (kk - 1)],
    };
    let (xv, wv) = (f64s(x)?, f64s(w)?);
    let plen = kk - 1 + l;
    let mut y = vec![0f64; b * c * l];
    let mut present = vec![0f64; b * c * (kk - 1)];
    let mut padded = vec![0f64; plen];
    for bc in 0..b * c {
        let ch = bc % c;
        padded[..kk - 1].copy_from_slice(&past[bc * (kk - 1)..(bc + 1) * (kk - 1)]);
        padded[kk - 1..].copy_from_slice(&xv[bc * l..(bc + 1) * l]);
        let wk = &wv[ch * kk..(ch + 1) * kk];
        for ti in 0..l {
            let mut acc: f64 = (0..kk).map(|j| wk[j] * padded[ti + j]).sum();
            if let Some(bv) = &bias {
                acc += bv[ch];
            }
            if silu {
                acc /= 1.0 + (-acc).exp();
            }
            y[bc * l + ti] = acc;
        }
        present[bc * (kk - 1)..(bc + 1) * (kk - 1)].copy_from_slice(&padded[plen - (kk - 1)..]);
    }
    Ok(vec![
        out(vec![b, c, l], y)?.cast(x.dtype()),
        out(vec![b, c, kk - 1], present)?.cast(x.dtype()),
    ])
}

/// TensorScatter: the cache with `update` written along `axis` from each
/// batch entry's write index (modulo the cache length when `circular`).
pub(crate) fn tensor_scatter(
    axis: i64,
    circular: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let name = "TensorScatter";
    let cache = input(inputs, 0, "past_cache")?;
    let upd = input(inputs, 1, "update")?;
    let s = cache.shape();
    let a = norm_axis(axis, s.len())?;
    let us = upd.shape();
    if upd.dtype() != cache.dtype()
        || us.len() != s.len()
        || (0..s.len()).any(|d| d != a && us[d] != s[d])
        || us[a] > s[a]
    {
        crate::bail!(
            "{name}: update {:?} does not fit cache {:?} on axis {a}",
            us,
            s
        );
    }
    let batch = s.first().copied().unwrap_or(1);
    let wi: Vec<i64> = match opt_input(inputs, 2) {
        Some(w) if w.dtype().is_int() && w.len() == batch => w.to_i64_vec(),
        Some(w) => crate::bail!(
            "{name}: write_indices {:?} must be {batch} integers",
            w.shape()
        ),
        None => vec![0; batch],
    };
    let (outer, max, len, inner) = (numel(&s[..a]), s[a], us[a], numel(&s[a + 1..]));
    let per_batch = if a == 0 {
        outer.max(1)
    } else {
        numel(&s[1..a])
    };
    let data = crate::dispatch_data!(cache.data(), cv, T => {
        let uv = crate::kernels::util::typed::<T>(upd, "update")?;
        let mut o = cv.clone();
        for oi in 0..outer {
            let bi = if a == 0 { 0 } else { oi / per_batch.max(1) };
            for si in 0..len {
                let mut ci = wi[bi] + si as i64;
                if circular && max > 0 {
                    ci = ci.rem_euclid(max as i64);
                }
                if ci < 0 || ci as usize >= max {
                    crate::bail!("{name}: write position {ci} outside the cache length {max}");
                }
                let dst = (oi * max + ci as usize) * inner;
                let src = (oi * len + si) * inner;
                o[dst..dst + inner].copy_from_slice(&uv[src..src + inner]);
            }
        }
        <T as Storable>::wrap(o)
    });
    Tensor::new(s.to_vec(), data)
}

/// SwiGLU: `a * sigmoid(alpha * a) * b` for same-shape a and b.
pub(crate) fn swiglu(alpha: f32, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let a = input(inputs, 0, "A")?;
    let b = input(inputs, 1, "B")?;
    if a.shape() != b.shape() || a.dtype() != b.dtype() || !a.dtype().is_float() {
        crate::bail!("SwiGLU: A and B must be float tensors of one shape and dtype");
    }
    let (av, bv) = (f64s(a)?, f64s(b)?);
    let al = alpha as f64;
    let y: Vec<f64> = av
        .iter()
        .zip(&bv)
        .map(|(&x, &g)| x / (1.0 + (-al * x).exp()) * g)
        .collect();
    Ok(out(a.shape().to_vec(), y)?.cast(a.dtype()))
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::t;
    use crate::op::{LinearAttentionRule, Op};

    #[test]
    fn linear_attention_and_causal_conv_match_hand_recurrences() {
        // One head, dk = dv = 1, two steps, linear rule: S1 = k1 v1,
        // S2 = S1 + k2 v2, o_t = scale * q_t S_t with scale 1.
        let q = t(&[1, 2, 1], vec![1.0f32, 2.0]);
        let k = t(&[1, 2, 1], vec![3.0f32, 4.0]);
        let v = t(&[1, 2, 1], vec![5.0f32, 6.0]);
        let op = Op::LinearAttention {
            rule: LinearAttentionRule::Linear,
            q_num_heads: 1,
            kv_num_heads: 1,
            scale: 1.0,
        };
        let o = eval(&op, &[Some(&q), Some(&k), Some(&v)], 2).unwrap();
        assert_eq!(
            o[0].as_slice::<f32>().unwrap(),
            &[15.0, 2.0 * (15.0 + 24.0)]
        );
        assert_eq!(o[1].as_slice::<f32>().unwrap(), &[39.0]);
        // Causal conv, K = 2, past 10: y_t = w0 * x_{t-1} + w1 * x_t.
        let x = t(&[1, 1, 3], vec![1.0f32, 2.0, 3.0]);
        let w = t(&[1, 1, 2], vec![0.5f32, 2.0]);
        let past = t(&[1, 1, 1], vec![10.0f32]);
        let o = eval(
            &Op::CausalConvWithState { silu: false },
            &[Some(&x), Some(&w), None, Some(&past)],
            2,
        )
        .unwrap();
        assert_eq!(o[0].as_slice::<f32>().unwrap(), &[7.0, 4.5, 7.0]);
        assert_eq!(o[1].as_slice::<f32>().unwrap(), &[3.0]);
    }
}
