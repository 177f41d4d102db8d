//! [`Workload`]: what the simulator executes, and the builders that make one
//! from a plan and its graph, from a plan alone, or from a research DAG and
//! a list schedule.

use crate::cluster::ClusterSpec;
use crate::cost::{CostModel, GraphCosts};
use crate::dag::TaskGraph;
use crate::heft::TaskSchedule;
use crate::plan::{Plan, PlanError, Schedule};
use hetflow_ops::Graph;
use std::collections::HashMap;

/// A unit of work pinned to a device: a node, a stage or a DAG task.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// Name in traces.
    pub name: String,
    /// Op type (or `stage`, `task`).
    pub op: String,
    /// Device index.
    pub device: usize,
    /// Forward time of one micro-batch.
    pub time: f64,
}

/// A value produced by one unit and read by others.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Name in traces.
    pub name: String,
    /// Producing unit.
    pub producer: usize,
    /// Readers (units).
    pub consumers: Vec<usize>,
    /// Size, bytes (memory, and copy time on links).
    pub bytes: f64,
    /// When set, a copy of this value to another device is a pure delay of
    /// this long instead of a copy on the links (research DAGs).
    pub delay: Option<f64>,
}

/// A directed link in the workload's time unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkInfo {
    /// Latency.
    pub latency: f64,
    /// Time per byte at full bandwidth.
    pub per_byte: f64,
    /// Identity of a shared link (bandwidth split between transfers).
    pub shared: Option<usize>,
}

/// A simulator input.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Device names.
    pub devices: Vec<String>,
    /// Units in a topological order.
    pub units: Vec<Unit>,
    /// Values.
    pub values: Vec<Value>,
    /// Links, `devices²` row-major (`from * p + to`); empty when every
    /// cross-device value has a `delay`.
    pub links: Vec<LinkInfo>,
    /// Bytes resident on each device for the whole run (constants).
    pub resident: Vec<f64>,
    /// Micro-batches.
    pub microbatches: usize,
    /// Buffers per edge (streaming).
    pub credits: usize,
    /// Streaming, GPipe or 1F1B.
    pub schedule: Schedule,
    /// Pipeline stages (unit lists, forward order) for the training
    /// schedules; each stage's units are on one device.
    pub stages: Vec<Vec<usize>>,
    /// Training schedules: each unit's backward time per micro-batch
    /// (the costed backward pass of a real training graph). Empty: twice
    /// the forward time.
    pub backward: Vec<f64>,
    /// A fixed per-device unit order (list schedules); empty: first come
    /// first served.
    pub order: Vec<Vec<usize>>,
    /// Name of the time unit.
    pub unit: String,
    /// Microseconds per time unit.
    pub us_per_unit: f64,
    /// Runtime cost added to every kernel and copy (actor dispatch and the
    /// message hop between threads), in the workload's unit; 0 by default.
    pub task_overhead: f64,
    /// Fixed cost of a run before the first task can start (feeding the
    /// inputs, waking the executors), in the workload's unit; 0 by default.
    pub run_overhead: f64,
    /// Data-parallel copies ([`crate::Plan::replicas`]): entry `r` maps each
    /// unit device to the device copy `r` uses (entry 0 the identity), and
    /// micro-batch `mb` runs on copy `mb % copies.len()`. Empty: one copy.
    pub copies: Vec<Vec<usize>>,
    /// Unit times on copy `r ≥ 1` (`copy_times[r - 1][unit]`), when its
    /// devices differ from copy 0's; empty: every copy takes `Unit::time`.
    pub copy_times: Vec<Vec<f64>>,
    /// Per device: the host it shares with others (an index) and the
    /// factor its kernels slow down by while another device of that host
    /// is computing ([`crate::cluster::DeviceSpec::contention`]). Empty:
    /// no contention.
    pub hosts: Vec<(usize, f64)>,
    /// Per device: true where its compute threads also run its transfers
    /// (no copy engine; [`crate::cluster::DeviceSpec::copy_engine`]).
    /// Empty: every device has a copy engine.
    pub shared_copy: Vec<bool>,
}

