//! [`ClusterSpec`]: the hardware a plan is made for, as TOML.
//!
//! A spec lists hosts, devices and links. `hetflow profile` writes one for
//! the machine it runs on (discovery plus micro-benchmarks); specs for
//! hardware that is not present are written by hand. Units are the ones
//! people quote: GFLOP/s, GB/s (10⁹ bytes per second), GiB of memory,
//! microseconds.
//!
//! ```toml
//! [[host]]
//! name = "box0"
//!
//! [[device]]
//! name = "cpu:0"            # the name the runtime resolves (--device)
//! host = "box0"
//! kind = "cpu"
//! peak_gflops = { f32 = 150.0, bf16 = 150.0 }
//! memory_gib = 12.0
//! mem_bw_gbps = 20.0
//! launch_us = 3.0
//! # Fitted fraction of the roofline each op class reaches (default 1).
//! efficiency = { gemm = 0.9, conv = 0.7, elementwise = 0.5, reduce = 0.4, movement = 0.3 }
//! unsupported = []          # op types this device cannot run
//!
//! [[link]]
//! from = "cpu:0"
//! to = "cpu:1"
//! bandwidth_gbps = 10.0
//! latency_us = 20.0
//! shared = false             # true: concurrent transfers split the bandwidth
//!
//! [defaults]                 # links not listed: same host / across hosts
//! intra_host = { bandwidth_gbps = 10.0, latency_us = 20.0 }
//! inter_host = { bandwidth_gbps = 1.25, latency_us = 50.0 }
//! ```
//!
//! Links are symmetric unless both directions are listed. A pair of
//! devices with no link and no applicable default is an error at
//! [`ClusterSpec::validate`], naming the pair.

use crate::error::PlanError;
use hetflow_ops::cost::OpClass;
use hetflow_ops::DType;
use std::collections::BTreeMap;
use std::path::Path;

/// A host (machine) of the cluster.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HostSpec {
    /// Its name; devices refer to it.
    pub name: String,
}

/// One device.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceSpec {
    /// The name the runtime resolves (`cpu:0`, `cuda:1`, `tpu:0`, ...).
    pub name: String,
    /// The host it is on.
    #[serde(default = "default_host")]
    pub host: String,
    /// `cpu`, `cuda`, `opencl` or `tpu` (free-form for simulation).
    pub kind: String,
    /// Human description (CPU model, GPU name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Peak arithmetic rate per dtype in GFLOP/s; `f32` is required, other
    /// dtypes fall back to it.
    pub peak_gflops: BTreeMap<String, f64>,
    /// Memory usable for weights and activations, GiB.
    pub memory_gib: f64,
    /// Memory bandwidth, GB/s.
    pub mem_bw_gbps: f64,
    /// Fixed cost of launching one op (dispatch, kernel launch), µs.
    #[serde(default)]
    pub launch_us: f64,
    /// Fraction of the roofline each op class reaches (fitted by
    /// `hetflow profile`); classes not listed get 1.
    #[serde(default)]
    pub efficiency: BTreeMap<OpClass, f64>,
    /// Op types (ONNX names) the device cannot run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<String>,
    /// Measured kernel times, µs, keyed by op footprint
    /// ([`crate::cost::footprint`]: op type, attributes, input shapes and
    /// dtypes): a history-based performance model in StarPU's sense.
    /// `hetflow profile --model M` records every kernel of `M`; the cost
    /// model uses an entry instead of the roofline when a node's footprint
    /// matches, so a spec predicts the kernels it has seen exactly and
    /// falls back to the fitted roofline for the rest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub history: BTreeMap<String, f64>,
    /// How much slower this device's kernels run while another device of
    /// its host is computing (shared cores, caches, memory bandwidth):
    /// `hetflow profile` runs the same work on each device alone and on
    /// all of them at once. 1 (the default) is none. The simulator applies
    /// it; planners do not.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub contention: f64,
    /// Whether transfers to and from the device run beside its kernels
    /// (true, the default). False for a device whose compute threads also
    /// execute its transfers (an OpenCL CPU device): the simulator then
    /// puts its copies on its compute queue, first come first served
    /// with its kernels.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub copy_engine: bool,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

