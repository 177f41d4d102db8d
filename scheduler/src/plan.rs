//! The [`Plan`]: where every node runs, the stages of a pipeline, the
//! transfers that move data between devices, the micro-batch count and the
//! schedule. The runtime, the launcher and the simulator all consume the
//! same (JSON-serialisable) Plan.
//!
//! Guarantees a valid Plan gives its consumers (checked by
//! [`Plan::validate`]): every node of the graph is placed on one of
//! `devices`; each stage's nodes are on the stage's device; every value
//! produced on one device and read on another appears exactly once in
//! `transfers` for that (value, destination) pair, so a reader of the plan
//! sees every byte that moves.

pub use crate::error::PlanError;

use crate::cost::GraphCosts;
use hetflow_ops::{Fact, Graph};
use std::collections::{BTreeSet, HashMap};

/// How micro-batches are ordered through the stages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Inference: micro-batches stream through as credits allow.
    #[default]
    Streaming,
    /// GPipe fill-drain (training).
    Gpipe,
    /// One-forward-one-backward (training).
    #[serde(rename = "1f1b")]
    OneFOneB,
}

impl std::str::FromStr for Schedule {
    type Err = String;
    /// `streaming`, `gpipe` or `1f1b` (the names the CLI and JSON use).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "streaming" => Ok(Schedule::Streaming),
            "gpipe" => Ok(Schedule::Gpipe),
            "1f1b" => Ok(Schedule::OneFOneB),
            _ => Err(format!(
                "unknown schedule '{s}' (known: streaming, gpipe, 1f1b)"
            )),
        }
    }
}

/// A pipeline stage: a contiguous group of nodes on one device.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    /// Index into [`Plan::devices`].
    pub device: usize,
    /// Node indices (into `Graph::nodes`) in execution order.
    pub nodes: Vec<usize>,
    /// Predicted flops of one micro-batch through the stage.
    pub flops: f64,
    /// Predicted compute time of one micro-batch, ms (planners fill it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_ms: Option<f64>,
    /// Predicted time of the transfer into the stage per micro-batch, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_in_ms: Option<f64>,
    /// Predicted memory of the stage's device, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// A value that crosses devices.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    /// Value index (into `Graph::values`).
    pub value: usize,
    /// Value name, for readers.
    pub name: String,
    /// Source device (index into `devices`).
    pub from: usize,
    /// Destination device.
    pub to: usize,
    /// Bytes per micro-batch, when shapes are known.
    pub bytes: Option<u64>,
}

/// An executable placement of a graph.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// Device names (`cpu:0`, ...), resolved by the runtime's registry.
    pub devices: Vec<String>,
    /// For each node, the index of its device in `devices`.
    pub placement: Vec<usize>,
    /// Pipeline stages in order.
    pub stages: Vec<Stage>,
    /// Cross-device values.
    pub transfers: Vec<Transfer>,
    /// Micro-batches per run (streaming: how many inputs are in flight).
    pub microbatches: usize,
    /// Micro-batch order.
    pub schedule: Schedule,
    /// Buffers per edge (credits): 2 or more lets consecutive micro-batches
    /// overlap across stages.
    pub credits: usize,
    /// Predicted time of a run (all micro-batches), ms, when a planner with
    /// a cost model made the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_ms: Option<f64>,
    /// The size symbolic dimensions were bound to for the prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Data-parallel replicas: each entry renames `devices` (same length,
    /// same order) for one more copy of the placement. Micro-batch `i`
    /// runs on copy `i mod (1 + replicas.len())`, copy 0 being `devices`
    /// itself. A copy that keeps a device's own name at its position
    /// shares that device with copy 0: its stages there are not
    /// replicated, the device runs them for every copy (oldest micro-batch
    /// first), so replicating only the bottleneck stage is a plan whose
    /// replicas rename just that stage's device. Empty: no replication.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Vec<String>>,
}

impl Plan {
    /// Everything on one device.
    pub fn single_device(g: &Graph, device: &str) -> Plan {
        let placement = vec![0; g.nodes.len()];
        Plan::from_placement(g, vec![device.to_string()], placement)
    }

