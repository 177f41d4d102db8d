//! Task graphs for list scheduling: tasks with a cost per device, edges with
//! a data size, and a link model that turns data into time.
//!
//! The same [`TaskGraph`] comes from an ONNX graph and a [`ClusterSpec`]
//! ([`TaskGraph::from_graph`]: costs from the cost model, edge data in
//! bytes) or from the JSON format of scheduling research
//! ([`TaskGraph::from_json`]):
//!
//! ```json
//! {"tasks": [{"id": "T1", "cost": {"P1": 14, "P2": 16}}, ...],
//!  "edges": [{"from": "T1", "to": "T2", "comm": 18}, ...]}
//! ```
//!
//! where a task's cost is given per device and an edge's `comm` is the time
//! paid when its ends are on different devices (the convention of
//! Topcuoglu, Hariri and Wu, IEEE TPDS 2002). With a cluster, a task may
//! instead give `flops` and `bytes` (priced by the cost model) and an edge
//! `bytes` (priced by the link between the two devices).

use crate::cluster::ClusterSpec;
use crate::cost::{CostModel, GraphCosts};
use crate::plan::PlanError;
use hetflow_ops::cost::{Cost, OpClass};
use hetflow_ops::Graph;
use std::collections::{BTreeMap, HashMap};

/// An edge: `data` is bytes (cluster links) or time units (uniform links).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskEdge {
    /// Producer task.
    pub from: usize,
    /// Consumer task.
    pub to: usize,
    /// Amount of data.
    pub data: f64,
}

/// Communication cost between devices: `latency[a][b] + data * inv_bw[a][b]`
/// for `a != b`, zero on one device.
#[derive(Clone, Debug, PartialEq)]
pub struct Links {
    p: usize,
    latency: Vec<f64>,
    inv_bw: Vec<f64>,
}

impl Links {
    /// Links where an edge's data is already the time it costs.
    pub fn uniform(p: usize) -> Links {
        Links {
            p,
            latency: vec![0.0; p * p],
            inv_bw: vec![1.0; p * p],
        }
    }
    /// The links of a cluster (seconds per byte).
    pub fn from_cluster(c: &ClusterSpec) -> Links {
        let p = c.devices.len();
        let mut l = Links {
            p,
            latency: vec![0.0; p * p],
            inv_bw: vec![0.0; p * p],
        };
        for a in 0..p {
            for b in 0..p {
                if a == b {
                    continue;
                }
                match c.link(a, b) {
                    Some(k) => {
                        l.latency[a * p + b] = k.latency_us * 1e-6;
                        l.inv_bw[a * p + b] = 1.0 / (k.bandwidth_gbps * 1e9);
                    }
                    None => {
                        l.latency[a * p + b] = f64::INFINITY;
                    }
                }
            }
        }
        l
    }
    /// Devices.
    pub fn devices(&self) -> usize {
        self.p
    }
    /// Time to move `data` from `a` to `b`.
    #[inline]
    pub fn comm(&self, data: f64, a: usize, b: usize) -> f64 {
        if a == b {
            0.0
        } else {
            self.latency[a * self.p + b] + data * self.inv_bw[a * self.p + b]
        }
    }
    /// Mean over ordered pairs of distinct devices (0 with one device).
    pub fn mean_comm(&self, data: f64) -> f64 {
        if self.p < 2 {
            return 0.0;
        }
        let mut s = 0.0;
        for a in 0..self.p {
            for b in 0..self.p {
                if a != b {
                    s += self.comm(data, a, b);
                }
            }
        }
        s / (self.p * (self.p - 1)) as f64
    }
    /// Per-device-pair mean latency and inverse bandwidth, so that
    /// `mean_comm(x) = a + b x` is O(1) (it is linear in the data).
    pub fn mean_coeffs(&self) -> (f64, f64) {
        (
            self.mean_comm(0.0),
            self.mean_comm(1.0) - self.mean_comm(0.0),
        )
    }
}

