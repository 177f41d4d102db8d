//! [`Session`]: executes a [`Plan`] of a [`Graph`] on real devices.
//!
//! Construction starts an actix `System` on a thread of its own, one
//! compute Arbiter (OS thread) per device, bound near the device, plus one
//! copy Arbiter per device that receives cross-device edges, and one
//! Arbiter for the source and sink. Every placed node becomes a
//! [`Task`] actor on its device's compute arbiter; every transfer of the
//! plan becomes a copy task on the destination's copy arbiter. Constants
//! are uploaded once, to each device that reads them.
//!
//! `run` feeds one input set; `run_stream` feeds many (micro-batches) at
//! once, so that stages on different devices work on different inputs at
//! the same time. Inputs are checked against the graph (count, dtype, rank,
//! fixed dims, consistent symbolic dims) before anything runs; they are
//! shared, never modified, so the caller's data is intact whatever happens.
//! A failure ends the run with an error naming the node and device; the
//! session is then unusable (its pipeline state is unknown) and says so.

use crate::actors::*;
use crate::error::{Result, RuntimeError};
use crate::trace::{Recorder, TraceEvent};
use actix::dev::channel::AddressReceiver;
use actix::prelude::*;
use crossbeam::channel::{unbounded, Receiver};
use hetflow_devices::{Device, DeviceTensor};
use hetflow_ops::graph::fmt_shape;
use hetflow_ops::{Dim, Graph, Tensor, ValueId};
use hetflow_scheduler::Plan;
use std::collections::HashMap;
use std::sync::Arc;

/// Session settings.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Buffers per edge; `None` takes the plan's.
    pub credits: Option<usize>,
    /// Record a timeline of kernels and copies.
    pub trace: bool,
}

/// A graph deployed on devices, ready to run.
pub struct Session {
    graph: Arc<Graph>,
    /// One per copy of the plan; micro-batch i goes to copy i mod k.
    sources: Vec<Addr<Source>>,
    events: Receiver<Event>,
    system: System,
    thread: Option<std::thread::JoinHandle<()>>,
    arbiters: Vec<ArbiterHandle>,
    next_mb: u64,
    broken: Option<RuntimeError>,
    recorder: Arc<Recorder>,
    /// The outputs when every one is a constant: then no actor produces a
    /// result, and runs answer with these.
    constant_outputs: Option<Vec<Arc<Tensor>>>,
}

struct Built {
    /// One source per copy of the plan.
    sources: Vec<Addr<Source>>,
    arbiters: Vec<ArbiterHandle>,
}

/// What the copies of a plan share on one device (by name): its compute
/// and copy threads, its ready queue and the weights uploaded to it. A
/// device that several copies name at the same position runs that
/// position's stages for all of them (a stage that is not replicated),
/// micro-batches of all copies in one oldest-first order.
struct SharedDevice {
    compute: ArbiterHandle,
    copy: ArbiterHandle,
    queue: Arc<std::sync::Mutex<DeviceQueue>>,
    dispatcher: Recipient<Pump>,
    uploaded: HashMap<usize, DeviceTensor>,
}

