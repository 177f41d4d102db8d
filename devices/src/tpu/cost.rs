//! The cycle-level cost model of the TPU-like device: pure functions of a
//! [`TpuConfig`] and op shapes, with no device state, so a scheduler or
//! simulator can price ops for a TPU that is not present.
//!
//! ## Matrix unit (GEMM `groups x [M x K] . [K x N]`)
//! Each MXU is an `R x C` weight-stationary systolic array. The weights are
//! cut into `tk = ceil(K / R)` by `tn = ceil(N / C)` tiles; a *pass* loads
//! one tile into an array (R cycles: one row per cycle) and streams `rows`
//! operand rows through it, one per cycle. The result of a row leaves the
//! array `R + C - 1` cycles after it entered (the skew of the diagonal
//! wavefront: the fill and drain). Weights are double-buffered: the next
//! tile is shifted in while the current one streams. The `U` units take
//! whole column blocks (unit `u` owns column tiles `u, u + U, ...`), so a
//! unit runs `tk` passes per column block, all units in lock-step; the
//! operand rows are cut into row blocks that fit in on-chip memory (see
//! [`row_block`]). The schedule is stepped pass by pass:
//!
//! ```text
//! load_start[s]   = max(stream_start[s-1], load_done[s-1])
//! load_done[s]    = max(load_start[s], dma_ready[s]) + R
//! stream_start[s] = max(load_done[s], stream_start[s-1] + rows[s-1])
//! cycles          = stream_start[last] + rows[last] + R + C - 2
//! ```
//!
//! where `dma_ready[s]` is when HBM has delivered every byte the passes up
//! to `s` need (operand tiles, weight tiles, and results written back), at
//! `hbm_bytes_per_s / clock_hz` bytes per cycle.
//!
//! ### Closed form
//! When HBM keeps up (compute bound) and the rows fit one block (`M <=`
//! [`row_block`]), with `P = groups * ceil(tn / U) * tk` passes per unit,
//! the recurrence solves to
//!
//! ```text
//! cycles = R + (P - 1) * max(M, R) + M + R + C - 2
//!        = P * M + 2R + C - 2            (M >= R)
//! ```
//!
//! the first weight load, `P` passes each limited by its streaming (or by
//! the next weight load when `M < R`), and one fill plus drain. This is
//! [`gemm_closed_form`]; a test checks [`gemm`] against it.
//!
//! ## Vector unit
//! Element-wise ops, reductions, normalisations and data movement run on
//! the vector unit: `max(ceil(work / lanes), ceil(bytes / hbm_per_cycle))`
//! cycles, where `work` is the op's flops (at least one per output element)
//! and `bytes` its traffic, both from [`hetflow_ops::cost::op_cost`] (the
//! one place op costs live). Views (Reshape, Flatten, ...) cost nothing.
//! The element-wise epilogue of a matrix op (bias, alpha/beta, activation)
//! runs on the vector unit while the matrix unit works, so a matrix op
//! costs `max(matrix cycles, epilogue cycles)`.
//!
//! ## Host link
//! A transfer of `b` bytes takes `host_latency_s + b / host_bytes_per_s`.

use super::config::TpuConfig;
use hetflow_ops::cost::op_cost;
use hetflow_ops::graph::Fact;
use hetflow_ops::Op;

/// A (grouped) matrix product: `groups` independent `[m x k] . [k x n]`
/// products run one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    /// Independent products (batch of a batched MatMul, conv groups).
    pub groups: usize,
    /// Operand rows streamed through the arrays.
    pub m: usize,
    /// Reduction depth.
    pub k: usize,
    /// Output columns (the weight tile width direction).
    pub n: usize,
}

/// The modelled cost of one GEMM.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GemmCost {
    /// Total cycles.
    pub cycles: u64,
    /// Passes each unit runs (weight tiles it loads).
    pub passes_per_unit: u64,
    /// Row blocks the operand rows are cut into.
    pub row_blocks: u64,
    /// Bytes moved between HBM and on-chip memory.
    pub hbm_bytes: u64,
    /// Cycles HBM needs for those bytes alone.
    pub memory_cycles: u64,
}