/// A DAG of tasks with a cost per (task, device).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskGraph {
    /// Task names.
    pub names: Vec<String>,
    /// Device names.
    pub devices: Vec<String>,
    /// `cost[t][d]`: time of task `t` on device `d` (infinite: cannot run).
    pub cost: Vec<Vec<f64>>,
    /// Edges.
    pub edges: Vec<TaskEdge>,
    /// How edge data becomes time.
    pub links: Links,
}

impl TaskGraph {
    /// Tasks.
    pub fn len(&self) -> usize {
        self.names.len()
    }
    /// No tasks.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Checks sizes, costs and acyclicity; returns a topological order.
    pub fn topo_order(&self) -> Result<Vec<usize>, PlanError> {
        let n = self.len();
        let p = self.devices.len();
        if p == 0 {
            return Err(PlanError::Input("task graph has no devices".into()));
        }
        for (t, c) in self.cost.iter().enumerate() {
            if c.len() != p {
                return Err(PlanError::Input(format!(
                    "task '{}' has {} costs for {p} devices",
                    self.names[t],
                    c.len()
                )));
            }
            if c.iter().any(|x| x.is_nan() || *x < 0.0) {
                return Err(PlanError::Input(format!(
                    "task '{}' has a negative or NaN cost",
                    self.names[t]
                )));
            }
            if c.iter().all(|x| x.is_infinite()) {
                return Err(PlanError::Input(format!(
                    "task '{}' can run on no device",
                    self.names[t]
                )));
            }
        }
        let mut indeg = vec![0usize; n];
        let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
        for e in &self.edges {
            if e.from >= n || e.to >= n {
                return Err(PlanError::Input(
                    "edge names a task that does not exist".into(),
                ));
            }
            if e.data.is_nan() || e.data < 0.0 {
                return Err(PlanError::Input(format!(
                    "edge {} -> {} has negative or NaN data",
                    self.names[e.from], self.names[e.to]
                )));
            }
            indeg[e.to] += 1;
            succ[e.from].push(e.to);
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
            .filter(|&t| indeg[t] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(t)) = ready.pop() {
            order.push(t);
            for &s in &succ[t] {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    ready.push(std::cmp::Reverse(s));
                }
            }
        }
        if order.len() != n {
            let stuck = (0..n).find(|&t| indeg[t] > 0).unwrap_or(0);
            return Err(PlanError::Input(format!(
                "task graph has a cycle through '{}'",
                self.names[stuck]
            )));
        }
        Ok(order)
    }

    /// Predecessors of each task: (task, edge data).
    pub fn preds(&self) -> Vec<Vec<(usize, f64)>> {
        let mut p = vec![Vec::new(); self.len()];
        for e in &self.edges {
            p[e.to].push((e.from, e.data));
        }
        p
    }

    /// Successors of each task: (task, edge data).
    pub fn succs(&self) -> Vec<Vec<(usize, f64)>> {
        let mut s = vec![Vec::new(); self.len()];
        for e in &self.edges {
            s[e.from].push((e.to, e.data));
        }
        s
    }

    /// The task graph of an ONNX graph on a cluster: one task per node,
    /// costs from the cost model, one edge per (producer, consumer) pair
    /// with the bytes of the values it carries.
    pub fn from_graph(g: &Graph, costs: &GraphCosts, cluster: &ClusterSpec) -> TaskGraph {
        let m = CostModel::new(cluster);
        let p = cluster.devices.len();
        let cost = costs
            .nodes
            .iter()
            .map(|nc| (0..p).map(|d| m.op_time(d, nc)).collect())
            .collect();
        let producers = g.producers();
        let mut data: BTreeMap<(usize, usize), f64> = BTreeMap::new();
        for (ni, n) in g.nodes.iter().enumerate() {
            for v in n.inputs.iter().flatten() {
                if let Some(pr) = producers[v.0] {
                    *data.entry((pr.0, ni)).or_default() += costs.value_bytes[v.0];
                }
            }
        }
        TaskGraph {
            names: g.nodes.iter().map(|n| n.name.clone()).collect(),
            devices: cluster.devices.iter().map(|d| d.name.clone()).collect(),
            cost,
            edges: data
                .into_iter()
                .map(|((from, to), data)| TaskEdge { from, to, data })
                .collect(),
            links: Links::from_cluster(cluster),
        }
    }

