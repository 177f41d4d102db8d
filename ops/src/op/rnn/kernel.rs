//! Recurrent layers: RNN, GRU and LSTM (forward, reverse or both
//! directions, optional sequence lengths, initial states, peepholes and
//! batch-major layout), computed in f64.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::{input, opt_input, out};
use crate::op::{RnnAct, RnnAttrs, RnnKind};
use crate::tensor::Tensor;

fn f64s(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.cast(DType::F64).as_slice::<f64>()?.to_vec())
}

fn act(a: RnnAct, x: f64) -> f64 {
    match a {
        RnnAct::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        RnnAct::Tanh => x.tanh(),
        RnnAct::Relu => x.max(0.0),
    }
}

/// `out[g] = sum_k m[g, k] * v[k]` for the `rows` rows of `m` from `row0`.
fn matvec(m: &[f64], cols: usize, row0: usize, rows: usize, v: &[f64], out: &mut [f64]) {
    for (g, o) in out.iter_mut().enumerate().take(rows) {
        let r = &m[(row0 + g) * cols..(row0 + g + 1) * cols];
        *o = r.iter().zip(v).map(|(a, b)| a * b).sum();
    }
}

/// Runs the layer; outputs Y, Y_h and (LSTM) Y_c.
pub(crate) fn rnn(a: &RnnAttrs, inputs: &[Option<&Tensor>], n_out: usize) -> Result<Vec<Tensor>> {
    let name = match a.kind {
        RnnKind::Rnn => "RNN",
        RnnKind::Gru => "GRU",
        RnnKind::Lstm => "LSTM",
    };
    let gates = match a.kind {
        RnnKind::Rnn => 1,
        RnnKind::Gru => 3,
        RnnKind::Lstm => 4,
    };
    let x = input(inputs, 0, "X")?;
    let w = input(inputs, 1, "W")?;
    let rr = input(inputs, 2, "R")?;
    let xs = x.shape();
    if xs.len() != 3 || !x.dtype().is_float() {
        crate::bail!(
            "{name}: X must be a 3-D float tensor, got {} {:?}",
            x.dtype(),
            xs
        );
    }
    let (seq, batch, isz) = if a.batch_major {
        (xs[1], xs[0], xs[2])
    } else {
        (xs[0], xs[1], xs[2])
    };
    let dirs = if a.direction == 2 { 2 } else { 1 };
    let h = a.hidden;
    if w.shape() != [dirs, gates * h, isz] || rr.shape() != [dirs, gates * h, h] {
        crate::bail!(
            "{name}: W {:?} / R {:?} must be [{dirs}, {}, {isz}] / [{dirs}, {}, {h}]",
            w.shape(),
            rr.shape(),
            gates * h,
            gates * h
        );
    }
    let (wv, rv) = (f64s(w)?, f64s(rr)?);
    let bias = match opt_input(inputs, 3) {
        Some(b) if b.shape() == [dirs, 2 * gates * h] => f64s(b)?,
        Some(b) => crate::bail!(
            "{name}: B {:?} must be [{dirs}, {}]",
            b.shape(),
            2 * gates * h
        ),
        None => vec![0f64; dirs * 2 * gates * h],
    };
    let lens: Vec<usize> = match opt_input(inputs, 4) {
        Some(l) if l.len() == batch && l.dtype().is_int() => l
            .to_i64_vec()
            .into_iter()
            .map(|v| (v.max(0) as usize).min(seq))
            .collect(),
        Some(l) => crate::bail!(
            "{name}: sequence_lens {:?} must hold {batch} integers",
            l.shape()
        ),
        None => vec![seq; batch],
    };
    // States are [dirs, batch, h] (batch-major layout: [batch, dirs, h]).
    let state = |i: usize, what: &str| -> Result<Vec<f64>> {
        match opt_input(inputs, i) {
            Some(t) => {
                let want = if a.batch_major {
                    [batch, dirs, h]
                } else {
                    [dirs, batch, h]
                };
                if t.shape() != want {
                    crate::bail!("{name}: {what} {:?} must be {:?}", t.shape(), want);
                }
                let v = f64s(t)?;
                let mut o = vec![0f64; dirs * batch * h];
                for d in 0..dirs {
                    for b in 0..batch {
                        let src = if a.batch_major {
                            (b * dirs + d) * h
                        } else {
                            (d * batch + b) * h
                        };
                        o[(d * batch + b) * h..][..h].copy_from_slice(&v[src..src + h]);
                    }
                }
                Ok(o)
            }
            None => Ok(vec![0f64; dirs * batch * h]),
        }
    };
    let mut hs = state(5, "initial_h")?;
    let mut cs = if a.kind == RnnKind::Lstm {
        state(6, "initial_c")?
    } else {
        Vec::new()
    };
    let peep = match (a.kind, opt_input(inputs, 7)) {
        (RnnKind::Lstm, Some(p)) if p.shape() == [dirs, 3 * h] => Some(f64s(p)?),
        (RnnKind::Lstm, Some(p)) => {
            crate::bail!("{name}: P {:?} must be [{dirs}, {}]", p.shape(), 3 * h)
        }
        _ => None,
    };
    let xv = f64s(x)?;
    let xat = |t: usize, b: usize| -> &[f64] {
        let p = if a.batch_major {
            (b * seq + t) * isz
        } else {
            (t * batch + b) * isz
        };
        &xv[p..p + isz]
    };
    let clip = |v: f64| match a.clip {
        Some(c) => v.clamp(-(c as f64), c as f64),
        None => v,
    };
    let (f, g, hh) = (a.acts[0], a.acts[1], a.acts[2]);
    let mut y = vec![0f64; seq * dirs * batch * h];
    let (mut xw, mut hr) = (vec![0f64; gates * h], vec![0f64; gates * h]);
    for d in 0..dirs {
        let reverse = a.direction == 1 || d == 1;
        let wd = &wv[d * gates * h * isz..(d + 1) * gates * h * isz];
        let rd = &rv[d * gates * h * h..(d + 1) * gates * h * h];
        let (wb, rb) = (
            &bias[d * 2 * gates * h..d * 2 * gates * h + gates * h],
            &bias[d * 2 * gates * h + gates * h..(d + 1) * 2 * gates * h],
        );
        for b in 0..batch {
            let hcur = &mut hs[(d * batch + b) * h..(d * batch + b + 1) * h];
            let mut hprev = hcur.to_vec();
            let mut cprev = if a.kind == RnnKind::Lstm {
                cs[(d * batch + b) * h..(d * batch + b + 1) * h].to_vec()
            } else {
                Vec::new()
            };
            for step in 0..lens[b] {
                let t = if reverse { lens[b] - 1 - step } else { step };
                matvec(wd, isz, 0, gates * h, xat(t, b), &mut xw);
                matvec(rd, h, 0, gates * h, &hprev, &mut hr);
                let mut hnew = vec![0f64; h];
                match a.kind {
                    RnnKind::Rnn => {
                        for j in 0..h {
                            hnew[j] = act(f, clip(xw[j] + hr[j] + wb[j] + rb[j]));
                        }
                    }
                    RnnKind::Gru => {
                        // Gate order z, r, h.
                        let mut r = vec![0f64; h];
                        let mut z = vec![0f64; h];
                        for j in 0..h {
                            z[j] = act(f, clip(xw[j] + hr[j] + wb[j] + rb[j]));
                            r[j] = act(f, clip(xw[h + j] + hr[h + j] + wb[h + j] + rb[h + j]));
                        }
                        let rh: Vec<f64> = if a.linear_before_reset {
                            Vec::new()
                        } else {
                            let gated: Vec<f64> = (0..h).map(|j| r[j] * hprev[j]).collect();
                            let mut o = vec![0f64; h];
                            matvec(rd, h, 2 * h, h, &gated, &mut o);
                            o
                        };
                        for j in 0..h {
                            let pre = if a.linear_before_reset {
                                xw[2 * h + j]
                                    + r[j] * (hr[2 * h + j] + rb[2 * h + j])
                                    + wb[2 * h + j]
                            } else {
                                xw[2 * h + j] + rh[j] + rb[2 * h + j] + wb[2 * h + j]
                            };
                            let ht = act(g, clip(pre));
                            hnew[j] = (1.0 - z[j]) * ht + z[j] * hprev[j];
                        }
                    }
                    RnnKind::Lstm => {
                        // Gate order i, o, f, c; peepholes i, o, f.
                        let pv = |k: usize, j: usize| {
                            peep.as_ref().map_or(0.0, |p| p[d * 3 * h + k * h + j])
                        };
                        let mut cnew = vec![0f64; h];
                        for j in 0..h {
                            let pre = |k: usize| {
                                xw[k * h + j] + hr[k * h + j] + wb[k * h + j] + rb[k * h + j]
                            };
                            let mut it = act(f, clip(pre(0) + pv(0, j) * cprev[j]));
                            let ft = act(f, clip(pre(2) + pv(2, j) * cprev[j]));
                            if a.input_forget {
                                it = 1.0 - ft;
                            }
                            let ct = act(g, clip(pre(3)));
                            cnew[j] = ft * cprev[j] + it * ct;
                            let ot = act(f, clip(pre(1) + pv(1, j) * cnew[j]));
                            hnew[j] = ot * act(hh, cnew[j]);
                        }
                        cprev = cnew;
                    }
                }
                y[((t * dirs + d) * batch + b) * h..][..h].copy_from_slice(&hnew);
                hprev = hnew;
            }
            hcur.copy_from_slice(&hprev);
            if a.kind == RnnKind::Lstm {
                cs[(d * batch + b) * h..(d * batch + b + 1) * h].copy_from_slice(&cprev);
            }
        }
    }
    let dt = x.dtype();
    // Re-lay states and Y for the batch-major layout.
    let states = |v: &[f64]| -> Result<Tensor> {
        if a.batch_major {
            let mut o = vec![0f64; v.len()];
            for d in 0..dirs {
                for b in 0..batch {
                    o[(b * dirs + d) * h..][..h].copy_from_slice(&v[(d * batch + b) * h..][..h]);
                }
            }
            Ok(out(vec![batch, dirs, h], o)?.cast(dt))
        } else {
            Ok(out(vec![dirs, batch, h], v.to_vec())?.cast(dt))
        }
    };
    let y = if a.batch_major {
        let mut o = vec![0f64; y.len()];
        for t in 0..seq {
            for d in 0..dirs {
                for b in 0..batch {
                    o[((b * seq + t) * dirs + d) * h..][..h]
                        .copy_from_slice(&y[((t * dirs + d) * batch + b) * h..][..h]);
                }
            }
        }
        out(vec![batch, seq, dirs, h], o)?.cast(dt)
    } else {
        out(vec![seq, dirs, batch, h], y)?.cast(dt)
    };
    let mut outs = vec![y, states(&hs)?];
    if a.kind == RnnKind::Lstm {
        outs.push(states(&cs)?);
    }
    outs.truncate(n_out.max(1));
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::t;
    use crate::op::{Op, RnnAct, RnnAttrs, RnnKind};

    #[test]
    fn simple_rnn_matches_hand_recurrence() {
        // hidden 1, input 1, 3 steps: h_t = tanh(w x_t + r h_{t-1}).
        let x = t(&[3, 1, 1], vec![1.0f64, -0.5, 2.0]);
        let w = t(&[1, 1, 1], vec![0.7f64]);
        let r = t(&[1, 1, 1], vec![-0.3f64]);
        let attrs = RnnAttrs {
            kind: RnnKind::Rnn,
            hidden: 1,
            direction: 0,
            batch_major: false,
            clip: None,
            acts: [RnnAct::Tanh; 3],
            linear_before_reset: false,
            input_forget: false,
        };
        let o = eval(&Op::Rnn(attrs), &[Some(&x), Some(&w), Some(&r)], 2).unwrap();
        let mut hprev = 0.0f64;
        let mut want = vec![];
        for &xt in &[1.0f64, -0.5, 2.0] {
            hprev = (0.7 * xt - 0.3 * hprev).tanh();
            want.push(hprev);
        }
        let got = o[0].as_slice::<f64>().unwrap();
        assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-12));
        assert!((o[1].as_slice::<f64>().unwrap()[0] - hprev).abs() < 1e-12);
    }
}
