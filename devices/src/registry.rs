//! Device specs and discovery: one table that resolves `--device` strings
//! (`cpu`, `cpu:0`, `cpu:0,cpu:1`) to devices, and reports every backend,
//! present or not, with the reason when it is absent.
//!
//! CPU splitting rule: the `cpu:K` entries of one spec share the machine.
//! With P of them the cores are partitioned into P groups (NUMA-aware, see
//! [`CpuTopology::partition`]) and `cpu:K` gets group K; a lone `cpu` or
//! `cpu:0` gets every core. `--threads N` caps each CPU device's kernel
//! threads.
//!
//! `opencl:K` opens the K-th OpenCL device of all platforms, in platform
//! order ([`crate::opencl`]); `discover` lists them, or says why there are
//! none (no ICD loader, no ICD, no platform). `HETFLOW_OPENCL_BINARIES=DIR`
//! makes devices load programs from binaries (see the module docs).
//! `cuda:K` opens the K-th GPU the CUDA driver reports ([`crate::cuda`]);
//! without a driver it fails with the discovery reason ("no CUDA driver
//! ..."), never a panic.
//!
//! `tpu:K` opens an emulated TPU-like device ([`crate::tpu`]); it is
//! always available when asked for, and `discover` lists `tpu:0` when the
//! environment sets `HETFLOW_TPU=1`. Its configuration is the v5e default,
//! or the JSON file named by `HETFLOW_TPU_CONFIG` (fields of
//! [`TpuConfig`], missing ones defaulted).

use crate::cpu::topology::CpuTopology;
use crate::cpu::CpuDevice;
use crate::cuda::CudaDevice;
use crate::opencl::{OpenclDevice, OpenclOptions};
use crate::tpu::{TpuConfig, TpuDevice};
use crate::{Device, DeviceError, DeviceId, DeviceKind, Result};
use std::sync::Arc;

/// A parsed device spec entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The device id asked for.
    pub id: DeviceId,
}

/// Parses a comma-separated device list such as `cpu:0,cpu:1`.
pub fn parse_device_list(spec: &str) -> Result<Vec<DeviceSpec>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(DeviceError::Spec {
                spec: spec.into(),
                msg: "empty entry in device list".into(),
            });
        }
        let (kind, idx) = match part.split_once(':') {
            Some((k, i)) => (k, Some(i)),
            None => (part, None),
        };
        let kind = match kind.to_ascii_lowercase().as_str() {
            "cpu" => DeviceKind::Cpu,
            "cuda" | "gpu" => DeviceKind::Cuda,
            "opencl" | "cl" => DeviceKind::Opencl,
            "tpu" => DeviceKind::Tpu,
            other => {
                return Err(DeviceError::Spec {
                    spec: part.into(),
                    msg: format!("unknown device kind '{other}' (known: cpu, cuda, opencl, tpu)"),
                })
            }
        };
        let index = match idx {
            None => 0,
            Some(i) => i.parse::<usize>().map_err(|_| DeviceError::Spec {
                spec: part.into(),
                msg: format!("device index '{i}' is not a number"),
            })?,
        };
        let id = DeviceId { kind, index };
        if out.iter().any(|d: &DeviceSpec| d.id == id) {
            return Err(DeviceError::Spec {
                spec: spec.into(),
                msg: format!("{id} listed twice"),
            });
        }
        out.push(DeviceSpec { id });
    }
    Ok(out)
}

/// Opens the devices of a spec list. `threads` caps kernel threads per CPU
/// device.
///
/// CPU devices split the machine: the cores are partitioned into as many
/// groups as the highest CPU index listed plus one, and `cpu:K` takes group
/// K. `cpu:1` alone is thus the second half of the machine, as it is in a
/// plan made for `cpu:0,cpu:1` that happens to place nothing on cpu:0.
pub fn open_devices(specs: &[DeviceSpec], threads: Option<usize>) -> Result<Vec<Arc<dyn Device>>> {
    let topo = CpuTopology::discover();
    let split = specs
        .iter()
        .filter(|s| s.id.kind == DeviceKind::Cpu)
        .map(|s| s.id.index.saturating_add(1))
        .max()
        .unwrap_or(0);
    let groups = if split > 0 {
        topo.partition(split).map_err(|e| DeviceError::Spec {
            spec: format!("cpu:{}", split - 1),
            msg: format!("splitting the machine into {split} CPU devices: {e}"),
        })?
    } else {
        Vec::new()
    };
    let mut out: Vec<Arc<dyn Device>> = Vec::new();
    for s in specs {
        match s.id.kind {
            DeviceKind::Cpu => {
                let g = groups.get(s.id.index).ok_or_else(|| DeviceError::Spec {
                    spec: s.id.to_string(),
                    msg: format!("the machine splits into {} CPU device(s)", groups.len()),
                })?;
                out.push(Arc::new(CpuDevice::new(s.id.index, &topo, g, threads)?));
            }
            DeviceKind::Cuda => out.push(Arc::new(CudaDevice::new(s.id.index)?)),
            DeviceKind::Tpu => {
                let cfg = tpu_config().map_err(|msg| DeviceError::Spec {
                    spec: s.id.to_string(),
                    msg,
                })?;
                out.push(Arc::new(TpuDevice::new(s.id.index, cfg)?));
            }
            DeviceKind::Opencl => {
                out.push(Arc::new(OpenclDevice::open(
                    s.id.index,
                    &OpenclOptions::from_env(),
                )?));
            }
        }
    }
    Ok(out)
}

