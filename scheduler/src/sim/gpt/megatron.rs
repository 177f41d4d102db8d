//! The published runs the simulator is validated against: Table 1 of
//! Narayanan et al., "Efficient Large-Scale Language Model Training on GPU
//! Clusters Using Megatron-LM", SC'21 (arXiv:2104.04473), GPT models of
//! 1.7B to 1T parameters on 32 to 3,072 A100 80 GB GPUs of NVIDIA's Selene
//! (DGX A100 nodes, 8 HDR InfiniBand rails each), sequence 2,048,
//! vocabulary 51,200, mixed precision, full activation recomputation.
//!
//! The table gives layers, hidden size, heads, TP, PP, GPUs, batch and the
//! achieved TFLOP/s per GPU (eq. 3 of the paper, which counts the
//! recomputed forward). The micro-batch size, the interleaving and the
//! data-parallel implementation are not in the table; they are taken from
//! the authors' reproduction script for it, `examples/sc21/run_table_1.sh`
//! in github.com/NVIDIA/Megatron-LM (MBS; `--num-layers-per-virtual-
//! pipeline-stage` k, so v = layers / (pp · k); `DDP=torch`, PyTorch's
//! bucketed all-reduce overlapped with the backward pass, for the four
//! smallest models, `DDP=local`, an all-reduce after the backward pass,
//! for the others).

use super::{simulate, GptModel, GptReport, Layout, NodeSpec, Recompute};
use crate::plan::PlanError;

/// One row of Table 1 with its script's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Parameters, billions (as published).
    pub params_b: f64,
    /// Heads.
    pub heads: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Layers.
    pub layers: usize,
    /// Tensor-parallel size.
    pub tp: usize,
    /// Pipeline-parallel size.
    pub pp: usize,
    /// GPUs.
    pub gpus: usize,
    /// Global batch.
    pub batch: usize,
    /// Achieved TFLOP/s per GPU (published).
    pub tflops: f64,
    /// Micro-batch (script).
    pub micro_batch: usize,
    /// Layers per virtual pipeline stage (script; 0: no interleaving).
    pub layers_per_virtual_stage: usize,
    /// PyTorch DDP, overlapped (script `DDP=torch`).
    pub ddp_torch: bool,
}

#[allow(clippy::too_many_arguments)]
const fn row(
    params_b: f64,
    heads: usize,
    hidden: usize,
    layers: usize,
    tp: usize,
    pp: usize,
    gpus: usize,
    batch: usize,
    tflops: f64,
    micro_batch: usize,
    layers_per_virtual_stage: usize,
    ddp_torch: bool,
) -> Row {
    Row {
        params_b,
        heads,
        hidden,
        layers,
        tp,
        pp,
        gpus,
        batch,
        tflops,
        micro_batch,
        layers_per_virtual_stage,
        ddp_torch,
    }
}

/// Table 1, smallest first.
pub const TABLE1: [Row; 10] = [
    row(1.7, 24, 2304, 24, 1, 1, 32, 512, 137.0, 16, 0, true),
    row(3.6, 32, 3072, 30, 2, 1, 64, 512, 138.0, 16, 0, true),
    row(7.5, 32, 4096, 36, 4, 1, 128, 512, 142.0, 16, 0, true),
    row(18.4, 48, 6144, 40, 8, 1, 256, 1024, 135.0, 8, 0, true),
    row(39.1, 64, 8192, 48, 8, 2, 512, 1536, 138.0, 4, 0, false),
    row(76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140.0, 2, 5, false),
    row(145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148.0, 2, 5, false),
    row(310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155.0, 1, 3, false),
    row(
        529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163.0, 1, 1, false,
    ),
    row(
        1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163.0, 1, 0, false,
    ),
];

impl Row {
    /// The model.
    pub fn model(&self) -> GptModel {
        GptModel {
            layers: self.layers,
            hidden: self.hidden,
            heads: self.heads,
            seq: 2048,
            vocab: 51200,
        }
    }