fn invalid(m: String) -> PlanError {
    PlanError::Invalid(m)
}

impl Workload {
    /// An empty workload on `devices` with times in `unit` (`us_per_unit`
    /// microseconds each), one micro-batch, streaming, 2 credits.
    pub fn new(devices: Vec<String>, unit: &str, us_per_unit: f64) -> Workload {
        let p = devices.len();
        Workload {
            devices,
            units: Vec::new(),
            values: Vec::new(),
            links: Vec::new(),
            resident: vec![0.0; p],
            microbatches: 1,
            credits: 2,
            schedule: Schedule::Streaming,
            stages: Vec::new(),
            backward: Vec::new(),
            order: Vec::new(),
            unit: unit.to_string(),
            us_per_unit,
            task_overhead: 0.0,
            run_overhead: 0.0,
            copies: Vec::new(),
            copy_times: Vec::new(),
            hosts: Vec::new(),
            shared_copy: Vec::new(),
        }
    }

    /// Host groups, contention factors and copy engines of the workload's
    /// devices, which are `cluster.devices[idx[i]]`.
    pub fn set_contention(&mut self, cluster: &ClusterSpec, idx: &[usize]) {
        self.shared_copy = idx
            .iter()
            .map(|&c| !cluster.devices[c].copy_engine)
            .collect();
        let mut hosts: Vec<&str> = Vec::new();
        self.hosts = idx
            .iter()
            .map(|&c| {
                let d = &cluster.devices[c];
                let h = match hosts.iter().position(|h| *h == d.host) {
                    Some(h) => h,
                    None => {
                        hosts.push(&d.host);
                        hosts.len() - 1
                    }
                };
                (h, d.contention)
            })
            .collect();
    }

    /// The device that unit device `d` is on for micro-batch `mb`.
    pub fn device_of(&self, mb: usize, d: usize) -> usize {
        if self.copies.is_empty() {
            d
        } else {
            self.copies[mb % self.copies.len()][d]
        }
    }

    /// Time of unit `u` for micro-batch `mb` (on that micro-batch's copy).
    pub fn unit_time(&self, mb: usize, u: usize) -> f64 {
        let r = if self.copies.is_empty() {
            0
        } else {
            mb % self.copies.len()
        };
        match r {
            0 => self.units[u].time,
            r => self
                .copy_times
                .get(r - 1)
                .and_then(|t| t.get(u))
                .copied()
                .unwrap_or(self.units[u].time),
        }
    }

    /// Adds a unit; returns its index.
    pub fn add_unit(&mut self, name: &str, op: &str, device: usize, time: f64) -> usize {
        self.units.push(Unit {
            name: name.to_string(),
            op: op.to_string(),
            device,
            time,
        });
        self.units.len() - 1
    }

    /// Adds a value; returns its index.
    pub fn add_value(
        &mut self,
        name: &str,
        producer: usize,
        consumers: Vec<usize>,
        bytes: f64,
        delay: Option<f64>,
    ) -> usize {
        self.values.push(Value {
            name: name.to_string(),
            producer,
            consumers,
            bytes,
            delay,
        });
        self.values.len() - 1
    }

    /// Sets the links from a cluster (`names` are the cluster's names of
    /// this workload's devices), in `unit`s where one second is
    /// `1e6 / us_per_unit` units.
    pub fn set_links(&mut self, cluster: &ClusterSpec) -> Result<(), PlanError> {
        let idx = resolve(cluster, &self.devices)?;
        self.set_links_of(cluster, &idx)
    }