/// Why a non-CPU backend cannot be used in this build / on this machine.
fn backend_absent_reason(kind: DeviceKind) -> String {
    match kind {
        DeviceKind::Cpu => String::new(),
        DeviceKind::Cuda => match crate::cuda::probe() {
            Err(why) => why,
            Ok(_) => String::new(),
        },
        DeviceKind::Opencl => match crate::opencl::list_devices() {
            Ok(_) => String::new(),
            Err(why) => why,
        },
        DeviceKind::Tpu => {
            "emulated TPU-like device: set HETFLOW_TPU=1 to list it, or open it with --device tpu:0"
                .into()
        }
    }
}

/// One backend's status for `hetflow devices`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendStatus {
    /// The backend.
    pub kind: DeviceKind,
    /// Devices it offers (empty when unavailable).
    pub devices: Vec<crate::DeviceInfo>,
    /// Why it is unavailable, when it is.
    pub unavailable: Option<String>,
}

/// Everything `hetflow devices` shows: the CPU topology and each backend.
pub fn discover() -> (CpuTopology, Vec<BackendStatus>) {
    let topo = CpuTopology::discover();
    let mut out = Vec::new();
    let all: Vec<usize> = (0..topo.cores.len()).collect();
    match CpuDevice::new(0, &topo, &all, None) {
        Ok(d) => out.push(BackendStatus {
            kind: DeviceKind::Cpu,
            devices: vec![d.info().clone()],
            unavailable: None,
        }),
        Err(e) => out.push(BackendStatus {
            kind: DeviceKind::Cpu,
            devices: vec![],
            unavailable: Some(e.to_string()),
        }),
    }
    out.push(cuda_status());
    out.push(opencl_status());
    out.push(tpu_status());
    (topo, out)
}

