//! [`NodeSpec`]: a GPU cluster built from one node type and a node count,
//! with a two-level network (NVLink/NVSwitch inside a node, InfiniBand
//! between nodes).
//!
//! ## Why a type of its own
//! [`crate::ClusterSpec`] lists every device and link; a 3,072-GPU cluster
//! written that way is 3,072 `[[device]]` tables and a quadratic link
//! check, and it has no notion of "the node's NICs are shared by the
//! groups that cross it". Training clusters are homogeneous, so the GPT
//! simulator reads a node spec plus a node count instead. The format is a
//! new TOML document (top-level `[gpu]`, `[node]`, `[network.*]`), so the
//! existing ClusterSpec format and its files are untouched; a file of one
//! kind given where the other is expected fails with a message that names
//! the missing table.
//!
//! ```toml
//! name = "DGX A100 80GB"
//! nodes = 4                       # optional; --nodes overrides
//! [gpu]
//! model = "A100-SXM4-80GB"
//! peak_tflops = { bf16 = 312.0, fp16 = 312.0 }   # dense tensor-core peak
//! memory_gib = 80.0
//! hbm_gbps = 2039.0               # GB/s (10^9 B/s)
//! sms = 108                       # streaming multiprocessors
//! [node]
//! gpus = 8
//! [network.intra]                 # NVLink through NVSwitch
//! gbps = 300.0                    # per GPU, per direction, GB/s
//! latency_us = 2.0
//! [network.inter]                 # InfiniBand, rail-optimised fat tree
//! nics = 8
//! nic_gbps = 25.0                 # per NIC, per direction, GB/s (200 Gb/s)
//! latency_us = 5.0
//! oversubscription = 1.0          # >1: the fabric above the leaf is thinner
//! [model]                         # efficiencies: assumed or calibrated, not vendor figures
//! gemm_max = 0.752                # (every key optional; defaults as in docs/clusters)
//! ```
//!
//! Units: TFLOP/s, GB/s = 10⁹ bytes/s, GiB of memory, microseconds.

use crate::plan::PlanError;
use std::collections::BTreeMap;
use std::path::Path;

/// One GPU.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Product name.
    pub model: String,
    /// Dense peak per dtype, TFLOP/s (tensor cores where they apply).
    pub peak_tflops: BTreeMap<String, f64>,
    /// Device memory, GiB.
    pub memory_gib: f64,
    /// Memory bandwidth, GB/s.
    pub hbm_gbps: f64,
    /// Streaming multiprocessors (for GEMM wave quantisation).
    pub sms: usize,
}

/// The node.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    /// GPUs per node.
    pub gpus: usize,
}

/// The network inside a node (NVLink through NVSwitch: every GPU pair at
/// full per-GPU bandwidth).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntraNet {
    /// Per GPU, per direction, GB/s.
    pub gbps: f64,
    /// Per message step, µs.
    pub latency_us: f64,
}

/// The network between nodes.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterNet {
    /// Compute NICs per node.
    pub nics: usize,
    /// Per NIC, per direction, GB/s.
    pub nic_gbps: f64,
    /// Per message step, µs.
    pub latency_us: f64,
    /// Oversubscription of the fabric above the leaf switches (1: full
    /// bisection); inter-node bandwidth is divided by it.
    #[serde(default = "one")]
    pub oversubscription: f64,
}

/// Both levels.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Inside a node.
    pub intra: IntraNet,
    /// Between nodes.
    pub inter: InterNet,
}

/// Model constants that are not vendor figures: the fraction of a peak
/// that real kernels and collectives reach. Defaults are the values
/// calibrated in docs/simulator-accuracy.md ("Cluster scale").
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelParams {
    /// Fraction of the tensor-core peak a large, well-shaped GEMM reaches.
    pub gemm_max: f64,
    /// GEMM output tile (rows, columns) for tile and wave quantisation.
    pub gemm_tile: [usize; 2],
    /// Inner dimension at which a GEMM reaches half of `gemm_max` from
    /// its per-tile prologue and epilogue: efficiency × k / (k + k_half).
    pub gemm_k_half: f64,
    /// Fraction of `hbm_gbps` element-wise kernels reach.
    pub mem_eff: f64,
    /// Fixed cost per kernel launch, µs.
    pub launch_us: f64,
    /// Fraction of link bandwidth NCCL-style collectives reach, NVLink.
    pub intra_eff: f64,
    /// Same, InfiniBand.
    pub inter_eff: f64,
    /// Memory not available to the model (CUDA context, NCCL buffers,
    /// allocator fragmentation), GiB.
    pub reserved_gib: f64,
    /// Compute dtype (a key of `peak_tflops`).
    pub dtype: String,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            gemm_max: 0.752,
            gemm_tile: [256, 128],
            gemm_k_half: 64.0,
            mem_eff: 0.628,
            launch_us: 4.0,
            intra_eff: 0.70,
            inter_eff: 0.90,
            reserved_gib: 4.0,
            dtype: "bf16".into(),
        }
    }
}

fn one() -> f64 {
    1.0
}

/// A cluster of identical nodes (see the module docs).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Human name.
    pub name: String,
    /// Node count (optional; the CLI's `--nodes` overrides, and without
    /// either the layout's GPU count decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    /// The GPU.
    pub gpu: GpuSpec,
    /// The node.
    pub node: NodeInfo,
    /// The two-level network.
    pub network: Network,
    /// Non-vendor model constants.
    #[serde(default)]
    pub model: ModelParams,
}

