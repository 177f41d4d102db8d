//! CPU topology discovery, partitioning and thread binding.
//!
//! [`CpuTopology::discover`] describes the machine: packages, physical cores
//! and their hardware threads (PUs), NUMA nodes, cache sizes, total memory and
//! the SIMD extensions the CPU supports. It asks hwloc (through the
//! `hwlocality` crate) and, when hwloc is unusable, falls back to
//! [`std::thread::available_parallelism`] with a flat one-package,
//! one-NUMA-node layout; [`CpuTopology::source`] says which path was taken and
//! why.
//!
//! [`CpuTopology::partition`] splits the cores into groups for several
//! logical CPU devices, following NUMA boundaries, and
//! [`bind_current_thread`] pins an OS thread to a set of PUs.
//!
//! # Notes
//!
//! * Total memory comes from `/proc/meminfo` (`MemTotal`), not hwloc: on some
//!   VMs hwloc (and the per-node sysfs files it reads) reports far less memory
//!   than the OS can actually hand out. For the same reason, on a machine with
//!   a single NUMA node that node is credited with the whole `MemTotal`; with
//!   several nodes each gets hwloc's per-node figure.
//! * Building an hwloc topology costs milliseconds, so one is built lazily,
//!   cached for the process lifetime, and shared by discovery and binding
//!   (`hwlocality::Topology` is `Send + Sync`; binding only needs `&Topology`).
//! * Core indices used throughout ([`CoreInfo::index`], [`NumaInfo::cores`],
//!   [`CpuTopology::partition`], [`CpuTopology::pus_of`]) are positions in
//!   [`CpuTopology::cores`], which is ordered by hwloc logical index; PU
//!   numbers are OS indices (what `taskset`/`sched_setaffinity` use).

use hwlocality::{
    cpu::{binding::CpuBindingFlags, cpuset::CpuSet},
    object::{attributes::ObjectAttributes, types::ObjectType, TopologyObject},
    Topology,
};
use std::fmt::Write as _;
use std::sync::OnceLock;

/// One physical core.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CoreInfo {
    /// Logical index (position in [`CpuTopology::cores`]).
    pub index: usize,
    /// OS indices of its hardware threads (PUs), ascending.
    pub pus: Vec<usize>,
    /// OS index of the NUMA node the core belongs to, if known.
    pub numa_node: Option<usize>,
    /// Logical index of the package (socket) holding the core.
    pub package: usize,
}

/// One NUMA node.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NumaInfo {
    /// OS index of the node.
    pub os_index: usize,
    /// Memory local to the node, if known.
    pub memory_bytes: Option<u64>,
    /// Logical indices of the cores attached to the node (may be empty for
    /// memory-only nodes such as CXL or HBM expanders).
    pub cores: Vec<usize>,
}

/// What the machine looks like, as far as the CPU backend cares.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CpuTopology {
    /// `"hwloc"`, or `"fallback (<reason>)"` when hwloc could not be used.
    pub source: &'static str,
    /// CPU model name (`/proc/cpuinfo` "model name", else hwloc `CPUModel`).
    pub cpu_model: String,
    /// Number of packages (sockets).
    pub packages: usize,
    /// Physical cores, ordered by logical index.
    pub cores: Vec<CoreInfo>,
    /// NUMA nodes, ordered by logical index.
    pub numa_nodes: Vec<NumaInfo>,
    /// `MemTotal` from `/proc/meminfo` (hwloc's figure when unavailable).
    pub total_memory_bytes: u64,
    /// Size of the L3 cache above the first core, if any.
    pub l3_bytes: Option<u64>,
    /// Size of the L2 cache above the first core, if any.
    pub l2_bytes: Option<u64>,
    /// SIMD extensions detected at run time (e.g. `avx2`, `fma`, `avx512f`).
    pub simd: Vec<String>,
}

