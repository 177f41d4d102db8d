//! The actors of a run and the messages between them.
//!
//! * [`Task`]: one per placed node (kernel work, on the device's compute
//!   arbiter) and one per cross-device edge (copy work, on the destination
//!   device's copy arbiter, so copies overlap compute).
//! * [`Source`]: feeds the caller's micro-batches into the graph.
//! * [`Sink`]: gathers graph outputs per micro-batch and hands them back;
//!   while the session asks for them ([`Sink::parts`]), it also hands
//!   each output back alone as soon as it arrives ([`Event::Part`]).
//!
//! ## Messages and flow control
//! [`Data`] carries a device buffer handle for one input slot of one
//! micro-batch. Each route (producer output -> consumer slot) has `credits`
//! buffers: the producer counts the buffers it sent that the consumer has
//! not yet used, and fires micro-batch k only when every route it feeds has
//! a free buffer. A consumer returns a [`Credit`] to each producer as soon as
//! it has consumed the inputs of a micro-batch. So at most `credits`
//! micro-batches of any value exist at once, memory stays bounded under any
//! load, and with 2+ credits a producer runs micro-batch k+1 while its
//! consumer (on another device) runs micro-batch k. A task handles
//! micro-batches strictly in order.
//!
//! ## Oldest micro-batch first
//! The kernel tasks of one device share a [`DeviceQueue`]. A task whose
//! next micro-batch is ready (inputs present, a buffer free on every route)
//! does not run at once: it enqueues itself keyed by (micro-batch, node
//! order), and the device runs one task at a time, always the oldest
//! micro-batch's earliest node ([`Run`]). Without this the device's mailbox
//! interleaves micro-batches breadth-first: a stage works on all of them at
//! once and hands the first one to the next stage only near the end, which
//! empties the pipeline. Depth-first order lets micro-batch k leave the
//! stage as early as possible while k+1 fills the gaps.

use crate::clock::KernelClock;
use crate::error::RuntimeError;
use crate::resolve::{run_op, Resolver};
use crate::trace::Recorder;
use actix::prelude::*;
use crossbeam::channel::Sender;
use hetflow_devices::{Device, DeviceTensor};
use hetflow_ops::{Op, Tensor};
use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One input of one micro-batch for one consumer slot.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Data {
    pub mb: u64,
    pub slot: usize,
    pub tensor: DeviceTensor,
}

/// A host tensor for one input slot of one micro-batch: from the source
/// to a [`crate::remote::NetSend`], or from a [`crate::remote::NetRecv`]
/// to the sink.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HostData {
    /// Micro-batch.
    pub mb: u64,
    /// The receiver's input slot.
    pub slot: usize,
    /// The value.
    pub tensor: Arc<Tensor>,
}

/// A buffer handed back on route `route` of the receiver.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Credit {
    pub route: usize,
}

/// Tells a queued task to run its next micro-batch now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Run;

/// The ready kernel tasks of one device, oldest micro-batch first (module
/// docs). Shared by the device's tasks, which all live on its compute
/// arbiter thread; the mutex is uncontended.
pub struct DeviceQueue {
    ready: std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>>,
    tasks: Vec<Option<Recipient<Run>>>,
    running: bool,
}

impl DeviceQueue {
    /// A queue for tasks with ids `0..n` (their node order).
    pub fn new(n: usize) -> Arc<std::sync::Mutex<DeviceQueue>> {
        Arc::new(std::sync::Mutex::new(DeviceQueue {
            ready: Default::default(),
            tasks: vec![None; n],
            running: false,
        }))
    }
    /// Registers task `id`'s mailbox.
    pub fn register(&mut self, id: usize, r: Recipient<Run>) {
        if let Some(slot) = self.tasks.get_mut(id) {
            *slot = Some(r);
        }
    }
    /// Starts the highest-priority ready task when nothing is running.
    fn pump(&mut self) {
        if self.running {
            return;
        }
        while let Some(std::cmp::Reverse((_, id))) = self.ready.pop() {
            if let Some(Some(r)) = self.tasks.get(id) {
                self.running = true;
                r.do_send(Run);
                return;
            }
        }
    }
}

