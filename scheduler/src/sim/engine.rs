//! The event loop: the workload is expanded into tasks (kernels, copies,
//! delays) per micro-batch with their dependencies, then run on queues and
//! links in time order.

use super::report::{DeviceStats, PathStep, SimEvent, SimReport};
use super::workload::Workload;
use crate::plan::{PlanError, Schedule};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Kernel,
    Copy,
    Delay,
}

#[derive(Clone)]
struct Task {
    kind: Kind,
    /// Compute queue `d`, inbound copy queue `p + d`, or none.
    queue: Option<usize>,
    /// Kernel or delay time; bytes for copies.
    amount: f64,
    /// Copy ends.
    from: usize,
    to: usize,
    /// Unit (kernels) or value (copies, delays).
    what: usize,
    bwd: bool,
    mb: usize,
}

struct Buffer {
    device: usize,
    bytes: f64,
    refs: usize,
}

/// The expanded task graph.
struct Expanded {
    tasks: Vec<Task>,
    succ: Vec<Vec<u32>>,
    indeg: Vec<u32>,
    buffers: Vec<Buffer>,
    allocs: Vec<Vec<u32>>,
    releases: Vec<Vec<u32>>,
}

impl Expanded {
    fn push(&mut self, t: Task) -> usize {
        self.tasks.push(t);
        self.succ.push(Vec::new());
        self.indeg.push(0);
        self.allocs.push(Vec::new());
        self.releases.push(Vec::new());
        self.tasks.len() - 1
    }
    fn dep(&mut self, a: usize, b: usize) {
        self.succ[a].push(b as u32);
        self.indeg[b] += 1;
    }
    /// A buffer allocated by `owner` and released by `owner` and `readers`.
    fn buffer(&mut self, owner: usize, device: usize, bytes: f64, readers: &[usize]) {
        let id = self.buffers.len() as u32;
        self.buffers.push(Buffer {
            device,
            bytes,
            refs: 1 + readers.len(),
        });
        self.allocs[owner].push(id);
        self.releases[owner].push(id);
        for &r in readers {
            self.releases[r].push(id);
        }
    }
}

