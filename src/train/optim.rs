//! Optimizers on the host's f32 master weights: SGD (momentum, Nesterov),
//! Adam and AdamW, with L2 weight decay (decoupled for AdamW), clipping by
//! the global gradient norm, and learning-rate schedules (linear warmup,
//! then constant or cosine decay).
//!
//! The update rules are PyTorch's (`torch.optim`), so a user's
//! hyperparameters mean the same here:
//! - SGD: `g += wd·w; b = μ·b + g` (`b = g` on the first step);
//!   `w -= lr·(g + μ·b)` with Nesterov, else `w -= lr·b`.
//! - Adam: `g += wd·w; m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
//!   w -= lr·m̂ / (√v̂ + ε)` with `m̂ = m/(1-β1ᵗ)`, `v̂ = v/(1-β2ᵗ)`.
//! - AdamW: as Adam without the `wd·w` term in `g`, and `w -= lr·wd·w`
//!   first.

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Stochastic gradient descent.
    Sgd {
        /// Momentum factor μ (0: none).
        momentum: f32,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Adam; `decoupled` is AdamW.
    Adam {
        /// β1.
        beta1: f32,
        /// β2.
        beta2: f32,
        /// ε.
        eps: f32,
        /// AdamW's decoupled weight decay.
        decoupled: bool,
    },
}

/// The learning rate over steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The base rate throughout (after the warmup).
    Constant,
    /// Cosine decay from the base rate to 0 at `total` steps.
    Cosine {
        /// The last step.
        total: u64,
    },
}

/// An optimizer's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// The update rule.
    pub kind: Kind,
    /// Base learning rate.
    pub lr: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// Clip the global gradient norm to this (None: no clipping).
    pub clip_norm: Option<f32>,
    /// Steps of linear warmup from 0 to `lr`.
    pub warmup: u64,
    /// The rate after the warmup.
    pub schedule: Schedule,
}

impl Config {
    /// SGD with the given rate and momentum, no decay.
    pub fn sgd(lr: f32, momentum: f32) -> Config {
        Config {
            kind: Kind::Sgd {
                momentum,
                nesterov: false,
            },
            lr,
            weight_decay: 0.0,
            clip_norm: None,
            warmup: 0,
            schedule: Schedule::Constant,
        }
    }
    /// Adam (β = 0.9, 0.999, ε = 1e-8) with the given rate.
    pub fn adam(lr: f32) -> Config {
        Config {
            kind: Kind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                decoupled: false,
            },
            ..Config::sgd(lr, 0.0)
        }
    }
    /// AdamW with the given rate and decay.
    pub fn adamw(lr: f32, weight_decay: f32) -> Config {
        let mut c = Config::adam(lr);
        if let Kind::Adam { decoupled, .. } = &mut c.kind {
            *decoupled = true;
        }
        c.weight_decay = weight_decay;
        c
    }

    /// The learning rate of step `t` (1-based).
    pub fn rate(&self, t: u64) -> f32 {
        if t <= self.warmup && self.warmup > 0 {
            return self.lr * t as f32 / self.warmup as f32;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine { total } => {
                let span = total.saturating_sub(self.warmup).max(1) as f64;
                let done = (t.saturating_sub(self.warmup) as f64 / span).min(1.0);
                (self.lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * done).cos())) as f32
            }
        }
    }
}

/// An optimizer: its settings and its per-parameter state.
pub struct Optimizer {
    /// The settings.
    pub config: Config,
    /// Steps taken.
    pub step: u64,
    /// Per parameter: momentum buffer (SGD) or first moment (Adam).
    pub m: Vec<Vec<f32>>,
    /// Per parameter: second moment (Adam).
    pub v: Vec<Vec<f32>>,
}

