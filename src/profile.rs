//! `hetflow profile`: measures the devices of this machine and writes the
//! [`ClusterSpec`] the planners and the simulator use.
//!
//! For each device, alone (the others idle), it runs small benchmark graphs
//! through a real [`Session`] with tracing on — GEMMs, convolutions,
//! element-wise ops, reductions, pooling, data movement, and any models the
//! caller adds — and takes the median kernel time of every node over the
//! timed iterations. [`hetflow_scheduler::calibrate::fit_device`] turns
//! those into the device's peak rate, memory bandwidth and per-class
//! efficiencies, and [`hetflow_scheduler::calibrate::record_history`] keeps
//! how long every kernel held the device (its start to the next kernel's
//! start, so the runtime's dispatch around it is included) under its
//! footprint (op, attributes, input shapes), so plans of the profiled
//! models are costed from measurements. The launch overhead is the per-op wall time of a chain of
//! tiny ops (it includes the actor dispatch). For each pair of devices, a
//! two-stage graph measures the hop at two sizes and fits latency + bytes /
//! bandwidth. The latency is the small hop as the consumer sees it
//! (producer kernel end to consumer kernel start). CPU devices share host
//! memory, so their "transfers" pass a handle; what grows with size there
//! is the consumer's first read of data another core wrote, so their
//! bandwidth is fitted from the consumer's extra time over the same chain
//! run on one device (a 256 KiB buffer, which stays in that core's
//! cache). Bandwidths are capped at [`MAX_LINK_GBPS`].
//!
//! Emulated devices (the TPU-like device) report a modelled time for each
//! kernel and copy; the profile uses it instead of the wall time, so the
//! spec describes the hardware the device stands for and the planners
//! place work as they would on it.

use crate::{Error, Model};
use hetflow_devices::{Device, DeviceKind};
use hetflow_ops::op::BinaryOp;
use hetflow_ops::op::{AutoPad, ConvAttrs, PoolAttrs, ReduceKind, UnaryOp};
use hetflow_ops::{DType, Dim, Graph, Op, Tensor};
use hetflow_runtime::{Session, SessionOptions, TraceEvent};
use hetflow_scheduler::calibrate::{fit_device, record_history, Sample};
use hetflow_scheduler::cluster::{ClusterSpec, DeviceSpec, HostSpec, LinkSpec};
use hetflow_scheduler::cost::GraphCosts;
use hetflow_scheduler::Plan;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// Tiny ops in the chain whose per-op wall time is the launch cost.
const LAUNCH_CHAIN: usize = 200;

/// Fitted link bandwidths are capped here (GB/s): shared-memory handle
/// passing would otherwise fit an unbounded bandwidth.
pub const MAX_LINK_GBPS: f64 = 1000.0;

/// A progress callback: (steps done, steps in all, what was just done).
pub type Progress = Arc<dyn Fn(usize, usize, &str) + Send + Sync>;

/// What to profile.
#[derive(Clone)]
pub struct ProfileOptions {
    /// Device list (`cpu`, `cpu:0,cpu:1`, ...).
    pub devices: String,
    /// Kernel threads per CPU device.
    pub threads: Option<usize>,
    /// Extra models whose kernels join the efficiency fit.
    pub models: Vec<std::path::PathBuf>,
    /// Extra in-memory graphs, likewise.
    pub graphs: Vec<Arc<Graph>>,
    /// Size bound to symbolic dimensions of the extra models' inputs.
    pub batch: usize,
    /// Timed iterations per benchmark graph.
    pub iters: usize,
    /// Called after each step with (done, total, what).
    pub progress: Option<Progress>,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            devices: "cpu".into(),
            threads: None,
            models: Vec::new(),
            graphs: Vec::new(),
            batch: 1,
            iters: 5,
            progress: None,
        }
    }
}

/// Deterministic pseudo-random data in [-1, 1).
fn random(shape: Vec<usize>, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(shape, v).expect("shape matches data")
}

