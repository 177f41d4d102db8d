//! Training simulation of GPT-style transformers at cluster scale:
//! tensor (TP), pipeline (PP) and data (DP) parallelism on a cluster of
//! identical GPU nodes ([`NodeSpec`]).
//!
//! One iteration is built from the pieces below and simulated:
//! - [`layer`]: each transformer layer's forward and backward operators
//!   (GEMMs with their real shapes, batched attention products,
//!   element-wise kernels) timed by a roofline with a GEMM-efficiency
//!   curve, plus the TP all-reduces (reduce-scatter/all-gather with
//!   sequence parallelism), serial on the compute stream as in Megatron;
//!   recomputation (none, selective: the core attention, full: the whole
//!   forward) is added before each backward;
//! - [`pipeline`]: a discrete-event run of the 1F1B or interleaved
//!   schedule over the stages, with the point-to-point transfer between
//!   stages (Megatron's scatter/gather: each TP rank sends `1/t` of the
//!   activation over its own NIC, then the ranks all-gather over NVLink),
//!   which holds the sending stage as Megatron's synchronous sends do;
//! - data parallelism: each layer's gradients form one bucket, ready when
//!   that layer's backward of the last micro-batch ends; the buckets are
//!   all-reduced in order on a separate stream, so they overlap the rest
//!   of the backward (or start after it, with `dp_overlap = false`);
//! - the optimizer step (mixed-precision Adam, memory-bound: 32 bytes
//!   read or written per parameter) after the slowest stage's last
//!   all-reduce;
//! - [`collective`]: α–β costs of ring and tree collectives on the
//!   two-level network; [`memory`]: memory per device.
//!
//! ## Throughput
//! `tflops_per_device` counts the FLOPs the GPUs execute, as Narayanan et
//! al. (SC'21, eq. 3) count them: with `B` the global batch, per
//! iteration `72·B·s·L·h²·(1 + s/(6h) + V/(12·L·h))` for the forward and
//! backward passes (the model FLOPs), plus the recomputed forward:
//! `24·B·s·L·h²·(1 + s/(6h))` with full recomputation (which gives their
//! `96·B·s·L·h²·(1 + s/(6h) + V/(16·L·h))`), `4·B·s²·L·h` with selective
//! recomputation. `model_tflops_per_device` leaves the recomputation out.
//! Both are divided by the iteration time and the GPU count.

pub mod collective;
pub mod layer;
pub mod megatron;
pub mod memory;
mod model;
pub mod node;
pub mod pipeline;
mod report;
pub mod search;
#[cfg(test)]
mod tests;

pub use model::{GptModel, Layout, Recompute};
pub use node::NodeSpec;
pub use report::GptReport;

use crate::plan::PlanError;
use collective::{Coll, Group};

/// The most forward and backward passes one simulated iteration may have
/// (the pipeline simulation keeps a few words per pass).
pub const MAX_PASSES: f64 = 2.0e7;

fn bad<T>(m: String) -> Result<T, PlanError> {
    Err(PlanError::Input(m))
}

/// Largest value of any size or count (layers, hidden, batch, tp, ...).
pub const MAX_SIZE: usize = 1 << 24;

/// Checks the model's sizes and the global batch (what a search starts
/// from).
pub fn check_model(m: &GptModel, global_batch: usize) -> Result<(), PlanError> {
    for (n, v) in [
        ("layers", m.layers),
        ("hidden", m.hidden),
        ("heads", m.heads),
        ("seq", m.seq),
        ("vocab", m.vocab),
        ("global-batch", global_batch),
    ] {
        if v == 0 || v > MAX_SIZE {
            return bad(format!("--{n} must be 1..={MAX_SIZE} (got {v})"));
        }
    }
    if !m.hidden.is_multiple_of(m.heads) {
        return bad(format!(
            "hidden ({}) must be divisible by heads ({})",
            m.hidden, m.heads
        ));
    }
    Ok(())
}

