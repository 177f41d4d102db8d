//! Fitting a device's cost-model parameters to measured kernel times.
//!
//! `hetflow profile` runs small benchmark graphs (and any models the user
//! names) on each device with tracing on, then hands the measured time of
//! every kernel, with the node's own cost, to [`fit_device`]:
//!
//! - `peak_gflops.f32` is the best rate any GEMM-class sample reached;
//! - `mem_bw_gbps` is the best bandwidth any element-wise sample reached;
//! - `launch_us` is measured separately (a chain of tiny ops) and given;
//! - each class's efficiency is `Σ roofline / Σ (measured − launch)` over
//!   that class's samples: a time-weighted ratio, so the model predicts the
//!   *sum* of a class's kernel times (what stage times are made of) rather
//!   than the typical small kernel.
//!
//! [`record_history`] also keeps every sample's time under its footprint
//! (the median where several nodes share one), so the cost model predicts
//! kernels it has seen from their measurement rather than the roofline.
//!
//! Classes with no sample keep efficiency 1 (and say so in the spec, since
//! the map then lacks them).

use crate::cluster::DeviceSpec;
use crate::cost::NodeCost;
use hetflow_ops::cost::OpClass;
use std::collections::BTreeMap;

/// One measured kernel.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The node's cost and class.
    pub node: NodeCost,
    /// Measured seconds (median over iterations).
    pub seconds: f64,
}

/// Fits `peak_gflops.f32`, `mem_bw_gbps` and per-class efficiencies of
/// `dev` to `samples` (module docs). `launch_us` must already be set.
/// Returns the number of samples used per class.
pub fn fit_device(dev: &mut DeviceSpec, samples: &[Sample]) -> BTreeMap<OpClass, usize> {
    let launch = dev.launch_us * 1e-6;
    let net = |s: &Sample| (s.seconds - launch).max(s.seconds * 0.05).max(1e-9);
    let peak = samples
        .iter()
        .filter(|s| s.node.class == OpClass::Gemm && s.node.cost.flops > 0.0)
        .map(|s| s.node.cost.flops / net(s))
        .fold(0.0, f64::max);
    if peak > 0.0 {
        dev.peak_gflops.insert("f32".into(), peak / 1e9);
    }
    let bw = samples
        .iter()
        .filter(|s| s.node.class == OpClass::Elementwise && s.node.cost.bytes() > 0.0)
        .map(|s| s.node.cost.bytes() / net(s))
        .fold(0.0, f64::max);
    if bw > 0.0 {
        dev.mem_bw_gbps = bw / 1e9;
    }
    let mut sums: BTreeMap<OpClass, (f64, f64, usize)> = BTreeMap::new();
    for s in samples {
        let d = &*dev;
        let ideal = (s.node.cost.flops / d.peak_flops(s.node.dtype))
            .max(s.node.cost.bytes() / (d.mem_bw_gbps * 1e9));
        if ideal <= 0.0 {
            continue;
        }
        let e = sums.entry(s.node.class).or_default();
        e.0 += ideal;
        e.1 += net(s);
        e.2 += 1;
    }
    dev.efficiency.clear();
    let mut used = BTreeMap::new();
    for (c, (ideal, real, n)) in sums {
        dev.efficiency.insert(c, (ideal / real).clamp(1e-4, 4.0));
        used.insert(c, n);
    }
    used
}