/// A one-op graph: `inputs` are fed, `consts` are weights.
fn one_op(name: &str, op: Op, inputs: &[Vec<usize>], consts: &[Vec<usize>]) -> Graph {
    let mut g = Graph::default();
    let mut ids = Vec::new();
    for (i, s) in inputs.iter().enumerate() {
        let dims = s.iter().map(|&d| Dim::Known(d)).collect();
        ids.push(g.add_input(&format!("{name}_in{i}"), DType::F32, dims));
    }
    for (i, s) in consts.iter().enumerate() {
        ids.push(g.add_const(&format!("{name}_w{i}"), random(s.clone(), 7 + i as u64)));
    }
    let out = g.add_node(name, op, &ids, 1)[0];
    g.add_output(out);
    g
}

fn conv(k: usize, stride: usize, pad: usize) -> Op {
    Op::Conv(ConvAttrs {
        kernel_shape: Some(vec![k, k]),
        strides: vec![stride, stride],
        pads: vec![pad; 4],
        dilations: vec![1, 1],
        group: 1,
        auto_pad: AutoPad::NotSet,
        ..Default::default()
    })
}

/// The built-in benchmark graphs, one op each.
pub fn benchmark_graphs() -> Vec<Graph> {
    let mut v = vec![
        one_op(
            "gemm_1024",
            Op::MatMul,
            &[vec![1024, 1024], vec![1024, 1024]],
            &[],
        ),
        one_op(
            "gemm_256x1024",
            Op::MatMul,
            &[vec![256, 1024]],
            &[vec![1024, 1024]],
        ),
        one_op(
            "gemm_64x512",
            Op::MatMul,
            &[vec![64, 512]],
            &[vec![512, 512]],
        ),
        one_op(
            "conv3x3_64_56",
            conv(3, 1, 1),
            &[vec![1, 64, 56, 56]],
            &[vec![64, 64, 3, 3]],
        ),
        one_op(
            "conv1x1_256_28",
            conv(1, 1, 0),
            &[vec![1, 256, 28, 28]],
            &[vec![64, 256, 1, 1]],
        ),
        one_op(
            "conv3x3s2_128_28",
            conv(3, 2, 1),
            &[vec![1, 128, 28, 28]],
            &[vec![128, 128, 3, 3]],
        ),
        one_op(
            "conv7x7s2_3_224",
            conv(7, 2, 3),
            &[vec![1, 3, 224, 224]],
            &[vec![64, 3, 7, 7]],
        ),
        one_op(
            "add_4m",
            Op::Binary(BinaryOp::Add),
            &[vec![1 << 22], vec![1 << 22]],
            &[],
        ),
        one_op(
            "mul_1m",
            Op::Binary(BinaryOp::Mul),
            &[vec![1 << 20], vec![1 << 20]],
            &[],
        ),
        one_op("relu_4m", Op::Unary(UnaryOp::Relu), &[vec![1 << 22]], &[]),
        one_op(
            "sigmoid_1m",
            Op::Unary(UnaryOp::Sigmoid),
            &[vec![1 << 20]],
            &[],
        ),
        one_op(
            "softmax_512x1024",
            Op::Softmax {
                axis: -1,
                legacy: false,
            },
            &[vec![512, 1024]],
            &[],
        ),
        one_op(
            "reducemean_1024",
            Op::Reduce {
                kind: ReduceKind::Mean,
                axes: Some(vec![1]),
                keepdims: true,
                noop_with_empty_axes: false,
            },
            &[vec![1024, 1024]],
            &[],
        ),
        one_op(
            "maxpool_64_112",
            Op::MaxPool(PoolAttrs {
                kernel_shape: vec![3, 3],
                strides: vec![2, 2],
                pads: vec![1; 4],
                dilations: vec![1, 1],
                ..Default::default()
            }),
            &[vec![1, 64, 112, 112]],
            &[],
        ),
        one_op(
            "transpose_1024",
            Op::Transpose {
                perm: Some(vec![1, 0]),
            },
            &[vec![1024, 1024]],
            &[],
        ),
        one_op(
            "concat_2x512",
            Op::Concat { axis: 0 },
            &[vec![512, 1024], vec![512, 1024]],
            &[],
        ),
    ];
    for g in &mut v {
        let taken = std::mem::take(g);
        *g = taken.finish().expect("benchmark graphs are well-formed");
    }
    v
}

/// A chain of `n` tiny additions: its per-op wall time is the launch cost.
fn tiny_chain(n: usize) -> Graph {
    let mut g = Graph::default();
    let mut x = g.add_input("x", DType::F32, vec![Dim::Known(1)]);
    let one = g.add_const(
        "one",
        Tensor::from_vec(vec![1], vec![1.0f32]).expect("1 elem"),
    );
    for i in 0..n {
        x = g.add_node(&format!("add{i}"), Op::Binary(BinaryOp::Add), &[x, one], 1)[0];
    }
    g.add_output(x);
    g.finish().expect("chain is well-formed")
}

