//! Memory per device of a GPT training layout.
//!
//! - **Weights, gradients, optimizer state**: mixed-precision Adam keeps
//!   2-byte weights and 2-byte gradients, and fp32 master weights, first
//!   and second moments (4 + 4 + 4 bytes): 16 bytes per parameter, the
//!   accounting of Rajbhandari et al., "ZeRO" (SC'20), §3.1. Nothing is
//!   sharded across data-parallel ranks (Megatron-LM without a
//!   distributed optimizer).
//! - **Parameters on a device**: a transformer layer has `12h² + 13h`
//!   parameters, split over the tensor-parallel ranks; the first stage
//!   also holds its `1/t` of the `V·h` word embedding and the `s·h`
//!   position embedding, the last stage its copy of the word embedding
//!   (tied output layer) and the final layer norm.
//! - **Activations** per layer and micro-batch, bytes (Korthikanti et
//!   al., "Reducing Activation Recomputation in Large Transformer
//!   Models", MLSys'23, Table 2), with `sbh = s·b·h`:
//!   none: `sbh(10 + 24/t + 5as/(ht))`, with sequence parallelism
//!   `sbh/t · (34 + 5as/h)`; selective: `sbh(10 + 24/t)`, with sequence
//!   parallelism `34·sbh/t`; full: the layer input, `2sbh` (`/t` with
//!   sequence parallelism), plus one layer's full set while it is
//!   recomputed.
//! - **In flight**: the first stage holds the most micro-batches: all of
//!   its warm-up forwards plus the one in the steady state (1F1B:
//!   `min(p, m)` micro-batches of its `L/p` layers; interleaved: its
//!   warm-up chunk-forwards plus one, of `L/(pv)` layers each). The last
//!   stage also holds one micro-batch's logits (2-byte) and fp32
//!   cross-entropy input: `6·s·b·V/t` bytes; the first stage the
//!   embedding's dropout mask (`s·b·h` bytes) per micro-batch in flight.

use super::model::{GptModel, Layout, Recompute};

/// Bytes per device, by kind (the worst stage).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    /// Parameters on the device.
    pub params: f64,
    /// 2-byte weights.
    pub weights: f64,
    /// 2-byte gradients.
    pub grads: f64,
    /// fp32 master weights and two moments.
    pub optimizer: f64,
    /// Stashed activations and working buffers.
    pub activations: f64,
}

impl Memory {
    /// Total bytes.
    pub fn total(&self) -> f64 {
        self.weights + self.grads + self.optimizer + self.activations
    }
}

/// Parameters of one transformer layer on one tensor-parallel rank.
pub fn layer_params(m: &GptModel, tp: usize) -> f64 {
    let h = m.hidden as f64;
    (12.0 * h * h + 13.0 * h) / tp as f64
}

/// Parameters of the whole model (`12Lh² + 13Lh + Vh + sh + 2h`).
pub fn model_params(m: &GptModel) -> f64 {
    let h = m.hidden as f64;
    layer_params(m, 1) * m.layers as f64 + (m.vocab as f64 + m.seq as f64 + 2.0) * h
}

/// Activation bytes of one layer for one micro-batch kept until its
/// backward (see the module docs).
pub fn layer_activations(m: &GptModel, l: &Layout) -> f64 {
    let (s, b, h, a, t) = (
        m.seq as f64,
        l.micro_batch as f64,
        m.hidden as f64,
        m.heads as f64,
        l.tp as f64,
    );
    let sbh = s * b * h;
    match (l.recompute, l.sequence_parallel) {
        (Recompute::None, false) => sbh * (10.0 + 24.0 / t + 5.0 * a * s / (h * t)),
        (Recompute::None, true) => sbh / t * (34.0 + 5.0 * a * s / h),
        (Recompute::Selective, false) => sbh * (10.0 + 24.0 / t),
        (Recompute::Selective, true) => 34.0 * sbh / t,
        (Recompute::Full, false) => 2.0 * sbh,
        (Recompute::Full, true) => 2.0 * sbh / t,
    }
}

/// Layers' worth of activations the first stage holds at its peak.
pub fn layers_in_flight(m: &GptModel, l: &Layout) -> f64 {
    let (p, v, mb) = (l.pp, l.chunks, l.microbatches());
    let per_chunk = m.layers as f64 / (p * v) as f64;
    let chunks = if v == 1 {
        p.min(mb)
    } else if mb == p {
        mb * v
    } else {
        ((p - 1) * 2 + (v - 1) * p + 1).min(mb * v)
    };
    chunks as f64 * per_chunk
}

/// Micro-batches whose first model chunk is in flight on the first stage
/// at its peak (the end of its warm-up).
pub fn first_chunk_in_flight(l: &Layout) -> f64 {
    let (p, v, mb) = (l.pp, l.chunks, l.microbatches());
    if v == 1 {
        return p.min(mb) as f64;
    }
    let peak = if mb == p {
        mb * v
    } else {
        ((p - 1) * 2 + (v - 1) * p + 1).min(mb * v)
    };
    (0..peak).filter(|k| (k % (p * v)) / p == 0).count() as f64
}

/// Memory per device: the larger of the first and the last stage.
pub fn memory(m: &GptModel, l: &Layout) -> Memory {
    let h = m.hidden as f64;
    let t = l.tp as f64;
    let per_stage = m.layers as f64 / l.pp as f64;
    let body = per_stage * layer_params(m, l.tp);
    let first_extra = (m.vocab as f64 * h) / t + m.seq as f64 * h;
    let last_extra = (m.vocab as f64 * h) / t + 2.0 * h;
    let (s, b) = (m.seq as f64, l.micro_batch as f64);
    let layer_act = layer_activations(m, l);
    let working = if l.recompute == Recompute::Full {
        let full = Layout {
            recompute: Recompute::None,
            ..l.clone()
        };
        layer_activations(m, &full)
    } else {
        0.0
    };
    // First stage: the most micro-batches in flight, plus the embedding's
    // dropout mask (1 byte; its output is the first layer's input, counted
    // there) of each micro-batch whose first chunk is in flight.
    let in_flight = layers_in_flight(m, l);
    let first_act = in_flight * layer_act + working + first_chunk_in_flight(l) * s * b * h;
    // Last stage: one micro-batch at a time (it runs each backward right
    // after its forward) when p > 1, plus the logits.
    let last_act = if l.pp == 1 {
        first_act
    } else {
        let chunks_last = if l.chunks == 1 {
            1.0
        } else {
            // Warm-up (v - 1)·p chunk-forwards plus one.
            ((l.chunks - 1) * l.pp + 1).min(l.microbatches() * l.chunks) as f64
        };
        chunks_last * (m.layers as f64 / (l.pp * l.chunks) as f64) * layer_act + working
    } + 6.0 * s * b * m.vocab as f64 / t;
    let (params, act) = if l.pp == 1 {
        (
            body + first_extra + last_extra - (m.vocab as f64 * h) / t,
            last_act,
        )
    } else {
        let pf = body + first_extra;
        let pl = body + last_extra;
        // The worse of the two stages by total bytes.
        if 16.0 * pf + first_act >= 16.0 * pl + last_act {
            (pf, first_act)
        } else {
            (pl, last_act)
        }
    };
    Memory {
        params,
        weights: 2.0 * params,
        grads: 2.0 * params,
        optimizer: 12.0 * params,
        activations: act,
    }
}