/// Records the median measured time (µs) of each footprint in `samples`
/// into `dev.history`, replacing earlier entries of the same footprints.
/// Returns how many footprints were recorded.
pub fn record_history(dev: &mut DeviceSpec, samples: &[Sample]) -> usize {
    let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for s in samples {
        if s.seconds.is_finite() && s.seconds >= 0.0 {
            by.entry(&s.node.footprint).or_default().push(s.seconds);
        }
    }
    let n = by.len();
    for (k, mut v) in by {
        v.sort_by(f64::total_cmp);
        let m = v.len();
        let med = if m % 2 == 1 {
            v[m / 2]
        } else {
            (v[m / 2 - 1] + v[m / 2]) / 2.0
        };
        // Three significant decimals of a µs keep the TOML readable.
        dev.history.insert(k.to_string(), (med * 1e9).round() / 1e3);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use hetflow_ops::cost::Cost;
    use hetflow_ops::DType;

    fn sample(class: OpClass, flops: f64, bytes: f64, seconds: f64) -> Sample {
        Sample {
            node: NodeCost {
                cost: Cost {
                    flops,
                    bytes_read: bytes,
                    bytes_written: 0.0,
                },
                class,
                dtype: Some(DType::F32),
                op_type: "X",
                footprint: format!("X:{flops}:{bytes}"),
            },
            seconds,
        }
    }

    #[test]
    fn recovers_known_parameters() {
        // A device with 100 GF/s, 10 GB/s, 2 µs launch; conv at 50% and
        // reductions at 25% of the roofline.
        let launch = 2e-6;
        let samples = vec![
            sample(OpClass::Gemm, 1e9, 1e6, launch + 1e9 / 100e9),
            sample(OpClass::Gemm, 1e8, 1e6, launch + 1e8 / 80e9),
            sample(OpClass::Elementwise, 1e6, 1e8, launch + 1e8 / 10e9),
            sample(OpClass::Conv, 2e9, 1e6, launch + 2e9 / 50e9),
            sample(OpClass::Reduce, 1e6, 1e7, launch + 4.0 * 1e7 / 10e9),
        ];
        let mut d = DeviceSpec {
            name: "cpu:0".into(),
            host: "h".into(),
            kind: "cpu".into(),
            model: None,
            peak_gflops: BTreeMap::new(),
            memory_gib: 1.0,
            mem_bw_gbps: 1.0,
            launch_us: 2.0,
            efficiency: BTreeMap::new(),
            unsupported: vec![],
            history: BTreeMap::new(),
            contention: 1.0,
            copy_engine: true,
        };
        let used = fit_device(&mut d, &samples);
        assert_eq!(used[&OpClass::Gemm], 2);
        assert!((d.peak_gflops["f32"] - 100.0).abs() < 1e-6);
        assert!((d.mem_bw_gbps - 10.0).abs() < 1e-6);
        assert!((d.efficiency(OpClass::Conv) - 0.5).abs() < 1e-6);
        assert!((d.efficiency(OpClass::Reduce) - 0.25).abs() < 1e-6);
        // Two GEMMs at 100% and 80%: time-weighted 1.1e9 flops ideal over
        // (0.01 + 0.00125) s measured.
        let want = (1.1e9 / 100e9) / (0.01 + 0.00125);
        assert!((d.efficiency(OpClass::Gemm) - want).abs() < 1e-9);
        assert_eq!(d.efficiency(OpClass::Movement), 1.0);
    }

    #[test]
    fn history_keeps_the_median_per_footprint() {
        let mut d = DeviceSpec {
            name: "cpu:0".into(),
            host: "h".into(),
            kind: "cpu".into(),
            model: None,
            peak_gflops: BTreeMap::from([("f32".to_string(), 1.0)]),
            memory_gib: 1.0,
            mem_bw_gbps: 1.0,
            launch_us: 0.0,
            efficiency: BTreeMap::new(),
            unsupported: vec![],
            history: BTreeMap::new(),
            contention: 1.0,
            copy_engine: true,
        };
        let a = sample(OpClass::Gemm, 1.0, 1.0, 3e-6);
        let b = sample(OpClass::Gemm, 1.0, 1.0, 1e-6);
        let c = sample(OpClass::Gemm, 1.0, 1.0, 2e-6);
        let other = sample(OpClass::Conv, 2.0, 1.0, 7e-6);
        assert_eq!(record_history(&mut d, &[a, b, c, other]), 2);
        assert_eq!(d.history["X:1:1"], 2.0);
        assert_eq!(d.history["X:2:1"], 7.0);
    }
}
