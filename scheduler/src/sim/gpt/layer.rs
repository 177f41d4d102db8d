//! The operators of one GPT transformer layer (and the embedding and
//! output layers) on one tensor-parallel rank, with their real shapes,
//! and their time on a [`NodeSpec`] GPU.
//!
//! ## Cost of an operator
//! - **GEMM** `[m, k] × [k, n]` (times `batch` for the attention's batched
//!   products): `2·m·n·k·batch` FLOPs at `peak × e`, where
//!   `e = gemm_max × q × k / (k + k_half)`. `q` is tile and wave
//!   quantisation: the output is cut into tiles, the tiles run in waves of
//!   one per SM, and `q` = useful output elements / (waves × SMs × tile
//!   elements), the best over the tile shapes 256×128, 128×256 and
//!   128×128 (the last at 0.9× for its lower reuse). The form is NVIDIA's
//!   account of GEMM performance ("Matrix Multiplication Background User's
//!   Guide", NVIDIA Deep Learning Performance documentation: tile
//!   quantisation, wave quantisation, arithmetic intensity); `gemm_max`
//!   and `k_half` are model constants ([`super::node::ModelParams`]). The
//!   time is at least the bytes of the three matrices over the effective
//!   memory bandwidth (roofline), plus one launch.
//! - **Element-wise** (layer norm, softmax, dropout, GeLU, bias and
//!   residual adds, as Megatron fuses them): bytes read and written over
//!   `hbm_gbps × mem_eff`, plus one launch per kernel.
//! - **Collectives**: [`super::collective`]. Tensor-parallel collectives
//!   are on the compute stream's critical path (Megatron issues them
//!   synchronously), so a layer's time is the sum of its operators.
//!
//! Activations are 2-byte (bf16/fp16). Backward: each GEMM becomes two
//! (input gradient and weight gradient, same FLOPs each), each
//! element-wise kernel reads its saved input and the incoming gradient
//! and writes one gradient.

use super::collective::{self, Coll, Group};
use super::model::{GptModel, Layout, Recompute};
use super::node::NodeSpec;

/// What an operator is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Matrix product.
    Gemm,
    /// Memory-bound kernel.
    Elementwise,
    /// Tensor-parallel collective.
    Comm,
}

/// One operator with its time, seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// Name (`qkv`, `softmax`, ...).
    pub name: &'static str,
    /// Kind.
    pub kind: Kind,
    /// FLOPs (GEMMs).
    pub flops: f64,
    /// Seconds.
    pub time: f64,
}

/// Forward, backward and recompute time of one layer (or the embedding
/// or output layer), seconds, and the communication inside them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassTimes {
    /// Forward.
    pub fwd: f64,
    /// Backward, without recomputation.
    pub bwd: f64,
    /// Forward work redone before the backward (per the recompute mode).
    pub recompute: f64,
    /// Tensor-parallel communication in `fwd + bwd + recompute`.
    pub comm: f64,
}

impl PassTimes {
    /// Backward including the recomputation.
    pub fn bwd_total(&self) -> f64 {
        self.bwd + self.recompute
    }
}

/// Efficiency of a GEMM (see the module docs), without the k factor.
fn quantisation(m: f64, n: f64, batch: f64, spec: &NodeSpec) -> f64 {
    let [t0, t1] = spec.model.gemm_tile;
    let sms = spec.gpu.sms as f64;
    let shapes = [
        (t0 as f64, t1 as f64, 1.0),
        (t1 as f64, t0 as f64, 1.0),
        (t1 as f64, t1 as f64, 0.9),
    ];
    let mut best: f64 = 0.0;
    for (tm, tn, f) in shapes {
        let tiles = (m / tm).ceil() * (n / tn).ceil() * batch;
        let waves = (tiles / sms).ceil();
        let q = m * n * batch / (waves * sms * tm * tn);
        best = best.max(q * f);
    }
    best
}

/// Time of a GEMM `[m, k] × [k, n]`, `batch` times, seconds.
pub fn gemm_time(m: f64, n: f64, k: f64, batch: f64, spec: &NodeSpec) -> f64 {
    if m <= 0.0 || n <= 0.0 || k <= 0.0 || batch <= 0.0 {
        return 0.0;
    }
    let p = &spec.model;
    let e = p.gemm_max * quantisation(m, n, batch, spec) * k / (k + p.gemm_k_half);
    let flops = 2.0 * m * n * k * batch;
    let bytes = 2.0 * (m * k + k * n + m * n) * batch;
    (flops / (spec.peak_flops() * e)).max(bytes / spec.mem_bw()) + p.launch_us * 1e-6
}

/// Time of an element-wise kernel moving `bytes`, seconds.
pub fn elem_time(bytes: f64, spec: &NodeSpec) -> f64 {
    bytes / spec.mem_bw() + spec.model.launch_us * 1e-6
}