    /// A plan from an explicit node -> device placement. Stages are the
    /// maximal runs of consecutive nodes on one device.
    pub fn from_placement(g: &Graph, devices: Vec<String>, placement: Vec<usize>) -> Plan {
        Plan::from_placement_with(g, devices, placement, &node_flops(g))
    }

    /// [`Plan::from_placement`] with each node's flops already known (a
    /// planner's cost tables), so shapes are not inferred again.
    pub fn from_placement_with(
        g: &Graph,
        devices: Vec<String>,
        placement: Vec<usize>,
        flops: &[f64],
    ) -> Plan {
        let mut stages: Vec<Stage> = Vec::new();
        for (i, &d) in placement.iter().enumerate() {
            match stages.last_mut() {
                Some(s) if s.device == d => {
                    s.nodes.push(i);
                    s.flops += flops[i];
                }
                _ => stages.push(Stage {
                    device: d,
                    nodes: vec![i],
                    flops: flops[i],
                    predicted_ms: None,
                    transfer_in_ms: None,
                    memory_bytes: None,
                }),
            }
        }
        let transfers = compute_transfers(g, &placement);
        Plan {
            devices,
            placement,
            stages,
            transfers,
            microbatches: 1,
            schedule: Schedule::Streaming,
            credits: 2,
            predicted_ms: None,
            batch: None,
            replicas: Vec::new(),
        }
    }

    /// Sets each transfer's byte count from concrete value sizes (planners
    /// call this with their cost tables, so symbolic shapes get a size).
    pub fn fill_transfer_bytes(&mut self, value_bytes: &[f64]) {
        for t in &mut self.transfers {
            if let Some(&b) = value_bytes.get(t.value) {
                t.bytes = Some(b as u64);
            }
        }
    }

    /// Copies of the placement (1 + `replicas.len()`).
    pub fn copies(&self) -> usize {
        1 + self.replicas.len()
    }

    /// The device names of copy `r` (0 = `devices`).
    pub fn copy_devices(&self, r: usize) -> &[String] {
        if r == 0 {
            &self.devices
        } else {
            &self.replicas[r - 1]
        }
    }

    /// Removes devices no node is placed on, renumbering the rest.
    pub fn drop_unused_devices(&mut self) {
        let mut used = vec![false; self.devices.len()];
        for &d in &self.placement {
            used[d] = true;
        }
        let mut map = vec![usize::MAX; self.devices.len()];
        let mut devices = Vec::new();
        for (i, name) in self.devices.iter().enumerate() {
            if used[i] {
                map[i] = devices.len();
                devices.push(name.clone());
            }
        }
        self.devices = devices;
        for r in &mut self.replicas {
            *r = r
                .iter()
                .enumerate()
                .filter(|(i, _)| used[*i])
                .map(|(_, n)| n.clone())
                .collect();
        }
        for d in &mut self.placement {
            *d = map[*d];
        }
        for s in &mut self.stages {
            s.device = map[s.device];
        }
        for t in &mut self.transfers {
            t.from = map[t.from];
            t.to = map[t.to];
        }
    }

    /// Manual placement from `node name -> device name` (nodes not listed
    /// go to `default_device`).
    pub fn manual(
        g: &Graph,
        assign: &HashMap<String, String>,
        default_device: &str,
    ) -> Result<Plan, PlanError> {
        let mut devices = vec![default_device.to_string()];
        for name in assign.keys() {
            if !g.nodes.iter().any(|n| &n.name == name) {
                return Err(PlanError::Input(format!(
                    "placement names node '{name}' which the graph does not have"
                )));
            }
        }
        let mut placement = Vec::with_capacity(g.nodes.len());
        for n in &g.nodes {
            let d = assign
                .get(&n.name)
                .map(String::as_str)
                .unwrap_or(default_device);
            let idx = match devices.iter().position(|x| x == d) {
                Some(i) => i,
                None => {
                    devices.push(d.to_string());
                    devices.len() - 1
                }
            };
            placement.push(idx);
        }
        Ok(Plan::from_placement(g, devices, placement))
    }

    /// Sets the micro-batch count and credits.
    pub fn with_microbatches(mut self, m: usize, credits: usize) -> Plan {
        self.microbatches = m.max(1);
        self.credits = credits.max(1);
        self
    }