fn default_host() -> String {
    "localhost".into()
}

/// Link parameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkParams {
    /// GB/s.
    pub bandwidth_gbps: f64,
    /// µs.
    pub latency_us: f64,
    /// Whether concurrent transfers share the bandwidth (a bus or NIC);
    /// the simulator splits the bandwidth equally between them.
    #[serde(default)]
    pub shared: bool,
}

/// A link between two devices.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkSpec {
    /// One end (device name).
    pub from: String,
    /// Other end.
    pub to: String,
    /// GB/s.
    pub bandwidth_gbps: f64,
    /// µs.
    pub latency_us: f64,
    /// See [`LinkParams::shared`].
    #[serde(default)]
    pub shared: bool,
}

/// Links used where none is listed.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkDefaults {
    /// Between devices of one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intra_host: Option<LinkParams>,
    /// Between hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inter_host: Option<LinkParams>,
}

/// The cluster: hosts, devices, links.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterSpec {
    /// Hosts (optional when every device is on `localhost`).
    #[serde(default, rename = "host")]
    pub hosts: Vec<HostSpec>,
    /// Devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceSpec>,
    /// Explicit links.
    #[serde(default, rename = "link")]
    pub links: Vec<LinkSpec>,
    /// Default links.
    #[serde(default)]
    pub defaults: LinkDefaults,
}

impl DeviceSpec {
    /// Peak rate for `dtype` in FLOP/s (falls back to f32).
    pub fn peak_flops(&self, dtype: Option<DType>) -> f64 {
        let key = dtype.map(|d| d.to_string()).unwrap_or_default();
        let g = self
            .peak_gflops
            .get(&key)
            .or_else(|| self.peak_gflops.get("f32"))
            .copied()
            .unwrap_or(0.0);
        g * 1e9
    }
    /// Efficiency of an op class (1 when not fitted).
    pub fn efficiency(&self, c: OpClass) -> f64 {
        self.efficiency.get(&c).copied().unwrap_or(1.0)
    }
    /// Memory in bytes.
    pub fn memory_bytes(&self) -> u64 {
        (self.memory_gib * (1u64 << 30) as f64) as u64
    }
    /// Whether the device can run an op type.
    pub fn runs(&self, op_type: &str) -> bool {
        !self.unsupported.iter().any(|u| u == op_type)
    }
}

