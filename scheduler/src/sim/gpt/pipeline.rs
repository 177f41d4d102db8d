//! Discrete-event simulation of one pipeline-parallel training iteration
//! (1F1B and Megatron's interleaved 1F1B) over `p` stages, `v` model
//! chunks per stage and `m` micro-batches.
//!
//! Each stage runs its forward (`F`) and backward (`B`) passes in the
//! schedule's fixed order on one in-order queue. A pass starts when the
//! stage is free and its input has arrived: a forward needs the same
//! micro-batch's forward of the previous model chunk (the previous stage,
//! or the last stage's previous chunk), a backward the next chunk's
//! backward, both plus the point-to-point transfer; the last chunk's
//! backward follows its own forward on the same stage.
//!
//! Order on stage `s` (Megatron-LM's `forward_backward_pipelining_*`):
//! - 1F1B (`v = 1`): `min(p − s − 1, m)` warm-up forwards, then one
//!   forward and one backward alternately, then the remaining backwards;
//! - interleaved: the `k`-th forward runs chunk `(k mod pv) / p` of
//!   micro-batch `(k / pv)·p + k mod p`, backwards the chunks in reverse;
//!   `2(p − s − 1) + (v − 1)p` warm-up forwards (all of them when
//!   `m = p`), then alternate, then drain. It needs `m` a multiple of `p`.
//!
//! Transfers either only delay the receiver, or (`blocking`, as in
//! Megatron-LM, whose schedule waits for each batched send and receive
//! before the next pass) also occupy the sender.
//!
//! With uniform stages and free transfers, 1F1B takes
//! `(m + p − 1)(t_f + t_b)`, a bubble of `(p − 1)/(m + p − 1)` of the
//! time; interleaving divides the bubble time by `v`.
//!
//! Cost: O(p·m·v) (each pass is visited a bounded number of times).

use crate::plan::PlanError;

/// Forward or backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Forward.
    F,
    /// Backward (including any recomputation).
    B,
}

/// One pass of the simulated iteration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PassEvent {
    /// Stage.
    pub stage: usize,
    /// Model chunk on that stage.
    pub chunk: usize,
    /// Micro-batch.
    pub mb: usize,
    /// F or B.
    pub pass: Pass,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
}

/// The schedule's inputs.
#[derive(Clone, Debug)]
pub struct PipeInput {
    /// Stages.
    pub p: usize,
    /// Chunks per stage (1: 1F1B).
    pub v: usize,
    /// Micro-batches.
    pub m: usize,
    /// Forward time of `[stage][chunk]`, seconds.
    pub fwd: Vec<Vec<f64>>,
    /// Backward time of `[stage][chunk]`, seconds.
    pub bwd: Vec<Vec<f64>>,
    /// Transfer time between consecutive chunks on different stages.
    pub p2p: f64,
    /// Whether the sender is busy during its transfer (Megatron-LM's
    /// schedule waits for each batched send/receive before the next
    /// pass); otherwise a transfer only delays the receiver.
    pub blocking: bool,
}

/// The simulated iteration.
#[derive(Clone, Debug)]
pub struct PipeResult {
    /// Every pass, in the order they were scheduled.
    pub events: Vec<PassEvent>,
    /// When each stage finished its last pass.
    pub stage_end: Vec<f64>,
    /// Busy time of each stage.
    pub stage_busy: Vec<f64>,
    /// `[stage][chunk]`: (start, end) of the chunk's last backward.
    pub last_bwd: Vec<Vec<(f64, f64)>>,
    /// The last pass's end.
    pub makespan: f64,
}

impl PipeResult {
    /// Mean over stages of the idle fraction of the makespan.
    pub fn bubble(&self) -> f64 {
        if self.makespan <= 0.0 {
            return 0.0;
        }
        let p = self.stage_busy.len().max(1) as f64;
        self.stage_busy
            .iter()
            .map(|b| 1.0 - b / self.makespan)
            .sum::<f64>()
            / p
    }
}

/// The passes of stage `s` in order: (pass, micro-batch, chunk).
pub fn order(p: usize, v: usize, m: usize, s: usize) -> Vec<(Pass, usize, usize)> {
    let total = m * v;
    let fwd_of = |k: usize| {
        if v == 1 {
            (k, 0)
        } else {
            let chunk = (k % (p * v)) / p;
            ((k / (p * v)) * p + k % p, chunk)
        }
    };
    let bwd_of = |k: usize| {
        let (mb, c) = fwd_of(k);
        (mb, v - 1 - c)
    };
    let warmup = if v == 1 {
        (p - s - 1).min(m)
    } else if m == p {
        total
    } else {
        ((p - s - 1) * 2 + (v - 1) * p).min(total)
    };
    let mut out = Vec::with_capacity(2 * total);
    for k in 0..warmup {
        let (mb, c) = fwd_of(k);
        out.push((Pass::F, mb, c));
    }
    for i in 0..total - warmup {
        let (mb, c) = fwd_of(warmup + i);
        out.push((Pass::F, mb, c));
        let (mb, c) = bwd_of(i);
        out.push((Pass::B, mb, c));
    }
    for i in total - warmup..total {
        let (mb, c) = bwd_of(i);
        out.push((Pass::B, mb, c));
    }
    out
}