/// Asks a device's [`Dispatcher`] to start the next ready task.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pump;

/// Starts a device's queued tasks one at a time. Choosing happens when a
/// [`Pump`] message is handled, i.e. after the messages already sent on
/// the device's thread (the data a kernel just produced for its local
/// consumers) have been handled, so those consumers are in the queue and
/// an older micro-batch is not overtaken by a newer one that was merely
/// first to ask.
pub struct Dispatcher {
    pub queue: Arc<std::sync::Mutex<DeviceQueue>>,
}

impl Actor for Dispatcher {
    type Context = Context<Self>;
}

impl Handler<Pump> for Dispatcher {
    type Result = ();
    fn handle(&mut self, _: Pump, _: &mut Self::Context) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).pump();
    }
}

/// A task's place in its device's queue.
pub struct Queued {
    pub queue: Arc<std::sync::Mutex<DeviceQueue>>,
    pub dispatcher: Recipient<Pump>,
    /// Its id in the queue: `copy × nodes + node`, so node order within a
    /// copy.
    pub id: usize,
    /// (copies, this copy): the queue orders by the global micro-batch
    /// `local × copies + copy`, so copies of the plan that share a device
    /// take turns oldest first.
    pub copy_of: (u64, u64),
    /// Whether the task is in the queue or running.
    pub waiting: bool,
    /// Micro-batches between the source and the sink, when the plan runs
    /// on this one device alone (its source and sink share the device's
    /// thread): with one in flight, a task that is the only one ready on
    /// an idle device runs at once, without the [`Pump`] and [`Run`]
    /// messages (no older micro-batch can be waiting). `None` elsewhere.
    pub inflight: Option<Arc<AtomicUsize>>,
}

/// Where an output goes.
#[derive(Clone)]
pub struct Route {
    pub target: Recipient<Data>,
    pub slot: usize,
}

/// Who to credit when a slot's buffer has been consumed.
#[derive(Clone)]
pub struct Upstream {
    pub producer: Recipient<Credit>,
    pub route: usize,
}

/// What the session hears from the actors.
pub enum Event {
    /// All outputs of a micro-batch, on the host, in graph output order.
    Output { mb: u64, outputs: Vec<Arc<Tensor>> },
    /// One output of a micro-batch as soon as the sink has it (only while
    /// [`Sink::parts`] is set); the micro-batch's [`Event::Output`] still
    /// follows, after all its parts. Constant outputs have no part.
    Part {
        mb: u64,
        slot: usize,
        tensor: Arc<Tensor>,
    },
    /// The run failed.
    Failed(RuntimeError),
    /// The root rank closed a multi-host session (serving ranks return).
    Stopped,
}

/// The work a task does when its inputs are complete.
pub enum Work {
    /// Run an op on the task's device.
    Kernel { op: Op, n_outputs: usize },
    /// Copy the one input from `from` to the task's device.
    Copy { from: Arc<dyn Device> },
}

/// A node or a transfer.
pub struct Task {
    pub name: String,
    pub device: Arc<dyn Device>,
    pub work: Work,
    /// Per input slot: a constant already on the device.
    pub constants: Vec<Option<DeviceTensor>>,
    /// Slots that arrive as messages.
    pub edge_slots: Vec<usize>,
    pub credits: usize,
    pub events: Sender<Event>,
    pub recorder: Arc<Recorder>,
    /// Flat list of (output index, route); credits are counted per entry.
    pub routes: Vec<(usize, Route)>,
    /// Per input slot, the producer to credit (None for constants and
    /// absent optional inputs).
    pub upstream: Vec<Option<Upstream>>,
    outstanding: Vec<usize>,
    pending: BTreeMap<u64, (Vec<Option<DeviceTensor>>, usize)>,
    next_mb: u64,
    failed: bool,
    /// The device queue (kernel tasks); copies run as soon as ready.
    pub queued: Option<Queued>,
    /// Where running kernels register, when the session has a kernel
    /// timeout.
    pub clock: Option<Arc<KernelClock>>,
    /// The kernel's output shapes, resolved per input signature.
    resolver: Resolver,
}