/// What `measure` saw.
struct Measured {
    /// Median kernel seconds per node name (modelled where reported).
    per_node: HashMap<String, f64>,
    /// Median seconds per node name that the device was occupied: from the
    /// kernel's start to the next kernel's start in the same run (the
    /// kernel plus the runtime's work around it: messages, buffer release,
    /// dispatch of the next); modelled kernel times where reported.
    occupancy: HashMap<String, f64>,
    /// Median wall seconds per run.
    wall: f64,
    /// Whether the device reported modelled kernel times.
    modelled: bool,
}

/// A tracing session with all of `g` on `dev`.
fn traced_session(g: Arc<Graph>, dev: &Arc<dyn Device>) -> Result<Session, Error> {
    let plan = Plan::single_device(&g, &dev.id().to_string());
    Ok(Session::new(
        g,
        &plan,
        vec![dev.clone()],
        SessionOptions {
            trace: true,
            ..Default::default()
        },
    )?)
}

/// Per-node median kernel seconds of `iters` runs of `g` on one device.
fn measure(
    g: Arc<Graph>,
    dev: &Arc<dyn Device>,
    iters: usize,
    inputs: Vec<Arc<Tensor>>,
) -> Result<Measured, Error> {
    let mut s = traced_session(g, dev)?;
    s.run(inputs.clone())?;
    s.take_trace_events();
    let mut walls = Vec::new();
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        s.run(inputs.clone())?;
        walls.push(t.elapsed().as_secs_f64());
    }
    let ev = s.take_trace_events();
    let modelled = ev
        .iter()
        .any(|e| e.cat == "kernel" && e.modelled_us.is_some());
    Ok(Measured {
        per_node: median_by_name(&ev),
        occupancy: if modelled {
            median_by_name(&ev)
        } else {
            occupancy_by_name(&ev)
        },
        wall: median(&mut walls),
        modelled,
    })
}

