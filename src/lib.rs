//! # hetflow
//!
//! An actor-based dataflow runtime for deep-learning graphs with pluggable
//! hardware backends. Load an ONNX model, pick devices, and run it: each op
//! becomes an actor pinned to its device's executor; a plan places ops on
//! several devices for pipeline parallelism, with cross-device copies on
//! their own queues.
//!
//! ```no_run
//! use std::sync::Arc;
//! use hetflow::{Model, SessionBuilder, Tensor};
//!
//! # fn main() -> Result<(), hetflow::Error> {
//! let model = Model::load("model.onnx")?;
//! // Default device: the whole CPU. Use `.devices("cpu:0,cpu:1")` to split
//! // the machine into two pipeline stages.
//! let mut session = SessionBuilder::new(&model).build()?;
//! let x = Tensor::from_vec(vec![1, 4], vec![0.5f32, -1.0, 2.0, 0.0])?;
//! let outputs = session.run(vec![Arc::new(x)])?;
//! println!("{:?}", outputs[0].shape());
//! # Ok(())
//! # }
//! ```
//!
//! A runnable version of that example that builds its own model is
//! `examples/quickstart.rs`; see the README for the crate map.

#![deny(missing_docs)]

pub mod cluster;
pub mod per_shape;
pub mod profile;
pub mod train;

pub use hetflow_devices as devices;
pub use hetflow_ops as ops;
pub use hetflow_runtime as runtime;
pub use hetflow_scheduler as scheduler;

pub use hetflow_ops::{AlignedAlloc, DType, Graph, Tensor};
pub use hetflow_runtime::{Session, SessionOptions, TraceEvent};
pub use hetflow_scheduler::Plan;
pub use per_shape::PerShape;

use std::path::Path;
use std::sync::Arc;