impl Task {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        device: Arc<dyn Device>,
        work: Work,
        constants: Vec<Option<DeviceTensor>>,
        edge_slots: Vec<usize>,
        credits: usize,
        events: Sender<Event>,
        recorder: Arc<Recorder>,
        routes: Vec<(usize, Route)>,
        upstream: Vec<Option<Upstream>>,
    ) -> Task {
        let outstanding = vec![0; routes.len()];
        Task {
            name,
            device,
            work,
            constants,
            edge_slots,
            credits,
            events,
            recorder,
            routes,
            upstream,
            outstanding,
            pending: BTreeMap::new(),
            next_mb: 0,
            failed: false,
            queued: None,
            clock: None,
            resolver: Resolver::default(),
        }
    }

    fn ready(&self) -> bool {
        !self.failed && self.has_credit() && matches!(self.pending.get(&self.next_mb), Some((_, 0)))
    }

    /// Runs what is ready: directly for unqueued tasks, else by joining the
    /// device queue (once).
    fn schedule(&mut self) {
        self.enqueue(false);
    }

    /// Runs one micro-batch (the device queue chose this task), then frees
    /// the device and lets the next task go.
    fn run_one(&mut self) {
        if self.ready() {
            self.fire_one();
        }
        self.enqueue(true);
    }

    /// Joins the device queue when ready and not already in it; `release`
    /// also frees the device after a run. Asks the dispatcher for the next
    /// task (one message) when this call queued a task or freed the device
    /// and something is waiting.
    fn enqueue(&mut self, release: bool) {
        let ready = self.ready();
        let Some(q) = &mut self.queued else {
            return self.try_fire();
        };
        let mut dq = q.queue.lock().unwrap_or_else(|e| e.into_inner());
        if release {
            q.waiting = false;
            dq.running = false;
        }
        let join = ready && !q.waiting;
        let alone = !dq.running
            && dq.ready.is_empty()
            && q.inflight
                .as_ref()
                .is_some_and(|n| n.load(Ordering::Acquire) <= 1);
        if join && alone {
            q.waiting = true;
            dq.running = true;
            drop(dq);
            return self.run_one();
        }
        if join {
            q.waiting = true;
            let global = self.next_mb * q.copy_of.0 + q.copy_of.1;
            dq.ready.push(std::cmp::Reverse((global, q.id)));
        }
        if (join || release) && !dq.running && !dq.ready.is_empty() {
            q.dispatcher.do_send(Pump);
        }
    }

    fn has_credit(&self) -> bool {
        self.outstanding.iter().all(|&o| o < self.credits)
    }

    fn fail(&mut self, op: &str, msg: String) {
        self.failed = true;
        self.pending.clear();
        let _ = self.events.send(Event::Failed(RuntimeError::Op {
            node: self.name.clone(),
            op: op.to_string(),
            device: self.device.id().to_string(),
            msg,
        }));
    }

    fn try_fire(&mut self) {
        while self.ready() {
            self.fire_one();
        }
    }

    fn fire_one(&mut self) {
        {
            let mb = self.next_mb;
            let (slots, _) = self.pending.remove(&mb).unwrap_or_default();
            self.next_mb += 1;
            let start = Instant::now();
            let ticket = self.clock.as_ref().map(|c| {
                let op = match &self.work {
                    Work::Kernel { op, .. } => op.name(),
                    Work::Copy { .. } => "copy",
                };
                c.start(&self.name, op, self.device.id())
            });
            let (result, label, cat, queue) = match &self.work {
                Work::Kernel { op, n_outputs } => {
                    let inputs: Vec<Option<&DeviceTensor>> = slots
                        .iter()
                        .zip(&self.constants)
                        .map(|(s, c)| s.as_ref().or(c.as_ref()))
                        .collect();
                    let resolver = &mut self.resolver;
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        run_op(resolver, &*self.device, op, &inputs, *n_outputs)
                    }));
                    (r, op.name(), "kernel", "compute")
                }
                Work::Copy { from } => {
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let src = slots.first().and_then(|s| s.as_ref()).ok_or_else(|| {
                            hetflow_devices::DeviceError::Other("copy has no input".into())
                        })?;
                        // A direct device-to-device path (GPU peer
                        // copy) where the target has one, else via host.
                        if let Some(t) = self.device.copy_from_device(src) {
                            return Ok(vec![t?]);
                        }
                        let host = from.download(src)?;
                        Ok(vec![self.device.upload(host)?])
                    }));
                    (r, "copy", "copy", "copy")
                }
            };
            if let (Some(c), Some(t)) = (&self.clock, ticket) {
                c.stop(t);
            }
            // Asynchronous devices report the kernel when it has run;
            // everything else ran inside `execute`.
            let reported = match (&self.work, &result) {
                (Work::Kernel { .. }, Ok(Ok(outs))) if self.recorder.enabled() => {
                    outs.first().is_some_and(|out| {
                        let (rec, name, dev) = (
                            self.recorder.clone(),
                            self.name.clone(),
                            self.device.id().to_string(),
                        );
                        self.device.on_kernel_done(
                            out,
                            Box::new(move |r| {
                                rec.record_span(
                                    &name,
                                    label,
                                    cat,
                                    &dev,
                                    queue,
                                    mb,
                                    (r.start, r.end),
                                    r.modelled_us,
                                )
                            }),
                        )
                    })
                }
                _ => false,
            };
            if !reported && self.recorder.enabled() {
                // Copies to or from an emulated device carry its modelled
                // link time.
                let modelled = match (&self.work, &result) {
                    (Work::Copy { from }, Ok(Ok(outs))) => outs.first().and_then(|t| {
                        let b = t.byte_len() as u64;
                        let (a, z) = (
                            from.transfer_modelled_us(b),
                            self.device.transfer_modelled_us(b),
                        );
                        a.or(z).map(|_| a.unwrap_or(0.0) + z.unwrap_or(0.0))
                    }),
                    _ => None,
                };
                self.recorder.record_span(
                    &self.name,
                    label,
                    cat,
                    &self.device.id().to_string(),
                    queue,
                    mb,
                    (start, Instant::now()),
                    modelled,
                );
            }
            let outputs = match result {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => return self.fail(label, e.to_string()),
                Err(p) => return self.fail(label, format!("kernel panicked: {}", panic_text(&*p))),
            };
            // Inputs consumed: hand their buffers back.
            for up in self.upstream.iter().flatten() {
                up.producer.do_send(Credit { route: up.route });
            }
            for (i, r) in &self.routes {
                if let Some(t) = outputs.get(*i) {
                    r.target.do_send(Data {
                        mb,
                        slot: r.slot,
                        tensor: t.clone(),
                    });
                }
            }
            for o in self.outstanding.iter_mut() {
                *o += 1;
            }
        }
    }
}