/// Per node name, the median seconds from its kernel's start to the next
/// kernel's start in the same run (micro-batch); a run's last kernel gets
/// its duration plus the median gap of the others.
fn occupancy_by_name(ev: &[TraceEvent]) -> HashMap<String, f64> {
    let mut runs: BTreeMap<u64, Vec<&TraceEvent>> = BTreeMap::new();
    for e in ev.iter().filter(|e| e.cat == "kernel") {
        runs.entry(e.mb).or_default().push(e);
    }
    let mut by: HashMap<String, Vec<f64>> = HashMap::new();
    let mut gaps = Vec::new();
    let mut lasts = Vec::new();
    for run in runs.values_mut() {
        run.sort_by(|a, b| a.start_us.total_cmp(&b.start_us));
        for w in run.windows(2) {
            let occ = (w[1].start_us - w[0].start_us).max(w[0].dur_us);
            gaps.push(occ - w[0].dur_us);
            by.entry(w[0].name.clone()).or_default().push(occ * 1e-6);
        }
        if let Some(l) = run.last() {
            lasts.push(*l);
        }
    }
    let gap = median(&mut gaps);
    for l in lasts {
        by.entry(l.name.clone())
            .or_default()
            .push((l.dur_us + gap) * 1e-6);
    }
    by.into_iter()
        .map(|(k, mut v)| (k, median(&mut v)))
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn median_by_name(ev: &[TraceEvent]) -> HashMap<String, f64> {
    let mut by: HashMap<String, Vec<f64>> = HashMap::new();
    for e in ev.iter().filter(|e| e.cat == "kernel") {
        // Emulated devices report their modelled time: that is the speed
        // the device stands for, not the emulation's.
        by.entry(e.name.clone())
            .or_default()
            .push(e.modelled_us.unwrap_or(e.dur_us) * 1e-6);
    }
    by.into_iter()
        .map(|(k, mut v)| (k, median(&mut v)))
        .collect()
}

/// Opens `opts.devices` and profiles them (module docs).
pub fn profile(opts: &ProfileOptions) -> Result<ClusterSpec, Error> {
    let specs = hetflow_devices::parse_device_list(&opts.devices)?;
    let devices = hetflow_devices::open_devices(&specs, opts.threads)?;
    profile_devices(&devices, opts)
}

/// Profiles already-open devices (`opts.devices` and `opts.threads` are
/// ignored) and returns the cluster spec.
pub fn profile_devices(
    devices: &[Arc<dyn Device>],
    opts: &ProfileOptions,
) -> Result<ClusterSpec, Error> {
    let host = hostname();
    let mut graphs: Vec<Arc<Graph>> = benchmark_graphs().into_iter().map(Arc::new).collect();
    for m in &opts.models {
        graphs.push(Model::load(m)?.graph().clone());
    }
    graphs.extend(opts.graphs.iter().cloned());
    let pairs = devices.len() * devices.len().saturating_sub(1) / 2;
    let total = devices.len() * (graphs.len() + 1) + pairs + usize::from(devices.len() > 1);
    let mut done = 0;
    let tick = |done: &mut usize, what: &str| {
        *done += 1;
        if let Some(p) = &opts.progress {
            p(*done, total, what);
        }
    };
    let mut out = ClusterSpec {
        hosts: vec![HostSpec { name: host.clone() }],
        ..Default::default()
    };
    for dev in devices {
        let info = dev.info();
        let name = info.id.to_string();
        // Launch cost: wall time per op of a chain of tiny ops; for a device
        // that models its own times, the modelled time of a tiny kernel
        // (not the emulation's wall time).
        let chain = Arc::new(tiny_chain(LAUNCH_CHAIN));
        let feed = crate::random_inputs(&chain, 1, 1)?;
        let m = measure(chain, dev, opts.iters.max(5), feed)?;
        let launch_s = if m.modelled {
            let mut v: Vec<f64> = m.per_node.values().copied().collect();
            median(&mut v)
        } else {
            m.wall / LAUNCH_CHAIN as f64
        };
        tick(&mut done, &format!("{name}: launch"));
        let mut spec = DeviceSpec {
            name: name.clone(),
            host: host.clone(),
            kind: info.id.kind.name().into(),
            model: Some(info.name.clone()),
            peak_gflops: BTreeMap::from([("f32".to_string(), info.peak_gflops_f32.max(1.0))]),
            memory_gib: info.memory_bytes as f64 / (1u64 << 30) as f64,
            mem_bw_gbps: 1.0,
            launch_us: launch_s * 1e6,
            efficiency: BTreeMap::new(),
            unsupported: Vec::new(),
            history: BTreeMap::new(),
            contention: 1.0,
            copy_engine: info.copy_engine,
        };
        let mut samples = Vec::new();
        let mut occupied = Vec::new();
        for g in &graphs {
            // Ops the device refuses are listed in the spec (so planners
            // keep them elsewhere) and their graphs are not measured there.
            let refused: Vec<&'static str> = g
                .nodes
                .iter()
                .filter(|n| dev.supports(&n.op).is_err())
                .map(|n| n.op.name())
                .collect();
            if !refused.is_empty() {
                for r in refused {
                    if !spec.unsupported.iter().any(|u| u == r) {
                        spec.unsupported.push(r.to_string());
                    }
                }
                tick(&mut done, &format!("{name}: skipped"));
                continue;
            }
            let costs = GraphCosts::new(g, opts.batch);
            let m = measure(
                g.clone(),
                dev,
                opts.iters,
                crate::random_inputs(g, opts.batch, 3)?,
            )?;
            for (i, n) in g.nodes.iter().enumerate() {
                if let Some(&t) = m.per_node.get(&n.name) {
                    samples.push(Sample {
                        node: costs.nodes[i].clone(),
                        seconds: t,
                    });
                }
                if let Some(&t) = m.occupancy.get(&n.name) {
                    occupied.push(Sample {
                        node: costs.nodes[i].clone(),
                        seconds: t,
                    });
                }
            }
            tick(
                &mut done,
                &format!(
                    "{name}: {}",
                    g.nodes.first().map(|n| n.name.as_str()).unwrap_or("model")
                ),
            );
        }
        fit_device(&mut spec, &samples);
        // History: how long each kernel holds the device in the runtime.
        record_history(&mut spec, &occupied);
        out.devices.push(spec);
    }
    // Contention: each device's slowdown with every device busy at once,
    // on the caller's models (the work that will share the host), else on
    // the benchmark graphs.
    if devices.len() > 1 {
        let work: Vec<Arc<Graph>> = if opts.models.is_empty() && opts.graphs.is_empty() {
            graphs.clone()
        } else {
            graphs[graphs.len() - opts.models.len() - opts.graphs.len()..].to_vec()
        };
        let f = measure_contention(devices, &work, 3 * opts.iters.max(3), opts.batch)?;
        for (spec, f) in out.devices.iter_mut().zip(f) {
            spec.contention = f;
        }
        tick(&mut done, "contention");
    }
    for a in 0..devices.len() {
        for b in a + 1..devices.len() {
            let (lat, bw) = measure_link(&devices[a], &devices[b], opts.iters)?;
            out.links.push(LinkSpec {
                from: devices[a].id().to_string(),
                to: devices[b].id().to_string(),
                bandwidth_gbps: bw,
                latency_us: lat,
                shared: false,
            });
            tick(&mut done, "link");
        }
    }
    out.validate()?;
    Ok(out)
}

/// Per device, the slowdown of running `graphs` (each, `iters` times,
/// summed) while every other device runs them too, against running them
/// alone; at least 1, rounded to 0.01. Devices that report modelled
/// kernel times (emulated hardware) get 1. Graphs a device refuses are
/// skipped for it.
fn measure_contention(
    devices: &[Arc<dyn Device>],
    graphs: &[Arc<Graph>],
    iters: usize,
    batch: usize,
) -> Result<Vec<f64>, Error> {
    // One session per (device, graph), built up front and warmed.
    let mut sessions: Vec<Vec<(Session, Vec<Arc<Tensor>>)>> = Vec::new();
    let mut modelled = Vec::new();
    for dev in devices {
        let mut v = Vec::new();
        let mut is_modelled = false;
        for g in graphs {
            if g.nodes.iter().any(|n| dev.supports(&n.op).is_err()) {
                continue;
            }
            let mut s = traced_session(g.clone(), dev)?;
            let x = crate::random_inputs(g, batch, 11)?;
            s.run(x.clone())?;
            is_modelled |= s
                .take_trace_events()
                .iter()
                .any(|e| e.modelled_us.is_some());
            v.push((s, x));
        }
        sessions.push(v);
        modelled.push(is_modelled);
    }
    // Median over `iters` rounds of one pass over the device's graphs.
    fn pass(v: &mut [(Session, Vec<Arc<Tensor>>)], iters: usize) -> Result<f64, Error> {
        let mut t = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t0 = Instant::now();
            for (s, x) in v.iter_mut() {
                s.run(x.clone())?;
            }
            t.push(t0.elapsed().as_secs_f64());
        }
        Ok(median(&mut t))
    }
    let mut alone = Vec::new();
    for v in sessions.iter_mut() {
        alone.push(pass(v, iters)?);
    }
    // All at once: every device loops over its graphs on its own thread,
    // starting together (a barrier), for a few more rounds than it
    // measures so that the others are busy throughout.
    let barrier = std::sync::Barrier::new(sessions.len());
    let together: Vec<Result<f64, Error>> = std::thread::scope(|sc| {
        let hs: Vec<_> = sessions
            .iter_mut()
            .map(|v| {
                let barrier = &barrier;
                sc.spawn(move || -> Result<f64, Error> {
                    barrier.wait();
                    pass(v, 1)?;
                    let t = pass(v, iters)?;
                    pass(v, 2)?;
                    Ok(t)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(hetflow_ops::Error::msg("contention measurement thread panicked").into())
                })
            })
            .collect()
    });
    let mut out = Vec::new();
    for ((a, t), m) in alone.into_iter().zip(together).zip(modelled) {
        let t = t?;
        out.push(if m || a <= 0.0 {
            1.0
        } else {
            ((t / a).max(1.0) * 100.0).round() / 100.0
        });
    }
    Ok(out)
}

