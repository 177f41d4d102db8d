//! Planners that turn a graph and a cluster into a [`Plan`], and the table
//! `hetflow plan` prints.
//!
//! - [`Planner::Pipeline`]: contiguous stages balanced by device speed
//!   ([`crate::partition`]); the choice for streams of micro-batches.
//! - [`Planner::Heft`]: list scheduling of the op graph ([`crate::heft`]);
//!   ops go wherever they finish first, so independent branches run on
//!   different devices at once. The plan's stages are then the maximal runs
//!   of consecutive ops on one device.
//! - [`manual_plan`]: a placement file naming a device per node.
//! - [`replicated`]: whole-plan data parallelism (copies on equal device
//!   groups); [`replicate_stages`]: data parallelism of the bottleneck
//!   stages only, on devices the plan leaves spare.
//!
//! Placement file (TOML):
//! ```toml
//! default = "cpu:0"          # nodes not listed
//! [nodes]
//! "conv1" = "cpu:1"
//! "fc" = "tpu:0"
//! ```

use crate::cluster::ClusterSpec;
use crate::cost::{CostModel, GraphCosts};
use crate::dag::TaskGraph;
use crate::heft::{heft_planner, TaskSchedule};
use crate::partition::{partition, PartitionOptions};
use crate::plan::{Plan, PlanError};
use hetflow_ops::Graph;
use std::collections::HashMap;
use std::fmt::Write;

/// Which planner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planner {
    /// Pipeline partitioning.
    Pipeline,
    /// HEFT list scheduling.
    Heft,
}

impl std::str::FromStr for Planner {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pipeline" => Ok(Planner::Pipeline),
            "heft" => Ok(Planner::Heft),
            _ => Err(format!("unknown planner '{s}' (known: pipeline, heft)")),
        }
    }
}

/// Plans with HEFT; also returns the task schedule it predicted.
pub fn heft_plan(
    g: &Graph,
    costs: &GraphCosts,
    cluster: &ClusterSpec,
    opts: &PartitionOptions,
) -> Result<(Plan, TaskSchedule), PlanError> {
    let tg = TaskGraph::from_graph(g, costs, cluster);
    let s = heft_planner(&tg)?;
    let names: Vec<String> = cluster.devices.iter().map(|d| d.name.clone()).collect();
    let mut plan = Plan::from_placement_with(g, names, s.device.clone(), &costs.flops())
        .with_microbatches(opts.microbatches, opts.credits);
    plan.schedule = opts.schedule;
    annotate(&mut plan, g, costs, cluster);
    // One micro-batch takes the schedule's makespan; the next can start on
    // a device once it is free, so a stream is bounded by the busiest one.
    let mut busy = vec![0.0; cluster.devices.len()];
    for (t, &d) in s.device.iter().enumerate() {
        busy[d] += s.finish[t] - s.start[t];
    }
    let bottleneck = busy.iter().copied().fold(0.0, f64::max);
    let m = opts.microbatches.max(1) as f64;
    plan.predicted_ms = Some((s.makespan + (m - 1.0) * bottleneck) * 1e3);
    plan.batch = Some(costs.batch);
    plan.drop_unused_devices();
    Ok((plan, s))
}

/// Plans with the pipeline partitioner.
pub fn pipeline_plan(
    g: &Graph,
    costs: &GraphCosts,
    cluster: &ClusterSpec,
    opts: &PartitionOptions,
) -> Result<Plan, PlanError> {
    Ok(partition(g, costs, cluster, opts)?.plan)
}