/// Errors of partitioning and binding.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// `partition(0)`.
    #[error("cannot split the CPU into 0 devices: at least one is needed")]
    ZeroGroups,
    /// More groups requested than there are cores.
    #[error(
        "cannot split {cores} cores into {requested} CPU devices: at most one device per core"
    )]
    TooManyGroups {
        /// Number of groups asked for.
        requested: usize,
        /// Number of cores available.
        cores: usize,
    },
    /// hwloc could not build a topology.
    #[error("hwloc topology unavailable: {0}")]
    Unavailable(String),
    /// The OS/hwloc cannot bind threads.
    #[error("thread CPU binding is not supported on this system: {0}")]
    Unsupported(String),
    /// Nothing to bind to.
    #[error("cannot bind a thread to an empty set of PUs")]
    EmptyPuSet,
    /// A PU index the topology does not know.
    #[error("PU {pu} does not exist in this machine's topology")]
    UnknownPu {
        /// The offending OS PU index.
        pu: usize,
    },
    /// hwloc refused to bind or to report the binding.
    #[error("binding the current thread to PUs {pus:?} failed: {msg}")]
    BindFailed {
        /// The PUs asked for.
        pus: Vec<usize>,
        /// hwloc's error.
        msg: String,
    },
}

/// The process-wide hwloc topology, built on first use. The error is leaked
/// once so that [`CpuTopology::source`] can carry it as a `&'static str`.
static HWLOC: OnceLock<Result<Topology, &'static str>> = OnceLock::new();

/// The cached hwloc topology, or why there is none.
fn hwloc() -> Result<&'static Topology, &'static str> {
    HWLOC
        .get_or_init(|| {
            Topology::new().map_err(|e| {
                let msg: &'static str =
                    Box::leak(format!("fallback (hwloc failed: {e})").into_boxed_str());
                tracing::warn!("hwloc topology discovery failed, using fallback: {e}");
                msg
            })
        })
        .as_ref()
        .map_err(|e| *e)
}

impl CpuTopology {
    /// Discovers the machine through hwloc; if hwloc fails, falls back to
    /// [`std::thread::available_parallelism`] (one package, one NUMA node),
    /// recording why in `source`.
    pub fn discover() -> CpuTopology {
        let meminfo = read_meminfo_total();
        let cpuinfo_model = read_cpuinfo_model();
        let simd = detect_simd();
        match hwloc() {
            Ok(topo) => match from_hwloc(topo, meminfo, cpuinfo_model.clone(), simd.clone()) {
                Ok(t) => t,
                Err(why) => {
                    tracing::warn!("hwloc topology unusable, using fallback: {why}");
                    fallback(why, meminfo, cpuinfo_model, simd)
                }
            },
            Err(why) => fallback(why, meminfo, cpuinfo_model, simd),
        }
    }

    /// Splits the cores into `n` groups for `n` logical CPU devices.
    ///
    /// Groups are contiguous in core order and as even as possible. When
    /// `n` is at most the number of NUMA nodes with cores, whole nodes are
    /// assigned to groups (a node's cores are never split); when `n` is at
    /// least that number, no group mixes nodes (group `i` gets cores of one
    /// node), nodes receiving a number of groups proportional to their core
    /// count. Errors if `n == 0` or `n > cores.len()`.
    pub fn partition(&self, n: usize) -> Result<Vec<Vec<usize>>, TopologyError> {
        let total = self.cores.len();
        if n == 0 {
            return Err(TopologyError::ZeroGroups);
        }
        if n > total {
            return Err(TopologyError::TooManyGroups {
                requested: n,
                cores: total,
            });
        }
        // NUMA domains: maximal runs of consecutive cores on the same node, in
        // core order (cores of a node are normally contiguous; if not, a node
        // simply counts as several domains, which keeps groups contiguous).
        let mut domains: Vec<Vec<usize>> = Vec::new();
        let mut last: Option<Option<usize>> = None;
        for (i, core) in self.cores.iter().enumerate() {
            if last != Some(core.numa_node) {
                domains.push(Vec::new());
                last = Some(core.numa_node);
            }
            domains.last_mut().expect("just pushed").push(i);
        }
        let k = domains.len();
        if n <= k {
            // Whole domains per group: contiguous runs of domains with
            // balanced core counts.
            let sizes: Vec<usize> = domains.iter().map(Vec::len).collect();
            let cuts = balanced_runs(&sizes, n);
            Ok(cuts
                .windows(2)
                .map(|w| domains[w[0]..w[1]].concat())
                .collect())
        } else {
            // Every domain gets at least one group; the rest go, one by one,
            // to the domain whose groups are currently largest (D'Hondt).
            let mut alloc = vec![1usize; k];
            for _ in k..n {
                let best = (0..k)
                    .filter(|&d| alloc[d] < domains[d].len())
                    .max_by(|&a, &b| {
                        // domains[a].len()/alloc[a] vs domains[b].len()/alloc[b];
                        // ties go to the earlier domain.
                        (domains[a].len() * alloc[b])
                            .cmp(&(domains[b].len() * alloc[a]))
                            .then(b.cmp(&a))
                    })
                    .expect("n <= cores guarantees a domain with spare cores");
                alloc[best] += 1;
            }
            let mut groups = Vec::with_capacity(n);
            for (dom, &g) in domains.iter().zip(&alloc) {
                let c = dom.len();
                for j in 0..g {
                    groups.push(dom[j * c / g..(j + 1) * c / g].to_vec());
                }
            }
            Ok(groups)
        }
    }

