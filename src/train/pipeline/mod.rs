//! Pipelined training: the Plan's GPipe and 1F1B schedules, run for real.
//!
//! The training graph ([`super::graph`]) is cut into `p` stages. Each
//! forward node (and the loss) gets a stage: the stage of its name in the
//! given [`Plan`], or, without a plan, a contiguous split of the forward
//! nodes balanced by the flops of each node together with its backward
//! nodes. Each backward node runs on the stage of the forward node it
//! belongs to ([`hetflow_ops::autodiff::differentiate_traced`]); the sums
//! of a parameter's gradient contributions run on the earliest stage
//! that contributes.
//!
//! Every stage then has two phases, its forward part `F_s` and its
//! backward part `B_s`, each compiled once into a [`Session`] on the
//! stage's device. One step runs `m` micro-batches: one thread per stage
//! walks the schedule's fixed order of `(phase, micro-batch)` items
//! ([`order`]):
//! - GPipe: `F(0..m)`, then `B(0..m)`;
//! - 1F1B: `min(p − s − 1, m)` warm-up forwards on stage `s`, then one
//!   forward and one backward in turn, then the remaining backwards.
//!
//! A phase's outputs go to the phases that read them: to another stage
//! as a message (the tensors come back from the producing device and go
//! into the reading one through each session's host copy path, as
//! transfers do in inference), or, when the reader is the same stage's
//! backward phase, into the stage's **stash**. The stash holds the
//! activations a backward phase needs from the forward pass; they are
//! dropped as soon as that backward phase has run on the micro-batch.
//! The stash's size is measured (bytes and micro-batches held, per
//! stage): under 1F1B stage `s` holds at most `p − s` micro-batches,
//! under GPipe all `m` ([`StageStats`]).
//!
//! Each stage sums its parameters' gradients over the micro-batches (the
//! mean, for a mean loss: the gradient of the whole batch); the trainer
//! then applies one optimizer step to every stage's weights.
//!
//! A failing phase stops every stage (no stage waits forever on a
//! message that cannot come), and the error names the stage, its device
//! and the micro-batch.

mod stage;
mod stages;

use crate::train::graph::TrainGraph;
use crate::Error;
use hetflow_ops::graph::Graph;
use hetflow_ops::Tensor;
use hetflow_scheduler::plan::{Plan, Schedule};
use stage::{first_is_halt, phase, run_stage, StageIo, StageResult, StageRt, STOPPED};
pub use stage::{order, Pass, StageStats};
use stages::{all_stages, check_order, distinct, err, readers};
pub use stages::{forward_stages, simulated};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What one pipelined step measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineStats {
    /// The schedule.
    pub schedule: Schedule,
    /// Micro-batches per step.
    pub microbatches: usize,
    /// Per stage, in order.
    pub stages: Vec<StageStats>,
    /// Wall time of the step (all micro-batches through every stage), ms.
    pub step_ms: f64,
    /// The ideal pipelined time: `(m + p − 1)` × the slowest stage's
    /// forward + backward time per micro-batch, ms.
    pub bound_ms: f64,
}

impl PipelineStats {
    /// `bound_ms / step_ms` (1.0: the ideal is reached).
    pub fn efficiency(&self) -> f64 {
        if self.step_ms > 0.0 {
            self.bound_ms / self.step_ms
        } else {
            0.0
        }
    }
}

/// What a step returns.
pub struct StepOut {
    /// Per micro-batch, the training graph's outputs outside `summed`
    /// (None at the summed indices).
    pub per_mb: Vec<Vec<Option<Arc<Tensor>>>>,
    /// Per output index in `summed` (relative to its start), the mean over
    /// the micro-batches, as f32.
    pub means: Vec<Vec<f32>>,
    /// What the step measured.
    pub stats: PipelineStats,
}

/// A training graph compiled into pipeline stages (module docs).
pub struct Pipeline {
    stages: Vec<StageRt>,
    schedule: Schedule,
    n_outputs: usize,
    /// The leading training-graph inputs that differ per micro-batch (the
    /// batch, the targets, the dropout seed); the rest (statistics,
    /// weights) are the same for every micro-batch of a step.
    per_mb: usize,
}