fn expand(w: &Workload) -> Expanded {
    let p = w.devices.len();
    let nu = w.units.len();
    let training = w.schedule != Schedule::Streaming;
    let mut x = Expanded {
        tasks: Vec::new(),
        succ: Vec::new(),
        indeg: Vec::new(),
        buffers: Vec::new(),
        allocs: Vec::new(),
        releases: Vec::new(),
    };
    // Cross-device (value, destination) pairs, in value order.
    let mut xfers: Vec<(usize, usize)> = Vec::new();
    for (vi, v) in w.values.iter().enumerate() {
        let src = w.units[v.producer].device;
        let mut dests: Vec<usize> = v
            .consumers
            .iter()
            .map(|&c| w.units[c].device)
            .filter(|&d| d != src)
            .collect();
        dests.sort_unstable();
        dests.dedup();
        xfers.extend(dests.into_iter().map(|d| (vi, d)));
    }
    // xfers is in value order: those of value v are xfer_start[v]..[v + 1].
    let mut xfer_start = vec![0usize; w.values.len() + 1];
    for &(vi, _) in &xfers {
        xfer_start[vi + 1] += 1;
    }
    for v in 0..w.values.len() {
        xfer_start[v + 1] += xfer_start[v];
    }
    let xfer_index: HashMap<(usize, usize), usize> =
        xfers.iter().enumerate().map(|(i, &k)| (k, i)).collect();
    // Copies of the plan (data-parallel replicas): micro-batch `mb` runs on
    // copy `mb % k`, whose devices are `w.copies[mb % k]`.
    let k = w.copies.len().max(1);
    let on = |mb: usize, d: usize| w.device_of(mb, d);
    let copy_task = |vi: usize, from: usize, to: usize, mb: usize, bwd: bool| Task {
        kind: if w.values[vi].delay.is_some() {
            Kind::Delay
        } else {
            Kind::Copy
        },
        queue: if w.values[vi].delay.is_some() {
            None
        } else if w.shared_copy.get(on(mb, from)) == Some(&true) {
            // The source's compute threads run the transfer.
            Some(on(mb, from))
        } else if w.shared_copy.get(on(mb, to)) == Some(&true) {
            Some(on(mb, to))
        } else {
            Some(p + on(mb, to))
        },
        amount: w.values[vi].delay.unwrap_or(w.values[vi].bytes),
        from: on(mb, from),
        to: on(mb, to),
        what: vi,
        bwd,
        mb,
    };
    let m = w.microbatches;
    let phases = if training { 2 } else { 1 };
    let block = phases * (nu + xfers.len());
    // Task ids: mb * block + phase * (nu + nx) + (unit | nu + xfer).
    let id = |mb: usize, bwd: bool, local: usize| {
        mb * block + usize::from(bwd) * (nu + xfers.len()) + local
    };
    for mb in 0..m {
        for bwd in [false, true].into_iter().take(phases) {
            for (ui, u) in w.units.iter().enumerate() {
                let t = w.unit_time(mb, ui);
                let time = if !bwd {
                    t
                } else {
                    w.backward.get(ui).copied().unwrap_or(2.0 * t)
                } + w.task_overhead;
                let d = on(mb, u.device);
                x.push(Task {
                    kind: Kind::Kernel,
                    queue: Some(d),
                    amount: time,
                    from: d,
                    to: d,
                    what: ui,
                    bwd,
                    mb,
                });
            }
            for &(vi, d) in &xfers {
                let src = w.units[w.values[vi].producer].device;
                let t = if bwd {
                    copy_task(vi, d, src, mb, true)
                } else {
                    copy_task(vi, src, d, mb, false)
                };
                x.push(t);
            }
        }
    }
    // Data dependencies and buffers.
    for mb in 0..m {
        for (vi, v) in w.values.iter().enumerate() {
            let pu = v.producer;
            let src = w.units[pu].device;
            let prod = id(mb, false, pu);
            // Who frees the producer's buffer on its own device.
            let mut local_readers = Vec::new();
            for &c in &v.consumers {
                let cd = w.units[c].device;
                if cd == src {
                    x.dep(prod, id(mb, false, c));
                    if training {
                        x.dep(id(mb, true, c), id(mb, true, pu));
                        local_readers.push(id(mb, true, c));
                    } else {
                        local_readers.push(id(mb, false, c));
                    }
                } else {
                    let xi = nu + xfer_index[&(vi, cd)];
                    x.dep(id(mb, false, xi), id(mb, false, c));
                    if training {
                        x.dep(id(mb, true, c), id(mb, true, xi));
                    }
                }
            }
            for &(_, d) in &xfers[xfer_start[vi]..xfer_start[vi + 1]] {
                let xi = nu + xfer_index[&(vi, d)];
                let copy = id(mb, false, xi);
                x.dep(prod, copy);
                local_readers.push(copy);
                if training {
                    x.dep(id(mb, true, xi), id(mb, true, pu));
                }
                if x.tasks[copy].kind == Kind::Copy {
                    let readers: Vec<usize> = v
                        .consumers
                        .iter()
                        .filter(|&&c| w.units[c].device == d)
                        .map(|&c| id(mb, training, c))
                        .collect();
                    x.buffer(copy, on(mb, d), v.bytes, &readers);
                }
            }
            local_readers.sort_unstable();
            local_readers.dedup();
            x.buffer(prod, on(mb, src), v.bytes, &local_readers);
        }
        if training {
            for ui in 0..nu {
                x.dep(id(mb, false, ui), id(mb, true, ui));
            }
        }
    }
    // In-order micro-batches per task, and credits (streaming).
    let routes: Vec<(usize, usize)> = if training {
        Vec::new()
    } else {
        let mut r = Vec::new();
        for (vi, v) in w.values.iter().enumerate() {
            let src = w.units[v.producer].device;
            for &c in &v.consumers {
                let cd = w.units[c].device;
                if cd == src {
                    r.push((v.producer, c));
                } else {
                    let xi = nu + xfer_index[&(vi, cd)];
                    r.push((v.producer, xi));
                    r.push((xi, c));
                }
            }
        }
        r.sort_unstable();
        r.dedup();
        r
    };
    if !training {
        // Each copy's tasks take its own micro-batches in order, and
        // credits count that copy's micro-batches.
        for mb in k..m {
            // Delays are messages in flight, not a queue: they overlap.
            for local in 0..nu + xfers.len() {
                if x.tasks[id(mb, false, local)].kind != Kind::Delay {
                    x.dep(id(mb - k, false, local), id(mb, false, local));
                }
            }
            if mb >= w.credits * k {
                for &(a, b) in &routes {
                    x.dep(id(mb - w.credits * k, false, b), id(mb, false, a));
                }
            }
        }
    }
    // Fixed orders: list schedules per device, training schedules per stage.
    let chain = |seq: &[usize], x: &mut Expanded| {
        for pair in seq.windows(2) {
            x.dep(pair[0], pair[1]);
        }
    };
    for o in &w.order {
        let seq: Vec<usize> = (0..m)
            .flat_map(|mb| o.iter().map(move |&u| (mb, u)))
            .map(|(mb, u)| id(mb, false, u))
            .collect();
        chain(&seq, &mut x);
    }
    if training {
        let ns = w.stages.len();
        for (s, units) in w.stages.iter().enumerate() {
            let mut items: Vec<(bool, usize)> = Vec::new();
            match w.schedule {
                Schedule::Gpipe => {
                    items.extend((0..m).map(|k| (false, k)));
                    items.extend((0..m).map(|k| (true, k)));
                }
                _ => {
                    let warm = (ns - s - 1).min(m);
                    items.extend((0..warm).map(|k| (false, k)));
                    for i in 0..m - warm {
                        items.push((false, warm + i));
                        items.push((true, i));
                    }
                    items.extend((m - warm..m).map(|k| (true, k)));
                }
            }
            let seq: Vec<usize> = items
                .iter()
                .flat_map(|&(bwd, k)| {
                    let fwd: Vec<usize> = units.iter().map(|&u| id(k, bwd, u)).collect();
                    let mut v = fwd;
                    if bwd {
                        v.reverse();
                    }
                    v
                })
                .collect();
            chain(&seq, &mut x);
        }
    }
    x
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Done(u32),
    /// The kernel running on device `d` completes, valid for `version`
    /// (contention changes kernel rates, which reschedules this).
    Kernel(u32, u64),
    /// A shared-link copy finished its latency and joins the link.
    Join(u32),
    /// The next completion on shared link `l`, valid for `version`.
    Link(u32, u64),
}