/// Checks the shape of a schedule.
pub fn check(p: usize, v: usize, m: usize) -> Result<(), PlanError> {
    if p == 0 || v == 0 || m == 0 {
        return Err(PlanError::Input(
            "pipeline: stages, chunks and micro-batches must be >= 1".into(),
        ));
    }
    if v > 1 && !m.is_multiple_of(p) {
        return Err(PlanError::Input(format!(
            "interleaved schedule needs the micro-batch count ({m}) to be a multiple of the pipeline size ({p})"
        )));
    }
    Ok(())
}

/// Simulates the iteration (see the module docs).
pub fn simulate(x: &PipeInput) -> Result<PipeResult, PlanError> {
    let (p, v, m) = (x.p, x.v, x.m);
    check(p, v, m)?;
    if x.fwd.len() != p || x.bwd.len() != p || x.fwd.iter().chain(&x.bwd).any(|r| r.len() != v) {
        return Err(PlanError::Input(
            "pipeline: pass times must be [stages][chunks]".into(),
        ));
    }
    let id =
        |pass: Pass, mb: usize, c: usize, s: usize| (((pass as usize) * m + mb) * v + c) * p + s;
    let mut end = vec![f64::NAN; 2 * m * v * p];
    let orders: Vec<Vec<(Pass, usize, usize)>> = (0..p).map(|s| order(p, v, m, s)).collect();
    let mut ptr = vec![0usize; p];
    let mut free = vec![0.0f64; p];
    let mut busy = vec![0.0f64; p];
    let mut last_bwd = vec![vec![(0.0, 0.0); v]; p];
    let mut events = Vec::with_capacity(2 * m * v * p);
    let mut work: Vec<usize> = (0..p).rev().collect();
    let mut queued = vec![true; p];
    while let Some(s) = work.pop() {
        queued[s] = false;
        while ptr[s] < orders[s].len() {
            let (pass, mb, c) = orders[s][ptr[s]];
            // The pass this one waits for and whether a transfer separates them.
            let dep = match pass {
                Pass::F if s > 0 => Some((id(Pass::F, mb, c, s - 1), true)),
                Pass::F if c > 0 => Some((id(Pass::F, mb, c - 1, p - 1), p > 1)),
                Pass::F => None,
                Pass::B if s + 1 < p => Some((id(Pass::B, mb, c, s + 1), true)),
                Pass::B if c + 1 < v => Some((id(Pass::B, mb, c + 1, 0), p > 1)),
                Pass::B => Some((id(Pass::F, mb, c, s), false)),
            };
            let ready = match dep {
                None => 0.0,
                Some((d, xfer)) => {
                    if end[d].is_nan() {
                        break;
                    }
                    end[d] + if xfer && !x.blocking { x.p2p } else { 0.0 }
                }
            };
            // Whether this pass's output goes to another stage.
            let sends = p > 1
                && match pass {
                    Pass::F => s + 1 < p || c + 1 < v,
                    Pass::B => s > 0 || c > 0,
                };
            let dur = match pass {
                Pass::F => x.fwd[s][c],
                Pass::B => x.bwd[s][c],
            } + if x.blocking && sends { x.p2p } else { 0.0 };
            let start = ready.max(free[s]);
            let e = start + dur;
            end[id(pass, mb, c, s)] = e;
            free[s] = e;
            busy[s] += dur;
            if pass == Pass::B {
                last_bwd[s][c] = (start, e);
            }
            events.push(PassEvent {
                stage: s,
                chunk: c,
                mb,
                pass,
                start,
                end: e,
            });
            ptr[s] += 1;
            // Wake the stage that consumes this pass.
            let next = match pass {
                Pass::F if s + 1 < p => s + 1,
                Pass::F => 0,
                Pass::B if s > 0 => s - 1,
                Pass::B => p - 1,
            };
            if !queued[next] && next != s {
                queued[next] = true;
                work.push(next);
            }
        }
    }
    if let Some(s) = (0..p).find(|&s| ptr[s] < orders[s].len()) {
        return Err(PlanError::Invalid(format!(
            "pipeline schedule deadlocked at stage {s} (pass {} of {})",
            ptr[s],
            orders[s].len()
        )));
    }
    let makespan = free.iter().cloned().fold(0.0, f64::max);
    Ok(PipeResult {
        events,
        stage_end: free,
        stage_busy: busy,
        last_bwd,
        makespan,
    })
}