impl Pipeline {
    /// Compiles `tg` into stages on `devices` (one per stage): split by
    /// `plan` (a plan of `model`, whose stages and devices it follows),
    /// else balanced over the devices given.
    pub fn new(
        tg: &TrainGraph,
        model: &Graph,
        schedule: Schedule,
        plan: Option<&Plan>,
        devices: &str,
        threads: Option<usize>,
    ) -> Result<Pipeline, Error> {
        if schedule == Schedule::Streaming {
            return Err(err(
                "pipelined training runs the gpipe or 1f1b schedule, not streaming",
            ));
        }
        let (forward, names) = forward_stages(tg, model, plan, devices)?;
        let stage = all_stages(tg, &forward)?;
        check_order(tg, &stage)?;
        let p = names.len();
        // Devices: each distinct name opened once.
        let (distinct, dev_of) = distinct(&names);
        let specs = hetflow_devices::parse_device_list(&distinct.join(","))?;
        let opened = hetflow_devices::open_devices(&specs, threads)?;
        let phase_of: Vec<(usize, Pass)> = stage
            .iter()
            .enumerate()
            .map(|(n, &s)| {
                let pass = if n < tg.n_forward {
                    Pass::Forward
                } else {
                    Pass::Backward
                };
                (s, pass)
            })
            .collect();
        let producers = tg.graph.producers();
        let readers = readers(&tg.graph);
        let wiring = (producers.as_slice(), readers.as_slice());
        let mut stages = Vec::with_capacity(p);
        for (s, name) in names.iter().enumerate() {
            let dev = &opened[dev_of[s]];
            let of = |pass: Pass| -> Vec<usize> {
                (0..stage.len())
                    .filter(|&n| phase_of[n] == (s, pass))
                    .collect()
            };
            let ctx = |e: Error| err(format!("stage {s} on {name}: {e}"));
            let compile = |pass: Pass| {
                phase(tg, wiring, &of(pass), &phase_of, (s, pass), dev, threads).map_err(ctx)
            };
            let (fwd, bwd) = (compile(Pass::Forward)?, compile(Pass::Backward)?);
            stages.push(StageRt {
                device: name.clone(),
                fwd,
                bwd,
            });
        }
        Ok(Pipeline {
            stages,
            schedule,
            n_outputs: tg.graph.outputs.len(),
            per_mb: 2 + usize::from(tg.seeded),
        })
    }

    /// Stages.
    pub fn stages(&self) -> usize {
        self.stages.len()
    }

    /// Runs one step: `feeds[i]` are micro-batch `i`'s training-graph
    /// inputs. The outputs at `summed` (the gradients) are averaged over
    /// the micro-batches on their stage.
    pub fn step(
        &mut self,
        feeds: &[Vec<Arc<Tensor>>],
        summed: std::ops::Range<usize>,
    ) -> Result<StepOut, Error> {
        let m = feeds.len();
        let p = self.stages.len();
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..p).map(|_| crossbeam::channel::unbounded()).unzip();
        let failed = AtomicBool::new(false);
        let schedule = self.schedule;
        let n_out = self.n_outputs;
        let per_mb = self.per_mb;
        let start = Instant::now();
        let results: Vec<Result<StageResult, Error>> = std::thread::scope(|sc| {
            let handles: Vec<_> = self
                .stages
                .iter_mut()
                .zip(receivers)
                .enumerate()
                .map(|(s, (st, rx))| {
                    let senders = senders.clone();
                    let failed = &failed;
                    let summed = summed.clone();
                    sc.spawn(move || {
                        let items = order(schedule, p, s, m);
                        let io = StageIo {
                            feeds,
                            per_mb,
                            rx: &rx,
                            senders: &senders,
                            failed,
                        };
                        let r = run_stage(st, s, &items, &io, summed);
                        if r.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        r
                    })
                })
                .collect();
            drop(senders);
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(err("a pipeline stage's thread panicked")))
                })
                .collect()
        });
        let step_ms = start.elapsed().as_secs_f64() * 1e3;
        // The first real error, not the "stopped" of the stages it halted.
        let mut first: Option<Error> = None;
        let mut done = Vec::with_capacity(p);
        for r in results {
            match r {
                Ok(v) => done.push(v),
                Err(e) => {
                    let halted = matches!(&e, Error::Setting(s) if s == STOPPED);
                    if first.is_none() || !halted && first_is_halt(&first) {
                        first = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        let mut per_mb: Vec<Vec<Option<Arc<Tensor>>>> = vec![vec![None; n_out]; m];
        let mut means: Vec<Vec<f32>> = vec![Vec::new(); summed.len()];
        let mut stats = PipelineStats {
            schedule,
            microbatches: m,
            step_ms,
            ..Default::default()
        };
        for d in done {
            for (mb, i, t) in d.kept {
                per_mb[mb][i] = Some(t);
            }
            for (i, v) in d.sums {
                means[i - summed.start] = v;
            }
            stats.stages.push(d.stats);
        }
        let slowest = stats
            .stages
            .iter()
            .map(|s| s.forward_ms + s.backward_ms)
            .fold(0.0, f64::max);
        stats.bound_ms = (m + p - 1) as f64 * slowest;
        Ok(StepOut {
            per_mb,
            means,
            stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_the_textbook_ones() {
        use Pass::{Backward as B, Forward as F};
        assert_eq!(
            order(Schedule::Gpipe, 2, 0, 2),
            vec![(F, 0), (F, 1), (B, 0), (B, 1)]
        );
        // 1F1B, p = 3, m = 4: stage 0 warms up with 2 forwards.
        assert_eq!(
            order(Schedule::OneFOneB, 3, 0, 4),
            vec![
                (F, 0),
                (F, 1),
                (F, 2),
                (B, 0),
                (F, 3),
                (B, 1),
                (B, 2),
                (B, 3)
            ]
        );
        // The last stage alternates from the start.
        assert_eq!(
            order(Schedule::OneFOneB, 3, 2, 3),
            vec![(F, 0), (B, 0), (F, 1), (B, 1), (F, 2), (B, 2)]
        );
        // Fewer micro-batches than the warm-up.
        assert_eq!(
            order(Schedule::OneFOneB, 4, 0, 2),
            vec![(F, 0), (F, 1), (B, 0), (B, 1)]
        );
    }
}