/// Checks the model and the layout against each other and the cluster;
/// returns the node count.
pub fn check(
    m: &GptModel,
    l: &Layout,
    spec: &NodeSpec,
    nodes: Option<usize>,
) -> Result<usize, PlanError> {
    check_model(m, l.global_batch)?;
    for (n, v) in [
        ("micro-batch", l.micro_batch),
        ("tp", l.tp),
        ("pp", l.pp),
        ("dp", l.dp),
        ("chunks", l.chunks),
    ] {
        if v == 0 || v > MAX_SIZE {
            return bad(format!("--{n} must be 1..={MAX_SIZE} (got {v})"));
        }
    }
    if !m.heads.is_multiple_of(l.tp) {
        return bad(format!(
            "heads ({}) must be divisible by tp ({})",
            m.heads, l.tp
        ));
    }
    if !m.vocab.is_multiple_of(l.tp) {
        return bad(format!(
            "vocab ({}) must be divisible by tp ({})",
            m.vocab, l.tp
        ));
    }
    if l.tp > spec.node.gpus || !spec.node.gpus.is_multiple_of(l.tp) {
        return bad(format!(
            "tp ({}) must divide the node's {} GPUs: tensor parallelism stays on NVLink",
            l.tp, spec.node.gpus
        ));
    }
    if !m.layers.is_multiple_of(l.pp * l.chunks) {
        return bad(format!(
            "layers ({}) must be divisible by pp × chunks ({} × {})",
            m.layers, l.pp, l.chunks
        ));
    }
    if !l.global_batch.is_multiple_of(l.dp * l.micro_batch) {
        return bad(format!(
            "global batch ({}) must be divisible by dp × micro-batch ({} × {})",
            l.global_batch, l.dp, l.micro_batch
        ));
    }
    if l.sequence_parallel && !m.seq.is_multiple_of(l.tp) {
        return bad(format!(
            "sequence parallelism needs seq ({}) divisible by tp ({})",
            m.seq, l.tp
        ));
    }
    pipeline::check(l.pp, l.chunks, l.microbatches())?;
    let passes = 2.0 * l.pp as f64 * l.chunks as f64 * l.microbatches() as f64;
    if passes > MAX_PASSES {
        return bad(format!(
            "{passes:.0} pipeline passes per iteration (2 × pp × chunks × micro-batches) is more than the simulator takes ({MAX_PASSES:.0}); use larger micro-batches"
        ));
    }
    let world = l.world();
    let gpn = spec.node.gpus;
    let nodes = match nodes.or(spec.nodes) {
        Some(n) => {
            if n.checked_mul(gpn) != Some(world) {
                return bad(format!(
                    "tp × pp × dp = {} × {} × {} = {world} GPUs, but the cluster has {n} nodes × {gpn} = {} GPUs",
                    l.tp,
                    l.pp,
                    l.dp,
                    n.saturating_mul(gpn)
                ));
            }
            n
        }
        None => {
            if world > gpn && !world.is_multiple_of(gpn) {
                return bad(format!(
                    "tp × pp × dp = {world} GPUs is not a whole number of {gpn}-GPU nodes"
                ));
            }
            world.div_ceil(gpn)
        }
    };
    Ok(nodes)
}

/// The data-parallel communicator (Megatron's rank order: TP fastest,
/// then DP, then PP, so a node holds `gpus / tp` consecutive DP ranks).
pub fn dp_group(l: &Layout, spec: &NodeSpec) -> Group {
    let gpn = spec.node.gpus;
    let per_node = if l.tp >= gpn {
        1
    } else {
        (gpn / l.tp).min(l.dp).max(1)
    };
    Group {
        n: l.dp,
        per_node,
        concurrent: (gpn / per_node).max(1),
    }
}

/// Whether consecutive pipeline stages share a node.
pub fn stages_share_node(l: &Layout, spec: &NodeSpec) -> bool {
    l.tp * l.dp < spec.node.gpus
}