    /// [`Workload::set_links`] for devices that are `cluster.devices[idx[i]]`.
    fn set_links_of(&mut self, cluster: &ClusterSpec, idx: &[usize]) -> Result<(), PlanError> {
        let per_s = 1e6 / self.us_per_unit;
        let p = self.devices.len();
        let mut shared_ids: HashMap<String, usize> = HashMap::new();
        let mut links = vec![
            LinkInfo {
                latency: 0.0,
                per_byte: 0.0,
                shared: None,
            };
            p * p
        ];
        for a in 0..p {
            for b in 0..p {
                if a == b {
                    continue;
                }
                let (ca, cb) = (idx[a], idx[b]);
                if ca == cb {
                    // Two workload devices for one cluster device (the
                    // root's io thread beside its device): free.
                    continue;
                }
                let l = cluster.link(ca, cb).ok_or_else(|| {
                    invalid(format!(
                        "no link between '{}' and '{}' in the cluster spec",
                        self.devices[a], self.devices[b]
                    ))
                })?;
                let shared = if l.shared {
                    let (da, db) = (&cluster.devices[ca], &cluster.devices[cb]);
                    let (x, y) = if da.name < db.name {
                        (da, db)
                    } else {
                        (db, da)
                    };
                    let explicit = cluster.links.iter().position(|k| {
                        (k.from == x.name && k.to == y.name) || (k.from == y.name && k.to == x.name)
                    });
                    let key = match explicit {
                        Some(i) => format!("link#{i}"),
                        None if da.host == db.host => format!("host:{}", da.host),
                        None => {
                            let (h1, h2) = if da.host < db.host {
                                (&da.host, &db.host)
                            } else {
                                (&db.host, &da.host)
                            };
                            format!("hosts:{h1}|{h2}")
                        }
                    };
                    let n = shared_ids.len();
                    Some(*shared_ids.entry(key).or_insert(n))
                } else {
                    None
                };
                links[a * p + b] = LinkInfo {
                    latency: l.latency_us * 1e-6 * per_s,
                    per_byte: per_s / (l.bandwidth_gbps * 1e9),
                    shared,
                };
            }
        }
        self.links = links;
        Ok(())
    }