/// The modelled cost of one op on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpCost {
    /// Matrix-unit cycles (0 for vector ops).
    pub matrix_cycles: u64,
    /// Vector-unit cycles (the epilogue, for matrix ops).
    pub vector_cycles: u64,
    /// Cycles of the op: the matrix and vector units overlap.
    pub cycles: u64,
    /// The same in microseconds at the configured clock.
    pub micros: f64,
}

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

/// Rows of one operand block: a double-buffered `rows x R` bf16 operand
/// tile, `U` double-buffered `R x C` bf16 weight tiles and `U` f32
/// accumulators of `rows x C` must fit in on-chip memory.
pub fn row_block(cfg: &TpuConfig) -> usize {
    let (r, c, u) = (
        cfg.mxu_rows as u64,
        cfg.mxu_cols as u64,
        cfg.mxu_count as u64,
    );
    let weights = u * 2 * r * c * 2;
    let per_row = 2 * r * 2 + u * c * 4;
    (cfg.onchip_bytes.saturating_sub(weights) / per_row).max(1) as usize
}

/// HBM bytes per cycle.
fn hbm_per_cycle(cfg: &TpuConfig) -> f64 {
    cfg.hbm_bytes_per_s / cfg.clock_hz
}

/// Cycles of a GEMM by stepping the pass schedule (see the module docs).
pub fn gemm(cfg: &TpuConfig, g: &GemmShape) -> GemmCost {
    if g.groups == 0 || g.m == 0 || g.k == 0 || g.n == 0 {
        return GemmCost::default();
    }
    let (r, c, u) = (cfg.mxu_rows, cfg.mxu_cols, cfg.mxu_count);
    let (tk, tn) = (g.k.div_ceil(r), g.n.div_ceil(c));
    let rounds = tn.div_ceil(u);
    let mb = row_block(cfg);
    let bw = hbm_per_cycle(cfg);
    let (r64, c64) = (r as u64, c as u64);

    let mut bytes = 0u64; // requested from HBM so far
    let mut load_done = 0u64;
    let mut stream_start = 0u64;
    let mut prev_rows = 0u64;
    let mut first = true;
    let mut passes = 0u64;
    let mut blocks = 0u64;
    for _ in 0..g.groups {
        for row0 in (0..g.m).step_by(mb) {
            let rows = mb.min(g.m - row0) as u64;
            blocks += 1;
            for round in 0..rounds {
                // Columns the units of this round cover.
                let col0 = round * u * c;
                let cols = (g.n - col0).min(u * c) as u64;
                for t in 0..tk {
                    let depth = (g.k - t * r).min(r) as u64;
                    // Operand tile shared by the units, one weight tile each.
                    bytes += rows * depth * 2 + depth * cols * 2;
                    let dma_ready = (bytes as f64 / bw).ceil() as u64;
                    let load_start = if first {
                        0
                    } else {
                        stream_start.max(load_done)
                    };
                    load_done = load_start.max(dma_ready) + r64;
                    stream_start = if first {
                        load_done
                    } else {
                        load_done.max(stream_start + prev_rows)
                    };
                    prev_rows = rows;
                    first = false;
                    passes += 1;
                }
                // The finished f32 results of this round go back to HBM.
                bytes += rows * cols * 4;
            }
        }
    }
    let compute_end = stream_start + prev_rows + r64 + c64 - 2;
    let memory_cycles = (bytes as f64 / bw).ceil() as u64;
    GemmCost {
        cycles: compute_end.max(memory_cycles),
        passes_per_unit: passes,
        row_blocks: blocks,
        hbm_bytes: bytes,
        memory_cycles,
    }
}

/// The closed form of the module docs for a compute-bound GEMM whose rows
/// fit one block: `R + (P - 1) max(M, R) + M + R + C - 2`.
pub fn gemm_closed_form(cfg: &TpuConfig, g: &GemmShape) -> u64 {
    if g.groups == 0 || g.m == 0 || g.k == 0 || g.n == 0 {
        return 0;
    }
    let (r, c, u) = (
        cfg.mxu_rows as u64,
        cfg.mxu_cols as u64,
        cfg.mxu_count as u64,
    );
    let (m, k, n) = (g.m as u64, g.k as u64, g.n as u64);
    let p = g.groups as u64 * div_ceil(div_ceil(n, c), u) * div_ceil(k, r);
    r + (p - 1) * m.max(r) + m + r + c - 2
}