#[derive(Default)]
struct LinkState {
    flows: Vec<(u32, f64)>,
    last: f64,
    version: u64,
    per_byte: f64,
}

impl LinkState {
    fn advance(&mut self, now: f64) {
        let n = self.flows.len() as f64;
        if n > 0.0 {
            let moved = (now - self.last) / (self.per_byte * n);
            for f in &mut self.flows {
                f.1 -= moved;
            }
        }
        self.last = now;
    }
    fn next(&self) -> Option<f64> {
        let n = self.flows.len() as f64;
        self.flows
            .iter()
            .map(|f| f.1)
            .min_by(f64::total_cmp)
            .map(|r| self.last + r.max(0.0) * self.per_byte * n)
    }
}

/// Key for the heap: time then insertion order.
struct At(f64);
impl PartialEq for At {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for At {}
impl PartialOrd for At {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for At {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

struct Sim<'a> {
    w: &'a Workload,
    x: Expanded,
    heap: BinaryHeap<Reverse<(At, u64, Ev)>>,
    seq: u64,
    /// Ready tasks per queue, smallest key first: kernels by (micro-batch,
    /// unit) as the runtime's `DeviceQueue`, copies first come first served.
    queues: Vec<BinaryHeap<Reverse<(u64, u64, u32)>>>,
    running: Vec<Option<u32>>,
    ready: Vec<f64>,
    start: Vec<f64>,
    finish: Vec<f64>,
    cause: Vec<u32>,
    qprev: Vec<u32>,
    mem: Vec<f64>,
    peak: Vec<f64>,
    links: Vec<LinkState>,
    done: usize,
    /// Whether any device has a contention factor (then kernels progress
    /// at rates, below).
    contended: bool,
    /// Per device: remaining work of its running kernel (time at full
    /// speed), its current rate, when that was last updated, and the
    /// version of its scheduled completion.
    krem: Vec<f64>,
    krate: Vec<f64>,
    klast: Vec<f64>,
    kver: Vec<u64>,
    /// While a finished task's successors are made ready: the idle queues
    /// they joined, started only once all of them are queued.
    deferred: Option<Vec<usize>>,
}

const NONE: u32 = u32::MAX;

impl Sim<'_> {
    fn at(&mut self, t: f64, e: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((At(t), self.seq, e)));
    }
    fn make_ready(&mut self, t: usize, now: f64) {
        self.ready[t] = now;
        match self.x.tasks[t].queue {
            None => self.begin(t, now),
            Some(q) => {
                let task = &self.x.tasks[t];
                // A device without a copy engine runs kernels and copies as
                // its driver does: in the order they were submitted.
                let fifo = self.w.shared_copy.get(q) == Some(&true);
                let key = match task.kind {
                    Kind::Kernel if !fifo => (task.mb as u64, task.what as u64),
                    _ => {
                        self.seq += 1;
                        (self.seq, 0)
                    }
                };
                self.queues[q].push(Reverse((key.0, key.1, t as u32)));
                if self.running[q].is_none() {
                    match &mut self.deferred {
                        Some(idle) => idle.push(q),
                        None => self.next_on(q, now, NONE),
                    }
                }
            }
        }
    }
    fn next_on(&mut self, q: usize, now: f64, prev: u32) {
        if let Some(Reverse((_, _, t))) = self.queues[q].pop() {
            self.running[q] = Some(t);
            self.qprev[t as usize] = prev;
            self.begin(t as usize, now);
        }
    }
    fn begin(&mut self, t: usize, now: f64) {
        self.start[t] = now;
        for i in 0..self.x.allocs[t].len() {
            let b = &self.x.buffers[self.x.allocs[t][i] as usize];
            self.mem[b.device] += b.bytes;
            self.peak[b.device] = self.peak[b.device].max(self.mem[b.device]);
        }
        let task = &self.x.tasks[t];
        let p = self.w.devices.len();
        match task.kind {
            // A copy on a compute queue (a device without a copy engine)
            // holds that queue like a kernel, contention included.
            // A copy on a compute queue (a device without a copy engine)
            // holds that queue like a kernel, contention included.
            Kind::Copy if task.queue.is_some_and(|q| q < p) => {
                let d = task.queue.unwrap_or(0);
                let l = self.w.links[task.from * p + task.to];
                let dur = l.latency + self.w.task_overhead + task.amount * l.per_byte;
                self.hold(d, t, dur, now);
            }
            Kind::Kernel => self.hold(task.from, t, task.amount, now),
            Kind::Delay => self.at(now + task.amount, Ev::Done(t as u32)),
            Kind::Copy => {
                let l = self.w.links[task.from * p + task.to];
                let lat = l.latency + self.w.task_overhead;
                match l.shared {
                    Some(_) => self.at(now + lat, Ev::Join(t as u32)),
                    None => self.at(now + lat + task.amount * l.per_byte, Ev::Done(t as u32)),
                }
            }
        }
    }
    /// Task `t` holds compute queue `d` for `dur` at full speed. With
    /// contention it progresses at 1 / factor while another device of its
    /// host computes (rates revised by [`Sim::rehost`]).
    fn hold(&mut self, d: usize, t: usize, dur: f64, now: f64) {
        if self.contended {
            self.krem[d] = dur;
            self.klast[d] = now;
            self.krate[d] = 1.0;
            self.rehost(self.w.hosts[d].0, now);
        } else {
            self.at(now + dur, Ev::Done(t as u32));
        }
    }
    fn join(&mut self, t: usize, now: f64) {
        let p = self.w.devices.len();
        let task = &self.x.tasks[t];
        let l = self.w.links[task.from * p + task.to];
        let k = l.shared.unwrap_or(0);
        if self.links.len() <= k {
            self.links.resize_with(k + 1, LinkState::default);
        }
        let ls = &mut self.links[k];
        ls.advance(now);
        ls.per_byte = l.per_byte;
        ls.flows.push((t as u32, task.amount));
        self.relink(k);
    }
    fn relink(&mut self, k: usize) {
        let ls = &mut self.links[k];
        ls.version += 1;
        let v = ls.version;
        if let Some(t) = ls.next() {
            self.at(t, Ev::Link(k as u32, v));
        }
    }
    fn link_tick(&mut self, k: usize, version: u64, now: f64) {
        if self.links[k].version != version {
            return;
        }
        let ls = &mut self.links[k];
        ls.advance(now);
        let tol = 1e-9 * ls.flows.iter().map(|f| f.1.abs()).fold(1.0, f64::max);
        let min = ls.flows.iter().map(|f| f.1).fold(f64::INFINITY, f64::min);
        let (fin, rest): (Vec<_>, Vec<_>) =
            ls.flows.iter().partition(|f| f.1 <= min.max(0.0) + tol);
        ls.flows = rest;
        for (t, _) in fin {
            self.finish_task(t as usize, now);
        }
        self.relink(k);
    }
    /// Recomputes the rates of the kernels running on host `h` (after one
    /// started or finished there) and reschedules their completions.
    fn rehost(&mut self, h: usize, now: f64) {
        let p = self.w.devices.len();
        let on_host: Vec<usize> = (0..p)
            .filter(|&o| self.w.hosts[o].0 == h && self.running[o].is_some())
            .collect();
        for &o in &on_host {
            self.krem[o] -= (now - self.klast[o]) * self.krate[o];
            self.krem[o] = self.krem[o].max(0.0);
            self.klast[o] = now;
            self.krate[o] = if on_host.len() > 1 {
                1.0 / self.w.hosts[o].1
            } else {
                1.0
            };
            self.kver[o] += 1;
            let (v, at) = (self.kver[o], now + self.krem[o] / self.krate[o]);
            self.at(at, Ev::Kernel(o as u32, v));
        }
    }
    fn kernel_tick(&mut self, d: usize, version: u64, now: f64) {
        if self.kver[d] != version {
            return;
        }
        if let Some(t) = self.running[d] {
            self.finish_task(t as usize, now);
        }
    }
    fn finish_task(&mut self, t: usize, now: f64) {
        self.finish[t] = now;
        self.done += 1;
        for i in 0..self.x.releases[t].len() {
            let b = &mut self.x.buffers[self.x.releases[t][i] as usize];
            b.refs -= 1;
            if b.refs == 0 {
                self.mem[b.device] -= b.bytes;
            }
        }
        let own = self.x.tasks[t].queue;
        if let Some(q) = own {
            self.running[q] = None;
        }
        // Successors join their queues before any queue picks its next
        // task: the runtime hands a kernel's outputs on before its device
        // takes the next kernel, so a device finishes one micro-batch's
        // work before it starts the next one's (oldest first).
        self.deferred = Some(Vec::new());
        for i in 0..self.x.succ[t].len() {
            let s = self.x.succ[t][i] as usize;
            self.x.indeg[s] -= 1;
            if self.x.indeg[s] == 0 {
                self.cause[s] = t as u32;
                self.make_ready(s, now);
            }
        }
        let idle = self.deferred.take().unwrap_or_default();
        if let Some(q) = own {
            if self.running[q].is_none() {
                self.next_on(q, now, t as u32);
            }
            let compute = q < self.w.devices.len();
            if self.contended && compute && self.running[q].is_none() {
                // The host has one device fewer computing.
                self.kver[q] += 1;
                self.rehost(self.w.hosts[q].0, now);
            }
        }
        for q in idle {
            if self.running[q].is_none() {
                self.next_on(q, now, NONE);
            }
        }
    }
}