/// A builder of operator lists.
struct Ops<'a> {
    spec: &'a NodeSpec,
    ops: Vec<Op>,
}

impl Ops<'_> {
    fn gemm(&mut self, name: &'static str, m: f64, n: f64, k: f64, batch: f64) {
        self.ops.push(Op {
            name,
            kind: Kind::Gemm,
            flops: 2.0 * m * n * k * batch,
            time: gemm_time(m, n, k, batch, self.spec),
        });
    }
    fn elem(&mut self, name: &'static str, bytes: f64) {
        self.ops.push(Op {
            name,
            kind: Kind::Elementwise,
            flops: 0.0,
            time: elem_time(bytes, self.spec),
        });
    }
    fn comm(&mut self, name: &'static str, c: Coll, bytes: f64, g: &Group) {
        let time = collective::time(c, bytes, g, self.spec).0;
        if time > 0.0 {
            self.ops.push(Op {
                name,
                kind: Kind::Comm,
                flops: 0.0,
                time,
            });
        }
    }
}

/// The tensor-parallel group (inside one node).
pub fn tp_group(l: &Layout) -> Group {
    Group {
        n: l.tp,
        per_node: l.tp,
        concurrent: 1,
    }
}

/// Forward operators of one transformer layer for one micro-batch.
/// `core_only`: just the core attention (what selective recomputation
/// redoes).
pub fn layer_forward(m: &GptModel, l: &Layout, spec: &NodeSpec, core_only: bool) -> Vec<Op> {
    let t = l.tp as f64;
    let (b, s, h, a) = (
        l.micro_batch as f64,
        m.seq as f64,
        m.hidden as f64,
        m.heads as f64,
    );
    let tok = b * s;
    let d = h / a;
    // Tokens an element-wise kernel outside the core sees: all of them
    // without sequence parallelism, 1/t with it.
    let etok = if l.sequence_parallel { tok / t } else { tok };
    let act = tok * h * 2.0; // one full activation, bytes
    let g = tp_group(l);
    let mut o = Ops {
        spec,
        ops: Vec::new(),
    };
    let heads = b * a / t;
    let scores = heads * s * s;
    if !core_only {
        o.elem("layernorm1", 4.0 * etok * h);
        if l.sequence_parallel {
            o.comm("tp all-gather", Coll::AllGather, act, &g);
        }
        o.gemm("qkv", tok, 3.0 * h / t, h, 1.0);
    }
    o.gemm("scores", s, s, d, heads);
    o.elem("softmax", 4.0 * scores);
    o.elem("attn dropout", 5.0 * scores);
    o.gemm("context", s, d, s, heads);
    if core_only {
        return o.ops;
    }
    o.gemm("proj", tok, h, h / t, 1.0);
    if l.sequence_parallel {
        o.comm("tp reduce-scatter", Coll::ReduceScatter, act, &g);
    } else {
        o.comm("tp all-reduce", Coll::AllReduce, act, &g);
    }
    o.elem("bias dropout add", 7.0 * etok * h);
    o.elem("layernorm2", 4.0 * etok * h);
    if l.sequence_parallel {
        o.comm("tp all-gather", Coll::AllGather, act, &g);
    }
    o.gemm("fc1", tok, 4.0 * h / t, h, 1.0);
    o.elem("bias gelu", 4.0 * tok * 4.0 * h / t);
    o.gemm("fc2", tok, h, 4.0 * h / t, 1.0);
    if l.sequence_parallel {
        o.comm("tp reduce-scatter", Coll::ReduceScatter, act, &g);
    } else {
        o.comm("tp all-reduce", Coll::AllReduce, act, &g);
    }
    o.elem("bias dropout add", 7.0 * etok * h);
    o.ops
}