/// Vector-unit cycles for `work` element operations moving `bytes`.
pub fn vector_cycles(cfg: &TpuConfig, work: f64, bytes: f64) -> u64 {
    let compute = (work.max(0.0) / cfg.vector_lanes as f64).ceil() as u64;
    let memory = (bytes.max(0.0) / hbm_per_cycle(cfg)).ceil() as u64;
    compute.max(memory)
}

/// Seconds to move `bytes` between host and device.
pub fn transfer_seconds(cfg: &TpuConfig, bytes: u64) -> f64 {
    cfg.host_latency_s + bytes as f64 / cfg.host_bytes_per_s
}

/// Microseconds of `cycles` at the configured clock.
pub fn cycles_to_micros(cfg: &TpuConfig, cycles: u64) -> f64 {
    cycles as f64 / cfg.clock_hz * 1e6
}

fn dims(f: Option<&Fact>) -> Option<Vec<usize>> {
    f.and_then(|f| f.concrete_shape())
}

/// The GEMM a matrix op runs on the MXUs, from concrete input shapes;
/// `None` for ops that do not use the matrix unit (or unknown shapes).
///
/// MatMul `[.., M, K] . [.., K, N]`: a 2-D right operand is shared by the
/// batch, whose rows are then folded into M; otherwise each batch entry is
/// a group. Gemm is one `M x K x N` product. Conv is an implicit GEMM per
/// group: `M = batch x output positions`, `K = C/group x kernel size`,
/// `N = output channels / group`.
pub fn matrix_shape(op: &Op, inputs: &[Option<&Fact>]) -> Option<GemmShape> {
    let a = dims(inputs.first().copied().flatten())?;
    let b = dims(inputs.get(1).copied().flatten())?;
    match op {
        Op::MatMul => {
            let (m, k) = match a.len() {
                0 => return None,
                1 => (1, a[0]),
                r => (a[r - 2], a[r - 1]),
            };
            let n = match b.len() {
                0 => return None,
                1 => 1,
                r => b[r - 1],
            };
            let batch_a: usize = a.iter().rev().skip(2).product();
            let batch_b: usize = b.iter().rev().skip(2).product();
            let batch = batch_a.max(batch_b);
            if b.len() <= 2 {
                Some(GemmShape {
                    groups: 1,
                    m: m * batch_a,
                    k,
                    n,
                })
            } else {
                Some(GemmShape {
                    groups: batch,
                    m,
                    k,
                    n,
                })
            }
        }
        Op::Gemm {
            trans_a, trans_b, ..
        } => {
            if a.len() != 2 || b.len() != 2 {
                return None;
            }
            let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
            let n = if *trans_b { b[0] } else { b[1] };
            Some(GemmShape { groups: 1, m, k, n })
        }
        Op::Conv(attrs) => {
            if a.len() < 3 || b.len() != a.len() {
                return None;
            }
            let group = attrs.group.max(1);
            let kernel: usize = b[2..].iter().product();
            let out = hetflow_ops::cost::conv_output_spatial(&a[2..], &b[2..], attrs).ok()?;
            Some(GemmShape {
                groups: group,
                m: a[0] * out.iter().product::<usize>(),
                k: b[1] * kernel,
                n: b[0] / group,
            })
        }
        _ => None,
    }
}