/// Runs the workload; see the module docs for the model.
pub fn simulate(w: &Workload) -> Result<SimReport, PlanError> {
    w.check()?;
    let p = w.devices.len();
    let x = expand(w);
    let n = x.tasks.len();
    let mut mem = w.resident.clone();
    mem.resize(p, 0.0);
    let mut sim = Sim {
        w,
        heap: BinaryHeap::new(),
        seq: 0,
        queues: vec![Default::default(); 2 * p],
        running: vec![None; 2 * p],
        ready: vec![0.0; n],
        start: vec![0.0; n],
        finish: vec![0.0; n],
        cause: vec![NONE; n],
        qprev: vec![NONE; n],
        peak: mem.clone(),
        mem,
        links: Vec::new(),
        done: 0,
        contended: w.hosts.len() == p && w.hosts.iter().any(|h| h.1 != 1.0),
        krem: vec![0.0; p],
        krate: vec![1.0; p],
        klast: vec![0.0; p],
        kver: vec![0; p],
        deferred: None,
        x,
    };
    for t in 0..n {
        if sim.x.indeg[t] == 0 {
            sim.make_ready(t, w.run_overhead);
        }
    }
    while let Some(Reverse((At(now), _, ev))) = sim.heap.pop() {
        match ev {
            Ev::Done(t) => sim.finish_task(t as usize, now),
            Ev::Kernel(d, v) => sim.kernel_tick(d as usize, v, now),
            Ev::Join(t) => sim.join(t as usize, now),
            Ev::Link(k, v) => sim.link_tick(k as usize, v, now),
        }
    }
    if sim.done != n {
        return Err(PlanError::Invalid(format!(
            "simulation deadlocked with {} of {n} tasks run: the unit graph has a cycle or the fixed orders contradict its edges",
            sim.done
        )));
    }
    Ok(report(sim))
}