/// Time of one pipeline point-to-point transfer (one micro-batch's
/// activation or its gradient between two stages), seconds.
pub fn p2p_time(m: &GptModel, l: &Layout, spec: &NodeSpec) -> f64 {
    if l.pp == 1 {
        return 0.0;
    }
    let bytes = (l.micro_batch * m.seq * m.hidden) as f64 * 2.0;
    let t = l.tp as f64;
    // Each TP rank sends its 1/t; across nodes every GPU of a node sends
    // at once. Without sequence parallelism the receivers all-gather the
    // activation over NVLink.
    let same = stages_share_node(l, spec);
    let send = collective::p2p(bytes / t, same, if same { 1 } else { spec.node.gpus }, spec);
    let gather = if l.sequence_parallel {
        0.0
    } else {
        collective::ring(Coll::AllGather, bytes, &layer::tp_group(l), spec)
    };
    send + gather
}

/// FLOPs per iteration: (model, executed) — see the module docs.
pub fn iteration_flops(m: &GptModel, l: &Layout) -> (f64, f64) {
    let (b, s, ll, h, v) = (
        l.global_batch as f64,
        m.seq as f64,
        m.layers as f64,
        m.hidden as f64,
        m.vocab as f64,
    );
    let model = 72.0 * b * s * ll * h * h * (1.0 + s / (6.0 * h) + v / (12.0 * ll * h));
    let extra = match l.recompute {
        Recompute::None => 0.0,
        Recompute::Selective => 4.0 * b * s * s * ll * h,
        Recompute::Full => 24.0 * b * s * ll * h * h * (1.0 + s / (6.0 * h)),
    };
    (model, model + extra)
}

/// What one simulated iteration needs from the layer model: the
/// pipeline's pass times per `[stage][chunk]` and the TP communication
/// per stage.
struct StageTimes {
    fwd: Vec<Vec<f64>>,
    bwd: Vec<Vec<f64>>,
    tp_comm: Vec<f64>,
    layer: layer::PassTimes,
}

fn stage_times(m: &GptModel, l: &Layout, spec: &NodeSpec) -> StageTimes {
    let (p, v) = (l.pp, l.chunks);
    let per_chunk = (m.layers / (p * v)) as f64;
    let lt = layer::layer_times(m, l, spec);
    let emb = layer::embedding_times(m, l, spec);
    let out = layer::output_times(m, l, spec);
    let mut fwd = vec![vec![per_chunk * lt.fwd; v]; p];
    let mut bwd = vec![vec![per_chunk * lt.bwd_total(); v]; p];
    let mut tp_comm = vec![per_chunk * v as f64 * lt.comm; p];
    fwd[0][0] += emb.fwd;
    bwd[0][0] += emb.bwd_total();
    tp_comm[0] += emb.comm;
    fwd[p - 1][v - 1] += out.fwd;
    bwd[p - 1][v - 1] += out.bwd_total();
    tp_comm[p - 1] += out.comm;
    StageTimes {
        fwd,
        bwd,
        tp_comm,
        layer: lt,
    }
}