/// Latency (µs) and bandwidth (GB/s) of transfers from `a` to `b`, from a
/// two-stage graph at two sizes: latency is the small hop from the
/// producer kernel's end to the consumer kernel's start (thread wake-ups
/// included), bandwidth the growth of the copy's own time with size.
fn measure_link(
    a: &Arc<dyn Device>,
    b: &Arc<dyn Device>,
    iters: usize,
) -> Result<(f64, f64), Error> {
    // Two CPU devices pass buffers by handle, so the copy itself is free;
    // what grows with size is the consumer's first read of data another
    // core wrote (its caches are cold). That is measured against the same
    // chain run on the consumer alone, with a buffer that fits in cache.
    let host_pair = a.info().id.kind == DeviceKind::Cpu && b.info().id.kind == DeviceKind::Cpu;
    let big = if host_pair { 1 << 16 } else { 1 << 22 };
    let mut pts = Vec::new();
    for &n in &[16usize, big] {
        let cross = chain_hop(a, b, n, iters)?;
        let growth = if host_pair {
            // The consumer-visible cost beyond a warm, same-core hop.
            let local = chain_hop(b, b, n, iters)?;
            (cross.reach - local.reach).max(0.0)
        } else {
            cross.copy
        };
        pts.push(((n * 4) as f64, cross.hop, growth));
    }
    let (small_b, small_hop, small_g) = pts[0];
    let (big_b, _, big_g) = pts[1];
    // Latency: the whole small hop; bandwidth: from the growth with size.
    let lat = small_hop.max(0.0);
    let slope_us = (big_g - small_g).max(0.0) / (big_b - small_b); // µs per byte
    let bw = if slope_us > 0.0 {
        (1e-3 / slope_us).min(MAX_LINK_GBPS)
    } else {
        MAX_LINK_GBPS
    };
    Ok((lat, bw))
}