/// The CUDA entry: every GPU the driver reports, described by opening it
/// (which also compiles the kernels), or why there are none.
fn cuda_status() -> BackendStatus {
    let kind = DeviceKind::Cuda;
    let gpus = match crate::cuda::probe() {
        Ok(g) => g,
        Err(why) => {
            return BackendStatus {
                kind,
                devices: vec![],
                unavailable: Some(why),
            }
        }
    };
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    for g in &gpus {
        match CudaDevice::new(g.ordinal) {
            Ok(d) => devices.push(d.info().clone()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    BackendStatus {
        kind,
        unavailable: devices.is_empty().then(|| errors.join("; ")),
        devices,
    }
}

/// Every OpenCL device with its description, or why there are none. A
/// device that is listed but fails to open is reported with its error.
fn opencl_status() -> BackendStatus {
    let kind = DeviceKind::Opencl;
    let descs = match crate::opencl::list_devices() {
        Ok(d) => d,
        Err(why) => {
            return BackendStatus {
                kind,
                devices: vec![],
                unavailable: Some(why),
            }
        }
    };
    let opts = OpenclOptions::from_env();
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    for d in descs {
        let idx = d.index;
        match OpenclDevice::from_desc(d, &opts) {
            Ok(dev) => devices.push(dev.info().clone()),
            Err(e) => errors.push(format!("opencl:{idx}: {e}")),
        }
    }
    BackendStatus {
        kind,
        devices,
        unavailable: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// The emulated TPU's entry: listed when `HETFLOW_TPU` is set to
/// something other than `0` or empty.
fn tpu_status() -> BackendStatus {
    let kind = DeviceKind::Tpu;
    let enabled = std::env::var("HETFLOW_TPU")
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false);
    if !enabled {
        return BackendStatus {
            kind,
            devices: vec![],
            unavailable: Some(backend_absent_reason(kind)),
        };
    }
    let dev = tpu_config().and_then(|c| TpuDevice::new(0, c).map_err(|e| e.to_string()));
    match dev {
        Ok(d) => BackendStatus {
            kind,
            devices: vec![d.info().clone()],
            unavailable: None,
        },
        Err(e) => BackendStatus {
            kind,
            devices: vec![],
            unavailable: Some(e),
        },
    }
}

/// The TPU configuration: `HETFLOW_TPU_CONFIG`'s JSON file, else v5e.
fn tpu_config() -> std::result::Result<TpuConfig, String> {
    let Some(path) = std::env::var_os("HETFLOW_TPU_CONFIG") else {
        return Ok(TpuConfig::default());
    };
    let p = std::path::Path::new(&path);
    std::fs::read_to_string(p)
        .map_err(|e| e.to_string())
        .and_then(|t| TpuConfig::from_json(&t))
        .map_err(|e| format!("HETFLOW_TPU_CONFIG '{}': {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        let v = parse_device_list("cpu:0, cpu:1").unwrap();
        assert_eq!(
            v.iter().map(|s| s.id.to_string()).collect::<Vec<_>>(),
            ["cpu:0", "cpu:1"]
        );
        assert_eq!(parse_device_list("cpu").unwrap()[0].id, DeviceId::cpu(0));
        assert!(parse_device_list("cpu:x")
            .unwrap_err()
            .to_string()
            .contains("not a number"));
        assert!(parse_device_list("warp:0")
            .unwrap_err()
            .to_string()
            .contains("unknown device kind"));
        assert!(parse_device_list("cpu:0,cpu:0")
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn absent_backends_say_why() {
        // No machine has 100 OpenCL devices: absent ICD or index past the
        // last device, the error names the spec.
        let err = open_devices(&parse_device_list("opencl:99").unwrap(), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("opencl:99"), "{err}");
    }

    /// Without a usable driver, `cuda:0` fails with discovery's reason;
    /// with one, it opens (or, past the last GPU, names the count).
    #[test]
    fn cuda_spec_opens_or_gives_the_discovery_reason() {
        let specs = parse_device_list("cuda:0").unwrap();
        match crate::cuda::probe() {
            Err(why) => {
                let err = open_devices(&specs, None)
                    .err()
                    .expect("cuda:0 must not open");
                let msg = err.to_string();
                assert!(msg.starts_with("device 'cuda:0': "), "{msg}");
                assert!(msg.ends_with(&why), "{msg} should give the reason: {why}");
                assert!(!msg.contains('\n'), "one line: {msg}");
                let (_, status) = discover();
                let cuda = status.iter().find(|b| b.kind == DeviceKind::Cuda).unwrap();
                assert!(cuda.devices.is_empty());
                assert_eq!(cuda.unavailable.as_deref(), Some(why.as_str()));
                eprintln!("no GPU here, checked the refusal: {why}");
            }
            Ok(gpus) => {
                let devs = open_devices(&specs, None).expect("cuda:0 opens");
                assert_eq!(devs[0].id().to_string(), "cuda:0");
                let past = format!("cuda:{}", gpus.len());
                let err = open_devices(&parse_device_list(&past).unwrap(), None)
                    .err()
                    .expect("index past the last GPU");
                assert!(err.to_string().contains("no such GPU"), "{err}");
            }
        }
    }

    /// `cpu:1` alone is the second half of a two-way split (what a plan
    /// made for `cpu:0,cpu:1` that leaves cpu:0 idle asks for); an index
    /// past one device per core names the split it cannot make.
    #[test]
    fn a_lone_cpu_index_takes_its_part_of_the_split() {
        let topo = CpuTopology::discover();
        let whole = topo.partition(1).unwrap()[0].clone();
        if whole.len() < 2 {
            eprintln!("SKIPPED: one core, no two-way split to check");
            return;
        }
        let halves = topo.partition(2).unwrap();
        let devs = open_devices(&parse_device_list("cpu:1").unwrap(), None).unwrap();
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].id().to_string(), "cpu:1");
        assert_eq!(devs[0].info().locality, format!("cores {:?}", halves[1]));
        let past = format!("cpu:{}", whole.len());
        let err = open_devices(&parse_device_list(&past).unwrap(), None)
            .err()
            .expect("more CPU devices than cores");
        let msg = err.to_string();
        assert!(
            msg.contains(&past) && msg.contains("splitting the machine"),
            "{msg}"
        );
    }
}