/// Cost of `op` on the device at concrete shapes (`outputs` are the output
/// facts, as for [`op_cost`]).
pub fn op_cycles(cfg: &TpuConfig, op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> OpCost {
    let cost = op_cost(op, inputs, outputs);
    let out_elems: f64 = outputs
        .iter()
        .filter_map(|f| f.concrete_shape())
        .map(|s| s.iter().product::<usize>() as f64)
        .sum();
    let (matrix, vector) = match matrix_shape(op, inputs) {
        Some(g) => {
            let mm = gemm(cfg, &g);
            // A precision of several passes repeats the array work on
            // operand parts already on chip (compute-bound: the passes'
            // cycles add, the HBM traffic does not grow). Epilogue: results
            // leave the arrays as f32; bias / scaling / activation touch
            // each output once on the vector unit.
            (
                mm.cycles * cfg.matmul_precision.passes(),
                vector_cycles(cfg, 2.0 * out_elems, 0.0),
            )
        }
        None if op.is_view() => (0, 0),
        None => (
            0,
            vector_cycles(cfg, cost.flops.max(out_elems), cost.bytes()),
        ),
    };
    let cycles = matrix.max(vector);
    OpCost {
        matrix_cycles: matrix,
        vector_cycles: vector,
        cycles,
        micros: cycles_to_micros(cfg, cycles),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hetflow_ops::DType;

    /// A configuration whose HBM never limits: the closed form's premise.
    fn fast_memory(rows: usize, cols: usize, units: usize) -> TpuConfig {
        TpuConfig {
            mxu_rows: rows,
            mxu_cols: cols,
            mxu_count: units,
            hbm_bytes_per_s: 1e18,
            ..TpuConfig::v5e()
        }
    }

    fn within_1pct(model: u64, closed: u64, what: &str) {
        let err = (model as f64 - closed as f64).abs() / closed as f64;
        assert!(
            err <= 0.01,
            "{what}: model {model} vs closed form {closed} ({:.3}%)",
            err * 100.0
        );
    }

    #[test]
    fn gemm_matches_closed_form_when_compute_bound() {
        let shapes = [
            (1, 128, 128, 128),
            (1, 1000, 300, 257),
            (1, 4096, 4096, 4096),
            (3, 512, 1024, 640),
            (1, 7, 1000, 900), // M < R: the weight loads dominate
            (2, 129, 129, 129),
        ];
        for cfg in [
            fast_memory(128, 128, 4),
            fast_memory(128, 128, 1),
            fast_memory(64, 32, 2),
        ] {
            for (groups, m, k, n) in shapes {
                let g = GemmShape { groups, m, k, n };
                assert!(m <= row_block(&cfg), "test shape must fit one row block");
                let model = gemm(&cfg, &g);
                let closed = gemm_closed_form(&cfg, &g);
                within_1pct(
                    model.cycles,
                    closed,
                    &format!(
                        "{g:?} on {}x{}x{}",
                        cfg.mxu_rows, cfg.mxu_cols, cfg.mxu_count
                    ),
                );
            }
        }
        // The closed form by hand for one case: 128^3 on one 128x128 unit
        // is one pass: load 128, stream 128, fill/drain 128 + 128 - 2.
        let one = fast_memory(128, 128, 1);
        let g = GemmShape {
            groups: 1,
            m: 128,
            k: 128,
            n: 128,
        };
        assert_eq!(gemm_closed_form(&one, &g), 128 + 128 + 128 + 128 - 2);
        // (The model waits for the first byte from HBM: one cycle.)
        assert!(gemm(&one, &g).cycles.abs_diff(510) <= 1);
    }

    /// Large square GEMMs reach the v5e peak (197 TFLOP/s) within 1% with
    /// the real HBM bandwidth: they are compute bound.
    #[test]
    fn big_gemm_runs_at_peak_on_v5e() {
        let cfg = TpuConfig::v5e();
        let g = GemmShape {
            groups: 1,
            m: 4096,
            k: 4096,
            n: 4096,
        };
        let c = gemm(&cfg, &g);
        within_1pct(c.cycles, gemm_closed_form(&cfg, &g), "4096^3 on v5e");
        let secs = c.cycles as f64 / cfg.clock_hz;
        let tflops = 2.0 * 4096f64.powi(3) / secs / 1e12;
        assert!((tflops - 197.0).abs() / 197.0 < 0.01, "{tflops} TFLOP/s");
    }

    /// A matrix-vector product is memory bound: every weight byte crosses
    /// HBM once, so the model is at least bytes / bandwidth, above the
    /// compute-only closed form (itself bound by one R-cycle weight load
    /// per pass when M < R).
    #[test]
    fn gemv_is_memory_bound() {
        let cfg = TpuConfig::v5e();
        let g = GemmShape {
            groups: 1,
            m: 1,
            k: 8192,
            n: 8192,
        };
        let c = gemm(&cfg, &g);
        let weight_bytes = 8192.0 * 8192.0 * 2.0;
        let floor = (weight_bytes / (cfg.hbm_bytes_per_s / cfg.clock_hz)) as u64;
        assert!(c.cycles >= floor, "{} < {floor}", c.cycles);
        assert!(c.memory_cycles > gemm_closed_form(&cfg, &g));
        assert!(c.cycles > gemm_closed_form(&cfg, &g));
        assert!(c.hbm_bytes as f64 >= weight_bytes);
    }

    /// Rows beyond one on-chip block are cut into blocks, and each block
    /// reloads the weights.
    #[test]
    fn rows_are_blocked_by_onchip_memory() {
        let cfg = fast_memory(128, 128, 1);
        let mb = row_block(&cfg);
        let g = GemmShape {
            groups: 1,
            m: 3 * mb,
            k: 256,
            n: 128,
        };
        let c = gemm(&cfg, &g);
        assert_eq!(c.row_blocks, 3);
        assert_eq!(c.passes_per_unit, 3 * 2);
        let small = TpuConfig {
            onchip_bytes: cfg.onchip_bytes / 4,
            ..cfg.clone()
        };
        assert!(row_block(&small) < mb);
    }

    #[test]
    fn op_costs_use_the_right_unit() {
        let cfg = TpuConfig::v5e();
        let x = Fact::known(DType::F32, &[1, 64, 56, 56]);
        let w = Fact::known(DType::F32, &[64, 64, 3, 3]);
        let y = Fact::known(DType::F32, &[1, 64, 54, 54]);
        let conv = op_cycles(
            &cfg,
            &Op::Conv(Default::default()),
            &[Some(&x), Some(&w)],
            &[&y],
        );
        let g = matrix_shape(&Op::Conv(Default::default()), &[Some(&x), Some(&w)]).unwrap();
        assert_eq!(
            g,
            GemmShape {
                groups: 1,
                m: 54 * 54,
                k: 64 * 9,
                n: 64
            }
        );
        assert!(conv.matrix_cycles > 0 && conv.cycles >= conv.matrix_cycles);
        assert!((conv.micros - conv.cycles as f64 / cfg.clock_hz * 1e6).abs() < 1e-9);

        let relu = op_cycles(
            &cfg,
            &Op::Unary(hetflow_ops::op::UnaryOp::Relu),
            &[Some(&y)],
            &[&y],
        );
        assert_eq!(relu.matrix_cycles, 0);
        // 186624 elements, 4 bytes in and out each, at ~545 bytes/cycle.
        let bytes = 2.0 * 4.0 * 54.0 * 54.0 * 64.0;
        assert_eq!(
            relu.cycles,
            (bytes / (cfg.hbm_bytes_per_s / cfg.clock_hz)).ceil() as u64
        );

        let flat = Op::Flatten { axis: 1 };
        let f = Fact::known(DType::F32, &[1, 64 * 54 * 54]);
        assert_eq!(op_cycles(&cfg, &flat, &[Some(&y)], &[&f]).cycles, 0);

        // Batched MatMul with a shared 2-D weight folds the batch into M.
        let a = Fact::known(DType::F32, &[8, 16, 32]);
        let b = Fact::known(DType::F32, &[32, 64]);
        assert_eq!(
            matrix_shape(&Op::MatMul, &[Some(&a), Some(&b)]),
            Some(GemmShape {
                groups: 1,
                m: 128,
                k: 32,
                n: 64
            })
        );
        let b3 = Fact::known(DType::F32, &[8, 32, 64]);
        assert_eq!(
            matrix_shape(&Op::MatMul, &[Some(&a), Some(&b3)]),
            Some(GemmShape {
                groups: 8,
                m: 16,
                k: 32,
                n: 64
            })
        );
    }

    #[test]
    fn transfers_cost_latency_plus_bandwidth() {
        let cfg = TpuConfig::v5e();
        assert_eq!(transfer_seconds(&cfg, 0), cfg.host_latency_s);
        let t = transfer_seconds(&cfg, 25_000_000);
        assert!((t - (10e-6 + 1e-3)).abs() < 1e-12, "{t}");
    }
}