    /// Parses the JSON DAG format (module docs). Without `cluster`, every
    /// task must give its cost per device and every edge `comm`; devices
    /// are the union of the names tasks use, in order of appearance.
    pub fn from_json(s: &str, cluster: Option<&ClusterSpec>) -> Result<TaskGraph, PlanError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct JTask {
            id: String,
            #[serde(default)]
            cost: Option<BTreeMap<String, f64>>,
            #[serde(default)]
            flops: Option<f64>,
            #[serde(default)]
            bytes: Option<f64>,
            #[serde(default)]
            class: Option<OpClass>,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct JEdge {
            from: String,
            to: String,
            #[serde(default)]
            comm: Option<f64>,
            #[serde(default)]
            bytes: Option<f64>,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct JDag {
            tasks: Vec<JTask>,
            #[serde(default)]
            edges: Vec<JEdge>,
        }
        let bad = |m: String| PlanError::Input(format!("DAG: {m}"));
        let dag: JDag = serde_json::from_str(s).map_err(|e| bad(e.to_string()))?;
        let devices: Vec<String> = match cluster {
            Some(c) => c.devices.iter().map(|d| d.name.clone()).collect(),
            None => {
                // Every device a cost names, in natural order (P2 before P10).
                let mut ds: Vec<String> = dag
                    .tasks
                    .iter()
                    .flat_map(|t| t.cost.iter().flat_map(|c| c.keys().cloned()))
                    .collect();
                ds.sort_by_key(|a| natural_key(a));
                ds.dedup();
                ds
            }
        };
        if devices.is_empty() {
            return Err(bad(
                "no devices: give per-device costs or a cluster spec".into()
            ));
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, t) in dag.tasks.iter().enumerate() {
            if index.insert(t.id.as_str(), i).is_some() {
                return Err(bad(format!("task '{}' listed twice", t.id)));
            }
        }
        let model = cluster.map(CostModel::new);
        let mut cost = Vec::with_capacity(dag.tasks.len());
        for t in &dag.tasks {
            let row: Vec<f64> = match (&t.cost, t.flops.or(t.bytes)) {
                (Some(c), _) => {
                    for k in c.keys() {
                        if !devices.contains(k) {
                            return Err(bad(format!(
                                "task '{}' gives a cost on unknown device '{k}'",
                                t.id
                            )));
                        }
                    }
                    devices
                        .iter()
                        .map(|d| c.get(d).copied().unwrap_or(f64::INFINITY))
                        .collect()
                }
                (None, Some(_)) => {
                    let m = model.as_ref().ok_or_else(|| {
                        bad(format!(
                            "task '{}' gives flops/bytes, which need --cluster",
                            t.id
                        ))
                    })?;
                    let c = Cost {
                        flops: t.flops.unwrap_or(0.0),
                        bytes_read: t.bytes.unwrap_or(0.0),
                        bytes_written: 0.0,
                    };
                    let class = t.class.unwrap_or(OpClass::Gemm);
                    (0..devices.len())
                        .map(|d| m.time_of(d, class, None, &c))
                        .collect()
                }
                (None, None) => {
                    return Err(bad(format!(
                        "task '{}' has neither a per-device cost nor flops/bytes",
                        t.id
                    )))
                }
            };
            cost.push(row);
        }
        let uniform = cluster.is_none() || dag.edges.iter().all(|e| e.comm.is_some());
        let mut edges = Vec::with_capacity(dag.edges.len());
        for e in &dag.edges {
            let from = *index
                .get(e.from.as_str())
                .ok_or_else(|| bad(format!("edge from unknown task '{}'", e.from)))?;
            let to = *index
                .get(e.to.as_str())
                .ok_or_else(|| bad(format!("edge to unknown task '{}'", e.to)))?;
            let data = if uniform {
                e.comm.ok_or_else(|| {
                    bad(format!(
                        "edge {} -> {} needs `comm` (or `bytes` with --cluster)",
                        e.from, e.to
                    ))
                })?
            } else {
                e.bytes.ok_or_else(|| {
                    bad(format!(
                        "edge {} -> {}: with a cluster, give every edge `bytes` (or every edge `comm`)",
                        e.from, e.to
                    ))
                })?
            };
            edges.push(TaskEdge { from, to, data });
        }
        let links = match (uniform, cluster) {
            (false, Some(c)) => Links::from_cluster(c),
            _ => Links::uniform(devices.len()),
        };
        let g = TaskGraph {
            names: dag.tasks.iter().map(|t| t.id.clone()).collect(),
            devices,
            cost,
            edges,
            links,
        };
        g.topo_order()?;
        Ok(g)
    }
}

/// Sorts `P2` before `P10`.
fn natural_key(s: &str) -> (String, u64, String) {
    let head: String = s.chars().take_while(|c| !c.is_ascii_digit()).collect();
    let rest = &s[head.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let tail = rest[digits.len()..].to_string();
    (head, digits.parse().unwrap_or(0), tail)
}

/// The deterministic generator of random DAGs (SplitMix64, shared with
/// the ops crate).
pub use hetflow_ops::rng::Rng;

/// Parameters of the random-DAG generator of Topcuoglu et al.: `n` tasks in
/// about `sqrt(n)/shape` levels, out-degree up to `out_degree`,
/// communication-to-computation ratio `ccr`, heterogeneity `beta` (a task's
/// cost on each device is uniform in `w(1 ± beta/2)`).
#[derive(Clone, Copy, Debug)]
pub struct RandomDag {
    /// Tasks.
    pub n: usize,
    /// Devices.
    pub p: usize,
    /// Shape α: levels ≈ sqrt(n)/α.
    pub shape: f64,
    /// Maximum successors per task.
    pub out_degree: usize,
    /// Communication-to-computation ratio.
    pub ccr: f64,
    /// Heterogeneity β in [0, 2).
    pub beta: f64,
    /// Mean computation cost.
    pub mean_cost: f64,
}

impl RandomDag {
    /// Generates the graph (uniform links: edge data is time).
    pub fn generate(&self, seed: u64) -> TaskGraph {
        let mut r = Rng::new(seed);
        let n = self.n.max(1);
        let levels = ((n as f64).sqrt() / self.shape)
            .round()
            .clamp(1.0, n as f64) as usize;
        // Assign tasks to levels: every level non-empty, the rest random.
        let mut level: Vec<usize> = (0..n)
            .map(|i| if i < levels { i } else { r.range(0, levels) })
            .collect();
        level.sort_unstable();
        let mut cost = Vec::with_capacity(n);
        let mut mean = Vec::with_capacity(n);
        for _ in 0..n {
            let w = self.mean_cost * 2.0 * r.unit();
            mean.push(w);
            cost.push(
                (0..self.p)
                    .map(|_| (w * (1.0 + self.beta * (r.unit() - 0.5))).max(0.0))
                    .collect(),
            );
        }
        let start_of: Vec<usize> = {
            let mut s = vec![n; levels + 1];
            for (i, &l) in level.iter().enumerate().rev() {
                s[l] = i;
            }
            s[levels] = n;
            for l in (0..levels).rev() {
                if s[l] == n {
                    s[l] = s[l + 1];
                }
            }
            s
        };
        let mut edges = Vec::new();
        for t in 0..n {
            let l = level[t];
            if l + 1 >= levels {
                continue;
            }
            let lo = start_of[l + 1];
            let k = r.range(1, self.out_degree.max(1) + 1);
            let mut chosen = Vec::new();
            for _ in 0..k {
                // Mostly the next level, sometimes further down.
                let hi = if r.unit() < 0.8 { start_of[l + 2] } else { n };
                if hi > lo {
                    let s = r.range(lo, hi);
                    if !chosen.contains(&s) {
                        chosen.push(s);
                    }
                }
            }
            for s in chosen {
                let data = self.ccr * mean[t] * 2.0 * r.unit();
                edges.push(TaskEdge {
                    from: t,
                    to: s,
                    data,
                });
            }
        }
        TaskGraph {
            names: (0..n).map(|i| format!("T{}", i + 1)).collect(),
            devices: (0..self.p).map(|i| format!("P{}", i + 1)).collect(),
            cost,
            edges,
            links: Links::uniform(self.p),
        }
    }
}