    /// OS PU indices of the given cores (first PU of each core when
    /// `one_pu_per_core`). Core indices out of range are ignored.
    pub fn pus_of(&self, cores: &[usize], one_pu_per_core: bool) -> Vec<usize> {
        let mut out = Vec::new();
        for core in cores.iter().filter_map(|&c| self.cores.get(c)) {
            if one_pu_per_core {
                out.extend(core.pus.first().copied());
            } else {
                out.extend_from_slice(&core.pus);
            }
        }
        out
    }

    /// A multi-line human summary, e.g.
    ///
    /// ```text
    /// package 0: 2 cores, 2 threads (Intel(R) Xeon(R) Processor)
    /// NUMA node 0: 23.5 GiB, cores 0-1
    /// memory 23.5 GiB, L3 480 MiB, L2 2 MiB
    /// simd: sse4.2 avx avx2 fma avx512f ...
    /// ```
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let npkg = self.packages.max(1);
        for p in 0..npkg {
            let cores: Vec<&CoreInfo> = self.cores.iter().filter(|c| c.package == p).collect();
            let threads: usize = cores.iter().map(|c| c.pus.len()).sum();
            let _ = writeln!(
                s,
                "package {p}: {} cores, {threads} threads ({})",
                cores.len(),
                self.cpu_model
            );
        }
        for node in &self.numa_nodes {
            let mem = node
                .memory_bytes
                .map(fmt_bytes)
                .unwrap_or_else(|| "memory unknown".into());
            let cores = if node.cores.is_empty() {
                "no cores".to_string()
            } else {
                format!("cores {}", fmt_ranges(&node.cores))
            };
            let _ = writeln!(s, "NUMA node {}: {mem}, {cores}", node.os_index);
        }
        let _ = write!(s, "memory {}", fmt_bytes(self.total_memory_bytes));
        if let Some(l3) = self.l3_bytes {
            let _ = write!(s, ", L3 {}", fmt_bytes(l3));
        }
        if let Some(l2) = self.l2_bytes {
            let _ = write!(s, ", L2 {}", fmt_bytes(l2));
        }
        s.push('\n');
        if self.simd.is_empty() {
            s.push_str("simd: none detected");
        } else {
            let _ = write!(s, "simd: {}", self.simd.join(" "));
        }
        s
    }
}

/// Binds the calling OS thread to the given OS PU indices (hwloc
/// `set_cpubind` with the THREAD flag). Returns an error (never panics) when
/// binding is unsupported or fails; callers log it and continue unbound.
pub fn bind_current_thread(pus: &[usize]) -> Result<(), TopologyError> {
    let topo = hwloc().map_err(|e| TopologyError::Unavailable(e.to_string()))?;
    if pus.is_empty() {
        return Err(TopologyError::EmptyPuSet);
    }
    let supported = topo
        .feature_support()
        .cpu_binding()
        .is_some_and(|b| b.set_current_thread() || b.set_thread());
    if !supported {
        return Err(TopologyError::Unsupported(
            "hwloc reports no support for setting a thread's CPU binding".into(),
        ));
    }
    let known = topo.complete_cpuset();
    let mut set = CpuSet::new();
    for &pu in pus {
        // Checking membership first also keeps `set` from panicking on
        // absurd indices.
        if pu > i32::MAX as usize || !known.is_set(pu) {
            return Err(TopologyError::UnknownPu { pu });
        }
        set.set(pu);
    }
    topo.bind_cpu(&set, CpuBindingFlags::THREAD)
        .map_err(|e| TopologyError::BindFailed {
            pus: pus.to_vec(),
            msg: e.to_string(),
        })
}

