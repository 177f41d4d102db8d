//! Which stage each node of the training graph runs on: from a plan or a
//! balanced split, checked for order; and the simulator's view of the
//! same split.

use crate::train::graph::TrainGraph;
use crate::Error;
use hetflow_ops::graph::{Graph, ValueId};
use hetflow_scheduler::plan::{Plan, Schedule};
use std::collections::{HashMap, HashSet};

pub(super) fn err(m: impl Into<String>) -> Error {
    Error::Setting(m.into())
}

/// The stage of every node of the training graph, given the stage of
/// each forward node.
pub(super) fn all_stages(tg: &TrainGraph, forward: &[usize]) -> Result<Vec<usize>, Error> {
    let g = &tg.graph;
    let nf = tg.n_forward;
    if forward.len() != nf || tg.origins.len() != g.nodes.len() - nf {
        return Err(err("the training graph's backward pass is not traced"));
    }
    let producers = g.producers();
    let mut stage = forward.to_vec();
    for (k, o) in tg.origins.iter().enumerate() {
        let s = match o {
            Some(o) => forward[*o],
            None => g.nodes[nf + k]
                .inputs
                .iter()
                .flatten()
                .filter_map(|v| producers[v.0])
                .filter(|p| p.0 >= nf)
                .map(|p| stage[p.0])
                .min()
                .unwrap_or(0),
        };
        stage.push(s);
    }
    Ok(stage)
}

/// Contiguous split of the forward nodes into `p` stages, balanced by
/// each forward node's flops plus those of its backward nodes.
pub(super) fn balanced(tg: &TrainGraph, p: usize) -> Vec<usize> {
    let g = &tg.graph;
    let nf = tg.n_forward;
    let costs = hetflow_scheduler::cost::GraphCosts::new(g, 1);
    let flops = costs.flops();
    // A small per-node term keeps flop-free nodes from piling up.
    let mut w: Vec<f64> = (0..nf).map(|n| flops[n] + 1e3).collect();
    for (k, o) in tg.origins.iter().enumerate() {
        if let Some(o) = o {
            w[*o] += flops[nf + k];
        }
    }
    let p = p.min(nf).max(1);
    // best[j][i]: least max-stage cost of the first i nodes in j stages.
    let mut prefix = vec![0.0; nf + 1];
    for i in 0..nf {
        prefix[i + 1] = prefix[i] + w[i];
    }
    let inf = f64::INFINITY;
    let mut best = vec![vec![inf; nf + 1]; p + 1];
    let mut cut = vec![vec![0usize; nf + 1]; p + 1];
    best[0][0] = 0.0;
    for j in 1..=p {
        for i in j..=nf {
            for k in (j - 1)..i {
                let c = best[j - 1][k].max(prefix[i] - prefix[k]);
                if c < best[j][i] {
                    best[j][i] = c;
                    cut[j][i] = k;
                }
            }
        }
    }
    let mut stage = vec![0; nf];
    let mut i = nf;
    for j in (1..=p).rev() {
        let k = cut[j][i];
        for s in stage.iter_mut().take(i).skip(k) {
            *s = j - 1;
        }
        i = k;
    }
    stage
}

/// Forward stages from a plan of the model: by node name; a forward node
/// the plan does not name (the loss) goes with its latest input.
pub(super) fn from_plan(tg: &TrainGraph, model: &Graph, plan: &Plan) -> Result<Vec<usize>, Error> {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (k, st) in plan.stages.iter().enumerate() {
        for &n in &st.nodes {
            let node = model.nodes.get(n).ok_or_else(|| {
                err(format!(
                    "plan stage {k} names node {n}, the model has {}",
                    model.nodes.len()
                ))
            })?;
            by_name.insert(node.name.as_str(), k);
        }
    }
    let g = &tg.graph;
    let producers = g.producers();
    let mut stage = Vec::with_capacity(tg.n_forward);
    let mut named = 0;
    for node in &g.nodes[..tg.n_forward] {
        let s = match by_name.get(node.name.as_str()) {
            Some(&s) => {
                named += 1;
                s
            }
            None => node
                .inputs
                .iter()
                .flatten()
                .filter_map(|v| producers[v.0])
                .map(|p| stage[p.0])
                .max()
                .unwrap_or(0),
        };
        stage.push(s);
    }
    if named == 0 {
        return Err(err(
            "the plan names none of the model's nodes; make it with `hetflow plan` for this model",
        ));
    }
    Ok(stage)
}

/// Refuses stage assignments whose phases could wait on each other: a
/// forward phase may read only earlier or equal stages' forward phases, a
/// backward phase only its own or earlier stages' forward values and its
/// own or later stages' backward values.
pub(super) fn check_order(tg: &TrainGraph, stage: &[usize]) -> Result<(), Error> {
    let g = &tg.graph;
    let producers = g.producers();
    for (n, node) in g.nodes.iter().enumerate() {
        let bwd = n >= tg.n_forward;
        for v in node.inputs.iter().flatten() {
            let Some(p) = producers[v.0] else { continue };
            let (ps, s) = (stage[p.0], stage[n]);
            let p_bwd = p.0 >= tg.n_forward;
            let ok = match (p_bwd, bwd) {
                (false, false) | (false, true) => ps <= s,
                (true, true) => ps >= s,
                (true, false) => false,
            };
            if !ok {
                return Err(err(format!(
                    "node '{}' on stage {s} reads '{}' from stage {ps}: the stages are not in pipeline order",
                    node.name,
                    g.name(*v)
                )));
            }
        }
    }
    Ok(())
}

