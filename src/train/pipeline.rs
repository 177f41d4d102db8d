//! Pipelined training: the Plan's GPipe and 1F1B schedules, run for real.
//!
//! The training graph ([`super::graph`]) is cut into `p` stages. Each
//! forward node (and the loss) gets a stage: the stage of its name in the
//! given [`Plan`], or, without a plan, a contiguous split of the forward
//! nodes balanced by the flops of each node together with its backward
//! nodes. Each backward node runs on the stage of the forward node it
//! belongs to ([`hetflow_ops::autodiff::differentiate_traced`]); the sums
//! of a parameter's gradient contributions run on the earliest stage
//! that contributes.
//!
//! Every stage then has two phases, its forward part `F_s` and its
//! backward part `B_s`, each compiled once into a [`Session`] on the
//! stage's device. One step runs `m` micro-batches: one thread per stage
//! walks the schedule's fixed order of `(phase, micro-batch)` items
//! ([`order`]):
//! - GPipe: `F(0..m)`, then `B(0..m)`;
//! - 1F1B: `min(p − s − 1, m)` warm-up forwards on stage `s`, then one
//!   forward and one backward in turn, then the remaining backwards.
//!
//! A phase's outputs go to the phases that read them: to another stage
//! as a message (the tensors come back from the producing device and go
//! into the reading one through each session's host copy path, as
//! transfers do in inference), or, when the reader is the same stage's
//! backward phase, into the stage's **stash**. The stash holds the
//! activations a backward phase needs from the forward pass; they are
//! dropped as soon as that backward phase has run on the micro-batch.
//! The stash's size is measured (bytes and micro-batches held, per
//! stage): under 1F1B stage `s` holds at most `p − s` micro-batches,
//! under GPipe all `m` ([`StageStats`]).
//!
//! Each stage sums its parameters' gradients over the micro-batches (the
//! mean, for a mean loss: the gradient of the whole batch); the trainer
//! then applies one optimizer step to every stage's weights.
//!
//! A failing phase stops every stage (no stage waits forever on a
//! message that cannot come), and the error names the stage, its device
//! and the micro-batch.

use super::graph::TrainGraph;
use crate::{Error, Model, Session, SessionBuilder};
use hetflow_ops::graph::{Graph, ValueId};
use hetflow_ops::Tensor;
use hetflow_scheduler::plan::{Plan, Schedule};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The two halves of a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    /// The stage's forward nodes (and the loss, on the last stage).
    Forward,
    /// The stage's backward nodes.
    Backward,
}

/// The `(pass, micro-batch)` items stage `s` of `p` runs, in order.
pub fn order(schedule: Schedule, p: usize, s: usize, m: usize) -> Vec<(Pass, usize)> {
    let mut v = Vec::with_capacity(2 * m);
    match schedule {
        Schedule::OneFOneB => {
            let warm = (p - s - 1).min(m);
            v.extend((0..warm).map(|k| (Pass::Forward, k)));
            for i in 0..m - warm {
                v.push((Pass::Forward, warm + i));
                v.push((Pass::Backward, i));
            }
            v.extend((m - warm..m).map(|k| (Pass::Backward, k)));
        }
        // GPipe (streaming is refused when the pipeline is built).
        _ => {
            v.extend((0..m).map(|k| (Pass::Forward, k)));
            v.extend((0..m).map(|k| (Pass::Backward, k)));
        }
    }
    v
}

/// Where a phase's input comes from.
#[derive(Clone, Copy, Debug)]
enum Src {
    /// The training graph's input of this index (fed per micro-batch).
    Feed(usize),
    /// A value another phase produces.
    Value(ValueId),
}

/// One half of a stage, compiled.
struct Phase {
    /// None when the phase has no node.
    session: Option<Session>,
    inputs: Vec<Src>,
    outputs: Vec<ValueId>,
    /// Per output: the other phases reading it, as (stage, pass).
    routes: Vec<Vec<(usize, Pass)>>,
    /// Per output: its indices among the training graph's outputs.
    graph_out: Vec<Vec<usize>>,
}

