//! Search over layouts: every (tp, pp, dp, micro-batch, schedule,
//! recompute) that fills the cluster, is valid for the model and fits in
//! memory, ranked by simulated iteration time.
//!
//! - tp: divisors of the node's GPU count that divide the heads and the
//!   vocabulary; pp: divisors of the layers; dp = GPUs / (tp·pp), which
//!   must divide the global batch;
//! - micro-batch: divisors of the per-replica batch up to `max_micro`;
//! - schedule: 1F1B, and interleaved with every chunk count `v > 1`
//!   dividing the layers per stage (up to `max_chunks`) when the
//!   micro-batch count is a multiple of pp;
//! - recompute: none, selective, full. Sequence parallelism and the DP
//!   overlap are taken from the template layout.
//!
//! Memory is checked first (closed form, cheap); only layouts that fit
//! are simulated.

use super::{memory, simulate, GptModel, GptReport, Layout, NodeSpec, Recompute};
use crate::plan::PlanError;

/// Search bounds.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// Largest micro-batch tried.
    pub max_micro: usize,
    /// Largest chunk count tried for the interleaved schedule.
    pub max_chunks: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            max_micro: 16,
            max_chunks: 8,
        }
    }
}

/// What a search did.
#[derive(Clone, Debug)]
pub struct SearchResult {
    /// Every layout that fits, fastest first.
    pub ranked: Vec<GptReport>,
    /// Layouts enumerated (valid for the model and the cluster).
    pub candidates: usize,
    /// Of those, layouts that fit in memory (all simulated).
    pub fitting: usize,
}

fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
}

/// Searches (see the module docs). `template` gives the global batch,
/// sequence parallelism and DP overlap; `gpus` is the cluster's size.
pub fn search(
    m: &GptModel,
    template: &Layout,
    spec: &NodeSpec,
    gpus: usize,
    opts: &SearchOptions,
) -> Result<SearchResult, PlanError> {
    super::check_model(m, template.global_batch)?;
    if gpus == 0 {
        return Err(PlanError::Input("search: the cluster has no GPUs".into()));
    }
    let nodes = gpus.div_ceil(spec.node.gpus);
    if gpus > spec.node.gpus && !gpus.is_multiple_of(spec.node.gpus) {
        return Err(PlanError::Input(format!(
            "search: {gpus} GPUs is not a whole number of {}-GPU nodes",
            spec.node.gpus
        )));
    }
    let mut candidates = 0;
    let mut fitting = 0;
    let mut all: Vec<GptReport> = Vec::new();
    let usable = spec.usable_bytes();
    for tp in divisors(spec.node.gpus) {
        if !m.heads.is_multiple_of(tp) || !m.vocab.is_multiple_of(tp) || !gpus.is_multiple_of(tp) {
            continue;
        }
        if template.sequence_parallel && !m.seq.is_multiple_of(tp) {
            continue;
        }
        for pp in divisors(m.layers) {
            if !gpus.is_multiple_of(tp * pp) {
                continue;
            }
            let dp = gpus / (tp * pp);
            if !template.global_batch.is_multiple_of(dp) {
                continue;
            }
            let per_replica = template.global_batch / dp;
            for mb in divisors(per_replica) {
                if mb > opts.max_micro {
                    break;
                }
                let mbs = per_replica / mb;
                let mut chunks = vec![1];
                if pp > 1 && mbs.is_multiple_of(pp) {
                    let per_stage = m.layers / pp;
                    chunks.extend(
                        divisors(per_stage)
                            .into_iter()
                            .filter(|&v| v > 1 && v <= opts.max_chunks),
                    );
                }
                for &v in &chunks {
                    for rc in [Recompute::None, Recompute::Selective, Recompute::Full] {
                        let l = Layout {
                            tp,
                            pp,
                            dp,
                            micro_batch: mb,
                            chunks: v,
                            recompute: rc,
                            ..template.clone()
                        };
                        candidates += 1;
                        if memory::memory(m, &l).total() > usable {
                            continue;
                        }
                        fitting += 1;
                        match simulate(m, &l, spec, Some(nodes), false) {
                            Ok(r) => all.push(r),
                            // A layout the simulator refuses (too many
                            // passes, say) is not a candidate.
                            Err(PlanError::Input(_)) => fitting -= 1,
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
    }
    all.sort_by(|a, b| a.iteration_s.total_cmp(&b.iteration_s));
    Ok(SearchResult {
        ranked: all,
        candidates,
        fitting,
    })
}

/// The fastest micro-batch size that fits for an otherwise fixed layout.
pub fn best_micro_batch(
    m: &GptModel,
    l: &Layout,
    spec: &NodeSpec,
    nodes: Option<usize>,
    max_micro: usize,
) -> Result<GptReport, PlanError> {
    if l.dp == 0 || !l.global_batch.is_multiple_of(l.dp) {
        return Err(PlanError::Input(format!(
            "global batch ({}) must be divisible by dp ({})",
            l.global_batch, l.dp
        )));
    }
    let per_replica = l.global_batch / l.dp;
    let mut best: Option<GptReport> = None;
    let mut last_err = None;
    let usable = spec.usable_bytes();
    for mb in divisors(per_replica)
        .into_iter()
        .filter(|&b| b <= max_micro)
    {
        let cand = Layout {
            micro_batch: mb,
            ..l.clone()
        };
        if memory::memory(m, &cand).total() > usable {
            continue;
        }
        match simulate(m, &cand, spec, nodes, false) {
            Ok(r) => {
                if best.as_ref().is_none_or(|b| r.iteration_s < b.iteration_s) {
                    best = Some(r);
                }
            }
            Err(e) => last_err = Some(e),
        }
    }
    match (best, last_err) {
        (Some(b), _) => simulate(m, &b.layout, spec, nodes, true),
        (None, Some(e)) => Err(e),
        (None, None) => Err(PlanError::Input(format!(
            "no micro-batch size up to {max_micro} fits in memory ({:.1} GiB usable per device); try more tp or pp, or --recompute full",
            usable / (1u64 << 30) as f64
        ))),
    }
}