/// Backward operators of one transformer layer for one micro-batch.
pub fn layer_backward(m: &GptModel, l: &Layout, spec: &NodeSpec) -> Vec<Op> {
    let t = l.tp as f64;
    let (b, s, h, a) = (
        l.micro_batch as f64,
        m.seq as f64,
        m.hidden as f64,
        m.heads as f64,
    );
    let tok = b * s;
    let d = h / a;
    let etok = if l.sequence_parallel { tok / t } else { tok };
    let act = tok * h * 2.0;
    let g = tp_group(l);
    let mut o = Ops {
        spec,
        ops: Vec::new(),
    };
    let heads = b * a / t;
    let scores = heads * s * s;
    let (gather, reduce) = if l.sequence_parallel {
        (Coll::AllGather, Coll::ReduceScatter)
    } else {
        (Coll::AllReduce, Coll::AllReduce)
    };
    o.elem("bias dropout add bwd", 5.0 * etok * h);
    if l.sequence_parallel {
        o.comm("tp all-gather", gather, act, &g);
    }
    o.gemm("fc2 dgrad", tok, 4.0 * h / t, h, 1.0);
    o.gemm("fc2 wgrad", 4.0 * h / t, h, tok, 1.0);
    o.elem("bias gelu bwd", 6.0 * tok * 4.0 * h / t);
    o.gemm("fc1 dgrad", tok, h, 4.0 * h / t, 1.0);
    o.gemm("fc1 wgrad", h, 4.0 * h / t, tok, 1.0);
    o.comm("tp grad reduce", reduce, act, &g);
    o.elem("layernorm2 bwd", 6.0 * etok * h);
    o.elem("bias dropout add bwd", 5.0 * etok * h);
    if l.sequence_parallel {
        o.comm("tp all-gather", gather, act, &g);
    }
    o.gemm("proj dgrad", tok, h / t, h, 1.0);
    o.gemm("proj wgrad", h / t, h, tok, 1.0);
    o.gemm("context dgrad", s, s, d, heads);
    o.gemm("context wgrad", s, d, s, heads);
    o.elem("attn dropout bwd", 5.0 * scores);
    o.elem("softmax bwd", 6.0 * scores);
    o.gemm("scores dgrad q", s, d, s, heads);
    o.gemm("scores dgrad k", s, d, s, heads);
    o.gemm("qkv dgrad", tok, h, 3.0 * h / t, 1.0);
    o.gemm("qkv wgrad", h, 3.0 * h / t, tok, 1.0);
    o.comm("tp grad reduce", reduce, act, &g);
    o.elem("layernorm1 bwd", 6.0 * etok * h);
    o.ops
}

fn sum(ops: &[Op]) -> (f64, f64) {
    let t = ops.iter().fold(0.0, |a, o| a + o.time);
    let c = ops
        .iter()
        .filter(|o| o.kind == Kind::Comm)
        .fold(0.0, |a, o| a + o.time);
    (t, c)
}

/// Times of one transformer layer for one micro-batch.
pub fn layer_times(m: &GptModel, l: &Layout, spec: &NodeSpec) -> PassTimes {
    let (fwd, fc) = sum(&layer_forward(m, l, spec, false));
    let (bwd, bc) = sum(&layer_backward(m, l, spec));
    let (recompute, rc) = match l.recompute {
        Recompute::None => (0.0, 0.0),
        Recompute::Selective => sum(&layer_forward(m, l, spec, true)),
        Recompute::Full => (fwd, fc),
    };
    PassTimes {
        fwd,
        bwd,
        recompute,
        comm: fc + bc + rc,
    }
}

/// The embedding (first stage): vocabulary-parallel lookup, its
/// all-reduce, position embedding add and dropout; backward: the
/// gradient scatter-add into the table.
pub fn embedding_times(m: &GptModel, l: &Layout, spec: &NodeSpec) -> PassTimes {
    let tok = (l.micro_batch * m.seq) as f64;
    let h = m.hidden as f64;
    let act = tok * h * 2.0;
    let g = tp_group(l);
    let mut f = Ops {
        spec,
        ops: Vec::new(),
    };
    f.elem("embedding lookup", 4.0 * tok * h);
    f.comm("tp all-reduce", Coll::AllReduce, act, &g);
    f.elem("embedding add dropout", 7.0 * tok * h);
    let mut b = Ops {
        spec,
        ops: Vec::new(),
    };
    b.elem("embedding grad", 8.0 * tok * h);
    let (fwd, fc) = sum(&f.ops);
    let (bwd, bc) = sum(&b.ops);
    PassTimes {
        fwd,
        bwd,
        recompute: 0.0,
        comm: fc + bc,
    }
}

/// The output layer (last stage): final layer norm, logits against the
/// (vocabulary-parallel) embedding table, cross entropy in fp32.
pub fn output_times(m: &GptModel, l: &Layout, spec: &NodeSpec) -> PassTimes {
    let t = l.tp as f64;
    let tok = (l.micro_batch * m.seq) as f64;
    let (h, v) = (m.hidden as f64, m.vocab as f64);
    let g = tp_group(l);
    let mut f = Ops {
        spec,
        ops: Vec::new(),
    };
    f.elem("final layernorm", 4.0 * tok * h);
    f.gemm("logits", tok, v / t, h, 1.0);
    f.elem("cross entropy", 12.0 * tok * v / t);
    f.comm("tp all-reduce (loss)", Coll::AllReduce, 3.0 * tok * 4.0, &g);
    let mut b = Ops {
        spec,
        ops: Vec::new(),
    };
    b.elem("cross entropy bwd", 8.0 * tok * v / t);
    b.gemm("logits dgrad", tok, h, v / t, 1.0);
    b.gemm("logits wgrad", v / t, h, tok, 1.0);
    b.comm("tp grad reduce", Coll::AllReduce, tok * h * 2.0, &g);
    b.elem("final layernorm bwd", 6.0 * tok * h);
    let (fwd, fc) = sum(&f.ops);
    let (bwd, bc) = sum(&b.ops);
    PassTimes {
        fwd,
        bwd,
        recompute: 0.0,
        comm: fc + bc,
    }
}