    /// A plan of `g` on `cluster`, node by node, times in ms: each node's
    /// time from the cost model on its device, each value's size from
    /// `costs`, the plan's micro-batches, credits and schedule.
    pub fn from_plan(
        g: &Graph,
        plan: &Plan,
        costs: &GraphCosts,
        cluster: &ClusterSpec,
    ) -> Result<Workload, PlanError> {
        plan.validate(g)?;
        if !plan.replicas.is_empty() && plan.schedule != Schedule::Streaming {
            return Err(invalid(
                "replicas are simulated for streaming plans only, not with gpipe/1f1b".into(),
            ));
        }
        let idx = resolve(cluster, &plan.devices)?;
        let model = CostModel::new(cluster);
        // Devices of every copy: copy 0's first, then each new name once.
        let mut names = plan.devices.clone();
        let mut copies: Vec<Vec<usize>> = Vec::new();
        for r in 0..plan.copies() {
            let map = plan
                .copy_devices(r)
                .iter()
                .map(|n| match names.iter().position(|x| x == n) {
                    Some(i) => i,
                    None => {
                        names.push(n.clone());
                        names.len() - 1
                    }
                })
                .collect();
            copies.push(map);
        }
        let all_idx = resolve(cluster, &names)?;
        let mut w = Workload::new(names, "ms", 1e3);
        for (ni, n) in g.nodes.iter().enumerate() {
            let d = plan.placement[ni];
            let t = model.op_time(idx[d], &costs.nodes[ni]);
            if !t.is_finite() {
                return Err(invalid(format!(
                    "node '{}' ({}) is placed on '{}', which cannot run it",
                    n.name,
                    n.op.name(),
                    plan.devices[d]
                )));
            }
            w.add_unit(&n.name, n.op.name(), d, t * 1e3);
        }
        if copies.len() > 1 {
            for map in &copies[1..] {
                let mut times = Vec::with_capacity(g.nodes.len());
                for (ni, n) in g.nodes.iter().enumerate() {
                    let d = map[plan.placement[ni]];
                    let t = model.op_time(all_idx[d], &costs.nodes[ni]);
                    if !t.is_finite() {
                        return Err(invalid(format!(
                            "node '{}' ({}) is placed on '{}' in a replica, which cannot run it",
                            n.name,
                            n.op.name(),
                            w.devices[d]
                        )));
                    }
                    times.push(t * 1e3);
                }
                w.copy_times.push(times);
            }
            w.copies = copies;
        }
        let producers = g.producers();
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); g.values.len()];
        let mut consts: std::collections::BTreeSet<(usize, usize)> = Default::default();
        for (ni, n) in g.nodes.iter().enumerate() {
            for v in n.inputs.iter().flatten() {
                if g.constants.contains_key(v) {
                    // Once per device, whichever copies use it.
                    for r in 0..w.copies.len().max(1) {
                        let d = w.device_of(r, plan.placement[ni]);
                        if consts.insert((v.0, d)) {
                            w.resident[d] += costs.value_bytes[v.0];
                        }
                    }
                } else if producers[v.0].is_some() && !readers[v.0].contains(&ni) {
                    readers[v.0].push(ni);
                }
            }
        }
        let mut value_of: HashMap<usize, usize> = HashMap::new();
        for (vi, p) in producers.iter().enumerate() {
            if let Some(p) = p {
                let name = g.values[vi].name.clone();
                let v = w.add_value(
                    &name,
                    p.0,
                    std::mem::take(&mut readers[vi]),
                    costs.value_bytes[vi],
                    None,
                );
                value_of.insert(vi, v);
            }
        }
        let mut all_idx = all_idx;
        if w.copies.is_empty() {
            if let Some(io) = root_io(g, costs, cluster, &idx, &value_of, &mut w) {
                all_idx.push(io);
            }
        }
        w.set_links_of(cluster, &all_idx)?;
        w.set_contention(cluster, &all_idx);
        w.microbatches = plan.microbatches.max(1);
        w.credits = plan.credits.max(1);
        w.schedule = plan.schedule;
        w.stages = plan.stages.iter().map(|s| s.nodes.clone()).collect();
        Ok(w)
    }

    /// A plan without its graph, stage by stage, times in ms: a stage takes
    /// its `predicted_ms` (or its flops at the device's f32 peak), and each
    /// transfer goes from the last stage on its source device before the
    /// first later stage on its destination. Coarser than
    /// [`Workload::from_plan`]; give the model when you have it.
    pub fn from_plan_stages(plan: &Plan, cluster: &ClusterSpec) -> Result<Workload, PlanError> {
        if !plan.replicas.is_empty() {
            return Err(invalid(
                "a plan with replicas is simulated node by node: give the model too".into(),
            ));
        }
        let idx = resolve(cluster, &plan.devices)?;
        if plan.stages.is_empty() {
            return Err(invalid("plan has no stages".into()));
        }
        let mut w = Workload::new(plan.devices.clone(), "ms", 1e3);
        for (si, s) in plan.stages.iter().enumerate() {
            if s.device >= plan.devices.len() {
                return Err(invalid(format!(
                    "stage {si} is on device #{}, but the plan lists {} devices",
                    s.device,
                    plan.devices.len()
                )));
            }
            let t = match s.predicted_ms {
                Some(ms) => ms,
                None => {
                    s.flops / cluster.devices[idx[s.device]].peak_flops(None) * 1e3
                        + cluster.devices[idx[s.device]].launch_us * 1e-3 * s.nodes.len() as f64
                }
            };
            w.add_unit(&format!("stage{si}"), "stage", s.device, t);
        }
        for t in &plan.transfers {
            let consumer_after =
                |p: usize| (p + 1..plan.stages.len()).find(|&c| plan.stages[c].device == t.to);
            let pair = (0..plan.stages.len())
                .rev()
                .filter(|&p| plan.stages[p].device == t.from)
                .find_map(|p| consumer_after(p).map(|c| (p, c)));
            let (p, c) = pair.ok_or_else(|| {
                invalid(format!(
                    "transfer of '{}' from '{}' to '{}' has no stage pair in that order",
                    t.name,
                    plan.devices.get(t.from).map(String::as_str).unwrap_or("?"),
                    plan.devices.get(t.to).map(String::as_str).unwrap_or("?")
                ))
            })?;
            w.add_value(&t.name, p, vec![c], t.bytes.unwrap_or(0) as f64, None);
        }
        // Consecutive stages depend on each other even without a transfer
        // (same device): keep the pipeline order.
        for s in 1..plan.stages.len() {
            if plan.stages[s].device == plan.stages[s - 1].device {
                w.add_value(&format!("stage{}", s - 1), s - 1, vec![s], 0.0, None);
            }
        }
        w.set_links(cluster)?;
        w.microbatches = plan.microbatches.max(1);
        w.credits = plan.credits.max(1);
        w.schedule = plan.schedule;
        w.stages = (0..plan.stages.len()).map(|s| vec![s]).collect();
        Ok(w)
    }

    /// A research DAG under a list schedule: each task on its scheduled
    /// device, devices run tasks in order of scheduled start, edges between
    /// devices are delays of the DAG's link model (time units as the DAG).
    pub fn from_task_graph(g: &TaskGraph, s: &TaskSchedule) -> Result<Workload, PlanError> {
        if s.device.len() != g.len() {
            return Err(invalid(format!(
                "schedule places {} tasks but the DAG has {}",
                s.device.len(),
                g.len()
            )));
        }
        let p = g.devices.len();
        let mut w = Workload::new(g.devices.clone(), "", 1.0);
        for t in 0..g.len() {
            let d = s.device[t];
            let c = g.cost[t].get(d).copied().unwrap_or(f64::INFINITY);
            if d >= p || !c.is_finite() {
                return Err(invalid(format!(
                    "task '{}' is scheduled on a device that cannot run it",
                    g.names[t]
                )));
            }
            w.add_unit(&g.names[t], "task", d, c);
        }
        for e in &g.edges {
            let delay = g.links.comm(e.data, s.device[e.from], s.device[e.to]);
            let name = format!("{}->{}", g.names[e.from], g.names[e.to]);
            w.add_value(&name, e.from, vec![e.to], 0.0, Some(delay));
        }
        let mut order: Vec<Vec<usize>> = vec![Vec::new(); p];
        let mut by_start: Vec<usize> = (0..g.len()).collect();
        by_start.sort_by(|&a, &b| s.start[a].total_cmp(&s.start[b]).then(a.cmp(&b)));
        for t in by_start {
            order[s.device[t]].push(t);
        }
        w.order = order;
        Ok(w)
    }

    /// Checks indices and numbers before a run.
    pub(crate) fn check(&self) -> Result<(), PlanError> {
        let p = self.devices.len();
        if p == 0 {
            return Err(invalid("workload has no devices".into()));
        }
        if !(self.task_overhead.is_finite() && self.run_overhead.is_finite())
            || self.task_overhead < 0.0
            || self.run_overhead < 0.0
        {
            return Err(invalid("overheads must be finite and >= 0".into()));
        }
        if self.microbatches == 0 || self.credits == 0 {
            return Err(invalid(
                "micro-batches and credits must be at least 1".into(),
            ));
        }
        for u in &self.units {
            if u.device >= p {
                return Err(invalid(format!(
                    "unit '{}' is on unknown device #{}",
                    u.name, u.device
                )));
            }
            if !(u.time.is_finite() && u.time >= 0.0) {
                return Err(invalid(format!("unit '{}' has time {}", u.name, u.time)));
            }
        }
        let n = self.units.len();
        for v in &self.values {
            if v.producer >= n || v.consumers.iter().any(|&c| c >= n) {
                return Err(invalid(format!(
                    "value '{}' names a unit that does not exist",
                    v.name
                )));
            }
            if !(v.bytes.is_finite() && v.bytes >= 0.0)
                || v.delay.is_some_and(|d| !(d.is_finite() && d >= 0.0))
            {
                return Err(invalid(format!(
                    "value '{}' has a bad size or delay",
                    v.name
                )));
            }
            let crosses = v
                .consumers
                .iter()
                .any(|&c| self.units[c].device != self.units[v.producer].device);
            if crosses && v.delay.is_none() && self.links.len() != p * p {
                return Err(invalid(format!(
                    "value '{}' crosses devices but the workload has no links",
                    v.name
                )));
            }
        }
        if self.schedule != Schedule::Streaming {
            if !self.backward.is_empty() && self.backward.len() != self.units.len() {
                return Err(invalid(format!(
                    "{} backward times for {} units",
                    self.backward.len(),
                    self.units.len()
                )));
            }
            if self.backward.iter().any(|t| !t.is_finite() || *t < 0.0) {
                return Err(invalid("a backward time is negative or not finite".into()));
            }
            if self.stages.is_empty() {
                return Err(invalid("a training schedule needs pipeline stages".into()));
            }
            for (si, s) in self.stages.iter().enumerate() {
                let d = s.first().map(|&u| self.units.get(u).map(|x| x.device));
                if s.iter()
                    .any(|&u| u >= n || Some(Some(self.units[u].device)) != d)
                {
                    return Err(invalid(format!(
                        "stage {si} is empty, names no unit or spans devices"
                    )));
                }
            }
        }
        for (d, o) in self.order.iter().enumerate() {
            if o.iter().any(|&u| u >= n || self.units[u].device != d) {
                return Err(invalid(format!(
                    "device order of #{d} names a unit of another device"
                )));
            }
        }
        Ok(())
    }
}