    /// Checks the plan against the graph (see the module docs).
    pub fn validate(&self, g: &Graph) -> Result<(), PlanError> {
        if self.placement.len() != g.nodes.len() {
            return Err(PlanError::Invalid(format!(
                "places {} nodes but the graph has {}",
                self.placement.len(),
                g.nodes.len()
            )));
        }
        if let Some((i, &d)) = self
            .placement
            .iter()
            .enumerate()
            .find(|(_, &d)| d >= self.devices.len())
        {
            return Err(PlanError::Invalid(format!(
                "node '{}' placed on device #{d}, but the plan lists {} devices",
                g.nodes[i].name,
                self.devices.len()
            )));
        }
        if self.credits == 0 {
            return Err(PlanError::Invalid("credits must be at least 1".into()));
        }
        let mut all: BTreeSet<&str> = self.devices.iter().map(String::as_str).collect();
        if all.len() != self.devices.len() {
            return Err(PlanError::Invalid("a device is listed twice".into()));
        }
        for (r, names) in self.replicas.iter().enumerate() {
            if names.len() != self.devices.len() {
                return Err(PlanError::Invalid(format!(
                    "replica {} lists {} devices; the plan has {}",
                    r + 1,
                    names.len(),
                    self.devices.len()
                )));
            }
            for (i, n) in names.iter().enumerate() {
                // Sharing a device is only sharing its role (same position).
                if *n != self.devices[i] && !all.insert(n.as_str()) {
                    return Err(PlanError::Invalid(format!(
                        "device '{n}' has two different roles among the copies of the plan"
                    )));
                }
            }
        }
        let mut seen = vec![false; g.nodes.len()];
        for s in &self.stages {
            for &n in &s.nodes {
                if n >= g.nodes.len()
                    || self.placement[n] != s.device
                    || std::mem::replace(&mut seen[n], true)
                {
                    return Err(PlanError::Invalid(format!(
                        "stage on device #{} lists node #{n} wrongly",
                        s.device
                    )));
                }
            }
        }
        if seen.iter().any(|s| !s) {
            return Err(PlanError::Invalid("some nodes are in no stage".into()));
        }
        let want = compute_transfers(g, &self.placement);
        let key = |t: &Transfer| (t.value, t.to);
        let a: BTreeSet<_> = want.iter().map(key).collect();
        let b: BTreeSet<_> = self.transfers.iter().map(key).collect();
        if a != b {
            return Err(PlanError::Invalid(
                "transfers do not match the placement".into(),
            ));
        }
        Ok(())
    }

    /// Serialises to pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses JSON.
    pub fn from_json(s: &str) -> Result<Plan, PlanError> {
        serde_json::from_str(s).map_err(|e| PlanError::Input(format!("plan JSON: {e}")))
    }
}

/// Every (value, destination device) pair where a value produced (or fed)
/// on one device is read on another. Graph inputs count as produced on the
/// device of their first reader; constants are placed with each reader.
pub fn compute_transfers(g: &Graph, placement: &[usize]) -> Vec<Transfer> {
    let producers = g.producers();
    let facts: Vec<Fact> = g.values.iter().map(|v| v.fact.clone()).collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (ni, node) in g.nodes.iter().enumerate() {
        let to = placement[ni];
        for v in node.inputs.iter().flatten() {
            let Some(p) = producers[v.0] else { continue };
            let from = placement[p.0];
            if from != to && seen.insert((v.0, to)) {
                let bytes = facts[v.0].concrete_shape().map(|s| {
                    (s.iter().product::<usize>() * facts[v.0].dtype.map(|d| d.size()).unwrap_or(4))
                        as u64
                });
                out.push(Transfer {
                    value: v.0,
                    name: g.name(*v).to_string(),
                    from,
                    to,
                    bytes,
                });
            }
        }
    }
    out
}

/// Flops of each node with symbolic dims bound to 1, at least 1 each
/// ([`GraphCosts::flops`]).
pub fn node_flops(g: &Graph) -> Vec<f64> {
    GraphCosts::new(g, 1).flops()
}