/// OS PU indices the calling thread is currently allowed to run on (hwloc
/// `get_cpubind` with the THREAD flag).
pub fn current_thread_pus() -> Result<Vec<usize>, TopologyError> {
    let topo = hwloc().map_err(|e| TopologyError::Unavailable(e.to_string()))?;
    let set = topo
        .cpu_binding(CpuBindingFlags::THREAD)
        .map_err(|e| TopologyError::BindFailed {
            pus: Vec::new(),
            msg: format!("cannot read the thread's binding: {e}"),
        })?;
    Ok(set.iter_set().map(usize::from).collect())
}

// ---------------------------------------------------------------- discovery

/// Builds a [`CpuTopology`] from hwloc, or says why it cannot.
fn from_hwloc(
    topo: &Topology,
    meminfo: Option<u64>,
    cpuinfo_model: Option<String>,
    simd: Vec<String>,
) -> Result<CpuTopology, &'static str> {
    // Cores; some VMs/containers expose PUs without Core objects, in which
    // case each PU stands for a core.
    let mut core_objs: Vec<&TopologyObject> = topo.objects_with_type(ObjectType::Core).collect();
    if core_objs.is_empty() {
        core_objs = topo.objects_with_type(ObjectType::PU).collect();
    }
    core_objs.retain(|c| c.cpuset().is_some_and(|s| !s.is_empty()));
    if core_objs.is_empty() {
        return Err("fallback (hwloc found no cores)");
    }
    core_objs.sort_by_key(|c| c.logical_index());

    let numa_objs: Vec<&TopologyObject> = {
        let mut v: Vec<_> = topo.objects_with_type(ObjectType::NUMANode).collect();
        v.sort_by_key(|n| n.logical_index());
        v
    };
    let packages = topo.objects_with_type(ObjectType::Package).count().max(1);

    let cores: Vec<CoreInfo> = core_objs
        .iter()
        .enumerate()
        .map(|(i, obj)| {
            let cpuset = obj.cpuset().expect("retained cores have cpusets");
            let pus: Vec<usize> = cpuset.iter_set().map(usize::from).collect();
            let numa_node = numa_objs
                .iter()
                .find(|n| n.cpuset().is_some_and(|ns| ns.includes(&*cpuset)))
                .or_else(|| {
                    numa_objs
                        .iter()
                        .find(|n| n.cpuset().is_some_and(|ns| ns.intersects(&*cpuset)))
                })
                .and_then(|n| n.os_index());
            let package = obj
                .first_ancestor_with_type(ObjectType::Package)
                .map(|p| p.logical_index())
                .unwrap_or(0);
            CoreInfo {
                index: i,
                pus,
                numa_node,
                package,
            }
        })
        .collect();

    let total_memory_bytes = meminfo.unwrap_or_else(|| topo.root_object().total_memory());
    let single_node = numa_objs.len() == 1;
    let numa_nodes: Vec<NumaInfo> = numa_objs
        .iter()
        .enumerate()
        .map(|(li, n)| {
            let os_index = n.os_index().unwrap_or(li);
            let hwloc_mem = match n.attributes() {
                Some(ObjectAttributes::NUMANode(a)) => a.local_memory().map(|m| m.get()),
                _ => None,
            };
            let memory_bytes = if single_node && meminfo.is_some() {
                Some(total_memory_bytes)
            } else {
                hwloc_mem
            };
            NumaInfo {
                os_index,
                memory_bytes,
                cores: cores
                    .iter()
                    .filter(|c| c.numa_node == Some(os_index))
                    .map(|c| c.index)
                    .collect(),
            }
        })
        .collect();

    let cache_size = |ty: ObjectType| -> Option<u64> {
        core_objs[0]
            .ancestors()
            .find(|a| a.object_type() == ty)
            .and_then(|a| match a.attributes() {
                Some(ObjectAttributes::Cache(c)) => c.size().map(|s| s.get()),
                _ => None,
            })
    };
    let l3_bytes = cache_size(ObjectType::L3Cache);
    let l2_bytes = cache_size(ObjectType::L2Cache);

    let cpu_model = cpuinfo_model
        .or_else(|| hwloc_info(topo, "CPUModel"))
        .unwrap_or_else(|| "unknown CPU".into());

    Ok(CpuTopology {
        source: "hwloc",
        cpu_model,
        packages,
        cores,
        numa_nodes,
        total_memory_bytes,
        l3_bytes,
        l2_bytes,
        simd,
    })
}