struct StageRt {
    device: String,
    fwd: Phase,
    bwd: Phase,
}

/// What one stage measured during a step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageStats {
    /// The stage's device.
    pub device: String,
    /// Mean time of the forward phase per micro-batch, ms.
    pub forward_ms: f64,
    /// Mean time of the backward phase per micro-batch, ms.
    pub backward_ms: f64,
    /// Most bytes the stash held at once (activations waiting for the
    /// stage's backward phase, including gradients already received).
    pub peak_stash_bytes: u64,
    /// Most micro-batches with something in the stash at once.
    pub peak_in_flight: usize,
    /// Largest stash of one micro-batch, bytes.
    pub microbatch_stash_bytes: u64,
}

/// What one pipelined step measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineStats {
    /// The schedule.
    pub schedule: Schedule,
    /// Micro-batches per step.
    pub microbatches: usize,
    /// Per stage, in order.
    pub stages: Vec<StageStats>,
    /// Wall time of the step (all micro-batches through every stage), ms.
    pub step_ms: f64,
    /// The ideal pipelined time: `(m + p − 1)` × the slowest stage's
    /// forward + backward time per micro-batch, ms.
    pub bound_ms: f64,
}

impl PipelineStats {
    /// `bound_ms / step_ms` (1.0: the ideal is reached).
    pub fn efficiency(&self) -> f64 {
        if self.step_ms > 0.0 {
            self.bound_ms / self.step_ms
        } else {
            0.0
        }
    }
}

/// What a step returns.
pub struct StepOut {
    /// Per micro-batch, the training graph's outputs outside `summed`
    /// (None at the summed indices).
    pub per_mb: Vec<Vec<Option<Arc<Tensor>>>>,
    /// Per output index in `summed` (relative to its start), the mean over
    /// the micro-batches, as f32.
    pub means: Vec<Vec<f32>>,
    /// What the step measured.
    pub stats: PipelineStats,
}

/// A training graph compiled into pipeline stages (module docs).
pub struct Pipeline {
    stages: Vec<StageRt>,
    schedule: Schedule,
    n_outputs: usize,
    /// The leading training-graph inputs that differ per micro-batch (the
    /// batch, the targets, the dropout seed); the rest (statistics,
    /// weights) are the same for every micro-batch of a step.
    per_mb: usize,
}

fn err(m: impl Into<String>) -> Error {
    Error::Setting(m.into())
}