/// The message of a caught panic (`"panic"` when it carries none).
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

impl Actor for Task {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        // Data can arrive in bursts; never drop messages.
        ctx.set_mailbox_capacity(usize::MAX);
    }
}

impl Handler<Data> for Task {
    type Result = ();
    fn handle(&mut self, d: Data, _: &mut Self::Context) {
        crate::hot::touch();
        if self.failed {
            return;
        }
        let n_slots = self.constants.len();
        let n_edges = self.edge_slots.len();
        let entry = self
            .pending
            .entry(d.mb)
            .or_insert_with(|| (vec![None; n_slots], n_edges));
        if d.slot < n_slots && entry.0[d.slot].is_none() {
            entry.0[d.slot] = Some(d.tensor);
            entry.1 -= 1;
        }
        self.schedule();
    }
}

impl Handler<Run> for Task {
    type Result = ();
    fn handle(&mut self, _: Run, _: &mut Self::Context) {
        self.run_one();
        crate::hot::touch();
    }
}

impl Handler<Credit> for Task {
    type Result = ();
    fn handle(&mut self, c: Credit, _: &mut Self::Context) {
        if let Some(o) = self.outstanding.get_mut(c.route) {
            *o = o.saturating_sub(1);
        }
        self.schedule();
    }
}

/// Where the source sends one graph input.
pub enum SourceRoute {
    /// Uploaded to the reader's device.
    Device(Route, Arc<dyn Device>),
    /// As the host tensor, to a cross-host sender
    /// ([`crate::remote::NetSend`]).
    Host(Recipient<HostData>, usize),
}

