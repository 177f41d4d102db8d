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
use crate::net::{Hub, Msg};
use crate::remote::{
    Arrived, ArrivedOnDevice, EdgeName, NetRecv, NetSend, RecvRoute, RemoteCredit, WireSend,
};
use crate::trace::{Recorder, TraceEvent};
use actix::dev::channel::AddressReceiver;
use actix::prelude::*;
use crossbeam::channel::{unbounded, Receiver};
use hetflow_devices::wire::{Wire, WireEnd};
use hetflow_devices::{Device, DeviceTensor};
use hetflow_ops::graph::fmt_shape;
use hetflow_ops::{Dim, Graph, Tensor, ValueId};
use hetflow_scheduler::Plan;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::Mutex;

/// Session settings.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Buffers per edge; `None` takes the plan's.
    pub credits: Option<usize>,
    /// Record a timeline of kernels and copies.
    pub trace: bool,
    /// The job's hub when the plan spans hosts ([`crate::net`]): this
    /// process deploys only its own rank's devices. Rank 0 runs the
    /// session ([`Session::run`]); the others [`Session::serve`] it.
    pub hub: Option<Arc<Hub>>,
    /// Stop the session with an error naming the node, op and device when
    /// one kernel or copy runs longer than this (a hung device). `None`
    /// (the default) waits as long as kernels take.
    pub kernel_timeout: Option<std::time::Duration>,
    /// Device kinds whose devices talk to each other across hosts over
    /// their own wires ([`crate::net`], "Wires"): a cross-host edge between
    /// two devices of one of these kinds skips host memory. Every rank must
    /// give the same list. Empty (the default): every cross-host tensor
    /// goes through host memory and the job's link.
    pub wires: Vec<hetflow_devices::DeviceKind>,
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
    /// The hub and this session's id in it, for a session across hosts.
    net: Option<(Arc<Hub>, u32)>,
    /// Micro-batches kept in flight by `run_stream_each`.
    window: usize,
    /// Running kernels and the limit on how long one may take.
    clock: Option<(Arc<KernelClock>, std::time::Duration)>,
}

struct Built {
    /// One source per copy of the plan.
    sources: Vec<Addr<Source>>,
    arbiters: Vec<ArbiterHandle>,
    /// Cross-host edge ends on this rank, by edge id.
    receivers: HashMap<u32, Addr<NetRecv>>,
    senders: HashMap<u32, Addr<NetSend>>,
    /// The wires this rank receives on (session-wide, set after the last
    /// copy).
    wires_in: WiresIn,
}

/// What the inbox needs to receive over wires.
#[derive(Default)]
struct WiresIn {
    /// The receiving device of each wire, by number.
    devices: HashMap<u32, Arc<dyn Device>>,
    /// The wire of each edge received over one.
    edges: HashMap<u32, u32>,
}