/// The first `key` info string on a package (or the root object).
fn hwloc_info(topo: &Topology, key: &str) -> Option<String> {
    topo.objects_with_type(ObjectType::Package)
        .chain(std::iter::once(topo.root_object()))
        .find_map(|o| o.info(key))
        .map(|v| v.to_string_lossy().trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The flat topology used when hwloc is unusable.
fn fallback(
    why: &'static str,
    meminfo: Option<u64>,
    cpuinfo_model: Option<String>,
    simd: Vec<String>,
) -> CpuTopology {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let total = meminfo.unwrap_or(0);
    CpuTopology {
        source: why,
        cpu_model: cpuinfo_model.unwrap_or_else(|| "unknown CPU".into()),
        packages: 1,
        cores: (0..n)
            .map(|i| CoreInfo {
                index: i,
                pus: vec![i],
                numa_node: Some(0),
                package: 0,
            })
            .collect(),
        numa_nodes: vec![NumaInfo {
            os_index: 0,
            memory_bytes: meminfo,
            cores: (0..n).collect(),
        }],
        total_memory_bytes: total,
        l3_bytes: None,
        l2_bytes: None,
        simd,
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn read_meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut it = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = it.next()?.parse().ok()?;
    let mult = match it.next() {
        Some("kB") | Some("KB") | Some("kb") => 1024,
        Some("MB") => 1 << 20,
        Some("GB") => 1 << 30,
        _ => 1,
    };
    Some(value * mult).filter(|&b| b > 0)
}

/// The first "model name" in `/proc/cpuinfo`.
fn read_cpuinfo_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "model name")
        .map(|(_, v)| v.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// SIMD extensions the running CPU supports, from the most basic up.
fn detect_simd() -> Vec<String> {
    #[allow(unused_mut)]
    let mut v: Vec<String> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($feat:tt),* $(,)?) => {
                $(if std::is_x86_feature_detected!($feat) { v.push($feat.to_string()); })*
            };
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "avx512fp16",
            "avxvnni",
        );
        // AMX detection is unstable in `is_x86_feature_detected!`; read the
        // kernel's flags instead (the kernel only lists AMX when it enables
        // the tile state).
        if let Ok(text) = std::fs::read_to_string("/proc/cpuinfo") {
            if let Some(flags) = text
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == "flags")
                .map(|(_, f)| f.split_whitespace().collect::<Vec<_>>())
            {
                for (flag, name) in [
                    ("amx_tile", "amx-tile"),
                    ("amx_bf16", "amx-bf16"),
                    ("amx_int8", "amx-int8"),
                ] {
                    if flags.contains(&flag) {
                        v.push(name.to_string());
                    }
                }
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! probe {
            ($($feat:tt),* $(,)?) => {
                $(if std::arch::is_aarch64_feature_detected!($feat) { v.push($feat.to_string()); })*
            };
        }
        probe!("neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2");
    }
    v
}

// ----------------------------------------------------------------- helpers

/// Splits `sizes` into `n` non-empty contiguous runs with balanced sums;
/// returns the `n + 1` cut positions (first 0, last `sizes.len()`).
/// Requires `1 <= n <= sizes.len()`.
fn balanced_runs(sizes: &[usize], n: usize) -> Vec<usize> {
    let k = sizes.len();
    let total: usize = sizes.iter().sum();
    let mut cuts = vec![0usize];
    let mut start = 0;
    let mut acc = 0usize; // sum of sizes[..start]
    for g in 0..n - 1 {
        // Groups left after this one need one domain each.
        let max_end = k - (n - 1 - g);
        let target = (g + 1) * total; // compare acc * n with target
        let mut end = start + 1;
        let mut sum = acc + sizes[start];
        while end < max_end {
            let next = sum + sizes[end];
            // Take the next domain if that lands closer to the ideal cut.
            if (next * n).abs_diff(target) < (sum * n).abs_diff(target) {
                sum = next;
                end += 1;
            } else {
                break;
            }
        }
        cuts.push(end);
        start = end;
        acc = sum;
    }
    cuts.push(k);
    cuts
}

/// `1536` → `"1.5 KiB"`, `32 << 20` → `"32 MiB"`.
fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else if (v - v.round()).abs() < 0.05 {
        format!("{:.0} {}", v, UNITS[u])
    } else {
        format!("{:.1} {}", v, UNITS[u])
    }
}

/// `[0,1,2,5,7,8]` → `"0-2,5,7-8"`.
fn fmt_ranges(idx: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && idx[j + 1] == idx[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            idx[i].to_string()
        } else {
            format!("{}-{}", idx[i], idx[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests;
