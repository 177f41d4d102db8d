//! Building one copy of a plan's actors inside the running actix System:
//! a task per placed node, a copy task per transfer, the source and sink,
//! and the routes between them.

use super::cross_host::{net_edges, open_send_wire, EdgeKey, NetCtx, NetEdge, WiresIn};
use crate::actors::*;
use crate::clock::KernelClock;
use crate::error::{Result, RuntimeError};
use crate::remote::{EdgeName, NetRecv, NetSend, RecvRoute};
use crate::trace::Recorder;
use actix::dev::channel::AddressReceiver;
use actix::prelude::*;
use hetflow_devices::{Device, DeviceTensor};
use hetflow_ops::{Graph, Tensor, ValueId};
use hetflow_scheduler::Plan;
use std::collections::HashMap;
use std::sync::Arc;

pub(super) struct Built {
    /// One source per copy of the plan.
    pub(super) sources: Vec<Addr<Source>>,
    pub(super) arbiters: Vec<ArbiterHandle>,
    /// Cross-host edge ends on this rank, by edge id.
    pub(super) receivers: HashMap<u32, Addr<NetRecv>>,
    pub(super) senders: HashMap<u32, Addr<NetSend>>,
    /// The wires this rank receives on (session-wide, set after the last
    /// copy).
    pub(super) wires_in: WiresIn,
    /// Whether the copy runs on one CPU device alone, whose thread spins
    /// between runs ([`crate::hot`]): the caller spins for its results too.
    pub(super) hot: bool,
}

/// What the copies of a plan share on one device (by name): its compute
/// and copy threads, its ready queue and the weights uploaded to it. A
/// device that several copies name at the same position runs that
/// position's stages for all of them (a stage that is not replicated),
/// micro-batches of all copies in one oldest-first order.
pub(super) struct SharedDevice {
    pub(super) compute: ArbiterHandle,
    pub(super) copy: ArbiterHandle,
    pub(super) queue: Arc<std::sync::Mutex<DeviceQueue>>,
    pub(super) dispatcher: Recipient<Pump>,
    pub(super) uploaded: HashMap<usize, DeviceTensor>,
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

/// A sender of values: a node output, a transfer, the source, or the
/// receiving end of a cross-host edge.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum From {
    Node(usize, usize),
    Transfer(usize, usize),
    Input(usize),
    Remote(u32),
}

/// Constant `v`, read by input `slot` of node `n`, on `dev` (named
/// `name`): uploaded once per device (`uploaded` keeps them by value),
/// with its weight prepared for the node (packed panels, a transformed
/// filter). Shared by the actors' build and the caller's-thread runner.
pub(super) fn node_constant(
    g: &Graph,
    n: &hetflow_ops::graph::Node,
    slot: usize,
    v: ValueId,
    dev: &dyn Device,
    name: &str,
    uploaded: &mut HashMap<usize, DeviceTensor>,
) -> Result<DeviceTensor> {
    let t = match uploaded.get(&v.0) {
        Some(t) => t.clone(),
        None => {
            let c = g
                .constants
                .get(&v)
                .ok_or_else(|| RuntimeError::Setup(format!("'{}' is not a constant", g.name(v))))?;
            let t = dev.upload(c.clone()).map_err(|e| {
                RuntimeError::Setup(format!("uploading weight '{}' to {name}: {e}", g.name(v)))
            })?;
            uploaded.insert(v.0, t.clone());
            t
        }
    };
    let lhs_shape = n
        .inputs
        .first()
        .copied()
        .flatten()
        .and_then(|a| g.values[a.0].fact.concrete_shape());
    dev.prepare_weight(&n.op, slot, &t, lhs_shape.as_deref())
        .map_err(|e| {
            RuntimeError::Setup(format!(
                "preparing weight '{}' of node '{}' on {name}: {e}",
                g.name(v),
                n.name
            ))
        })?;
    Ok(t)
}

/// Builds all actors inside the running System. Addresses are taken from
/// fresh contexts first, so every actor starts fully wired. `devices` are
/// the copy's plan devices, `None` for those of other ranks (whose nodes
/// get no actor here).
#[allow(clippy::too_many_arguments)]
pub(super) fn build(
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
    parts: Arc<std::sync::atomic::AtomicBool>,
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
    // The source and the sink: on their own thread, except with one CPU
    // device, where they share its compute thread. A run then crosses
    // threads twice (the caller's feed, the result back) instead of four
    // times plus a credit back to the source, each crossing a wake-up of a
    // parked thread (several µs each: docs/benchmarks.md, issue 17). A
    // CPU device's sink downloads nothing, so it holds the thread no
    // longer than a message's handling.
    let lone_cpu = net.is_none()
        && copy_of.0 == 1
        && devices.len() == 1
        && devices[0]
            .as_ref()
            .is_some_and(|d| d.id().kind == hetflow_devices::DeviceKind::Cpu);
    // That thread also keeps its loop turning between runs (crate::hot):
    // only there, where the run's one thread waits for the next input.
    // Spinning every arbiter of a plan over several devices put more
    // spinning threads than cores on a 2-core machine and starved the
    // copies that should overlap compute.
    // With one CPU device alone, its tasks may skip the dispatcher while
    // one micro-batch is in flight (`Queued::inflight`).
    let inflight = lone_cpu.then(|| Arc::new(std::sync::atomic::AtomicUsize::new(0)));
    let io = match names.first().and_then(|n| shared.get(n)) {
        Some(s) if lone_cpu => {
            s.compute.spawn(crate::hot::Spinner);
            s.compute.clone()
        }
        _ => {
            let io = Arbiter::new().handle();
            arbiters.push(io.clone());
            io
        }
    };

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
                    let t = node_constant(g, n, slot, *v, &**dev(d)?, &names[d], uploaded)?;
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
            inflight: inflight.clone(),
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
        sink.parts = parts;
        sink.inflight = inflight.clone();
        start_on(&io, sink_rx, sink);
    }
    let mut source = Source::new(source_routes, credits, events);
    source.inflight = inflight;
    start_on(&io, source_rx, source);

    Ok(Built {
        sources: vec![source_addr],
        arbiters,
        receivers: recv_addr,
        senders: send_addr,
        wires_in: WiresIn::default(),
        hot: lone_cpu,
    })
}