/// Any hetflow error; each variant's message names what is wrong (file,
/// node, value, device).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or checking a model or tensor.
    #[error(transparent)]
    Model(#[from] hetflow_ops::Error),
    /// Opening or using a device.
    #[error(transparent)]
    Device(#[from] hetflow_devices::DeviceError),
    /// Planning.
    #[error(transparent)]
    Plan(#[from] hetflow_scheduler::PlanError),
    /// Running.
    #[error(transparent)]
    Runtime(#[from] hetflow_runtime::RuntimeError),
    /// A builder setting out of range, such as `credits(0)`.
    #[error("invalid session setting: {0}")]
    Setting(String),
}

/// A loaded model: the graph with inferred shapes and folded constants.
#[derive(Clone)]
pub struct Model {
    graph: Arc<Graph>,
}

impl Model {
    /// Loads an ONNX file and applies the load-time rewrites of
    /// [`hetflow_ops::optimize`] (BatchNorm folding into Conv, ...).
    pub fn load(path: impl AsRef<Path>) -> Result<Model, Error> {
        let mut graph = hetflow_ops::onnx::load_model(path)?;
        let report = hetflow_ops::optimize::optimize(&mut graph);
        tracing::debug!(?report, "load-time rewrites");
        Ok(Model {
            graph: Arc::new(graph),
        })
    }
    /// Loads an ONNX model from memory (external data must be inline, see
    /// [`hetflow_ops::onnx::inline_external_data`]) with the same
    /// load-time rewrites as [`Model::load`].
    pub fn from_onnx_bytes(bytes: &[u8]) -> Result<Model, Error> {
        let mut graph = hetflow_ops::onnx::load_model_bytes(bytes, None)?;
        hetflow_ops::optimize::optimize(&mut graph);
        Ok(Model {
            graph: Arc::new(graph),
        })
    }
    /// Loads an ONNX file exactly as written, without load-time rewrites
    /// (for checking raw op semantics).
    pub fn load_unoptimized(path: impl AsRef<Path>) -> Result<Model, Error> {
        Ok(Model {
            graph: Arc::new(hetflow_ops::onnx::load_model(path)?),
        })
    }
    /// Wraps a graph built in code.
    pub fn from_graph(graph: Graph) -> Model {
        Model {
            graph: Arc::new(graph),
        }
    }
    /// The graph.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }
    /// Names of the inputs the caller feeds, in order.
    pub fn input_names(&self) -> Vec<&str> {
        self.graph
            .inputs
            .iter()
            .map(|i| self.graph.name(*i))
            .collect()
    }
    /// Names of the outputs, in order.
    pub fn output_names(&self) -> Vec<&str> {
        self.graph
            .outputs
            .iter()
            .map(|i| self.graph.name(*i))
            .collect()
    }
}

/// Builds a [`Session`]: which devices, how many threads, which plan.
pub struct SessionBuilder<'a> {
    model: &'a Model,
    devices: Option<String>,
    opened: Option<Vec<Arc<dyn hetflow_devices::Device>>>,
    threads: Option<usize>,
    plan: Option<Plan>,
    credits: Option<usize>,
    trace: bool,
    hub: Option<Arc<hetflow_runtime::net::Hub>>,
    kernel_timeout: Option<std::time::Duration>,
    actors: bool,
    memory_limit: Option<u64>,
    wires: Vec<hetflow_devices::DeviceKind>,
    input_shapes: Option<Vec<Vec<usize>>>,
    specialized: Option<Arc<Graph>>,
}

impl<'a> SessionBuilder<'a> {
    /// Defaults: device `cpu` (every core), credits 2, no trace.
    pub fn new(model: &'a Model) -> Self {
        SessionBuilder {
            model,
            devices: None,
            opened: None,
            threads: None,
            plan: None,
            credits: None,
            trace: false,
            hub: None,
            kernel_timeout: None,
            actors: false,
            memory_limit: None,
            wires: Vec::new(),
            input_shapes: None,
            specialized: None,
        }
    }
    /// Device list such as `cpu`, `cpu:0,cpu:1`. With several devices and no
    /// explicit plan, the graph is split into contiguous pipeline stages
    /// balanced by each device's compute units. Without this call the
    /// devices are the plan's (when one is given) or `cpu`.
    pub fn devices(mut self, spec: &str) -> Self {
        self.devices = Some(spec.to_string());
        self
    }
    /// Uses devices the caller already opened (or wrapped, e.g. in
    /// [`hetflow_devices::throttle::Throttled`]) instead of a device list.
    pub fn with_devices(mut self, devices: Vec<Arc<dyn hetflow_devices::Device>>) -> Self {
        self.opened = Some(devices);
        self
    }
    /// Caps kernel threads per CPU device (at least 1; [`SessionBuilder::build`]
    /// refuses 0).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }
    /// Uses an explicit plan (its device names must be in the device list).
    pub fn plan(mut self, plan: Plan) -> Self {
        self.plan = Some(plan);
        self
    }
    /// Buffers per edge (2+ lets micro-batches overlap across stages).
    /// At least 1: [`SessionBuilder::build`] refuses 0, which would let no
    /// micro-batch start.
    pub fn credits(mut self, n: usize) -> Self {
        self.credits = Some(n);
        self
    }
    /// Fails a run, naming the node, op and device, when one kernel or
    /// copy takes longer than `limit` (a hung device), instead of waiting
    /// for it. The session is then unusable; build a fresh one. Off by
    /// default.
    pub fn kernel_timeout(mut self, limit: std::time::Duration) -> Self {
        self.kernel_timeout = Some(limit);
        self
    }
    /// Runs a plan on one CPU device through the runtime's actors, as
    /// every other plan runs, instead of on the calling thread (the
    /// default for such a plan: it skips two thread crossings a run; see
    /// `hetflow_runtime`'s session docs). For comparing the two and for
    /// tests of the actors. `HETFLOW_INLINE=0` does the same.
    pub fn actors(mut self, yes: bool) -> Self {
        self.actors = yes;
        self
    }
    /// Caps the memory each device may use, in bytes. [`SessionBuilder::build`]
    /// predicts each device's need under the plan (its weights plus
    /// `credits` buffers of every value it produces or receives, symbolic
    /// dimensions bound to 1: [`hetflow_scheduler::cost::placement_memory`])
    /// and refuses a plan over budget with an error naming the device,
    /// instead of being killed for running out of memory. Without this
    /// call the budget is each device's own memory.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }
    /// In a multi-host job, moves tensors between two devices of these
    /// kinds on different hosts over the devices' own transport (NCCL
    /// between CUDA GPUs: `&[DeviceKind::Cuda]`) instead of through host
    /// memory and MPI ([`hetflow_runtime::net`], "Wires"). Every rank must
    /// give the same kinds; `hetflow launch` does so when the job sets
    /// `HETFLOW_NCCL=1` ([`cluster::wires_from_env`]). A device of such a
    /// kind without a working transport fails the build with its reason.
    pub fn wires(mut self, kinds: &[hetflow_devices::DeviceKind]) -> Self {
        self.wires = kinds.to_vec();
        self
    }
    /// Specialises the session to inputs of these shapes (one per graph
    /// input, in order): shape-only subgraphs (`Shape → Gather → Concat →
    /// Reshape` and the like) fold to constants at build
    /// ([`hetflow_ops::specialize`]), so a device without index kernels
    /// runs such a model whole, and no kernel recomputes a shape per run.
    /// The session then takes only inputs of these shapes. Ignored with an
    /// explicit plan, whose node numbers refer to the unspecialised graph.
    /// `hetflow run` and `hetflow bench` set it from their inputs.
    pub fn input_shapes(mut self, shapes: Vec<Vec<usize>>) -> Self {
        self.input_shapes = Some(shapes);
        self
    }
    /// Records a timeline of kernels and copies.
    pub fn trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }
    /// Joins a multi-host job ([`hetflow_runtime::net`]): the plan's
    /// devices are `HOST/KIND:N`, and this process opens and deploys only
    /// those of its own rank. Rank 0 runs the session; the other ranks
    /// call [`Session::serve`]. Every rank must build the same sessions in
    /// the same order.
    pub fn hub(mut self, hub: Arc<hetflow_runtime::net::Hub>) -> Self {
        self.hub = Some(hub);
        self
    }

    /// The plan this builder would use on these devices: the explicit plan,
    /// else everything on the one device, else the pipeline partitioner
    /// over a cluster spec made from the devices' own descriptions
    /// ([`default_cluster`]), which keeps every op off devices that refuse
    /// it. It uses every device when a split over all of them exists.
    pub fn make_plan(&self, devices: &[Arc<dyn hetflow_devices::Device>]) -> Result<Plan, Error> {
        self.plan_for(&self.graph_for(devices), devices)
    }

    /// [`SessionBuilder::make_plan`] for `g`, the graph of
    /// [`SessionBuilder::graph_for`] these devices.
    fn plan_for(
        &self,
        g: &Graph,
        devices: &[Arc<dyn hetflow_devices::Device>],
    ) -> Result<Plan, Error> {
        if let Some(p) = &self.plan {
            return Ok(p.clone());
        }
        let names: Vec<String> = devices.iter().map(|d| d.id().to_string()).collect();
        if devices.len() == 1 || g.nodes.len() < devices.len() {
            return Ok(Plan::single_device(g, &names[0]));
        }
        let cluster = default_cluster(g, devices)?;
        let costs = hetflow_scheduler::cost::GraphCosts::new(g, 1);
        let mut opts = hetflow_scheduler::partition::PartitionOptions {
            use_all: true,
            credits: self.credits.unwrap_or(2),
            ..Default::default()
        };
        let part = match hetflow_scheduler::partition::partition(g, &costs, &cluster, &opts) {
            Ok(p) => p,
            Err(_) => {
                opts.use_all = false;
                hetflow_scheduler::partition::partition(g, &costs, &cluster, &opts)?
            }
        };
        Ok(part.plan)
    }

    /// The graph a session on `devices` runs: the model's, with the
    /// residual joins fused into their convs
    /// ([`hetflow_ops::optimize::fuse_residual`]) and the activations
    /// after a Gemm into it
    /// ([`hetflow_ops::optimize::fuse_gemm_activations`]) when every
    /// device is a CPU and no plan was given (a given plan's node indices
    /// refer to the model's graph, and only the CPU kernels implement
    /// these fusions).
    pub fn graph_for(&self, devices: &[Arc<dyn hetflow_devices::Device>]) -> Arc<Graph> {
        let cpu_only = devices
            .iter()
            .all(|d| d.id().kind == hetflow_devices::DeviceKind::Cpu);
        let base = self
            .specialized
            .clone()
            .unwrap_or_else(|| self.model.graph.clone());
        if self.plan.is_some() || !cpu_only {
            return base;
        }
        let mut g = (*base).clone();
        let fused = hetflow_ops::optimize::fuse_residual(&mut g)
            + hetflow_ops::optimize::fuse_gemm_activations(&mut g);
        if fused == 0 {
            return base;
        }
        Arc::new(g)
    }

    /// Refuses a plan whose predicted memory on one of these devices is
    /// over its budget (see [`SessionBuilder::memory_limit`]). Devices of
    /// other ranks are checked by their own rank.
    fn check_memory(
        &self,
        g: &Graph,
        plan: &Plan,
        devices: &[Arc<dyn hetflow_devices::Device>],
    ) -> Result<(), Error> {
        if plan.validate(g).is_err() {
            return Ok(()); // Session::new names what is wrong with the plan
        }
        let credits = self.credits.unwrap_or(plan.credits).max(1);
        let costs = hetflow_scheduler::cost::GraphCosts::new(g, 1);
        let mem = hetflow_scheduler::cost::placement_memory(
            g,
            &costs,
            &plan.placement,
            plan.devices.len(),
            credits,
        );
        // A device named in several copies holds each copy's share.
        let mut need: Vec<(String, f64)> = Vec::new();
        for r in 0..plan.copies() {
            for (i, name) in plan.copy_devices(r).iter().enumerate() {
                let local = hetflow_runtime::net::local_name(name).to_string();
                match need.iter_mut().find(|(n, _)| *n == local) {
                    Some((_, b)) => *b += mem[i],
                    None => need.push((local, mem[i])),
                }
            }
        }
        let mib = |b: f64| b / (1u64 << 20) as f64;
        for (name, bytes) in need {
            let Some(d) = devices.iter().find(|d| d.id().to_string() == name) else {
                continue;
            };
            let (budget, whence) = match self.memory_limit {
                Some(l) => (l, "the memory limit"),
                None => (d.info().memory_bytes, "its memory"),
            };
            if budget > 0 && bytes > budget as f64 {
                return Err(Error::Setting(format!(
                    "the plan needs about {:.1} MiB on {name} (its weights plus {credits} buffer(s) of every value it produces or receives) but {whence} is {:.1} MiB; lower the credits, split the model over more devices, or raise the limit",
                    mib(bytes),
                    mib(budget as f64)
                )));
            }
        }
        Ok(())
    }

    /// Opens the devices, plans, and deploys the actors.
    pub fn build(mut self) -> Result<Session, Error> {
        if self.credits == Some(0) {
            return Err(Error::Setting(
                "credits(0): every edge needs at least 1 buffer, or no micro-batch can start"
                    .into(),
            ));
        }
        if self.kernel_timeout == Some(std::time::Duration::ZERO) {
            return Err(Error::Setting(
                "kernel_timeout(0): no kernel finishes in no time".into(),
            ));
        }
        if self.threads == Some(0) {
            return Err(Error::Setting(
                "threads(0): a device needs at least 1 thread".into(),
            ));
        }
        let devices = match self.opened.take() {
            Some(d) => d,
            None => {
                let list = match (&self.devices, &self.plan) {
                    (Some(d), _) => d.clone(),
                    (None, Some(p)) => {
                        // Copies may share devices (stages not replicated).
                        // In a multi-host job, only this rank's devices.
                        let mut names: Vec<String> = Vec::new();
                        for r in 0..p.copies() {
                            for n in p.copy_devices(r) {
                                if let Some(h) = &self.hub {
                                    if h.rank_of(n)? != h.rank() {
                                        continue;
                                    }
                                }
                                let n = hetflow_runtime::net::local_name(n).to_string();
                                if !names.contains(&n) {
                                    names.push(n);
                                }
                            }
                        }
                        names.join(",")
                    }
                    (None, None) => "cpu".to_string(),
                };
                if list.is_empty() && self.hub.is_some() {
                    // A rank with no device in the plan only relays.
                    Vec::new()
                } else {
                    let specs = hetflow_devices::parse_device_list(&list)?;
                    hetflow_devices::open_devices(&specs, self.threads)?
                }
            }
        };
        if let (Some(shapes), None) = (&self.input_shapes, &self.plan) {
            self.specialized = Some(Arc::new(hetflow_ops::specialize::specialize(
                &self.model.graph,
                shapes,
            )?));
        }
        let graph = self.graph_for(&devices);
        let plan = self.plan_for(&graph, &devices)?;
        self.check_memory(&graph, &plan, &devices)?;
        let opts = SessionOptions {
            credits: self.credits,
            trace: self.trace,
            hub: self.hub.clone(),
            kernel_timeout: self.kernel_timeout,
            wires: self.wires.clone(),
            actors: self.actors,
        };
        Ok(Session::new(graph, &plan, devices, opts)?)
    }
}

/// A cluster spec for open devices from their own descriptions, for plans
/// made without `hetflow profile`: the reported peak rate (CPU devices
/// report none; they count 50 GFLOP/s per core), 20 GB/s of memory
/// bandwidth, the reported memory, and as `unsupported` every op type of
/// `g` the device refuses. Links between them: 10 GB/s, 10 µs.
pub fn default_cluster(
    g: &Graph,
    devices: &[Arc<dyn hetflow_devices::Device>],
) -> Result<hetflow_scheduler::ClusterSpec, Error> {
    use hetflow_scheduler::cluster::{DeviceSpec, LinkParams};
    let mut c = hetflow_scheduler::ClusterSpec::default();
    for d in devices {
        let info = d.info();
        let peak = if info.peak_gflops_f32 > 0.0 {
            info.peak_gflops_f32
        } else {
            50.0 * info.compute_units.max(1) as f64
        };
        let mut unsupported: Vec<String> = Vec::new();
        for n in &g.nodes {
            if d.supports(&n.op).is_err() && !unsupported.iter().any(|u| u == n.op.name()) {
                unsupported.push(n.op.name().to_string());
            }
        }
        c.devices.push(DeviceSpec {
            name: info.id.to_string(),
            host: "localhost".into(),
            kind: info.id.kind.name().into(),
            model: Some(info.name.clone()),
            peak_gflops: [("f32".to_string(), peak)].into_iter().collect(),
            memory_gib: (info.memory_bytes.max(1 << 30)) as f64 / (1u64 << 30) as f64,
            mem_bw_gbps: 20.0,
            launch_us: 2.0,
            efficiency: Default::default(),
            unsupported,
            history: Default::default(),
            contention: 1.0,
            copy_engine: info.copy_engine,
        });
    }
    c.defaults.intra_host = Some(LinkParams {
        bandwidth_gbps: 10.0,
        latency_us: 10.0,
        shared: false,
    });
    c.validate()?;
    Ok(c)
}

/// Pseudo-random inputs (uniform in [-1, 1), deterministic for a `seed`)
/// of the graph's declared input shapes, symbolic dimensions bound to
/// `batch`, cast to each input's dtype; for benchmarks, profiling and
/// examples. An input with no declared rank is an error naming it.
pub fn random_inputs(g: &Graph, batch: usize, seed: u64) -> Result<Vec<Arc<Tensor>>, Error> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    g.inputs
        .iter()
        .map(|i| {
            let v = g.value(*i);
            let shape: Vec<usize> = v
                .fact
                .shape
                .as_ref()
                .ok_or_else(|| {
                    hetflow_ops::Error::msg(format!(
                        "input '{}' has no declared shape; pass it explicitly",
                        v.name
                    ))
                })?
                .iter()
                .map(|d| d.known().unwrap_or(batch))
                .collect();
            let n: usize = shape.iter().product();
            let t = Tensor::from_vec(shape, (0..n).map(|_| next()).collect::<Vec<f32>>())?;
            let dt = v.fact.dtype.unwrap_or(DType::F32);
            Ok(Arc::new(if dt == DType::F32 { t } else { t.cast(dt) }))
        })
        .collect()
}

/// Escapes control characters (and Unicode bidi overrides) as `\u{..}`,
/// `\n`, `\t`…, so that a name a model chose cannot write terminal escape
/// sequences or reorder a line when it is printed. The CLI passes every
/// message and every model-provided name it prints through this.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Replaces every character outside `[A-Za-z0-9._-]` with `_` (output file
/// names of `hetflow run`).
pub fn sanitize_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