impl Optimizer {
    /// A fresh optimizer for parameters of these sizes.
    pub fn new(config: Config, sizes: &[usize]) -> Optimizer {
        let adam = matches!(config.kind, Kind::Adam { .. });
        let sgd_momentum = matches!(config.kind, Kind::Sgd { momentum, .. } if momentum != 0.0);
        Optimizer {
            config,
            step: 0,
            m: sizes
                .iter()
                .map(|&n| {
                    if adam || sgd_momentum {
                        vec![0.0; n]
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
            v: sizes
                .iter()
                .map(|&n| if adam { vec![0.0; n] } else { Vec::new() })
                .collect(),
        }
    }

    /// Applies one step: `params[i] -= update(grads[i])`. Returns the
    /// gradients' global norm before clipping.
    pub fn update(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) -> f32 {
        self.step += 1;
        let t = self.step;
        let c = self.config;
        let lr = c.rate(t);
        let norm = grads
            .iter()
            .flat_map(|g| g.iter())
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt() as f32;
        let scale = match c.clip_norm {
            Some(max) if norm > max && norm > 0.0 => max / norm,
            _ => 1.0,
        };
        for (i, (w, g)) in params.iter_mut().zip(grads).enumerate() {
            match c.kind {
                Kind::Sgd { momentum, nesterov } => {
                    let buf = &mut self.m[i];
                    for (j, (wj, &gj)) in w.iter_mut().zip(g).enumerate() {
                        let mut d = gj * scale + c.weight_decay * *wj;
                        if momentum != 0.0 {
                            let b = if t == 1 { d } else { momentum * buf[j] + d };
                            buf[j] = b;
                            d = if nesterov { d + momentum * b } else { b };
                        }
                        *wj -= lr * d;
                    }
                }
                Kind::Adam {
                    beta1,
                    beta2,
                    eps,
                    decoupled,
                } => {
                    let (m, v) = (&mut self.m[i], &mut self.v[i]);
                    let bc1 = 1.0 - (beta1 as f64).powi(t as i32);
                    let bc2 = 1.0 - (beta2 as f64).powi(t as i32);
                    for (j, (wj, &gj)) in w.iter_mut().zip(g).enumerate() {
                        let mut d = gj * scale;
                        if decoupled {
                            *wj -= lr * c.weight_decay * *wj;
                        } else {
                            d += c.weight_decay * *wj;
                        }
                        m[j] = beta1 * m[j] + (1.0 - beta1) * d;
                        v[j] = beta2 * v[j] + (1.0 - beta2) * d * d;
                        let mh = m[j] as f64 / bc1;
                        let vh = v[j] as f64 / bc2;
                        *wj -= (lr as f64 * mh / (vh.sqrt() + eps as f64)) as f32;
                    }
                }
            }
        }
        norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_momentum_and_nesterov_follow_the_closed_form() {
        // Constant gradient 1 on w = 0: momentum buffers 1, 1.5, 1.75.
        let mut o = Optimizer::new(Config::sgd(0.1, 0.5), &[1]);
        let mut w = vec![vec![0.0f32]];
        for _ in 0..3 {
            o.update(&mut w, &[vec![1.0]]);
        }
        assert!((w[0][0] + 0.1 * (1.0 + 1.5 + 1.75)).abs() < 1e-6);
        let mut c = Config::sgd(0.1, 0.5);
        c.kind = Kind::Sgd {
            momentum: 0.5,
            nesterov: true,
        };
        let mut o = Optimizer::new(c, &[1]);
        let mut w = vec![vec![0.0f32]];
        o.update(&mut w, &[vec![1.0]]);
        o.update(&mut w, &[vec![1.0]]);
        // Steps: g + μ·b with b = 1, then 1.5.
        assert!((w[0][0] + 0.1 * (1.5 + 1.75)).abs() < 1e-6);
    }

    #[test]
    fn adam_first_step_moves_each_weight_by_the_rate() {
        let mut o = Optimizer::new(Config::adam(0.01), &[3]);
        let mut w = vec![vec![1.0f32, 2.0, 3.0]];
        o.update(&mut w, &[vec![0.5, -2.0, 1e-3]]);
        for (a, b) in w[0].iter().zip([0.99, 2.01, 2.99]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn clipping_and_schedules() {
        let mut c = Config::sgd(1.0, 0.0);
        c.clip_norm = Some(1.0);
        let mut o = Optimizer::new(c, &[2]);
        let mut w = vec![vec![0.0f32, 0.0]];
        let n = o.update(&mut w, &[vec![3.0, 4.0]]);
        assert!((n - 5.0).abs() < 1e-6);
        assert!((w[0][0] + 0.6).abs() < 1e-6 && (w[0][1] + 0.8).abs() < 1e-6);
        let mut c = Config::sgd(1.0, 0.0);
        c.warmup = 10;
        c.schedule = Schedule::Cosine { total: 110 };
        assert!((c.rate(5) - 0.5).abs() < 1e-6);
        assert!((c.rate(60) - 0.5).abs() < 1e-6);
        assert!(c.rate(110).abs() < 1e-6);
    }
}
