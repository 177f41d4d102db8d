//! [`GptReport`]: what a simulated training iteration reports, as text
//! and as a timeline for the simulator's renderers (one row per pipeline
//! stage: forward passes in blue, backward passes in green).

use super::layer::PassTimes;
use super::memory::Memory;
use super::model::{GptModel, Layout};
use super::pipeline::{Pass, PassEvent};
use crate::sim::{SimEvent, SimReport};
use std::fmt::Write;

/// One data-parallel all-reduce bucket on a stage's communication stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CommEvent {
    /// Stage.
    pub stage: usize,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
}

/// One simulated iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct GptReport {
    /// The model.
    pub model: GptModel,
    /// The layout.
    pub layout: Layout,
    /// Nodes used.
    pub nodes: usize,
    /// Micro-batches per replica.
    pub microbatches: usize,
    /// Iteration time, seconds.
    pub iteration_s: f64,
    /// Executed FLOPs (with recomputation) per second per GPU, in TFLOP/s.
    pub tflops_per_device: f64,
    /// Model FLOPs (without recomputation) per second per GPU, TFLOP/s.
    pub model_tflops_per_device: f64,
    /// The pipeline's forward and backward passes, seconds.
    pub pipeline_s: f64,
    /// Mean idle fraction of the stages during the pipeline.
    pub bubble: f64,
    /// One transformer layer's times for one micro-batch.
    pub layer: PassTimes,
    /// Tensor-parallel communication per iteration on the busiest stage
    /// (all exposed: it is serial with the compute), seconds.
    pub tp_comm_s: f64,
    /// One point-to-point transfer between stages, seconds.
    pub pp_p2p_s: f64,
    /// Iteration time the transfers between stages add (0 unless the
    /// simulation ran with detail), seconds.
    pub pp_exposed_s: f64,
    /// Data-parallel all-reduce time per iteration (largest stage), s.
    pub dp_comm_s: f64,
    /// The part of it not hidden behind the backward pass, seconds.
    pub dp_exposed_s: f64,
    /// Optimizer step, seconds.
    pub optimizer_s: f64,
    /// Memory per device (worst stage).
    pub memory: Memory,
    /// Bytes a device offers the model.
    pub usable_bytes: f64,
    /// Every pipeline pass (with detail).
    pub passes: Vec<PassEvent>,
    /// Every data-parallel all-reduce bucket (with detail).
    pub dp_events: Vec<CommEvent>,
}

const GIB: f64 = (1u64 << 30) as f64;

impl GptReport {
    /// Whether the worst stage fits in the device's memory.
    pub fn fits(&self) -> bool {
        self.memory.total() <= self.usable_bytes
    }

    /// Sequences per second.
    pub fn throughput(&self) -> f64 {
        self.layout.global_batch as f64 / self.iteration_s
    }

    /// A one-line description of the layout.
    pub fn layout_line(&self) -> String {
        let l = &self.layout;
        format!(
            "tp={} pp={} dp={} micro_batch={} schedule={} recompute={}{}",
            l.tp,
            l.pp,
            l.dp,
            l.micro_batch,
            l.schedule_name(),
            l.recompute,
            if l.sequence_parallel {
                " sequence_parallel"
            } else {
                ""
            }
        )
    }