    /// The layout the run used.
    pub fn layout(&self) -> Layout {
        let chunks = if self.layers_per_virtual_stage == 0 {
            1
        } else {
            self.layers / (self.pp * self.layers_per_virtual_stage)
        };
        Layout {
            tp: self.tp,
            pp: self.pp,
            dp: self.gpus / (self.tp * self.pp),
            micro_batch: self.micro_batch,
            global_batch: self.batch,
            chunks,
            recompute: Recompute::Full,
            sequence_parallel: false,
            dp_overlap: self.ddp_torch,
        }
    }

    /// Nodes of 8 GPUs.
    pub fn nodes(&self) -> usize {
        self.gpus / 8
    }
}

/// The simulator's prediction for a row on `spec`.
pub fn predict(spec: &NodeSpec, row: &Row) -> Result<GptReport, PlanError> {
    simulate(&row.model(), &row.layout(), spec, Some(row.nodes()), true)
}

/// Fits `model.gemm_max` so that the mean signed relative error of
/// TFLOP/s per GPU over `rows` is zero, by bisection on (0.3, 1]
/// (predicted throughput grows with it); other constants as in `spec`.
pub fn calibrate_gemm_max(spec: &NodeSpec, rows: &[Row]) -> Result<f64, PlanError> {
    if rows.is_empty() {
        return Err(PlanError::Input(
            "calibration needs at least one row".into(),
        ));
    }
    let mean_err = |g: f64| -> Result<f64, PlanError> {
        let mut s = spec.clone();
        s.model.gemm_max = g;
        let mut e = 0.0;
        for r in rows {
            e += predict(&s, r)?.tflops_per_device / r.tflops - 1.0;
        }
        Ok(e / rows.len() as f64)
    };
    bisect(0.3, 1.0, |g| mean_err(g).map(|e| e < 0.0)).ok_or_else(|| {
        PlanError::Input("calibration: no gemm_max in (0.3, 1] matches the rows".into())
    })
}

/// Bisection: `below(x)` is true left of the root (within 40 halvings);
/// None when the interval does not bracket one.
fn bisect(mut lo: f64, mut hi: f64, below: impl Fn(f64) -> Result<bool, PlanError>) -> Option<f64> {
    if !below(lo).ok()? || below(hi).ok()? {
        return None;
    }
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if below(mid).ok()? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(0.5 * (lo + hi))
}

/// The two constants calibrated on the two smallest rows of Table 1:
/// `gemm_max` (how close large GEMMs come to the tensor-core peak) and
/// `mem_eff` (the fraction of HBM bandwidth element-wise kernels reach).
/// Both rows are matched exactly: for each `mem_eff`, `gemm_max` is
/// fitted to the first row, and `mem_eff` is chosen so that the second
/// row is matched too (the rows differ in their share of element-wise
/// and attention work: 24 heads of 96 on one GPU vs 16 heads of 96 per
/// GPU at tensor-parallel 2). Everything else stays as in `spec`.
pub fn calibrate(spec: &NodeSpec, rows: &[Row; 2]) -> Result<(f64, f64), PlanError> {
    let fit = |me: f64| -> Result<(f64, f64), PlanError> {
        let mut s = spec.clone();
        s.model.mem_eff = me;
        let g = calibrate_gemm_max(&s, &rows[..1])?;
        s.model.gemm_max = g;
        let e = predict(&s, &rows[1])?.tflops_per_device / rows[1].tflops - 1.0;
        Ok((g, e))
    };
    // A lower mem_eff raises the fitted gemm_max and the second row's
    // prediction: the second row's error falls as mem_eff grows.
    let me = bisect(0.5, 1.0, |me| fit(me).map(|(_, e)| e > 0.0)).ok_or_else(|| {
        PlanError::Input("calibration: no (gemm_max, mem_eff) matches both rows".into())
    })?;
    Ok((fit(me)?.0, me))
}