/// Medians (µs) of one producer → consumer hop of `n` floats.
struct Hop {
    /// The copy event's duration (modelled time where the device has one).
    copy: f64,
    /// Producer kernel end to consumer kernel start: waking the copy
    /// thread, the copy, waking the consumer's thread.
    hop: f64,
    /// Producer kernel end to consumer kernel end.
    reach: f64,
}

/// Runs `first` (Relu) on `a` and `second` (Relu) on `b` over `n` floats.
fn chain_hop(
    a: &Arc<dyn Device>,
    b: &Arc<dyn Device>,
    n: usize,
    iters: usize,
) -> Result<Hop, Error> {
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Known(n)]);
    let y = g.add_node("first", Op::Unary(UnaryOp::Relu), &[x], 1)[0];
    let z = g.add_node("second", Op::Unary(UnaryOp::Relu), &[y], 1)[0];
    g.add_output(z);
    let g = Arc::new(g.finish()?);
    let same = Arc::ptr_eq(a, b);
    let (names, devs, at) = if same {
        (vec![a.id().to_string()], vec![a.clone()], vec![0, 0])
    } else {
        (
            vec![a.id().to_string(), b.id().to_string()],
            vec![a.clone(), b.clone()],
            vec![0, 1],
        )
    };
    let plan = Plan::from_placement(&g, names, at);
    let mut s = Session::new(
        g.clone(),
        &plan,
        devs,
        SessionOptions {
            trace: true,
            ..Default::default()
        },
    )?;
    let input = crate::random_inputs(&g, 1, 5)?;
    s.run(input.clone())?;
    s.take_trace_events();
    for _ in 0..iters.max(3) {
        s.run(input.clone())?;
    }
    let ev = s.take_trace_events();
    let mut copies: Vec<f64> = ev
        .iter()
        .filter(|e| e.cat == "copy")
        .map(|e| e.modelled_us.unwrap_or(e.dur_us))
        .collect();
    let modelled = ev.iter().any(|e| e.modelled_us.is_some());
    let (mut hops, mut reach) = (Vec::new(), Vec::new());
    for mb in ev
        .iter()
        .map(|e| e.mb)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let k = |name: &str| ev.iter().find(|e| e.mb == mb && e.name == name);
        if let (Some(p), Some(c)) = (k("first"), k("second")) {
            let end = p.start_us + p.dur_us;
            hops.push(c.start_us - end);
            reach.push(c.start_us + c.dur_us - end);
        }
    }
    let copy = if copies.is_empty() {
        0.0
    } else {
        median(&mut copies)
    };
    let hop = if modelled || hops.is_empty() {
        copy
    } else {
        median(&mut hops).max(copy)
    };
    let reach = if reach.is_empty() {
        hop
    } else {
        median(&mut reach)
    };
    Ok(Hop { copy, hop, reach })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
