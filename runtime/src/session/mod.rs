//! [`Session`]: executes a [`Plan`] of a [`Graph`] on real devices.
//!
//! A plan on one CPU device alone runs on the caller's thread, with no
//! actors (`inline.rs` says why and when not). Any other plan runs through
//! actors: construction starts an actix `System` on a thread of its own, one
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
//!
//! ## Layout
//! `mod.rs` holds the session and its setup ([`Session::new`]); `run.rs`
//! feeds inputs and collects outputs; `inputs.rs` checks caller inputs;
//! `inline.rs` runs a one-CPU plan on the caller's thread;
//! `build.rs` builds one copy of the plan's actors; `cross_host.rs` holds
//! the cross-host edges and wires. The dependencies point one way
//! (mod -> build -> cross_host, run -> mod), so no file imports one that
//! imports it back.

mod build;
mod cross_host;
mod inline;
#[cfg(test)]
mod inline_tests;
mod inputs;
mod run;
#[cfg(test)]
mod tests;

pub use inputs::check_inputs;

use crate::actors::{Event, Source};
use crate::clock::KernelClock;
use crate::error::{Result, RuntimeError};
use crate::net::{Hub, Msg};
use crate::trace::Recorder;
use actix::prelude::*;
use build::{build, Built, SharedDevice};
use cross_host::{open_inbox, NetCtx, WiresIn};
use crossbeam::channel::{unbounded, Receiver};
use hetflow_devices::Device;
use hetflow_ops::{Graph, Tensor};
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
    /// Run through the actors even when the plan is one CPU device alone,
    /// which otherwise runs on the caller's thread (`inline.rs`; also
    /// `HETFLOW_INLINE=0`).
    pub actors: bool,
}

/// A graph deployed on devices, ready to run.
pub struct Session {
    graph: Arc<Graph>,
    /// One per copy of the plan; micro-batch i goes to copy i mod k.
    sources: Vec<Addr<Source>>,
    events: Receiver<Event>,
    /// The actors' System (`None` when the plan runs inline).
    system: Option<System>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The plan run on the caller's thread, when it is one CPU device
    /// alone (`inline.rs`); then there are no actors.
    inline: Option<inline::Inline>,
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
    /// Whether the sinks hand each output back as it arrives
    /// ([`Session::run_stream_each_output`]).
    parts: Arc<std::sync::atomic::AtomicBool>,
    /// How long the caller last waited for an event ([`crate::hot`]).
    last_wait: std::time::Duration,
    /// Whether the caller spins for results ([`crate::hot`]): the plan
    /// runs on one CPU device alone.
    hot: bool,
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
        let constant_outputs: Option<Vec<Arc<Tensor>>> = graph
            .outputs
            .iter()
            .map(|o| graph.constants.get(o).cloned())
            .collect();
        if hub.is_none()
            && !opts.actors
            && opts.kernel_timeout.is_none()
            && !inline::disabled_by_env()
            && copies.len() == 1
            && inline::eligible(&copies[0])
        {
            let device = copies[0][0]
                .clone()
                .ok_or_else(|| RuntimeError::Setup("the plan's device is not open".into()))?;
            let recorder = Arc::new(Recorder::new(opts.trace));
            let runner = inline::Inline::build(&graph, device, recorder.clone())?;
            let (_, events) = unbounded();
            return Ok(Session {
                constant_outputs,
                graph,
                sources: Vec::new(),
                events,
                system: None,
                thread: None,
                inline: Some(runner),
                arbiters: Vec::new(),
                next_mb: 0,
                broken: None,
                recorder,
                net: None,
                window: 1,
                clock: None,
                parts: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                last_wait: std::time::Duration::ZERO,
                hot: false,
            });
        }
        let net_id = net.as_ref().map(|n| (n.hub.clone(), n.session));
        let credits = opts.credits.unwrap_or(plan.credits).max(1);
        let stages = copies.iter().map(|d| d.len()).max().unwrap_or(1);
        let window = copies.len().max(1) * credits * (stages + 1);
        let clock = opts
            .kernel_timeout
            .map(|t| (Arc::new(KernelClock::default()), t));
        let task_clock = clock.as_ref().map(|(c, _)| c.clone());
        let recorder = Arc::new(Recorder::new(opts.trace));
        let parts = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sink_parts = parts.clone();
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
                        hot: true,
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
                            sink_parts.clone(),
                        )?;
                        all.sources.extend(b.sources);
                        all.arbiters.extend(b.arbiters);
                        all.receivers.extend(b.receivers);
                        all.senders.extend(b.senders);
                        all.hot &= b.hot;
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
        Ok(Session {
            constant_outputs,
            graph,
            sources: built.sources,
            events: ev_rx,
            system: Some(system),
            thread: Some(thread),
            inline: None,
            arbiters: built.arbiters,
            next_mb: 0,
            broken: None,
            recorder,
            net: net_id,
            window,
            clock,
            parts,
            last_wait: std::time::Duration::ZERO,
            hot: built.hot,
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
                Ok(Event::Output { .. } | Event::Part { .. }) => {}
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
        if let Some(s) = &self.system {
            s.stop();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