/// The distinct device names of `names` (in first-seen order), and for
/// each entry of `names` its index among them.
pub(super) fn distinct(names: &[String]) -> (Vec<String>, Vec<usize>) {
    let mut list: Vec<String> = Vec::new();
    let mut at = Vec::with_capacity(names.len());
    for n in names {
        match list.iter().position(|d| d == n) {
            Some(i) => at.push(i),
            None => {
                at.push(list.len());
                list.push(n.clone());
            }
        }
    }
    (list, at)
}

/// The nodes reading each value.
pub(super) fn readers(g: &Graph) -> Vec<Vec<usize>> {
    let mut r = vec![Vec::new(); g.values.len()];
    for (n, node) in g.nodes.iter().enumerate() {
        for v in node.inputs.iter().flatten() {
            if r[v.0].last() != Some(&n) {
                r[v.0].push(n);
            }
        }
    }
    r
}

/// The stage of each forward node and the device of each stage: by
/// `plan` (a plan of `model`), else a balanced split over `devices`
/// (a comma-separated list, one stage per entry).
pub fn forward_stages(
    tg: &TrainGraph,
    model: &Graph,
    plan: Option<&Plan>,
    devices: &str,
) -> Result<(Vec<usize>, Vec<String>), Error> {
    Ok(match plan {
        Some(p) => {
            if p.stages.is_empty() {
                return Err(err("the plan has no stage"));
            }
            if !p.replicas.is_empty() {
                return Err(err(
                    "the plan has replicas; pipelined training takes a plan without (use --replicas)",
                ));
            }
            let names: Vec<String> = p
                .stages
                .iter()
                .map(|s| {
                    p.devices
                        .get(s.device)
                        .cloned()
                        .ok_or_else(|| err(format!("a plan stage names device {}", s.device)))
                })
                .collect::<Result<_, _>>()?;
            (from_plan(tg, model, p)?, names)
        }
        None => {
            let names: Vec<String> = devices.split(',').map(|d| d.trim().to_string()).collect();
            (balanced(tg, names.len()), names)
        }
    })
}

/// A simulator workload of pipelined training ([`hetflow_scheduler::sim`]):
/// the forward nodes on the stages [`Pipeline::new`] would give them,
/// each with its backward time costed from the backward nodes it owns in
/// the training graph (by `cluster`'s cost model: its measured history
/// where `hetflow profile --train` recorded the kernel, its roofline
/// otherwise).
pub fn simulated(
    tg: &TrainGraph,
    model: &Graph,
    plan: Option<&Plan>,
    devices: &str,
    cluster: &hetflow_scheduler::cluster::ClusterSpec,
    schedule: Schedule,
    microbatches: usize,
) -> Result<hetflow_scheduler::sim::Workload, Error> {
    use hetflow_scheduler::cost::{CostModel, GraphCosts};
    if schedule == Schedule::Streaming {
        return Err(err(
            "training is simulated under gpipe or 1f1b, not streaming",
        ));
    }
    let (forward, names) = forward_stages(tg, model, plan, devices)?;
    let stage = all_stages(tg, &forward)?;
    check_order(tg, &stage)?;
    let (distinct, dev_of) = distinct(&names);
    let placement: Vec<usize> = forward.iter().map(|&s| dev_of[s]).collect();
    let nf = tg.n_forward;
    let mut fwd = tg.graph.clone();
    fwd.nodes.truncate(nf);
    let produced: HashSet<ValueId> = fwd.nodes.iter().flat_map(|n| n.outputs.clone()).collect();
    fwd.outputs.retain(|o| produced.contains(o));
    let mut plan = Plan::from_placement(&fwd, distinct.clone(), placement.clone());
    plan.schedule = schedule;
    plan.microbatches = microbatches.max(1);
    let costs = GraphCosts::new(&fwd, 1);
    let mut w = hetflow_scheduler::sim::Workload::from_plan(&fwd, &plan, &costs, cluster)?;
    let all = GraphCosts::new(&tg.graph, 1);
    let cm = CostModel::new(cluster);
    let idx: Vec<usize> = distinct
        .iter()
        .map(|n| {
            cluster
                .device_index(n)
                .ok_or_else(|| err(format!("device '{n}' is not in the cluster spec")))
        })
        .collect::<Result<_, _>>()?;
    let mut backward = vec![0.0; nf];
    for (k, o) in tg.origins.iter().enumerate() {
        let n = nf + k;
        // A parameter's gradient sum goes with its stage's last node.
        let owner = match o {
            Some(o) => *o,
            None => (0..nf).rev().find(|&i| forward[i] == stage[n]).unwrap_or(0),
        };
        let t = cm.op_time(idx[placement[owner]], &all.nodes[n]);
        if !t.is_finite() {
            let node = &tg.graph.nodes[n];
            return Err(err(format!(
                "backward node '{}' ({}) cannot run on {}",
                node.name,
                node.op.name(),
                distinct[placement[owner]]
            )));
        }
        backward[owner] += t * 1e3;
    }
    w.backward = backward;
    Ok(w)
}