    /// The human report; its last line is
    /// `iteration_s=<f> tflops_per_device=<f>`.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let m = &self.model;
        let _ = writeln!(
            s,
            "model: layers={} hidden={} heads={} seq={} vocab={} ({:.1}B parameters)",
            m.layers,
            m.hidden,
            m.heads,
            m.seq,
            m.vocab,
            super::memory::model_params(m) / 1e9
        );
        let _ = writeln!(
            s,
            "layout: {} ({} GPUs on {} nodes, {} micro-batches per replica)",
            self.layout_line(),
            self.layout.world(),
            self.nodes,
            self.microbatches
        );
        let _ = writeln!(
            s,
            "layer (one micro-batch): fwd {:.3} ms, bwd {:.3} ms, recompute {:.3} ms, of which TP comm {:.3} ms",
            self.layer.fwd * 1e3,
            self.layer.bwd * 1e3,
            self.layer.recompute * 1e3,
            self.layer.comm * 1e3
        );
        let _ = writeln!(
            s,
            "pipeline: {:.4} s, bubble {:.1}% (mean idle fraction of the stages)",
            self.pipeline_s,
            100.0 * self.bubble
        );
        let _ = writeln!(
            s,
            "communication: TP {:.4} s (exposed), PP p2p {:.3} ms each, {:.4} s exposed, DP all-reduce {:.4} s ({:.4} s exposed, {:.4} s hidden)",
            self.tp_comm_s,
            self.pp_p2p_s * 1e3,
            self.pp_exposed_s,
            self.dp_comm_s,
            self.dp_exposed_s,
            (self.dp_comm_s - self.dp_exposed_s).max(0.0)
        );
        let _ = writeln!(s, "optimizer step: {:.4} s", self.optimizer_s);
        let mm = &self.memory;
        let _ = writeln!(
            s,
            "memory per device: weights {:.2} GiB, gradients {:.2} GiB, optimizer {:.2} GiB, activations {:.2} GiB, total {:.2} GiB of {:.2} GiB usable",
            mm.weights / GIB,
            mm.grads / GIB,
            mm.optimizer / GIB,
            mm.activations / GIB,
            mm.total() / GIB,
            self.usable_bytes / GIB
        );
        if !self.fits() {
            let _ = writeln!(
                s,
                "DOES NOT FIT: needs {:.2} GiB per device, {:.2} GiB usable",
                mm.total() / GIB,
                self.usable_bytes / GIB
            );
        }
        let _ = writeln!(
            s,
            "model_tflops_per_device={:.2} throughput_seq_per_s={:.3}",
            self.model_tflops_per_device,
            self.throughput()
        );
        let _ = writeln!(
            s,
            "iteration_s={:.6} tflops_per_device={:.2}",
            self.iteration_s, self.tflops_per_device
        );
        s
    }

    /// The iteration as a [`SimReport`] (times in ms, one device per
    /// stage), for [`crate::sim::chrome_trace_json`] and
    /// [`crate::sim::svg_gantt`].
    pub fn timeline(&self) -> SimReport {
        let p = self.layout.pp;
        let names: Vec<String> = (0..p).map(|s| format!("stage{s:03}")).collect();
        let mut busy = vec![0.0; p];
        let mut events: Vec<SimEvent> = self
            .passes
            .iter()
            .map(|e| {
                busy[e.stage] += (e.end - e.start) * 1e3;
                let (what, op) = match e.pass {
                    Pass::F => ("", "forward"),
                    Pass::B => (" (bwd)", "backward"),
                };
                SimEvent {
                    name: format!("chunk {} mb {}{what}", e.chunk, e.mb),
                    op: op.into(),
                    cat: "kernel",
                    device: e.stage,
                    queue: "compute",
                    mb: e.mb as u64,
                    start: e.start * 1e3,
                    dur: (e.end - e.start) * 1e3,
                }
            })
            .collect();
        events.extend(self.dp_events.iter().map(|e| SimEvent {
            name: "dp all-reduce bucket".into(),
            op: "all-reduce".into(),
            cat: "copy",
            device: e.stage,
            queue: "copy",
            mb: 0,
            start: e.start * 1e3,
            dur: (e.end - e.start) * 1e3,
        }));
        let makespan = self.pipeline_s.max(self.iteration_s - self.optimizer_s) * 1e3;
        let mut copy_busy = vec![0.0; p];
        for e in &self.dp_events {
            copy_busy[e.stage] += (e.end - e.start) * 1e3;
        }
        let devices = names
            .iter()
            .zip(&busy)
            .zip(&copy_busy)
            .map(|((n, b), c)| crate::sim::DeviceStats {
                name: n.clone(),
                busy: *b,
                busy_frac: if makespan > 0.0 { b / makespan } else { 0.0 },
                bubble_frac: if makespan > 0.0 {
                    1.0 - b / makespan
                } else {
                    0.0
                },
                copy_busy: *c,
                peak_memory: self.memory.total(),
            })
            .collect();
        SimReport {
            unit: "ms".into(),
            us_per_unit: 1e3,
            makespan,
            microbatches: self.microbatches,
            throughput: self.microbatches as f64 / makespan.max(f64::MIN_POSITIVE),
            devices,
            bubble_frac: self.bubble,
            critical_path: Vec::new(),
            events,
            device_names: names,
        }
    }
}