fn pos(what: &str, v: f64) -> Result<(), PlanError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(PlanError::Input(format!(
            "node spec: {what} must be > 0 (got {v})"
        )))
    }
}

fn nonneg(what: &str, v: f64) -> Result<(), PlanError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(PlanError::Input(format!(
            "node spec: {what} must be >= 0 (got {v})"
        )))
    }
}

fn frac(what: &str, v: f64) -> Result<(), PlanError> {
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err(PlanError::Input(format!(
            "node spec: {what} must be in (0, 1] (got {v})"
        )))
    }
}

impl NodeSpec {
    /// Parses TOML and validates.
    pub fn from_toml(s: &str) -> Result<NodeSpec, PlanError> {
        let n: NodeSpec = toml::from_str(s).map_err(|e| {
            let m = e.to_string().replace('\n', " ");
            PlanError::Input(format!(
                "node spec (gpu, node, network.intra, network.inter tables): {}",
                m.split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        })?;
        n.validate()?;
        Ok(n)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<NodeSpec, PlanError> {
        let s = std::fs::read_to_string(path).map_err(|e| {
            PlanError::Input(format!("cannot read node spec '{}': {e}", path.display()))
        })?;
        Self::from_toml(&s).map_err(|e| match e {
            PlanError::Input(m) => PlanError::Input(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Checks every number.
    pub fn validate(&self) -> Result<(), PlanError> {
        let m = &self.model;
        if !self.gpu.peak_tflops.contains_key(&m.dtype) {
            return Err(PlanError::Input(format!(
                "node spec: gpu.peak_tflops has no '{}' (model.dtype)",
                m.dtype
            )));
        }
        for (k, v) in &self.gpu.peak_tflops {
            pos(&format!("gpu.peak_tflops.{k}"), *v)?;
        }
        pos("gpu.memory_gib", self.gpu.memory_gib)?;
        pos("gpu.hbm_gbps", self.gpu.hbm_gbps)?;
        pos("gpu.sms", self.gpu.sms as f64)?;
        if self.node.gpus == 0 || self.node.gpus > 1024 {
            return Err(PlanError::Input(format!(
                "node spec: node.gpus must be 1..=1024 (got {})",
                self.node.gpus
            )));
        }
        if let Some(n) = self.nodes {
            if n == 0 || n > 1 << 20 {
                return Err(PlanError::Input(format!(
                    "node spec: nodes must be 1..=1048576 (got {n})"
                )));
            }
        }
        let (i, x) = (&self.network.intra, &self.network.inter);
        pos("network.intra.gbps", i.gbps)?;
        nonneg("network.intra.latency_us", i.latency_us)?;
        pos("network.inter.nics", x.nics as f64)?;
        pos("network.inter.nic_gbps", x.nic_gbps)?;
        nonneg("network.inter.latency_us", x.latency_us)?;
        if !(x.oversubscription.is_finite() && x.oversubscription >= 1.0) {
            return Err(PlanError::Input(format!(
                "node spec: network.inter.oversubscription must be >= 1 (got {})",
                x.oversubscription
            )));
        }
        frac("model.gemm_max", m.gemm_max)?;
        frac("model.mem_eff", m.mem_eff)?;
        frac("model.intra_eff", m.intra_eff)?;
        frac("model.inter_eff", m.inter_eff)?;
        pos("model.gemm_tile[0]", m.gemm_tile[0] as f64)?;
        pos("model.gemm_tile[1]", m.gemm_tile[1] as f64)?;
        nonneg("model.gemm_k_half", m.gemm_k_half)?;
        nonneg("model.launch_us", m.launch_us)?;
        nonneg("model.reserved_gib", m.reserved_gib)?;
        if m.reserved_gib >= self.gpu.memory_gib {
            return Err(PlanError::Input(format!(
                "node spec: model.reserved_gib ({}) leaves no memory of gpu.memory_gib ({})",
                m.reserved_gib, self.gpu.memory_gib
            )));
        }
        Ok(())
    }

    /// Peak FLOP/s of the compute dtype.
    pub fn peak_flops(&self) -> f64 {
        self.gpu.peak_tflops[&self.model.dtype] * 1e12
    }

    /// Effective memory bandwidth, bytes/s.
    pub fn mem_bw(&self) -> f64 {
        self.gpu.hbm_gbps * 1e9 * self.model.mem_eff
    }

    /// Bytes a device may use for the model.
    pub fn usable_bytes(&self) -> f64 {
        (self.gpu.memory_gib - self.model.reserved_gib) * (1u64 << 30) as f64
    }

    /// Effective NVLink bandwidth per GPU and direction, bytes/s.
    pub fn intra_bw(&self) -> f64 {
        self.network.intra.gbps * 1e9 * self.model.intra_eff
    }

    /// Effective inter-node bandwidth of one node (all NICs), bytes/s,
    /// after oversubscription.
    pub fn node_inter_bw(&self) -> f64 {
        let x = &self.network.inter;
        x.nics as f64 * x.nic_gbps * 1e9 * self.model.inter_eff / x.oversubscription
    }

    /// Intra-node latency, seconds.
    pub fn intra_lat(&self) -> f64 {
        self.network.intra.latency_us * 1e-6
    }

    /// Inter-node latency, seconds.
    pub fn inter_lat(&self) -> f64 {
        self.network.inter.latency_us * 1e-6
    }
}