/// The stage of every node of the training graph, given the stage of
/// each forward node.
fn all_stages(tg: &TrainGraph, forward: &[usize]) -> Result<Vec<usize>, Error> {
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
fn balanced(tg: &TrainGraph, p: usize) -> Vec<usize> {
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
fn from_plan(tg: &TrainGraph, model: &Graph, plan: &Plan) -> Result<Vec<usize>, Error> {
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
fn check_order(tg: &TrainGraph, stage: &[usize]) -> Result<(), Error> {
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
fn distinct(names: &[String]) -> (Vec<String>, Vec<usize>) {
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
fn readers(g: &Graph) -> Vec<Vec<usize>> {
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

/// The phase of `nodes`, with its inputs and outputs (values read or
/// kept outside it), compiled on `device`.
#[allow(clippy::too_many_arguments)]
fn phase(
    tg: &TrainGraph,
    wiring: (&[Option<hetflow_ops::graph::NodeId>], &[Vec<usize>]),
    nodes: &[usize],
    phase_of: &[(usize, Pass)],
    this: (usize, Pass),
    device: &Arc<dyn hetflow_devices::Device>,
    threads: Option<usize>,
) -> Result<Phase, Error> {
    let g = &tg.graph;
    if nodes.is_empty() {
        return Ok(Phase {
            session: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            routes: Vec::new(),
            graph_out: Vec::new(),
        });
    }
    let (producers, readers) = wiring;
    let inside: HashSet<usize> = nodes.iter().copied().collect();
    let mut inputs: Vec<ValueId> = Vec::new();
    let mut read: HashSet<ValueId> = HashSet::new();
    for &n in nodes {
        for v in g.nodes[n].inputs.iter().flatten() {
            read.insert(*v);
            let own = producers[v.0].is_some_and(|p| inside.contains(&p.0));
            if !own && !g.constants.contains_key(v) && !inputs.contains(v) {
                inputs.push(*v);
            }
        }
    }
    let mut outputs = Vec::new();
    let mut routes = Vec::new();
    let mut graph_out = Vec::new();
    for &n in nodes {
        for &o in &g.nodes[n].outputs {
            let mut r: Vec<(usize, Pass)> = Vec::new();
            for &m in &readers[o.0] {
                if !inside.contains(&m) {
                    let to = phase_of[m];
                    if to != this && !r.contains(&to) {
                        r.push(to);
                    }
                }
            }
            let go: Vec<usize> = g
                .outputs
                .iter()
                .enumerate()
                .filter(|(_, v)| **v == o)
                .map(|(i, _)| i)
                .collect();
            if !r.is_empty() || !go.is_empty() {
                outputs.push(o);
                routes.push(r);
                graph_out.push(go);
            }
        }
    }
    let srcs = inputs
        .iter()
        .map(|v| match g.inputs.iter().position(|i| i == v) {
            Some(i) => Src::Feed(i),
            None => Src::Value(*v),
        })
        .collect();
    let mut sub = g.clone();
    sub.nodes = nodes.iter().map(|&n| g.nodes[n].clone()).collect();
    sub.inputs = inputs;
    sub.outputs = outputs.clone();
    sub.constants.retain(|k, _| read.contains(k));
    let model = Model::from_graph(sub);
    let mut b = SessionBuilder::new(&model).with_devices(vec![device.clone()]);
    if let Some(t) = threads {
        b = b.threads(t);
    }
    let session = b.build()?;
    Ok(Phase {
        session: Some(session),
        inputs: srcs,
        outputs,
        routes,
        graph_out,
    })
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

impl Pipeline {
    /// Compiles `tg` into stages on `devices` (one per stage): split by
    /// `plan` (a plan of `model`, whose stages and devices it follows),
    /// else balanced over the devices given.
    pub fn new(
        tg: &TrainGraph,
        model: &Graph,
        schedule: Schedule,
        plan: Option<&Plan>,
        devices: &str,
        threads: Option<usize>,
    ) -> Result<Pipeline, Error> {
        if schedule == Schedule::Streaming {
            return Err(err(
                "pipelined training runs the gpipe or 1f1b schedule, not streaming",
            ));
        }
        let (forward, names) = forward_stages(tg, model, plan, devices)?;
        let stage = all_stages(tg, &forward)?;
        check_order(tg, &stage)?;
        let p = names.len();
        // Devices: each distinct name opened once.
        let (distinct, dev_of) = distinct(&names);
        let specs = hetflow_devices::parse_device_list(&distinct.join(","))?;
        let opened = hetflow_devices::open_devices(&specs, threads)?;
        let phase_of: Vec<(usize, Pass)> = stage
            .iter()
            .enumerate()
            .map(|(n, &s)| {
                let pass = if n < tg.n_forward {
                    Pass::Forward
                } else {
                    Pass::Backward
                };
                (s, pass)
            })
            .collect();
        let producers = tg.graph.producers();
        let readers = readers(&tg.graph);
        let wiring = (producers.as_slice(), readers.as_slice());
        let mut stages = Vec::with_capacity(p);
        for (s, name) in names.iter().enumerate() {
            let dev = &opened[dev_of[s]];
            let of = |pass: Pass| -> Vec<usize> {
                (0..stage.len())
                    .filter(|&n| phase_of[n] == (s, pass))
                    .collect()
            };
            let ctx = |e: Error| err(format!("stage {s} on {name}: {e}"));
            let fwd = phase(
                tg,
                wiring,
                &of(Pass::Forward),
                &phase_of,
                (s, Pass::Forward),
                dev,
                threads,
            )
            .map_err(ctx)?;
            let bwd = phase(
                tg,
                wiring,
                &of(Pass::Backward),
                &phase_of,
                (s, Pass::Backward),
                dev,
                threads,
            )
            .map_err(ctx)?;
            stages.push(StageRt {
                device: name.clone(),
                fwd,
                bwd,
            });
        }
        Ok(Pipeline {
            stages,
            schedule,
            n_outputs: tg.graph.outputs.len(),
            per_mb: 2 + usize::from(tg.seeded),
        })
    }

    /// Stages.
    pub fn stages(&self) -> usize {
        self.stages.len()
    }

    /// Runs one step: `feeds[i]` are micro-batch `i`'s training-graph
    /// inputs. The outputs at `summed` (the gradients) are averaged over
    /// the micro-batches on their stage.
    pub fn step(
        &mut self,
        feeds: &[Vec<Arc<Tensor>>],
        summed: std::ops::Range<usize>,
    ) -> Result<StepOut, Error> {
        let m = feeds.len();
        let p = self.stages.len();
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..p).map(|_| crossbeam::channel::unbounded()).unzip();
        let failed = AtomicBool::new(false);
        let schedule = self.schedule;
        let n_out = self.n_outputs;
        let per_mb = self.per_mb;
        let start = Instant::now();
        let results: Vec<Result<StageResult, Error>> = std::thread::scope(|sc| {
            let handles: Vec<_> = self
                .stages
                .iter_mut()
                .zip(receivers)
                .enumerate()
                .map(|(s, (st, rx))| {
                    let senders = senders.clone();
                    let failed = &failed;
                    let summed = summed.clone();
                    sc.spawn(move || {
                        let items = order(schedule, p, s, m);
                        let io = StageIo {
                            feeds,
                            per_mb,
                            rx: &rx,
                            senders: &senders,
                            failed,
                        };
                        let r = run_stage(st, s, &items, &io, summed);
                        if r.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        r
                    })
                })
                .collect();
            drop(senders);
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(err("a pipeline stage's thread panicked")))
                })
                .collect()
        });
        let step_ms = start.elapsed().as_secs_f64() * 1e3;
        // The first real error, not the "stopped" of the stages it halted.
        let mut first: Option<Error> = None;
        let mut done = Vec::with_capacity(p);
        for r in results {
            match r {
                Ok(v) => done.push(v),
                Err(e) => {
                    let halted = matches!(&e, Error::Setting(s) if s == STOPPED);
                    if first.is_none() || !halted && first_is_halt(&first) {
                        first = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        let mut per_mb: Vec<Vec<Option<Arc<Tensor>>>> = vec![vec![None; n_out]; m];
        let mut means: Vec<Vec<f32>> = vec![Vec::new(); summed.len()];
        let mut stats = PipelineStats {
            schedule,
            microbatches: m,
            step_ms,
            ..Default::default()
        };
        for d in done {
            for (mb, i, t) in d.kept {
                per_mb[mb][i] = Some(t);
            }
            for (i, v) in d.sums {
                means[i - summed.start] = v;
            }
            stats.stages.push(d.stats);
        }
        let slowest = stats
            .stages
            .iter()
            .map(|s| s.forward_ms + s.backward_ms)
            .fold(0.0, f64::max);
        stats.bound_ms = (m + p - 1) as f64 * slowest;
        Ok(StepOut {
            per_mb,
            means,
            stats,
        })
    }
}

const STOPPED: &str = "stopped: another pipeline stage failed";

fn first_is_halt(e: &Option<Error>) -> bool {
    matches!(e, Some(Error::Setting(s)) if s == STOPPED)
}

type Msg = (Pass, usize, ValueId, Arc<Tensor>);

struct StageResult {
    kept: Vec<(usize, usize, Arc<Tensor>)>,
    sums: Vec<(usize, Vec<f32>)>,
    stats: StageStats,
}

/// Values waiting for a phase, per (pass, micro-batch), with the stash's
/// accounting (the backward pass's share).
#[derive(Default)]
struct Held {
    slots: HashMap<(Pass, usize), HashMap<ValueId, Arc<Tensor>>>,
    mb_bytes: HashMap<usize, u64>,
    bytes: u64,
    peak_bytes: u64,
    peak_in_flight: usize,
    max_mb_bytes: u64,
}

impl Held {
    fn put(&mut self, pass: Pass, mb: usize, v: ValueId, t: Arc<Tensor>) {
        if pass == Pass::Backward {
            let b = t.byte_len() as u64;
            self.bytes += b;
            let e = self.mb_bytes.entry(mb).or_insert(0);
            *e += b;
            self.max_mb_bytes = self.max_mb_bytes.max(*e);
            self.peak_bytes = self.peak_bytes.max(self.bytes);
            self.peak_in_flight = self.peak_in_flight.max(self.mb_bytes.len());
        }
        self.slots.entry((pass, mb)).or_default().insert(v, t);
    }

    fn has(&self, pass: Pass, mb: usize, v: ValueId) -> bool {
        self.slots
            .get(&(pass, mb))
            .is_some_and(|s| s.contains_key(&v))
    }

    /// Takes the slot of (pass, mb): the stash of a backward phase is
    /// freed here.
    fn take(&mut self, pass: Pass, mb: usize) -> HashMap<ValueId, Arc<Tensor>> {
        if pass == Pass::Backward {
            if let Some(b) = self.mb_bytes.remove(&mb) {
                self.bytes -= b;
            }
        }
        self.slots.remove(&(pass, mb)).unwrap_or_default()
    }
}

/// What a stage's thread reads and sends through.
struct StageIo<'a> {
    feeds: &'a [Vec<Arc<Tensor>>],
    per_mb: usize,
    rx: &'a crossbeam::channel::Receiver<Msg>,
    senders: &'a [crossbeam::channel::Sender<Msg>],
    failed: &'a AtomicBool,
}

/// The stash key of per-micro-batch input `i` kept for the backward pass
/// (out of the range of value ids).
fn feed_key(i: usize) -> ValueId {
    ValueId(usize::MAX - i)
}

fn run_stage(
    st: &mut StageRt,
    s: usize,
    items: &[(Pass, usize)],
    io: &StageIo,
    summed: std::ops::Range<usize>,
) -> Result<StageResult, Error> {
    let StageIo {
        feeds,
        per_mb,
        rx,
        senders,
        failed,
    } = *io;
    let m = feeds.len();
    let mut held = Held::default();
    let mut kept = Vec::new();
    let mut sums: HashMap<usize, Vec<f32>> = HashMap::new();
    let mut time = [0.0f64; 2];
    // Per-micro-batch inputs the backward phase reads: kept from the
    // forward item of the micro-batch until its backward item.
    let bwd_feeds: Vec<usize> = st
        .bwd
        .inputs
        .iter()
        .filter_map(|src| match src {
            Src::Feed(i) if *i < per_mb => Some(*i),
            _ => None,
        })
        .collect();
    for &(pass, mb) in items {
        if pass == Pass::Forward {
            for &i in &bwd_feeds {
                let t = feeds[mb]
                    .get(i)
                    .cloned()
                    .ok_or_else(|| err(format!("micro-batch {mb} lacks input {i}")))?;
                held.put(Pass::Backward, mb, feed_key(i), t);
            }
        }
        let phase = match pass {
            Pass::Forward => &mut st.fwd,
            Pass::Backward => &mut st.bwd,
        };
        let Some(session) = phase.session.as_mut() else {
            continue;
        };
        // Wait for the inputs other stages send.
        loop {
            let ready = phase.inputs.iter().all(|src| match src {
                Src::Feed(_) => true,
                Src::Value(v) => held.has(pass, mb, *v),
            });
            if ready {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok((ps, k, v, t)) => held.put(ps, k, v, t),
                Err(crossbeam::channel::RecvTimeoutError::Timeout) => {
                    if failed.load(Ordering::SeqCst) {
                        return Err(err(STOPPED));
                    }
                }
                Err(crossbeam::channel::RecvTimeoutError::Disconnected) => {
                    return Err(err(STOPPED))
                }
            }
        }
        let mut slot = held.take(pass, mb);
        let mut ins = Vec::with_capacity(phase.inputs.len());
        for src in &phase.inputs {
            ins.push(match src {
                Src::Feed(i) if pass == Pass::Backward && *i < per_mb => slot
                    .remove(&feed_key(*i))
                    .ok_or_else(|| err("a stashed input went missing"))?,
                Src::Feed(i) => feeds[mb]
                    .get(*i)
                    .cloned()
                    .ok_or_else(|| err(format!("micro-batch {mb} lacks input {i}")))?,
                Src::Value(v) => slot
                    .remove(v)
                    .ok_or_else(|| err("a stage input went missing"))?,
            });
        }
        let t0 = Instant::now();
        let outs = session.run(ins).map_err(|e| {
            err(format!(
                "stage {s} on {}, {:?} pass of micro-batch {mb}: {e}",
                st.device, pass
            ))
        })?;
        time[(pass == Pass::Backward) as usize] += t0.elapsed().as_secs_f64() * 1e3;
        for (k, t) in outs.into_iter().enumerate() {
            let v = phase.outputs[k];
            for &(to, tp) in &phase.routes[k] {
                if to == s {
                    held.put(tp, mb, v, t.clone());
                } else if senders[to].send((tp, mb, v, t.clone())).is_err() {
                    return Err(err(STOPPED));
                }
            }
            for &i in &phase.graph_out[k] {
                if summed.contains(&i) {
                    let acc = sums.entry(i).or_insert_with(|| vec![0.0; t.len()]);
                    let x = t.to_f32_vec();
                    if x.len() != acc.len() {
                        return Err(err("a gradient changed size between micro-batches"));
                    }
                    for (a, b) in acc.iter_mut().zip(x) {
                        *a += b / m as f32;
                    }
                } else {
                    kept.push((mb, i, t.clone()));
                }
            }
        }
    }
    let n = m.max(1) as f64;
    Ok(StageResult {
        kept,
        sums: sums.into_iter().collect(),
        stats: StageStats {
            device: st.device.clone(),
            forward_ms: time[0] / n,
            backward_ms: time[1] / n,
            peak_stash_bytes: held.peak_bytes,
            peak_in_flight: held.peak_in_flight,
            microbatch_stash_bytes: held.max_mb_bytes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_the_textbook_ones() {
        use Pass::{Backward as B, Forward as F};
        assert_eq!(
            order(Schedule::Gpipe, 2, 0, 2),
            vec![(F, 0), (F, 1), (B, 0), (B, 1)]
        );
        // 1F1B, p = 3, m = 4: stage 0 warms up with 2 forwards.
        assert_eq!(
            order(Schedule::OneFOneB, 3, 0, 4),
            vec![
                (F, 0),
                (F, 1),
                (F, 2),
                (B, 0),
                (F, 3),
                (B, 1),
                (B, 2),
                (B, 3)
            ]
        );
        // The last stage alternates from the start.
        assert_eq!(
            order(Schedule::OneFOneB, 3, 2, 3),
            vec![(F, 0), (B, 0), (F, 1), (B, 1), (F, 2), (B, 2)]
        );
        // Fewer micro-batches than the warm-up.
        assert_eq!(
            order(Schedule::OneFOneB, 4, 0, 2),
            vec![(F, 0), (F, 1), (B, 0), (B, 1)]
        );
    }
}