/// Stage-level data parallelism: gives the device carrying the most work
/// per micro-batch (its stages' compute plus the transfers into it) `k - 1`
/// more copies on spare devices of `cluster` (those `plan` does not use
/// that run all of its ops, fastest first), then the next busiest, while
/// spare devices remain and replicating lowers the busiest device's time
/// per micro-batch. Micro-batches alternate between the `k` copies
/// ([`Plan::replicas`]); devices not replicated are shared by all copies.
/// A replicated device's time per micro-batch counts as the slowest of its
/// copies divided by `k`. Returns the plan devices that were replicated;
/// an error names the bottleneck when not even it could be.
///
/// `predicted_ms` becomes fill + (m − 1) × the busiest device's time per
/// micro-batch, fill being one micro-batch through every device in turn.
pub fn replicate_stages(
    plan: &mut Plan,
    costs: &GraphCosts,
    cluster: &ClusterSpec,
    k: usize,
) -> Result<Vec<usize>, PlanError> {
    if k < 2 {
        return Err(PlanError::Input(format!(
            "stage replicas: k must be at least 2, got {k}"
        )));
    }
    if !plan.replicas.is_empty() {
        return Err(PlanError::Input("the plan is already replicated".into()));
    }
    let model = CostModel::new(cluster);
    let idx: Vec<usize> = plan
        .devices
        .iter()
        .map(|n| {
            cluster.device_index(n).ok_or_else(|| {
                PlanError::Input(format!("plan device '{n}' is not in the cluster spec"))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut nodes_on: Vec<Vec<usize>> = vec![Vec::new(); plan.devices.len()];
    for (ni, &d) in plan.placement.iter().enumerate() {
        nodes_on[d].push(ni);
    }
    // Seconds per micro-batch of plan device `d`'s work on cluster device `c`.
    let load = |d: usize, c: usize| -> f64 {
        let compute: f64 = nodes_on[d]
            .iter()
            .map(|&n| model.op_time(c, &costs.nodes[n]))
            .sum();
        let inbound: f64 = plan
            .transfers
            .iter()
            .filter(|t| t.to == d)
            .map(|t| model.transfer_time(idx[t.from], c, costs.value_bytes[t.value]))
            .sum();
        compute + inbound
    };
    let base: Vec<f64> = (0..plan.devices.len()).map(|d| load(d, idx[d])).collect();
    let mut eff = base.clone();
    let mut spare: Vec<usize> = (0..cluster.devices.len())
        .filter(|c| !idx.contains(c))
        .collect();
    let mut replicas = vec![plan.devices.clone(); k - 1];
    let mut done: Vec<usize> = Vec::new();
    while let Some((d, cur)) = eff
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
    {
        if done.contains(&d) {
            break;
        }
        let mut cands: Vec<(f64, usize)> = spare
            .iter()
            .map(|&c| (load(d, c), c))
            .filter(|(t, _)| t.is_finite())
            .collect();
        cands.sort_by(|a, b| a.0.total_cmp(&b.0));
        if cands.len() < k - 1 {
            if done.is_empty() {
                let have = if spare.is_empty() {
                    "every cluster device is in the plan (leave some out of --devices)".to_string()
                } else {
                    format!(
                        "{} of the spare devices ({}) can",
                        cands.len(),
                        spare
                            .iter()
                            .map(|&c| cluster.devices[c].name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(PlanError::Input(format!(
                    "cannot replicate the bottleneck on '{}' {k} times: it needs {} spare device(s) that run all of its ops; {have}",
                    plan.devices[d],
                    k - 1,
                )));
            }
            break;
        }
        let chosen: Vec<usize> = cands[..k - 1].iter().map(|x| x.1).collect();
        let slowest = cands[..k - 1].iter().map(|x| x.0).fold(cur, f64::max);
        let next = slowest / k as f64;
        if next >= cur {
            if done.is_empty() {
                return Err(PlanError::Input(format!(
                    "replicating the bottleneck on '{}' does not help: its spare copies are too slow",
                    plan.devices[d]
                )));
            }
            break;
        }
        eff[d] = next;
        done.push(d);
        for (r, c) in chosen.into_iter().enumerate() {
            replicas[r][d] = cluster.devices[c].name.clone();
            spare.retain(|&x| x != c);
        }
    }
    plan.replicas = replicas;
    let m = plan.microbatches.max(1) as f64;
    let fill: f64 = base.iter().sum();
    let busiest = eff.iter().copied().fold(0.0, f64::max);
    plan.predicted_ms = Some((fill + (m - 1.0) * busiest) * 1e3);
    done.sort_unstable();
    Ok(done)
}

/// Data-parallel replication: splits the cluster's devices, in order, into
/// `k` equal groups, plans with `plan_group` on the first group, and runs
/// copy `r` of that plan on group `r` (device `i` of group 0 becomes device
/// `i` of group `r`). Micro-batches alternate between the copies, so a
/// stream runs up to `k` times faster; the groups should be alike (the
/// prediction assumes they are).
pub fn replicated<F>(cluster: &ClusterSpec, k: usize, plan_group: F) -> Result<Plan, PlanError>
where
    F: FnOnce(&ClusterSpec) -> Result<Plan, PlanError>,
{
    let n = cluster.devices.len();
    if k == 0 || !n.is_multiple_of(k) {
        return Err(PlanError::Input(format!(
            "{k} replicas need the cluster's {n} devices to split into {k} equal groups"
        )));
    }
    let per = n / k;
    let names: Vec<String> = cluster.devices.iter().map(|d| d.name.clone()).collect();
    let group0 = cluster.subset(&names[..per])?;
    let mut plan = plan_group(&group0)?;
    plan.replicas = (1..k)
        .map(|r| {
            plan.devices
                .iter()
                .map(|d| {
                    let i = names[..per].iter().position(|x| x == d).unwrap_or(0);
                    names[r * per + i].clone()
                })
                .collect()
        })
        .collect();
    if let Some(ms) = plan.predicted_ms {
        // Each copy streams ceil(m / k) of the m micro-batches.
        let m = plan.microbatches.max(1) as f64;
        let stage_max = plan
            .stages
            .iter()
            .filter_map(|s| s.predicted_ms)
            .fold(0.0, f64::max);
        let saved = (m - (m / k as f64).ceil()) * stage_max;
        plan.predicted_ms = Some((ms - saved).max(stage_max));
    }
    Ok(plan)
}

/// Reads a placement file (module docs) and makes the plan.
pub fn manual_plan(g: &Graph, toml_text: &str) -> Result<Plan, PlanError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        default: String,
        #[serde(default)]
        nodes: HashMap<String, String>,
    }
    let f: File =
        toml::from_str(toml_text).map_err(|e| PlanError::Input(format!("placement file: {e}")))?;
    Plan::manual(g, &f.nodes, &f.default)
}

/// Fills each stage's predicted time, transfer and memory from the cost
/// model (for plans made without it, e.g. manual ones).
pub fn annotate(plan: &mut Plan, g: &Graph, costs: &GraphCosts, cluster: &ClusterSpec) {
    plan.fill_transfer_bytes(&costs.value_bytes);
    let m = CostModel::new(cluster);
    let idx: Vec<Option<usize>> = plan
        .devices
        .iter()
        .map(|n| cluster.device_index(n))
        .collect();
    let placement_c: Vec<usize> = plan
        .placement
        .iter()
        .map(|&d| idx[d].unwrap_or(0))
        .collect();
    let mem = m.memory(g, costs, &placement_c, plan.credits);
    for s in &mut plan.stages {
        let Some(d) = idx[s.device] else { continue };
        let t: f64 = s.nodes.iter().map(|&n| m.op_time(d, &costs.nodes[n])).sum();
        s.predicted_ms = Some(t * 1e3);
        s.memory_bytes = Some(mem[d] as u64);
    }
    // Charge each transfer to the stage holding its first reader on the
    // destination device (one pass over the nodes finds them all).
    let mut stage_of = vec![0usize; g.nodes.len()];
    for (si, s) in plan.stages.iter().enumerate() {
        for &n in &s.nodes {
            stage_of[n] = si;
        }
    }
    let mut first_reader: HashMap<(usize, usize), usize> = HashMap::new();
    for (ni, n) in g.nodes.iter().enumerate() {
        for v in n.inputs.iter().flatten() {
            first_reader.entry((v.0, plan.placement[ni])).or_insert(ni);
        }
    }
    let mut xfer = vec![0.0; plan.stages.len()];
    for tr in &plan.transfers {
        let reader = first_reader.get(&(tr.value, tr.to));
        if let (Some(&r), Some(a), Some(b)) = (reader, idx[tr.from], idx[tr.to]) {
            xfer[stage_of[r]] += m.transfer_time(a, b, costs.value_bytes[tr.value]);
        }
    }
    for (s, t) in plan.stages.iter_mut().zip(xfer) {
        s.transfer_in_ms = Some(t * 1e3);
    }
}

/// The table `hetflow plan` prints: one row per stage.
pub fn describe(plan: &Plan, g: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:<10} {:>5}  {:<36} {:>11} {:>11} {:>10}",
        "stage", "device", "ops", "first .. last", "compute_ms", "xfer_in_ms", "mem_MiB"
    );
    let f = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    for (i, s) in plan.stages.iter().enumerate() {
        let first = s
            .nodes
            .first()
            .map(|&n| g.nodes[n].name.as_str())
            .unwrap_or("");
        let last = s
            .nodes
            .last()
            .map(|&n| g.nodes[n].name.as_str())
            .unwrap_or("");
        let span = if s.nodes.len() > 1 {
            format!("{} .. {}", clip(first, 16), clip(last, 16))
        } else {
            clip(first, 36)
        };
        let _ = writeln!(
            out,
            "{:>5}  {:<10} {:>5}  {:<36} {:>11} {:>11} {:>10}",
            i,
            plan.devices[s.device],
            s.nodes.len(),
            span,
            f(s.predicted_ms),
            f(s.transfer_in_ms),
            s.memory_bytes
                .map(|b| format!("{:.1}", b as f64 / (1u64 << 20) as f64))
                .unwrap_or_else(|| "-".into())
        );
    }
    let moved: u64 = plan.transfers.iter().filter_map(|t| t.bytes).sum();
    for (r, names) in plan.replicas.iter().enumerate() {
        let _ = writeln!(out, "replica {}: {}", r + 1, names.join(", "));
    }
    let _ = writeln!(
        out,
        "{} stages on {} device(s), {} transfers ({:.2} MiB per micro-batch), {} micro-batch(es), schedule {:?}, credits {}",
        plan.stages.len(),
        plan.devices.len(),
        plan.transfers.len(),
        moved as f64 / (1u64 << 20) as f64,
        plan.microbatches,
        plan.schedule,
        plan.credits
    );
    if let Some(ms) = plan.predicted_ms {
        let _ = writeln!(out, "predicted_ms={ms:.3}");
    }
    out
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}~")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::tests::mlp;

    fn cluster() -> ClusterSpec {
        ClusterSpec::from_toml(
            r#"
[[device]]
name = "cpu:0"
kind = "cpu"
peak_gflops = { f32 = 100.0 }
memory_gib = 4.0
mem_bw_gbps = 20.0
[[device]]
name = "cpu:1"
kind = "cpu"
peak_gflops = { f32 = 100.0 }
memory_gib = 4.0
mem_bw_gbps = 20.0
[defaults]
intra_host = { bandwidth_gbps = 10.0, latency_us = 5.0 }
"#,
        )
        .unwrap()
    }

    #[test]
    fn heft_plan_is_valid_and_annotated() {
        let g = mlp(4, 128);
        let costs = GraphCosts::new(&g, 8);
        let (plan, s) = heft_plan(&g, &costs, &cluster(), &PartitionOptions::default()).unwrap();
        plan.validate(&g).unwrap();
        assert!(s.makespan > 0.0);
        assert!(plan.stages.iter().all(|s| s.predicted_ms.is_some()));
        let table = describe(&plan, &g);
        assert!(table.contains("mm0"), "{table}");
        let back = Plan::from_json(&plan.to_json()).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn replicas_rename_devices_and_validate() {
        let g = mlp(4, 64);
        let costs = GraphCosts::new(&g, 8);
        let mut c = cluster();
        let mut d2 = c.devices[0].clone();
        d2.name = "cpu:2".into();
        let mut d3 = c.devices[0].clone();
        d3.name = "cpu:3".into();
        c.devices.extend([d2, d3]);
        let opts = PartitionOptions {
            use_all: true,
            microbatches: 8,
            ..Default::default()
        };
        let p = replicated(&c, 2, |grp| pipeline_plan(&g, &costs, grp, &opts)).unwrap();
        p.validate(&g).unwrap();
        assert_eq!(p.devices, vec!["cpu:0", "cpu:1"]);
        assert_eq!(
            p.replicas,
            vec![vec!["cpu:2".to_string(), "cpu:3".to_string()]]
        );
        assert!(replicated(&c, 3, |grp| pipeline_plan(&g, &costs, grp, &opts)).is_err());
        let mut bad = p.clone();
        bad.replicas[0][1] = "cpu:0".into();
        assert!(bad.validate(&g).is_err());
    }

    #[test]
    fn the_bottleneck_stage_is_replicated_on_spare_devices() {
        let g = mlp(4, 256);
        let costs = GraphCosts::new(&g, 8);
        let mut c = cluster();
        c.devices[1].peak_gflops.insert("f32".into(), 25.0);
        let mut spare = c.devices[1].clone();
        spare.name = "cpu:2".into();
        c.devices.push(spare);
        let n = g.nodes.len();
        let placement: Vec<usize> = (0..n).map(|i| usize::from(i >= n / 2)).collect();
        let mut plan = Plan::from_placement(&g, vec!["cpu:0".into(), "cpu:1".into()], placement)
            .with_microbatches(8, 2);
        annotate(&mut plan, &g, &costs, &c);
        let mut p3 = plan.clone();
        let done = replicate_stages(&mut plan, &costs, &c, 2).unwrap();
        assert_eq!(done, vec![1]);
        assert_eq!(
            plan.replicas,
            vec![vec!["cpu:0".to_string(), "cpu:2".to_string()]]
        );
        plan.validate(&g).unwrap();
        // Three copies need two spare devices; the error names the stage.
        let e = replicate_stages(&mut p3, &costs, &c, 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'cpu:1'") && e.contains("cpu:2"), "{e}");
        // A device may be shared by copies only in its own role.
        let mut bad = plan.clone();
        bad.replicas[0] = vec!["cpu:1".into(), "cpu:2".into()];
        assert!(bad.validate(&g).is_err());
    }

    #[test]
    fn manual_file() {
        let g = mlp(2, 16);
        let p = manual_plan(&g, "default = \"cpu:0\"\n[nodes]\n\"mm1\" = \"cpu:1\"\n").unwrap();
        p.validate(&g).unwrap();
        assert_eq!(p.devices, vec!["cpu:0", "cpu:1"]);
        let e = manual_plan(&g, "default = \"cpu:0\"\n[nodes]\n\"nope\" = \"cpu:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'nope'"), "{e}");
        let e = manual_plan(&g, "[nodes]\n").unwrap_err().to_string();
        assert!(e.contains("default"), "{e}");
    }
}