/// Simulates one training iteration (see the module docs). `nodes`
/// overrides the spec's node count; `detail` also measures the exposed
/// pipeline transfer time (one more pipeline run) and keeps every pass
/// for traces.
pub fn simulate(
    m: &GptModel,
    l: &Layout,
    spec: &NodeSpec,
    nodes: Option<usize>,
    detail: bool,
) -> Result<GptReport, PlanError> {
    let nodes = check(m, l, spec, nodes)?;
    let st = stage_times(m, l, spec);
    let mbs = l.microbatches();
    let p2p = p2p_time(m, l, spec);
    let input = pipeline::PipeInput {
        p: l.pp,
        v: l.chunks,
        m: mbs,
        fwd: st.fwd.clone(),
        bwd: st.bwd.clone(),
        p2p,
        blocking: true,
    };
    let pipe = pipeline::simulate(&input)?;
    let pp_exposed = if detail && l.pp > 1 {
        let free = pipeline::simulate(&pipeline::PipeInput { p2p: 0.0, ..input })?;
        (pipe.makespan - free.makespan).max(0.0)
    } else {
        0.0
    };
    // Data-parallel gradient all-reduce, one bucket per layer.
    let g = dp_group(l, spec);
    let layer_bytes = memory::layer_params(m, l.tp) * 2.0;
    let (bucket, _) = collective::time(Coll::AllReduce, layer_bytes, &g, spec);
    let emb_bytes = (m.vocab * m.hidden) as f64 / l.tp as f64 * 2.0;
    let (emb_ar, _) = collective::time(Coll::AllReduce, emb_bytes, &g, spec);
    // Tied embedding: first and last stage sum their copies' gradients.
    let tie = if l.pp > 1 {
        let pair = Group {
            n: 2,
            per_node: if stages_share_node(l, spec) { 2 } else { 1 },
            concurrent: spec.node.gpus,
        };
        collective::time(Coll::AllReduce, emb_bytes, &pair, spec).0
    } else {
        0.0
    };
    let per_chunk = m.layers / (l.pp * l.chunks);
    let mut dp_total: f64 = 0.0;
    let mut stage_done = vec![0.0; l.pp];
    let mut comm_events = Vec::new();
    for (s, done) in stage_done.iter_mut().enumerate() {
        let mut ready: Vec<(f64, f64)> = Vec::new();
        for c in 0..l.chunks {
            let (start, end) = pipe.last_bwd[s][c];
            for j in 0..per_chunk {
                let at = if l.dp_overlap {
                    start + (j + 1) as f64 / per_chunk as f64 * (end - start)
                } else {
                    pipe.stage_end[s]
                };
                ready.push((at, bucket));
            }
        }
        let ends_at = |c: usize| {
            if l.dp_overlap {
                pipe.last_bwd[s][c].1
            } else {
                pipe.stage_end[s]
            }
        };
        if s == 0 || s == l.pp - 1 {
            let c = if s == 0 { 0 } else { l.chunks - 1 };
            ready.push((ends_at(c), emb_ar + tie));
        }
        ready.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut free: f64 = 0.0;
        let mut total = 0.0;
        for (at, d) in ready {
            let start = free.max(at);
            free = start + d;
            total += d;
            if detail && d > 0.0 {
                comm_events.push(report::CommEvent {
                    stage: s,
                    start,
                    end: free,
                });
            }
        }
        dp_total = dp_total.max(total);
        *done = free.max(pipe.stage_end[s]);
    }
    let compute_end = pipe.makespan;
    let comm_end = stage_done.iter().cloned().fold(0.0, f64::max);
    let mem = memory::memory(m, l);
    let optimizer = mem.params * 32.0 / spec.mem_bw();
    let iteration = comm_end + optimizer;
    let (model_flops, exec_flops) = iteration_flops(m, l);
    let world = l.world() as f64;
    Ok(GptReport {
        model: m.clone(),
        layout: l.clone(),
        nodes,
        microbatches: mbs,
        iteration_s: iteration,
        tflops_per_device: exec_flops / iteration / world / 1e12,
        model_tflops_per_device: model_flops / iteration / world / 1e12,
        pipeline_s: compute_end,
        bubble: pipe.bubble(),
        layer: st.layer,
        tp_comm_s: st.tp_comm.iter().cloned().fold(0.0, f64::max) * mbs as f64,
        pp_p2p_s: p2p,
        pp_exposed_s: pp_exposed,
        dp_comm_s: dp_total,
        dp_exposed_s: (comm_end - compute_end).max(0.0),
        optimizer_s: optimizer,
        memory: mem,
        usable_bytes: spec.usable_bytes(),
        passes: if detail { pipe.events } else { Vec::new() },
        dp_events: comm_events,
    })
}