fn report(sim: Sim) -> SimReport {
    let w = sim.w;
    let p = w.devices.len();
    let n = sim.x.tasks.len();
    let makespan = sim.finish.iter().copied().fold(0.0, f64::max);
    let mut busy = vec![0.0; p];
    let mut copy_busy = vec![0.0; p];
    let mut events = Vec::with_capacity(n);
    let event_of = |t: usize| {
        let task = &sim.x.tasks[t];
        let (name, op, cat, queue, device) = match task.kind {
            Kind::Kernel => {
                let u = &w.units[task.what];
                let name = if task.bwd {
                    format!("{} (bwd)", u.name)
                } else {
                    u.name.clone()
                };
                (name, u.op.clone(), "kernel", "compute", task.from)
            }
            Kind::Copy | Kind::Delay => {
                let v = &w.values[task.what];
                let name = if task.bwd {
                    format!("copy {} (grad)", v.name)
                } else {
                    format!("copy {}", v.name)
                };
                let op = if task.kind == Kind::Copy {
                    "copy"
                } else {
                    "comm"
                };
                (name, op.to_string(), "copy", "copy", task.to)
            }
        };
        SimEvent {
            name,
            op,
            cat,
            device,
            queue,
            mb: task.mb as u64,
            start: sim.start[t],
            dur: sim.finish[t] - sim.start[t],
        }
    };
    for t in 0..n {
        let e = event_of(t);
        match sim.x.tasks[t].kind {
            Kind::Kernel => busy[e.device] += e.dur,
            Kind::Copy => copy_busy[e.device] += e.dur,
            Kind::Delay => {}
        }
        events.push(e);
    }
    // Critical path: back from the last task to finish.
    let mut path = Vec::new();
    let last = (0..n).max_by(|&a, &b| sim.finish[a].total_cmp(&sim.finish[b]).then(b.cmp(&a)));
    let mut cur = last.map(|t| t as u32).unwrap_or(NONE);
    while cur != NONE {
        let t = cur as usize;
        let e = event_of(t);
        let eps = 1e-12 * (1.0 + makespan);
        let (waited, next) = if sim.start[t] > sim.ready[t] + eps && sim.qprev[t] != NONE {
            ("queue", sim.qprev[t])
        } else if sim.cause[t] != NONE {
            ("data", sim.cause[t])
        } else {
            ("start", NONE)
        };
        path.push(PathStep {
            name: e.name,
            device: e.device,
            cat: e.cat,
            mb: e.mb,
            start: sim.start[t],
            finish: sim.finish[t],
            waited_for: waited,
        });
        cur = next;
    }
    path.reverse();
    let frac = |x: f64| if makespan > 0.0 { x / makespan } else { 0.0 };
    let devices: Vec<DeviceStats> = (0..p)
        .map(|d| DeviceStats {
            name: w.devices[d].clone(),
            busy: busy[d],
            busy_frac: frac(busy[d]),
            bubble_frac: 1.0 - frac(busy[d]),
            copy_busy: copy_busy[d],
            peak_memory: sim.peak[d],
        })
        .collect();
    let used: Vec<&DeviceStats> = devices.iter().filter(|d| d.busy > 0.0).collect();
    let bubble_frac = used.iter().map(|d| d.bubble_frac).sum::<f64>() / used.len().max(1) as f64;
    SimReport {
        unit: w.unit.clone(),
        us_per_unit: w.us_per_unit,
        makespan,
        microbatches: w.microbatches,
        throughput: if makespan > 0.0 {
            w.microbatches as f64 / makespan
        } else {
            0.0
        },
        devices,
        bubble_frac,
        critical_path: path,
        events,
        device_names: w.devices.clone(),
    }
}