/// What `build` needs to know about a session across hosts.
struct NetCtx {
    hub: Arc<Hub>,
    session: u32,
    /// Per copy of the plan, the rank of each of its devices.
    ranks: Vec<Vec<usize>>,
    /// Edge ids are numbered across the copies in build order.
    next_edge: u32,
    /// Device kinds that use wires (`SessionOptions::wires`).
    wire_kinds: Vec<hetflow_devices::DeviceKind>,
    /// Wire number of each directed pair of plan devices (full names).
    wire_pairs: HashMap<(String, String), u32>,
    /// Wires this rank sends on, by number.
    wire_send: HashMap<u32, Arc<WireSend>>,
    /// Wires this rank receives on: the receiving device, by number.
    wire_recv: HashMap<u32, Arc<dyn Device>>,
    /// The wire of each edge this rank receives over one.
    wire_edges: HashMap<u32, u32>,
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
        let hub = opts.hub.clone();
        let me = hub.as_ref().map(|h| h.rank()).unwrap_or(0);
        // One device list per copy of the plan (data-parallel replicas);
        // devices of other ranks are `None`.
        let mut copies: Vec<Vec<Option<Arc<dyn Device>>>> = Vec::new();
        let mut ranks: Vec<Vec<usize>> = Vec::new();
        for r in 0..plan.copies() {
            let mut plan_devices: Vec<Option<Arc<dyn Device>>> = Vec::new();
            let mut plan_ranks = Vec::new();
            for name in plan.copy_devices(r) {
                let rank = match &hub {
                    Some(h) => h.rank_of(name)?,
                    None if crate::net::split_host(name).is_some() => {
                        return Err(RuntimeError::Setup(format!(
                            "plan device {name} is on another host: run the plan as a multi-host job (hetflow launch)"
                        )))
                    }
                    None => 0,
                };
                plan_ranks.push(rank);
                if rank != me {
                    plan_devices.push(None);
                    continue;
                }
                let local = crate::net::local_name(name);
                let d = devices
                    .iter()
                    .find(|d| d.id().to_string() == local)
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
                plan_devices.push(Some(d.clone()));
            }
            for (i, n) in graph.nodes.iter().enumerate() {
                let Some(d) = &plan_devices[plan.placement[i]] else {
                    continue;
                };
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
            ranks.push(plan_ranks);
        }
        let mut net = hub.as_ref().map(|h| NetCtx {
            hub: h.clone(),
            session: h.new_session(),
            ranks,
            next_edge: 0,
            wire_kinds: opts.wires.clone(),
            wire_pairs: HashMap::new(),
            wire_send: HashMap::new(),
            wire_recv: HashMap::new(),
            wire_edges: HashMap::new(),
        });
        let net_id = net.as_ref().map(|n| (n.hub.clone(), n.session));
        let credits = opts.credits.unwrap_or(plan.credits).max(1);
        let stages = copies.iter().map(|d| d.len()).max().unwrap_or(1);
        let window = copies.len().max(1) * credits * (stages + 1);
        let clock = opts
            .kernel_timeout
            .map(|t| (Arc::new(KernelClock::default()), t));
        let task_clock = clock.as_ref().map(|(c, _)| c.clone());
        let recorder = Arc::new(Recorder::new(opts.trace));
        let (ev_tx, ev_rx) = unbounded();
        let (built_tx, built_rx) =
            std::sync::mpsc::channel::<std::result::Result<(Built, System), RuntimeError>>();
        let g = graph.clone();
        let plan = plan.clone();
        let rec = recorder.clone();
        let events = ev_tx.clone();
        let thread = std::thread::Builder::new()
            .name("hetflow-runtime".into())
            .spawn(move || {
                let sys = System::new();
                let res = sys.block_on(async move {
                    let k = copies.len();
                    let mut all = Built {
                        sources: Vec::new(),
                        arbiters: Vec::new(),
                        receivers: HashMap::new(),
                        senders: HashMap::new(),
                        wires_in: WiresIn::default(),
                    };
                    let mut shared: HashMap<String, SharedDevice> = HashMap::new();
                    for (r, devs) in copies.iter().enumerate() {
                        let b = build(
                            &g,
                            &plan,
                            devs,
                            &mut shared,
                            credits,
                            events.clone(),
                            rec.clone(),
                            (k, r),
                            net.as_mut(),
                            task_clock.clone(),
                        )?;
                        all.sources.extend(b.sources);
                        all.arbiters.extend(b.arbiters);
                        all.receivers.extend(b.receivers);
                        all.senders.extend(b.senders);
                    }
                    if let Some(n) = net.as_mut() {
                        all.wires_in = WiresIn {
                            devices: std::mem::take(&mut n.wire_recv),
                            edges: std::mem::take(&mut n.wire_edges),
                        };
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
        let (mut built, system) = built_rx
            .recv()
            .map_err(|_| RuntimeError::Setup("runtime thread died during setup".into()))??;
        if let Some((hub, id)) = &net_id {
            // Moved, not cloned: cloning an address after its actor has
            // raised its mailbox capacity overflows actix's sender count.
            let receivers = std::mem::take(&mut built.receivers);
            let senders = std::mem::take(&mut built.senders);
            let wires_in = std::mem::take(&mut built.wires_in);
            open_inbox(hub, *id, receivers, senders, wires_in, ev_tx);
        }
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
            net: net_id,
            window,
            clock,
        })
    }

    /// This process's rank in a multi-host session (0 otherwise).
    pub fn rank(&self) -> usize {
        self.net.as_ref().map(|(h, _)| h.rank()).unwrap_or(0)
    }

    /// On a rank other than 0 of a multi-host session: runs this rank's
    /// part until the root closes the session (`Ok`) or a rank fails
    /// (the first error, naming the rank, op and device).
    pub fn serve(&mut self) -> Result<()> {
        if self.rank() == 0 {
            return Err(RuntimeError::Setup(
                "serve() is for the ranks other than 0; rank 0 runs the session".into(),
            ));
        }
        if let Some(e) = &self.broken {
            return Err(RuntimeError::Stopped(format!("an earlier run failed: {e}")));
        }
        loop {
            match self.events.recv() {
                Ok(Event::Stopped) => return Ok(()),
                Ok(Event::Output { .. }) => {}
                Ok(Event::Failed(e)) => return Err(self.failed(e)),
                Err(_) => {
                    return Err(self.failed(RuntimeError::Stopped("actor system exited".into())))
                }
            }
        }
    }

    /// Records `e` as what broke the session and, when it happened on this
    /// rank, tells the other ranks.
    fn failed(&mut self, e: RuntimeError) -> RuntimeError {
        if let Some((hub, id)) = &self.net {
            if !matches!(e, RuntimeError::Network(_)) {
                let text = e.to_string();
                for r in (0..hub.size()).filter(|&r| r != hub.rank()) {
                    let _ = hub.send(r, *id, &Msg::Failed { text: text.clone() });
                }
            }
        }
        self.broken = Some(e.clone());
        e
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
    /// back in input order. Holds every result until the end: for long
    /// streams, [`Session::run_stream_each`] keeps memory bounded.
    pub fn run_stream(&mut self, batches: Vec<Vec<Arc<Tensor>>>) -> Result<Vec<Vec<Arc<Tensor>>>> {
        let mut out = Vec::with_capacity(batches.len());
        self.run_stream_each(batches, |_, o| {
            out.push(o);
            Ok(())
        })?;
        Ok(out)
    }

    /// Streams input sets through the pipeline, pulling the next one only
    /// when fewer than [`Session::window`] are in flight, and hands each
    /// result to `on_output` (its index, its outputs) in input order as
    /// soon as it and every earlier one are done. Memory is bounded by the
    /// window, not by the stream's length. An error from `on_output` stops
    /// feeding, waits for the micro-batches in flight, and is returned.
    pub fn run_stream_each<I, F>(&mut self, inputs: I, mut on_output: F) -> Result<usize>
    where
        I: IntoIterator<Item = Vec<Arc<Tensor>>>,
        F: FnMut(usize, Vec<Arc<Tensor>>) -> Result<()>,
    {
        if let Some(e) = &self.broken {
            return Err(RuntimeError::Stopped(format!("an earlier run failed: {e}")));
        }
        if self.rank() != 0 {
            return Err(RuntimeError::Setup(format!(
                "rank {} does not hold the session's inputs: rank 0 runs it, the others serve()",
                self.rank()
            )));
        }
        let mut inputs = inputs.into_iter().peekable();
        let first = self.next_mb;
        let k = self.sources.len().max(1) as u64;
        // Results that arrived ahead of an earlier one, by index.
        let mut early: BTreeMap<usize, Vec<Arc<Tensor>>> = BTreeMap::new();
        let (mut fed, mut done) = (0usize, 0usize);
        let mut stop: Option<RuntimeError> = None;
        loop {
            while stop.is_none() && fed - done < self.window {
                let Some(b) = inputs.next() else { break };
                if let Err(e) = check_inputs(&self.graph, &b) {
                    // A lone input set keeps the plain message.
                    let alone = fed == 0 && inputs.peek().is_none();
                    stop = Some(if alone {
                        e
                    } else {
                        RuntimeError::Input(format!("input set {fed}: {e}"))
                    });
                    break;
                }
                if let Some(outs) = &self.constant_outputs {
                    // No actor produces anything: answer at once.
                    early.insert(fed, outs.clone());
                } else {
                    // Each copy numbers its own micro-batches 0, 1, 2, ...
                    let (copy, local) = (self.next_mb % k, self.next_mb / k);
                    self.sources[copy as usize].do_send(Feed {
                        mb: local,
                        inputs: b,
                    });
                }
                self.next_mb += 1;
                fed += 1;
            }
            while let Some(o) = early.remove(&done) {
                if stop.is_none() {
                    if let Err(e) = on_output(done, o) {
                        stop = Some(e);
                    }
                }
                done += 1;
            }
            if done == fed {
                if stop.is_some() || inputs.peek().is_none() {
                    break;
                }
                continue; // room again: feed more
            }
            match self.next_event()? {
                Ok(Event::Output { mb, outputs }) => {
                    let i = mb.wrapping_sub(first) as usize;
                    if i < fed && i >= done {
                        early.entry(i).or_insert(outputs);
                    }
                }
                Ok(Event::Failed(e)) => return Err(self.failed(e)),
                Ok(Event::Stopped) => {}
                Err(_) => {
                    return Err(self.failed(RuntimeError::Stopped("actor system exited".into())))
                }
            }
        }
        match stop {
            Some(e) => Err(e),
            None => Ok(fed),
        }
    }

    /// The next event from the actors; with a kernel timeout, wakes every
    /// few milliseconds to look for a kernel that has run too long, and
    /// fails the session naming it.
    fn next_event(&mut self) -> Result<std::result::Result<Event, ()>> {
        let Some(limit) = self.clock.as_ref().map(|c| c.1) else {
            return Ok(self.events.recv().map_err(|_| ()));
        };
        let tick = (limit / 4).clamp(
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(50),
        );
        loop {
            match self.events.recv_timeout(tick) {
                Ok(e) => return Ok(Ok(e)),
                Err(crossbeam::channel::RecvTimeoutError::Disconnected) => return Ok(Err(())),
                Err(crossbeam::channel::RecvTimeoutError::Timeout) => {
                    if let Some(e) = self.clock.as_ref().and_then(|c| c.0.overdue(limit)) {
                        return Err(self.failed(e));
                    }
                }
            }
        }
    }

    /// How many micro-batches [`Session::run_stream_each`] keeps in flight:
    /// enough to fill every stage of every copy (`copies × credits ×
    /// (stages + 1)`), and no more, so a long stream's memory stays bounded.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The timeline recorded so far (empty unless tracing was enabled).
    pub fn trace_events(&self) -> Vec<TraceEvent> {
        self.recorder.events()
    }
    /// When this session's trace times start, µs since the Unix epoch (to
    /// merge the timelines of the ranks of a multi-host job).
    pub fn trace_origin_unix_us(&self) -> f64 {
        self.recorder.origin_unix_us()
    }
    /// Removes and returns the trace events recorded so far.
    pub fn take_trace_events(&self) -> Vec<TraceEvent> {
        self.recorder.take()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some((hub, id)) = &self.net {
            if hub.is_root() && self.broken.is_none() {
                for r in 1..hub.size() {
                    let _ = hub.send(r, *id, &Msg::Stop);
                }
            }
            hub.close(*id);
        }
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

/// The routes being wired: per sender, a flat list whose index is what
/// each reader credits.
struct Wires<'a> {
    node_addr: &'a [Addr<Task>],
    transfer_addr: &'a HashMap<(usize, usize), Addr<Task>>,
    source_addr: &'a Addr<Source>,
    recv_addr: &'a HashMap<u32, Addr<NetRecv>>,
    node_routes: Vec<Vec<(usize, Route)>>,
    transfer_routes: HashMap<(usize, usize), Vec<(usize, Route)>>,
    source_routes: Vec<(usize, SourceRoute)>,
    recv_routes: HashMap<u32, Vec<RecvRoute>>,
}

impl Wires<'_> {
    /// Adds a route from `from` to `target`'s `slot`; returns who the
    /// reader credits.
    fn connect(
        &mut self,
        from: From,
        target: Recipient<Data>,
        slot: usize,
        reader_dev: Option<&Arc<dyn Device>>,
    ) -> Result<Upstream> {
        let route = Route { target, slot };
        Ok(match from {
            From::Node(n, o) => {
                self.node_routes[n].push((o, route));
                Upstream {
                    producer: self.node_addr[n].clone().recipient(),
                    route: self.node_routes[n].len() - 1,
                }
            }
            From::Transfer(v, to) => {
                let rs = self.transfer_routes.entry((v, to)).or_default();
                rs.push((0, route));
                Upstream {
                    producer: self.transfer_addr[&(v, to)].clone().recipient(),
                    route: rs.len() - 1,
                }
            }
            From::Input(i) => {
                let d = reader_dev.ok_or_else(|| {
                    RuntimeError::Setup(format!("graph input {i} has no reader device"))
                })?;
                self.source_routes
                    .push((i, SourceRoute::Device(route, d.clone())));
                Upstream {
                    producer: self.source_addr.clone().recipient(),
                    route: self.source_routes.len() - 1,
                }
            }
            From::Remote(id) => {
                let rs = self.recv_routes.entry(id).or_default();
                rs.push(RecvRoute::Device(route));
                Upstream {
                    producer: self.recv_addr[&id].clone().recipient(),
                    route: rs.len() - 1,
                }
            }
        })
    }
}

/// The sending end of wire `pair` from `dev` to rank `to`: opened (and
/// announced to `to` with `WireOpen`) by the first edge that uses it.
fn open_send_wire(
    n: &mut NetCtx,
    pair: u32,
    dev: &Arc<dyn Device>,
    to: usize,
) -> Result<Arc<WireSend>> {
    if let Some(w) = n.wire_send.get(&pair) {
        return Ok(w.clone());
    }
    let setup =
        |e: String| RuntimeError::Setup(format!("wire from {} to rank {to}: {e}", dev.id()));
    let none = || setup("this device kind has no direct transport".into());
    let id = dev
        .wire_id()
        .ok_or_else(none)?
        .map_err(|e| setup(e.to_string()))?;
    let wire = dev
        .open_wire(WireEnd::Send, &id)
        .ok_or_else(none)?
        .map_err(|e| setup(e.to_string()))?;
    n.hub.send(to, n.session, &Msg::WireOpen { pair, id })?;
    let w = Arc::new(WireSend {
        wire,
        order: Mutex::new(()),
    });
    n.wire_send.insert(pair, w.clone());
    Ok(w)
}

/// Hands the hub's messages for session `id` to this rank's edge actors
/// and its event channel.
fn open_inbox(
    hub: &Arc<Hub>,
    id: u32,
    receivers: HashMap<u32, Addr<NetRecv>>,
    senders: HashMap<u32, Addr<NetSend>>,
    wires_in: WiresIn,
    events: crossbeam::channel::Sender<Event>,
) {
    let hosts: Vec<String> = (0..hub.size()).map(|r| hub.host(r).to_string()).collect();
    // The receiving ends, opened as each WireOpen arrives.
    let open_wires: Mutex<HashMap<u32, Arc<dyn Wire>>> = Mutex::new(HashMap::new());
    let fail = {
        let events = events.clone();
        move |what: String| {
            let _ = events.send(Event::Failed(RuntimeError::Network(what)));
        }
    };
    hub.open(
        id,
        Arc::new(move |from: usize, m: Msg| match m {
            Msg::WireOpen { pair, id } => {
                let Some(dev) = wires_in.devices.get(&pair) else {
                    return fail(format!("rank {from} opened wire {pair}, which this rank does not receive on"));
                };
                match dev.open_wire(WireEnd::Recv, &id) {
                    Some(Ok(w)) => {
                        open_wires
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(pair, w);
                    }
                    Some(Err(e)) => fail(format!("opening the wire from rank {from} on {}: {e}", dev.id())),
                    None => fail(format!(
                        "{} has no wire to receive from rank {from} on (its kind has no direct transport)",
                        dev.id()
                    )),
                }
            }
            Msg::WireData {
                edge,
                mb,
                dtype,
                shape,
            } => {
                let wire = wires_in.edges.get(&edge).and_then(|p| {
                    open_wires
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(p)
                        .cloned()
                });
                let (Some(wire), Some(to)) = (wire, receivers.get(&edge)) else {
                    return fail(format!(
                        "rank {from} sent micro-batch {mb} of edge {edge} on a wire this rank has not opened"
                    ));
                };
                let to = to.clone();
                let events = events.clone();
                let kind = wire.kind();
                wire.recv(
                    dtype,
                    shape,
                    Box::new(move |r| match r {
                        Ok(tensor) => to.do_send(ArrivedOnDevice { mb, tensor }),
                        Err(e) => {
                            let _ = events.send(Event::Failed(RuntimeError::Network(format!(
                                "receiving micro-batch {mb} of edge {edge} from rank {from} ({kind}): {e}"
                            ))));
                        }
                    }),
                );
            }
            Msg::Data { edge, mb, tensor } => {
                if let Some(a) = receivers.get(&edge) {
                    a.do_send(Arrived { mb, tensor });
                }
            }
            Msg::Credit { edge } => {
                if let Some(a) = senders.get(&edge) {
                    a.do_send(RemoteCredit);
                }
            }
            Msg::Failed { text } => {
                let host = hosts.get(from).map(String::as_str).unwrap_or("?");
                let _ = events.send(Event::Failed(RuntimeError::Network(format!(
                    "rank {from} (host {host}): {text}"
                ))));
            }
            Msg::Stop => {
                let _ = events.send(Event::Stopped);
            }
            Msg::Control { .. } => {}
        }),
    );
}

/// A sender of values: a node output, a transfer, the source, or the
/// receiving end of a cross-host edge.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum From {
    Node(usize, usize),
    Transfer(usize, usize),
    Input(usize),
    Remote(u32),
}

/// What a cross-host edge carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum EdgeKey {
    /// Plan transfer of value `.0` to device `.1`.
    Transfer(usize, usize),
    /// Graph input `.0` read on device `.1` (sent by the root's source).
    Input(usize, usize),
    /// Graph output slot `.0` (received by the root's sink).
    Output(usize),
}

/// A cross-host edge of one copy of the plan.
struct NetEdge {
    id: u32,
    key: EdgeKey,
    value: ValueId,
    from_rank: usize,
    to_rank: usize,
}

/// The cross-host edges of one copy, in an order every rank computes
/// alike: plan transfers, then graph inputs by (input, device), then
/// outputs by slot.
fn net_edges(
    g: &Graph,
    producers: &[Option<hetflow_ops::NodeId>],
    plan: &Plan,
    ranks: &[usize],
    first: u32,
) -> Vec<NetEdge> {
    let mut out = Vec::new();
    let mut push = |key, value, from_rank, to_rank| {
        if from_rank != to_rank {
            out.push(NetEdge {
                id: first + out.len() as u32,
                key,
                value,
                from_rank,
                to_rank,
            });
        }
    };
    for t in &plan.transfers {
        push(
            EdgeKey::Transfer(t.value, t.to),
            ValueId(t.value),
            ranks[t.from],
            ranks[t.to],
        );
    }
    let input_index: HashMap<usize, usize> =
        g.inputs.iter().enumerate().map(|(i, v)| (v.0, i)).collect();
    let mut reads: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (n, node) in g.nodes.iter().enumerate() {
        for v in node.inputs.iter().flatten() {
            if let Some(&i) = input_index.get(&v.0) {
                reads.insert((i, plan.placement[n]));
            }
        }
    }
    for (i, d) in reads {
        push(EdgeKey::Input(i, d), g.inputs[i], 0, ranks[d]);
    }
    for (slot, o) in g.outputs.iter().enumerate() {
        if g.constants.contains_key(o) {
            continue;
        }
        if let Some(p) = producers[o.0] {
            push(EdgeKey::Output(slot), *o, ranks[plan.placement[p.0]], 0);
        }
    }
    out
}

/// Builds all actors inside the running System. Addresses are taken from
/// fresh contexts first, so every actor starts fully wired. `devices` are
/// the copy's plan devices, `None` for those of other ranks (whose nodes
/// get no actor here).
#[allow(clippy::too_many_arguments)]
fn build(
    g: &Graph,
    plan: &Plan,
    devices: &[Option<Arc<dyn Device>>],
    shared: &mut HashMap<String, SharedDevice>,
    credits: usize,
    events: crossbeam::channel::Sender<Event>,
    recorder: Arc<Recorder>,
    copy_of: (usize, usize),
    net: Option<&mut NetCtx>,
    clock: Option<Arc<KernelClock>>,
) -> Result<Built> {
    let mut arbiters: Vec<ArbiterHandle> = Vec::new();
    let me = net.as_ref().map(|n| n.hub.rank()).unwrap_or(0);
    let rank_of: Vec<usize> = match &net {
        Some(n) => n.ranks[copy_of.1].clone(),
        None => vec![0; devices.len()],
    };
    let local = |d: usize| devices[d].is_some();
    let dev = |d: usize| -> Result<&Arc<dyn Device>> {
        devices[d]
            .as_ref()
            .ok_or_else(|| RuntimeError::Setup(format!("{} is not on this rank", plan.devices[d])))
    };
    // Threads, queue and weights of each device, made by the first copy
    // that names it.
    let names: Vec<String> = devices
        .iter()
        .map(|d| d.as_ref().map(|d| d.id().to_string()).unwrap_or_default())
        .collect();
    for (d, name) in devices.iter().zip(&names) {
        let Some(d) = d else { continue };
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
    // Cross-host edges whose ends are on this rank.
    let edges = match &net {
        Some(n) => net_edges(g, &producers, plan, &rank_of, n.next_edge),
        None => Vec::new(),
    };
    let mut remote_in: HashMap<EdgeKey, u32> = HashMap::new();
    let mut recv_addr: HashMap<u32, Addr<NetRecv>> = HashMap::new();
    let mut recv_rx: HashMap<u32, AddressReceiver<NetRecv>> = HashMap::new();
    let mut send_addr: HashMap<u32, Addr<NetSend>> = HashMap::new();
    let mut send_rx: HashMap<u32, AddressReceiver<NetSend>> = HashMap::new();
    for e in &edges {
        if e.to_rank == me {
            remote_in.insert(e.key, e.id);
            let (a, rx) = mailbox();
            recv_addr.insert(e.id, a);
            recv_rx.insert(e.id, rx);
        }
        if e.from_rank == me {
            let (a, rx) = mailbox();
            send_addr.insert(e.id, a);
            send_rx.insert(e.id, rx);
        }
    }

    let input_index: HashMap<usize, usize> =
        g.inputs.iter().enumerate().map(|(i, v)| (v.0, i)).collect();
    let (node_addr, node_rx): (Vec<Addr<Task>>, Vec<AddressReceiver<Task>>) =
        g.nodes.iter().map(|_| mailbox()).unzip();
    // Transfers between two devices of this rank run as copy tasks.
    let mut transfer_rx: HashMap<(usize, usize), (AddressReceiver<Task>, usize)> = HashMap::new();
    let mut transfer_addr: HashMap<(usize, usize), Addr<Task>> = HashMap::new();
    for t in &plan.transfers {
        if local(t.from) && local(t.to) {
            let (a, rx) = mailbox();
            transfer_rx.insert((t.value, t.to), (rx, t.from));
            transfer_addr.insert((t.value, t.to), a);
        }
    }
    let (sink_addr, sink_rx) = mailbox::<Sink>();
    let (source_addr, source_rx) = mailbox::<Source>();

    let mut w = Wires {
        node_addr: &node_addr,
        transfer_addr: &transfer_addr,
        source_addr: &source_addr,
        recv_addr: &recv_addr,
        node_routes: vec![Vec::new(); g.nodes.len()],
        transfer_routes: HashMap::new(),
        source_routes: Vec::new(),
        recv_routes: HashMap::new(),
    };
    // The sender of value `v` as seen from device `dev`.
    let sender = |v: ValueId, dev: Option<usize>| -> Result<From> {
        let remote = |key: EdgeKey| {
            remote_in
                .get(&key)
                .map(|&id| From::Remote(id))
                .ok_or_else(|| {
                    RuntimeError::Setup(format!("no cross-host edge {key:?} for '{}'", g.name(v)))
                })
        };
        match producers[v.0] {
            Some(p) => {
                let pd = plan.placement[p.0];
                match dev {
                    Some(d) if d != pd => {
                        if rank_of[pd] != rank_of[d] {
                            return remote(EdgeKey::Transfer(v.0, d));
                        }
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
            None => match input_index.get(&v.0) {
                Some(&i) => match dev {
                    Some(d) if rank_of[d] != 0 => remote(EdgeKey::Input(i, d)),
                    _ => Ok(From::Input(i)),
                },
                None => Err(RuntimeError::Setup(format!(
                    "value '{}' has no producer",
                    g.name(v)
                ))),
            },
        }
    };

    // Constants uploaded once per device that reads them (across copies).
    let mut node_parts = Vec::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        let d = plan.placement[i];
        let mut consts = Vec::with_capacity(n.inputs.len());
        let mut edges = Vec::new();
        let mut upstream = Vec::with_capacity(n.inputs.len());
        if !local(d) {
            node_parts.push((consts, edges, upstream));
            continue;
        }
        for (slot, inp) in n.inputs.iter().enumerate() {
            match inp {
                Some(v) if g.constants.contains_key(v) => {
                    let uploaded = &mut shared
                        .get_mut(&names[d])
                        .ok_or_else(|| RuntimeError::Setup(format!("{} not set up", names[d])))?
                        .uploaded;
                    let t = match uploaded.get(&v.0) {
                        Some(t) => t.clone(),
                        None => {
                            let t = dev(d)?.upload(g.constants[v].clone()).map_err(|e| {
                                RuntimeError::Setup(format!(
                                    "uploading weight '{}' to {}: {e}",
                                    g.name(*v),
                                    names[d]
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
                    let from = sender(*v, Some(d))?;
                    upstream.push(Some(w.connect(
                        from,
                        node_addr[i].clone().recipient(),
                        slot,
                        devices[d].as_ref(),
                    )?));
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
        let up = w.connect(
            from,
            transfer_addr[&key].clone().recipient(),
            0,
            devices[key.1].as_ref(),
        )?;
        transfer_upstream.insert(key, up);
    }
    // Cross-host senders on this rank: consumers of their producer.
    let mut send_upstream: HashMap<u32, (Upstream, Option<Arc<dyn Device>>)> = HashMap::new();
    for e in edges.iter().filter(|e| e.from_rank == me) {
        let addr = &send_addr[&e.id];
        let (up, d) = match e.key {
            EdgeKey::Input(i, _) => {
                w.source_routes
                    .push((i, SourceRoute::Host(addr.clone().recipient(), 0)));
                let up = Upstream {
                    producer: source_addr.clone().recipient(),
                    route: w.source_routes.len() - 1,
                };
                (up, None)
            }
            EdgeKey::Transfer(..) | EdgeKey::Output(_) => {
                let from = sender(e.value, None)?;
                let pd = producers[e.value.0].map(|p| plan.placement[p.0]);
                let d = pd.and_then(|pd| devices[pd].clone());
                let up = w.connect(from, addr.clone().recipient(), 0, d.as_ref())?;
                (up, d)
            }
        };
        send_upstream.insert(e.id, (up, d));
    }
    let is_root = me == 0;
    let mut sink_upstream = Vec::with_capacity(g.outputs.len());
    for (slot, o) in g.outputs.iter().enumerate() {
        if g.constants.contains_key(o) || !is_root {
            sink_upstream.push(None);
            continue;
        }
        if let Some(&id) = remote_in.get(&EdgeKey::Output(slot)) {
            let rs = w.recv_routes.entry(id).or_default();
            rs.push(RecvRoute::Host(sink_addr.clone().recipient(), slot));
            sink_upstream.push(Some(Upstream {
                producer: recv_addr[&id].clone().recipient(),
                route: rs.len() - 1,
            }));
            continue;
        }
        let from = sender(*o, None)?;
        let reader_dev = producers[o.0]
            .map(|p| plan.placement[p.0])
            .and_then(|d| devices[d].as_ref())
            .or_else(|| devices.iter().flatten().next());
        sink_upstream.push(Some(w.connect(
            from,
            sink_addr.clone().recipient(),
            slot,
            reader_dev,
        )?));
    }

    // One queue per device orders its kernels oldest micro-batch first.
    let dev_of = |d: usize| &shared[&names[d]];
    let qid = |i: usize| copy_of.1 * g.nodes.len() + i;
    for (i, a) in node_addr.iter().enumerate() {
        if local(plan.placement[i]) {
            dev_of(plan.placement[i])
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .register(qid(i), a.clone().recipient());
        }
    }

    let Wires {
        node_routes,
        mut transfer_routes,
        source_routes,
        mut recv_routes,
        ..
    } = w;
    // Start everything.
    for (i, ((rx, (consts, edges, upstream)), routes)) in node_rx
        .into_iter()
        .zip(node_parts)
        .zip(node_routes)
        .enumerate()
    {
        let n = &g.nodes[i];
        let d = plan.placement[i];
        if !local(d) {
            continue;
        }
        let mut task = Task::new(
            n.name.clone(),
            dev(d)?.clone(),
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
        task.clock = clock.clone();
        task.queued = Some(Queued {
            queue: dev_of(d).queue.clone(),
            dispatcher: dev_of(d).dispatcher.clone(),
            id: qid(i),
            copy_of: (copy_of.0 as u64, copy_of.1 as u64),
            waiting: false,
        });
        start_on(&dev_of(d).compute, rx, task);
    }
    for (key, (rx, from)) in transfer_rx {
        let mut task = Task::new(
            format!("copy {}", g.values[key.0].name),
            dev(key.1)?.clone(),
            Work::Copy {
                from: dev(from)?.clone(),
            },
            vec![None],
            vec![0],
            credits,
            events.clone(),
            recorder.clone(),
            transfer_routes.remove(&key).unwrap_or_default(),
            vec![transfer_upstream.remove(&key)],
        );
        task.clock = clock.clone();
        start_on(&dev_of(key.1).copy, rx, task);
    }
    // Cross-host ends: senders on the producer device's copy thread,
    // receivers on the consumer device's (the root's source and sink ends
    // on the io thread).
    let hub_session = net.as_ref().map(|n| (n.hub.clone(), n.session));
    // Wires: each plan transfer between two devices of a wire kind gets
    // the number of its directed device pair, in this (every rank's) order.
    let names = plan.copy_devices(copy_of.1);
    let pd_of = |e: &NetEdge| {
        producers[e.value.0]
            .map(|p| plan.placement[p.0])
            .unwrap_or(usize::MAX)
    };
    let mut net = net;
    let mut wire_no: HashMap<u32, u32> = HashMap::new();
    if let Some(n) = net.as_deref_mut() {
        let kind_of = |d: usize| {
            names.get(d).map(|name| {
                crate::net::local_name(name)
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        };
        let wired =
            |d: usize| kind_of(d).is_some_and(|k| n.wire_kinds.iter().any(|w| w.name() == k));
        for e in &edges {
            let EdgeKey::Transfer(_, to) = e.key else {
                continue;
            };
            let from = pd_of(e);
            if !(wired(from) && wired(to)) {
                continue;
            }
            let key = (names[from].clone(), names[to].clone());
            let next = n.wire_pairs.len() as u32;
            let pair = *n.wire_pairs.entry(key).or_insert(next);
            wire_no.insert(e.id, pair);
        }
    }
    let wire_of = |e: &NetEdge| wire_no.get(&e.id).copied();
    // Network spans get a row of their own ("net"); a multi-host trace
    // prefixes every row with its rank.
    let lane = "net".to_string();
    for e in &edges {
        let Some((hub, session)) = &hub_session else {
            break;
        };
        let name = |peer| EdgeName {
            value: g.name(e.value).to_string(),
            session: *session,
            edge: e.id,
            peer,
        };
        let thread_of = |d: Option<usize>| match d {
            Some(d) if local(d) => dev_of(d).copy.clone(),
            _ => io.clone(),
        };
        if e.from_rank == me {
            let (up, d) = send_upstream.remove(&e.id).ok_or_else(|| {
                RuntimeError::Setup(format!("cross-host edge {} not wired", e.id))
            })?;
            let pd = producers[e.value.0].map(|p| plan.placement[p.0]);
            let mut s = NetSend::new(
                name(e.to_rank),
                hub.clone(),
                d,
                events.clone(),
                recorder.clone(),
                lane.clone(),
            );
            s.upstream = Some(up);
            if let (Some(pair), Some(n)) = (wire_of(e), net.as_deref_mut()) {
                s.wire = Some(open_send_wire(n, pair, dev(pd_of(e))?, e.to_rank)?);
            }
            if let Some(rx) = send_rx.remove(&e.id) {
                start_on(&thread_of(pd), rx, s);
            }
        }
        if e.to_rank == me {
            let d = match e.key {
                EdgeKey::Transfer(_, d) | EdgeKey::Input(_, d) => Some(d),
                EdgeKey::Output(_) => None,
            };
            let r = NetRecv::new(
                name(e.from_rank),
                hub.clone(),
                d.and_then(|d| devices[d].clone()),
                recv_routes.remove(&e.id).unwrap_or_default(),
                events.clone(),
                recorder.clone(),
                lane.clone(),
            );
            if let (Some(pair), Some(n), Some(d)) = (wire_of(e), net.as_deref_mut(), d) {
                n.wire_recv.insert(pair, dev(d)?.clone());
                n.wire_edges.insert(e.id, pair);
            }
            if let Some(rx) = recv_rx.remove(&e.id) {
                start_on(&thread_of(d), rx, r);
            }
        }
    }
    if let Some(n) = net {
        n.next_edge += edges.len() as u32;
    }
    if is_root {
        let out_consts: Vec<Option<Arc<Tensor>>> = g
            .outputs
            .iter()
            .map(|o| g.constants.get(o).cloned())
            .collect();
        let local_devices: Vec<Arc<dyn Device>> = devices.iter().flatten().cloned().collect();
        let mut sink = Sink::new(out_consts, local_devices, sink_upstream, events.clone());
        sink.copy_of = (copy_of.0 as u64, copy_of.1 as u64);
        start_on(&io, sink_rx, sink);
    }
    let source = Source::new(source_routes, credits, events);
    start_on(&io, source_rx, source);

    Ok(Built {
        sources: vec![source_addr],
        arbiters,
        receivers: recv_addr,
        senders: send_addr,
        wires_in: WiresIn::default(),
    })
}