impl Session {
    /// Deploys `graph` per `plan` on `devices` (each plan device name must
    /// match one device's id).
    pub fn new(
        graph: Arc<Graph>,
        plan: &Plan,
        devices: Vec<Arc<dyn Device>>,
        opts: SessionOptions,
    ) -> Result<Session> {
        plan.validate(&graph)
            .map_err(|e| RuntimeError::Setup(e.to_string()))?;
        // One device list per copy of the plan (data-parallel replicas).
        let mut copies: Vec<Vec<Arc<dyn Device>>> = Vec::new();
        for r in 0..plan.copies() {
            let mut plan_devices: Vec<Arc<dyn Device>> = Vec::new();
            for name in plan.copy_devices(r) {
                let d = devices
                    .iter()
                    .find(|d| d.id().to_string() == *name)
                    .ok_or_else(|| {
                        RuntimeError::Setup(format!(
                            "plan uses device {name}, which is not open (open: {})",
                            devices
                                .iter()
                                .map(|d| d.id().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                plan_devices.push(d.clone());
            }
            for (i, n) in graph.nodes.iter().enumerate() {
                let d = &plan_devices[plan.placement[i]];
                d.supports(&n.op).map_err(|why| {
                    RuntimeError::Setup(format!(
                        "node '{}' ({}) cannot run on {}: {why}",
                        n.name,
                        n.op.name(),
                        d.id()
                    ))
                })?;
            }
            copies.push(plan_devices);
        }
        let credits = opts.credits.unwrap_or(plan.credits).max(1);
        let recorder = Arc::new(Recorder::new(opts.trace));
        let (ev_tx, ev_rx) = unbounded();
        let (built_tx, built_rx) =
            std::sync::mpsc::channel::<std::result::Result<(Built, System), RuntimeError>>();
        let g = graph.clone();
        let plan = plan.clone();
        let rec = recorder.clone();
        let thread = std::thread::Builder::new()
            .name("hetflow-runtime".into())
            .spawn(move || {
                let sys = System::new();
                let res = sys.block_on(async move {
                    let k = copies.len();
                    let mut all = Built {
                        sources: Vec::new(),
                        arbiters: Vec::new(),
                    };
                    let mut shared: HashMap<String, SharedDevice> = HashMap::new();
                    for (r, devs) in copies.iter().enumerate() {
                        let b = build(
                            &g,
                            &plan,
                            devs,
                            &mut shared,
                            credits,
                            ev_tx.clone(),
                            rec.clone(),
                            (k, r),
                        )?;
                        all.sources.extend(b.sources);
                        all.arbiters.extend(b.arbiters);
                    }
                    Ok(all)
                });
                let ok = res.is_ok();
                let _ = built_tx.send(res.map(|b| (b, System::current())));
                if ok {
                    let _ = sys.run();
                }
            })
            .map_err(|e| RuntimeError::Setup(format!("cannot start runtime thread: {e}")))?;
        let (built, system) = built_rx
            .recv()
            .map_err(|_| RuntimeError::Setup("runtime thread died during setup".into()))??;
        let constant_outputs = graph
            .outputs
            .iter()
            .map(|o| graph.constants.get(o).cloned())
            .collect();
        Ok(Session {
            constant_outputs,
            graph,
            sources: built.sources,
            events: ev_rx,
            system,
            thread: Some(thread),
            arbiters: built.arbiters,
            next_mb: 0,
            broken: None,
            recorder,
        })
    }

    /// The deployed graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs one input set (graph inputs in order); returns the graph
    /// outputs in order, on the host.
    pub fn run(&mut self, inputs: Vec<Arc<Tensor>>) -> Result<Vec<Arc<Tensor>>> {
        let mut v = self.run_stream(vec![inputs])?;
        v.pop()
            .ok_or_else(|| RuntimeError::Stopped("no output".into()))
    }

    /// Streams many input sets through the pipeline at once; results come
    /// back in input order.
    pub fn run_stream(&mut self, batches: Vec<Vec<Arc<Tensor>>>) -> Result<Vec<Vec<Arc<Tensor>>>> {
        if let Some(e) = &self.broken {
            return Err(RuntimeError::Stopped(format!("an earlier run failed: {e}")));
        }
        for (i, b) in batches.iter().enumerate() {
            check_inputs(&self.graph, b).map_err(|e| {
                if batches.len() > 1 {
                    RuntimeError::Input(format!("input set {i}: {e}"))
                } else {
                    e
                }
            })?;
        }
        if let Some(outs) = &self.constant_outputs {
            self.next_mb += batches.len() as u64;
            return Ok(vec![outs.clone(); batches.len()]);
        }
        let first = self.next_mb;
        let n = batches.len();
        let k = self.sources.len() as u64;
        for b in batches {
            // Each copy numbers its own micro-batches 0, 1, 2, ...
            let (copy, local) = (self.next_mb % k, self.next_mb / k);
            self.sources[copy as usize].do_send(Feed {
                mb: local,
                inputs: b,
            });
            self.next_mb += 1;
        }
        let mut results: Vec<Option<Vec<Arc<Tensor>>>> = vec![None; n];
        let mut got = 0;
        while got < n {
            match self.events.recv() {
                Ok(Event::Output { mb, outputs }) => {
                    let i = (mb - first) as usize;
                    if i < n && results[i].is_none() {
                        results[i] = Some(outputs);
                        got += 1;
                    }
                }
                Ok(Event::Failed(e)) => {
                    self.broken = Some(e.clone());
                    return Err(e);
                }
                Err(_) => {
                    let e = RuntimeError::Stopped("actor system exited".into());
                    self.broken = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// The timeline recorded so far (empty unless tracing was enabled).
    pub fn trace_events(&self) -> Vec<TraceEvent> {
        self.recorder.events()
    }
    /// Removes and returns the trace events recorded so far.
    pub fn take_trace_events(&self) -> Vec<TraceEvent> {
        self.recorder.take()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for a in &self.arbiters {
            a.stop();
        }
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checks caller inputs against the graph's declared inputs.
pub fn check_inputs(g: &Graph, inputs: &[Arc<Tensor>]) -> Result<()> {
    if inputs.len() != g.inputs.len() {
        let names: Vec<&str> = g.inputs.iter().map(|i| g.name(*i)).collect();
        return Err(RuntimeError::Input(format!(
            "the graph takes {} input(s) ({}), got {}",
            g.inputs.len(),
            names.join(", "),
            inputs.len()
        )));
    }
    let mut syms: HashMap<&str, usize> = HashMap::new();
    for (id, t) in g.inputs.iter().zip(inputs) {
        let v = g.value(*id);
        if let Some(dt) = v.fact.dtype {
            if dt != t.dtype() {
                return Err(RuntimeError::Input(format!(
                    "input '{}' must be {dt}, got {}",
                    v.name,
                    t.dtype()
                )));
            }
        }
        if let Some(shape) = &v.fact.shape {
            if shape.len() != t.rank() {
                return Err(RuntimeError::Input(format!(
                    "input '{}' must have rank {} {}, got shape {:?}",
                    v.name,
                    shape.len(),
                    fmt_shape(shape),
                    t.shape()
                )));
            }
            for (i, (d, &n)) in shape.iter().zip(t.shape()).enumerate() {
                match d {
                    Dim::Known(k) if *k != n => {
                        return Err(RuntimeError::Input(format!(
                            "input '{}' dim {i} must be {k} (shape {}), got shape {:?}",
                            v.name,
                            fmt_shape(shape),
                            t.shape()
                        )))
                    }
                    Dim::Sym(s) => {
                        if let Some(&prev) = syms.get(s.as_str()) {
                            if prev != n {
                                return Err(RuntimeError::Input(format!(
                                    "input '{}' dim {i} is '{s}' = {n}, but another input has '{s}' = {prev}",
                                    v.name
                                )));
                            }
                        }
                        syms.insert(s, n);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// An address whose actor is started later, on another thread.
fn mailbox<A: Actor<Context = Context<A>>>() -> (Addr<A>, AddressReceiver<A>) {
    let (tx, rx) = actix::dev::channel::channel(16);
    (Addr::new(tx), rx)
}

/// Starts `act` on `arb`'s thread, receiving from `rx`.
fn start_on<A: Actor<Context = Context<A>> + Send>(
    arb: &ArbiterHandle,
    rx: AddressReceiver<A>,
    act: A,
) {
    arb.spawn_fn(move || {
        Context::with_receiver(rx).run(act);
    });
}

/// A sender of values: a node output, a transfer, or the source.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum From {
    Node(usize, usize),
    Transfer(usize, usize),
    Input(usize),
}

/// Builds all actors inside the running System. Addresses are taken from
/// fresh contexts first, so every actor starts fully wired.
#[allow(clippy::too_many_arguments)]
fn build(
    g: &Graph,
    plan: &Plan,
    devices: &[Arc<dyn Device>],
    shared: &mut HashMap<String, SharedDevice>,
    credits: usize,
    events: crossbeam::channel::Sender<Event>,
    recorder: Arc<Recorder>,
    copy_of: (usize, usize),
) -> Result<Built> {
    let mut arbiters: Vec<ArbiterHandle> = Vec::new();
    // Threads, queue and weights of each device, made by the first copy
    // that names it.
    let names: Vec<String> = devices.iter().map(|d| d.id().to_string()).collect();
    for (d, name) in devices.iter().zip(&names) {
        if shared.contains_key(name) {
            continue;
        }
        let compute = Arbiter::new().handle();
        let copy = Arbiter::new().handle();
        for a in [&compute, &copy] {
            let d = d.clone();
            a.spawn_fn(move || d.init_executor_thread());
        }
        let queue = DeviceQueue::new(g.nodes.len() * copy_of.0);
        let (addr, rx) = mailbox::<Dispatcher>();
        start_on(
            &compute,
            rx,
            Dispatcher {
                queue: queue.clone(),
            },
        );
        arbiters.push(compute.clone());
        arbiters.push(copy.clone());
        shared.insert(
            name.clone(),
            SharedDevice {
                compute,
                copy,
                queue,
                dispatcher: addr.recipient(),
                uploaded: HashMap::new(),
            },
        );
    }
    let io = Arbiter::new().handle();
    arbiters.push(io.clone());

    let producers = g.producers();
    let input_index: HashMap<usize, usize> =
        g.inputs.iter().enumerate().map(|(i, v)| (v.0, i)).collect();
    let (node_addr, node_rx): (Vec<Addr<Task>>, Vec<AddressReceiver<Task>>) =
        g.nodes.iter().map(|_| mailbox()).unzip();
    let mut transfer_rx: HashMap<(usize, usize), (AddressReceiver<Task>, usize)> = HashMap::new();
    let mut transfer_addr: HashMap<(usize, usize), Addr<Task>> = HashMap::new();
    for t in &plan.transfers {
        let (a, rx) = mailbox();
        transfer_rx.insert((t.value, t.to), (rx, t.from));
        transfer_addr.insert((t.value, t.to), a);
    }
    let (sink_addr, sink_rx) = mailbox::<Sink>();
    let (source_addr, source_rx) = mailbox::<Source>();

    // Routes per sender, in a flat list per sender; a route's index there is
    // what its reader credits.
    let mut node_routes: Vec<Vec<(usize, Route)>> = vec![Vec::new(); g.nodes.len()];
    let mut transfer_routes: HashMap<(usize, usize), Vec<(usize, Route)>> = HashMap::new();
    let mut source_routes: Vec<(usize, Route, Arc<dyn Device>)> = Vec::new();
    let mut connect =
        |from: From, target: Recipient<Data>, slot: usize, reader_dev: usize| -> Upstream {
            let route = Route { target, slot };
            match from {
                From::Node(n, o) => {
                    node_routes[n].push((o, route));
                    Upstream {
                        producer: node_addr[n].clone().recipient(),
                        route: node_routes[n].len() - 1,
                    }
                }
                From::Transfer(v, to) => {
                    let rs = transfer_routes.entry((v, to)).or_default();
                    rs.push((0, route));
                    Upstream {
                        producer: transfer_addr[&(v, to)].clone().recipient(),
                        route: rs.len() - 1,
                    }
                }
                From::Input(i) => {
                    source_routes.push((i, route, devices[reader_dev].clone()));
                    Upstream {
                        producer: source_addr.clone().recipient(),
                        route: source_routes.len() - 1,
                    }
                }
            }
        };
    // The sender of value `v` as seen from device `dev`.
    let sender = |v: ValueId, dev: Option<usize>| -> Result<From> {
        match producers[v.0] {
            Some(p) => {
                let pd = plan.placement[p.0];
                match dev {
                    Some(d) if d != pd => {
                        if !transfer_addr.contains_key(&(v.0, d)) {
                            return Err(RuntimeError::Setup(format!(
                                "plan lacks a transfer of '{}' to {}",
                                g.name(v),
                                plan.devices[d]
                            )));
                        }
                        Ok(From::Transfer(v.0, d))
                    }
                    _ => {
                        let o = g.nodes[p.0]
                            .outputs
                            .iter()
                            .position(|x| *x == v)
                            .unwrap_or(0);
                        Ok(From::Node(p.0, o))
                    }
                }
            }
            None => input_index
                .get(&v.0)
                .map(|&i| From::Input(i))
                .ok_or_else(|| {
                    RuntimeError::Setup(format!("value '{}' has no producer", g.name(v)))
                }),
        }
    };

    // Constants uploaded once per device that reads them (across copies).
    let mut node_parts = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        let dev = plan.placement[i];
        let mut consts = Vec::with_capacity(n.inputs.len());
        let mut edges = Vec::new();
        let mut upstream = Vec::with_capacity(n.inputs.len());
        for (slot, inp) in n.inputs.iter().enumerate() {
            match inp {
                Some(v) if g.constants.contains_key(v) => {
                    let uploaded = &mut shared
                        .get_mut(&names[dev])
                        .ok_or_else(|| RuntimeError::Setup(format!("{} not set up", names[dev])))?
                        .uploaded;
                    let t = match uploaded.get(&v.0) {
                        Some(t) => t.clone(),
                        None => {
                            let t = devices[dev].upload(g.constants[v].clone()).map_err(|e| {
                                RuntimeError::Setup(format!(
                                    "uploading weight '{}' to {}: {e}",
                                    g.name(*v),
                                    devices[dev].id()
                                ))
                            })?;
                            uploaded.insert(v.0, t.clone());
                            t
                        }
                    };
                    consts.push(Some(t));
                    upstream.push(None);
                }
                Some(v) => {
                    consts.push(None);
                    edges.push(slot);
                    let from = sender(*v, Some(dev))?;
                    upstream.push(Some(connect(
                        from,
                        node_addr[i].clone().recipient(),
                        slot,
                        dev,
                    )));
                }
                None => {
                    consts.push(None);
                    upstream.push(None);
                }
            }
        }
        node_parts.push((consts, edges, upstream));
    }
    let mut transfer_upstream: HashMap<(usize, usize), Upstream> = HashMap::new();
    let mut keys: Vec<(usize, usize)> = transfer_addr.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let from = sender(ValueId(key.0), None)?;
        let up = connect(from, transfer_addr[&key].clone().recipient(), 0, key.1);
        transfer_upstream.insert(key, up);
    }
    let mut sink_upstream = Vec::with_capacity(g.outputs.len());
    for (slot, o) in g.outputs.iter().enumerate() {
        if g.constants.contains_key(o) {
            sink_upstream.push(None);
            continue;
        }
        let from = sender(*o, None)?;
        let reader_dev = producers[o.0].map(|p| plan.placement[p.0]).unwrap_or(0);
        sink_upstream.push(Some(connect(
            from,
            sink_addr.clone().recipient(),
            slot,
            reader_dev,
        )));
    }

    // One queue per device orders its kernels oldest micro-batch first.
    let dev_of = |d: usize| &shared[&names[d]];
    let qid = |i: usize| copy_of.1 * g.nodes.len() + i;
    for (i, a) in node_addr.iter().enumerate() {
        dev_of(plan.placement[i])
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register(qid(i), a.clone().recipient());
    }

    // Start everything.
    for (i, ((rx, (consts, edges, upstream)), routes)) in node_rx
        .into_iter()
        .zip(node_parts)
        .zip(node_routes)
        .enumerate()
    {
        let n = &g.nodes[i];
        let dev = plan.placement[i];
        let mut task = Task::new(
            n.name.clone(),
            devices[dev].clone(),
            Work::Kernel {
                op: n.op.clone(),
                n_outputs: n.outputs.len(),
            },
            consts,
            edges,
            credits,
            events.clone(),
            recorder.clone(),
            routes,
            upstream,
        );
        task.queued = Some(Queued {
            queue: dev_of(dev).queue.clone(),
            dispatcher: dev_of(dev).dispatcher.clone(),
            id: qid(i),
            copy_of: (copy_of.0 as u64, copy_of.1 as u64),
            waiting: false,
        });
        start_on(&dev_of(dev).compute, rx, task);
    }
    for (key, (rx, from)) in transfer_rx {
        let task = Task::new(
            format!("copy {}", g.values[key.0].name),
            devices[key.1].clone(),
            Work::Copy {
                from: devices[from].clone(),
            },
            vec![None],
            vec![0],
            credits,
            events.clone(),
            recorder.clone(),
            transfer_routes.remove(&key).unwrap_or_default(),
            vec![transfer_upstream.remove(&key)],
        );
        start_on(&dev_of(key.1).copy, rx, task);
    }
    let out_consts: Vec<Option<Arc<Tensor>>> = g
        .outputs
        .iter()
        .map(|o| g.constants.get(o).cloned())
        .collect();
    let mut sink = Sink::new(out_consts, devices.to_vec(), sink_upstream, events.clone());
    sink.copy_of = (copy_of.0 as u64, copy_of.1 as u64);
    start_on(&io, sink_rx, sink);
    let source = Source::new(source_routes, credits, events);
    start_on(&io, source_rx, source);

    Ok(Built {
        sources: vec![source_addr],
        arbiters,
    })
}
