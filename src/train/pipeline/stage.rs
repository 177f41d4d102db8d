//! One pipeline stage at run time: its two compiled phases, the order in
//! which it runs them, its stash and the thread that walks its schedule.

use super::stages::err;
use crate::train::graph::TrainGraph;
use crate::{Error, Model, Session, SessionBuilder};
use hetflow_ops::graph::ValueId;
use hetflow_ops::Tensor;
use hetflow_scheduler::plan::Schedule;
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
pub(super) enum Src {
    /// The training graph's input of this index (fed per micro-batch).
    Feed(usize),
    /// A value another phase produces.
    Value(ValueId),
}

/// One half of a stage, compiled.
pub(super) struct Phase {
    /// None when the phase has no node.
    pub(super) session: Option<Session>,
    pub(super) inputs: Vec<Src>,
    pub(super) outputs: Vec<ValueId>,
    /// Per output: the other phases reading it, as (stage, pass).
    pub(super) routes: Vec<Vec<(usize, Pass)>>,
    /// Per output: its indices among the training graph's outputs.
    pub(super) graph_out: Vec<Vec<usize>>,
}

pub(super) struct StageRt {
    pub(super) device: String,
    pub(super) fwd: Phase,
    pub(super) bwd: Phase,
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

/// The phase of `nodes`, with its inputs and outputs (values read or
/// kept outside it), compiled on `device`.
#[allow(clippy::too_many_arguments)]
pub(super) fn phase(
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

pub(super) const STOPPED: &str = "stopped: another pipeline stage failed";

pub(super) fn first_is_halt(e: &Option<Error>) -> bool {
    matches!(e, Some(Error::Setting(s)) if s == STOPPED)
}

pub(super) type Msg = (Pass, usize, ValueId, Arc<Tensor>);

pub(super) struct StageResult {
    pub(super) kept: Vec<(usize, usize, Arc<Tensor>)>,
    pub(super) sums: Vec<(usize, Vec<f32>)>,
    pub(super) stats: StageStats,
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
pub(super) struct StageIo<'a> {
    pub(super) feeds: &'a [Vec<Arc<Tensor>>],
    pub(super) per_mb: usize,
    pub(super) rx: &'a crossbeam::channel::Receiver<Msg>,
    pub(super) senders: &'a [crossbeam::channel::Sender<Msg>],
    pub(super) failed: &'a AtomicBool,
}

/// The stash key of per-micro-batch input `i` kept for the backward pass
/// (out of the range of value ids).
fn feed_key(i: usize) -> ValueId {
    ValueId(usize::MAX - i)
}

pub(super) fn run_stage(
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
