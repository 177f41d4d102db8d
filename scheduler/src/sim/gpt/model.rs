//! What is simulated: the transformer ([`GptModel`]) and how it is split
//! and scheduled ([`Layout`], [`Recompute`]). A leaf of `gpt`: the layer,
//! memory and report models all read these, and `gpt/mod.rs` imports
//! them, so they live below it.

/// The transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct GptModel {
    /// Transformer layers `L`.
    pub layers: usize,
    /// Hidden size `h`.
    pub hidden: usize,
    /// Attention heads `a`.
    pub heads: usize,
    /// Sequence length `s`.
    pub seq: usize,
    /// Vocabulary `V`.
    pub vocab: usize,
}

/// Recomputation of activations in the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recompute {
    /// Keep every activation.
    None,
    /// Recompute the core attention (Korthikanti et al.).
    Selective,
    /// Keep each layer's input, recompute the layer.
    Full,
}

impl std::str::FromStr for Recompute {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Recompute::None),
            "selective" => Ok(Recompute::Selective),
            "full" => Ok(Recompute::Full),
            _ => Err(format!(
                "unknown recompute '{s}' (known: none, selective, full)"
            )),
        }
    }
}

impl std::fmt::Display for Recompute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Recompute::None => "none",
            Recompute::Selective => "selective",
            Recompute::Full => "full",
        })
    }
}

/// How the model is split and scheduled.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Tensor-parallel size (inside one node).
    pub tp: usize,
    /// Pipeline stages.
    pub pp: usize,
    /// Data-parallel replicas.
    pub dp: usize,
    /// Sequences per micro-batch.
    pub micro_batch: usize,
    /// Sequences per iteration (all replicas).
    pub global_batch: usize,
    /// Model chunks per stage: 1 is 1F1B, more is the interleaved schedule.
    pub chunks: usize,
    /// Recomputation.
    pub recompute: Recompute,
    /// Sequence parallelism (Korthikanti et al.).
    pub sequence_parallel: bool,
    /// Overlap the data-parallel all-reduce with the backward pass.
    pub dp_overlap: bool,
}

impl Layout {
    /// Micro-batches per replica and iteration.
    pub fn microbatches(&self) -> usize {
        self.global_batch / (self.dp * self.micro_batch).max(1)
    }
    /// GPUs.
    pub fn world(&self) -> usize {
        self.tp.saturating_mul(self.pp).saturating_mul(self.dp)
    }
    /// `1f1b` or `interleaved(v)`.
    pub fn schedule_name(&self) -> String {
        if self.chunks == 1 {
            "1f1b".into()
        } else {
            format!("interleaved(v={})", self.chunks)
        }
    }
}