/// Cluster index of each named device; errors name a missing one.
/// A plan across hosts reads its inputs at the root (rank 0) and returns
/// its outputs there ([`ClusterSpec::root_device`]). When a device on
/// another host reads a graph input or makes a graph output, this adds a
/// device for the root's input/output thread (`ROOT io`, on the root
/// device's host, with the root device's links) with a zero-time unit per
/// such input (its value goes to the readers off the root's host) and per
/// such output (a reader of the output's value), so those transfers cost
/// their link time as the runtime's do. Returns the cluster device the new
/// device stands for. Readers on the root's host get inputs at no cost,
/// as in a single-host plan.
fn root_io(
    g: &Graph,
    costs: &GraphCosts,
    cluster: &ClusterSpec,
    idx: &[usize],
    value_of: &HashMap<usize, usize>,
    w: &mut Workload,
) -> Option<usize> {
    let r = cluster.root_device()?;
    let remote =
        |unit: usize| cluster.devices[idx[w.units[unit].device]].host != cluster.devices[r].host;
    let consumers = g.consumers();
    let mut inputs: Vec<(usize, Vec<usize>)> = Vec::new();
    for v in &g.inputs {
        if g.constants.contains_key(v) {
            continue;
        }
        let readers: Vec<usize> = consumers[v.0]
            .iter()
            .map(|c| c.0)
            .filter(|&ni| remote(ni))
            .collect();
        if !readers.is_empty() {
            inputs.push((v.0, readers));
        }
    }
    let producers = g.producers();
    let outputs: Vec<usize> = g
        .outputs
        .iter()
        .filter_map(|o| Some((o.0, producers[o.0]?)))
        .filter(|&(_, p)| remote(p.0))
        .map(|(o, _)| o)
        .collect();
    if inputs.is_empty() && outputs.is_empty() {
        return None;
    }
    let d = w.devices.len();
    w.devices.push(format!("{} io", cluster.devices[r].host));
    w.resident.push(0.0);
    for (vi, readers) in inputs {
        let name = &g.values[vi].name;
        let u = w.add_unit(&format!("input {name}"), "Input", d, 0.0);
        w.add_value(name, u, readers, costs.value_bytes[vi], None);
    }
    for vi in outputs {
        let u = w.add_unit(&format!("output {}", g.values[vi].name), "Output", d, 0.0);
        if let Some(&v) = value_of.get(&vi) {
            w.values[v].consumers.push(u);
        }
    }
    Some(r)
}

fn resolve(cluster: &ClusterSpec, names: &[String]) -> Result<Vec<usize>, PlanError> {
    names
        .iter()
        .map(|n| {
            cluster.device_index(n).ok_or_else(|| {
                invalid(format!(
                    "device '{n}' is not in the cluster spec (it has: {})",
                    cluster
                        .devices
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect()
}