/// Feeds micro-batches: each route `(input index, route)` gets that graph
/// input uploaded to the reader's device, or handed on as is to a
/// cross-host sender.
pub struct Source {
    pub routes: Vec<(usize, SourceRoute)>,
    pub credits: usize,
    pub events: Sender<Event>,
    /// Counts the micro-batches it feeds ([`Queued::inflight`]).
    pub inflight: Option<Arc<AtomicUsize>>,
    queue: VecDeque<Feed>,
    outstanding: Vec<usize>,
}

impl Source {
    pub fn new(routes: Vec<(usize, SourceRoute)>, credits: usize, events: Sender<Event>) -> Source {
        let n = routes.len();
        Source {
            routes,
            credits,
            events,
            queue: VecDeque::new(),
            outstanding: vec![0; n],
            inflight: None,
        }
    }

    fn pump(&mut self) {
        while self.outstanding.iter().all(|&o| o < self.credits) {
            let Some(feed) = self.queue.pop_front() else {
                return;
            };
            if let Some(n) = &self.inflight {
                n.fetch_add(1, Ordering::AcqRel);
            }
            for (i, route) in &self.routes {
                let (r, dev) = match route {
                    SourceRoute::Device(r, dev) => (r, dev),
                    SourceRoute::Host(to, slot) => {
                        to.do_send(HostData {
                            mb: feed.mb,
                            slot: *slot,
                            tensor: feed.inputs[*i].clone(),
                        });
                        continue;
                    }
                };
                match dev.upload(feed.inputs[*i].clone()) {
                    Ok(t) => r.target.do_send(Data {
                        mb: feed.mb,
                        slot: r.slot,
                        tensor: t,
                    }),
                    Err(e) => {
                        let _ = self.events.send(Event::Failed(RuntimeError::Op {
                            node: "<input>".into(),
                            op: "upload".into(),
                            device: dev.id().to_string(),
                            msg: e.to_string(),
                        }));
                        self.queue.clear();
                        return;
                    }
                }
            }
            for o in self.outstanding.iter_mut() {
                *o += 1;
            }
        }
    }
}

impl Actor for Source {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(usize::MAX);
    }
}

/// One micro-batch of graph inputs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Feed {
    pub mb: u64,
    pub inputs: Vec<Arc<Tensor>>,
}

impl Handler<Feed> for Source {
    type Result = ();
    fn handle(&mut self, f: Feed, _: &mut Self::Context) {
        crate::hot::arrived();
        self.queue.push_back(f);
        self.pump();
    }
}

impl Handler<Credit> for Source {
    type Result = ();
    fn handle(&mut self, c: Credit, _: &mut Self::Context) {
        if let Some(o) = self.outstanding.get_mut(c.route) {
            *o = o.saturating_sub(1);
        }
        self.pump();
    }
}