impl ClusterSpec {
    /// Parses TOML and validates.
    pub fn from_toml(s: &str) -> Result<ClusterSpec, PlanError> {
        let c: ClusterSpec =
            toml::from_str(s).map_err(|e| PlanError::Input(format!("cluster spec: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<ClusterSpec, PlanError> {
        let s = std::fs::read_to_string(path).map_err(|e| {
            PlanError::Input(format!(
                "cannot read cluster spec '{}': {e}",
                path.display()
            ))
        })?;
        Self::from_toml(&s).map_err(|e| match e {
            PlanError::Input(m) => PlanError::Input(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Index of a device by name.
    pub fn device_index(&self, name: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.name == name)
    }

    /// Checks names, numbers and that every device pair has a link.
    pub fn validate(&self) -> Result<(), PlanError> {
        let bad = |m: String| Err(PlanError::Input(format!("cluster spec: {m}")));
        if self.devices.is_empty() {
            return bad("no devices".into());
        }
        for (i, d) in self.devices.iter().enumerate() {
            if self.devices[..i].iter().any(|e| e.name == d.name) {
                return bad(format!("device '{}' listed twice", d.name));
            }
            if !self.hosts.is_empty() && !self.hosts.iter().any(|h| h.name == d.host) {
                return bad(format!(
                    "device '{}' is on host '{}', which is not listed",
                    d.name, d.host
                ));
            }
            let f32_peak = d.peak_gflops.get("f32").copied().unwrap_or(0.0);
            if !(f32_peak.is_finite() && f32_peak > 0.0) {
                return bad(format!(
                    "device '{}' needs peak_gflops.f32 > 0 (got {f32_peak})",
                    d.name
                ));
            }
            for (k, v) in &d.peak_gflops {
                if !(v.is_finite() && *v > 0.0) {
                    return bad(format!("device '{}': peak_gflops.{k} = {v}", d.name));
                }
            }
            if !(d.mem_bw_gbps.is_finite() && d.mem_bw_gbps > 0.0) {
                return bad(format!("device '{}': mem_bw_gbps must be > 0", d.name));
            }
            if !(d.memory_gib.is_finite() && d.memory_gib > 0.0) {
                return bad(format!("device '{}': memory_gib must be > 0", d.name));
            }
            if !(d.launch_us.is_finite() && d.launch_us >= 0.0) {
                return bad(format!("device '{}': launch_us must be >= 0", d.name));
            }
            if !(d.contention.is_finite() && d.contention >= 1.0) {
                return bad(format!(
                    "device '{}': contention must be >= 1 (got {})",
                    d.name, d.contention
                ));
            }
            for (k, v) in &d.history {
                if !(v.is_finite() && *v >= 0.0) {
                    return bad(format!("device '{}': history.\"{k}\" = {v} µs", d.name));
                }
            }
            for (c, e) in &d.efficiency {
                if !(e.is_finite() && *e > 0.0 && *e <= 4.0) {
                    return bad(format!(
                        "device '{}': efficiency of {c:?} is {e} (want 0 < e <= 4)",
                        d.name
                    ));
                }
            }
        }
        for l in &self.links {
            for end in [&l.from, &l.to] {
                if self.device_index(end).is_none() {
                    return bad(format!(
                        "link {} -> {} names unknown device '{end}'",
                        l.from, l.to
                    ));
                }
            }
            let bw_ok = l.bandwidth_gbps.is_finite() && l.bandwidth_gbps > 0.0;
            let lat_ok = l.latency_us.is_finite() && l.latency_us >= 0.0;
            if !(bw_ok && lat_ok) {
                return bad(format!(
                    "link {} -> {}: bandwidth must be > 0 and latency >= 0",
                    l.from, l.to
                ));
            }
        }
        for a in 0..self.devices.len() {
            for b in 0..self.devices.len() {
                if a != b && self.link(a, b).is_none() {
                    return bad(format!(
                        "no link between '{}' and '{}' and no default for {} links",
                        self.devices[a].name,
                        self.devices[b].name,
                        if self.devices[a].host == self.devices[b].host {
                            "intra_host"
                        } else {
                            "inter_host"
                        }
                    ));
                }
            }
        }
        Ok(())
    }

    /// The link from device `a` to device `b` (indices), if any: an explicit
    /// link in that direction, else the reverse one, else the default.
    /// `a == b` is not a link (no transfer).
    pub fn link(&self, a: usize, b: usize) -> Option<LinkParams> {
        let (na, nb) = (&self.devices[a].name, &self.devices[b].name);
        let explicit = |x: &str, y: &str| {
            self.links
                .iter()
                .find(|l| l.from == x && l.to == y)
                .map(|l| LinkParams {
                    bandwidth_gbps: l.bandwidth_gbps,
                    latency_us: l.latency_us,
                    shared: l.shared,
                })
        };
        explicit(na, nb).or_else(|| explicit(nb, na)).or({
            if self.devices[a].host == self.devices[b].host {
                self.defaults.intra_host
            } else {
                self.defaults.inter_host
            }
        })
    }

    /// In a spec that spans hosts, a device on the host of rank 0 of a
    /// job (the *root*, which reads the inputs and writes the outputs):
    /// the first device named `rank0/...`, else the first whose name has
    /// no host part. `None` when every device is on one host (inputs and
    /// outputs are then local everywhere) or the root cannot be told.
    pub fn root_device(&self) -> Option<usize> {
        let first = self.devices.first()?;
        if self.devices.iter().all(|d| d.host == first.host) {
            return None;
        }
        self.devices
            .iter()
            .position(|d| d.name.starts_with("rank0/"))
            .or_else(|| self.devices.iter().position(|d| !d.name.contains('/')))
    }

    /// A cluster restricted to the named devices, in that order.
    pub fn subset(&self, names: &[String]) -> Result<ClusterSpec, PlanError> {
        let mut devices = Vec::new();
        for n in names {
            let d = self.devices.iter().find(|d| &d.name == n).ok_or_else(|| {
                PlanError::Input(format!(
                    "device '{n}' is not in the cluster spec (it has: {})",
                    self.devices
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            devices.push(d.clone());
        }
        Ok(ClusterSpec {
            hosts: self.hosts.clone(),
            devices,
            links: self
                .links
                .iter()
                .filter(|l| names.contains(&l.from) && names.contains(&l.to))
                .cloned()
                .collect(),
            defaults: self.defaults.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
[[host]]
name = "a"
[[host]]
name = "b"

[[device]]
name = "cpu:0"
host = "a"
kind = "cpu"
peak_gflops = { f32 = 100.0 }
memory_gib = 8.0
mem_bw_gbps = 20.0
launch_us = 2.0
efficiency = { gemm = 0.8, conv = 0.6 }

[[device]]
name = "cuda:0"
host = "a"
kind = "cuda"
peak_gflops = { f32 = 50000.0, bf16 = 400000.0 }
memory_gib = 80.0
mem_bw_gbps = 3000.0
launch_us = 5.0
unsupported = ["NonZero"]

[[device]]
name = "cpu:1"
host = "b"
kind = "cpu"
peak_gflops = { f32 = 100.0 }
memory_gib = 8.0
mem_bw_gbps = 20.0

[[link]]
from = "cpu:0"
to = "cuda:0"
bandwidth_gbps = 25.0
latency_us = 10.0

[defaults]
inter_host = { bandwidth_gbps = 1.25, latency_us = 50.0, shared = true }
"#;

    #[test]
    fn parses_and_resolves_links() {
        let c = ClusterSpec::from_toml(SPEC).unwrap();
        assert_eq!(c.devices.len(), 3);
        let l = c.link(1, 0).unwrap();
        assert_eq!(l.bandwidth_gbps, 25.0);
        let l = c.link(0, 2).unwrap();
        assert!(l.shared);
        assert_eq!(c.devices[1].peak_flops(Some(DType::BF16)), 400000.0e9);
        assert_eq!(c.devices[0].peak_flops(Some(DType::BF16)), 100.0e9);
        assert_eq!(c.devices[0].efficiency(OpClass::Gemm), 0.8);
        assert_eq!(c.devices[0].efficiency(OpClass::Reduce), 1.0);
        assert!(!c.devices[1].runs("NonZero"));
        let again = ClusterSpec::from_toml(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn missing_link_is_named() {
        let spec = SPEC.replace("[defaults]", "[ignored]");
        let e = ClusterSpec::from_toml(&spec).unwrap_err().to_string();
        assert!(e.contains("no link between 'cpu:0' and 'cpu:1'"), "{e}");
    }

    #[test]
    fn bad_numbers_are_named() {
        let spec = SPEC.replace("mem_bw_gbps = 3000.0", "mem_bw_gbps = 0.0");
        let e = ClusterSpec::from_toml(&spec).unwrap_err().to_string();
        assert!(e.contains("cuda:0") && e.contains("mem_bw_gbps"), "{e}");
        let spec = SPEC.replace("host = \"b\"", "host = \"c\"");
        let e = ClusterSpec::from_toml(&spec).unwrap_err().to_string();
        assert!(e.contains("host 'c'"), "{e}");
    }
}