/// Gathers outputs. Slot `i` is graph output `i`; constants are pre-filled.
pub struct Sink {
    pub constants: Vec<Option<Arc<Tensor>>>,
    pub devices: Vec<Arc<dyn Device>>,
    /// Per output slot, who to credit.
    pub upstream: Vec<Option<Upstream>>,
    pub events: Sender<Event>,
    /// (copies, this copy): local micro-batch j is global `j * k + r`.
    pub copy_of: (u64, u64),
    /// Set by the session while a run wants each output as it arrives
    /// ([`Event::Part`]); shared by the session's sinks. Off, the sink
    /// sends one event per micro-batch, so plain runs wake the caller
    /// once per result.
    pub parts: Arc<AtomicBool>,
    /// Per micro-batch: outputs gathered so far and how many are missing.
    pending: BTreeMap<u64, Gathered>,
    /// Counts the micro-batches it completes ([`Queued::inflight`]).
    pub inflight: Option<Arc<AtomicUsize>>,
}

/// Outputs of one micro-batch gathered so far, and how many are missing.
type Gathered = (Vec<Option<Arc<Tensor>>>, usize);

impl Sink {
    pub fn new(
        constants: Vec<Option<Arc<Tensor>>>,
        devices: Vec<Arc<dyn Device>>,
        upstream: Vec<Option<Upstream>>,
        events: Sender<Event>,
    ) -> Sink {
        Sink {
            constants,
            devices,
            upstream,
            events,
            copy_of: (1, 0),
            parts: Arc::new(AtomicBool::new(false)),
            pending: BTreeMap::new(),
            inflight: None,
        }
    }
}

impl Actor for Sink {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(usize::MAX);
    }
}

impl Handler<Data> for Sink {
    type Result = ();
    fn handle(&mut self, d: Data, _: &mut Self::Context) {
        let dev = self.devices.iter().find(|x| x.id() == d.tensor.device);
        let host = match dev.map(|dev| dev.download(&d.tensor)) {
            Some(Ok(h)) => h,
            Some(Err(e)) => {
                let _ = self.events.send(Event::Failed(RuntimeError::Op {
                    node: "<output>".into(),
                    op: "download".into(),
                    device: d.tensor.device.to_string(),
                    msg: e.to_string(),
                }));
                return;
            }
            None => {
                let _ = self.events.send(Event::Failed(RuntimeError::Setup(format!(
                    "output on unknown device {}",
                    d.tensor.device
                ))));
                return;
            }
        };
        self.accept(d.mb, d.slot, host);
    }
}

impl Handler<HostData> for Sink {
    type Result = ();
    fn handle(&mut self, d: HostData, _: &mut Self::Context) {
        self.accept(d.mb, d.slot, d.tensor);
    }
}

impl Sink {
    /// Takes output `slot` of micro-batch `mb`, credits its producer,
    /// hands it on alone when the session wants parts, and reports the
    /// micro-batch once all its outputs are in.
    fn accept(&mut self, mb: u64, slot: usize, host: Arc<Tensor>) {
        if let Some(Some(up)) = self.upstream.get(slot) {
            up.producer.do_send(Credit { route: up.route });
        }
        let (k, r) = self.copy_of;
        if self.parts.load(Ordering::Acquire) {
            let _ = self.events.send(Event::Part {
                mb: mb * k + r,
                slot,
                tensor: host.clone(),
            });
        }
        let n = self.constants.len();
        let missing = self.constants.iter().filter(|c| c.is_none()).count();
        let consts = &self.constants;
        let entry = self
            .pending
            .entry(mb)
            .or_insert_with(|| (consts.clone(), missing));
        if slot < n && entry.0[slot].is_none() {
            entry.0[slot] = Some(host);
            entry.1 -= 1;
        }
        if entry.1 == 0 {
            if let Some((outs, _)) = self.pending.remove(&mb) {
                crate::hot::finished();
                if let Some(n) = &self.inflight {
                    n.fetch_sub(1, Ordering::AcqRel);
                }
                let outputs = outs.into_iter().flatten().collect();
                let _ = self.events.send(Event::Output {
                    mb: mb * k + r,
                    outputs,
                });
            }
        }
    }
}
