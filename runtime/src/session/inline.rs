//! Running a plan on the caller's thread: a session whose plan is one CPU
//! device alone runs its kernels where [`super::Session::run`] is called,
//! with no actor in between.
//!
//! ## Why
//! Through the actors, a run crosses threads twice: the caller's inputs
//! go to the device's compute thread and the result comes back. Each
//! crossing is a wake-up unless the other thread is spinning
//! ([`crate::hot`]), and on a machine with as many cores as kernel
//! threads a spinning caller is one thread too many: at `--threads 2` on
//! this project's 2-vCPU VM the caller, the compute thread and the team's
//! worker shared two cores, and small models ran 1.4-1.7x onnxruntime's
//! latency, whose caller is one of its own two threads (issue 17). A
//! freshly started process also ran its first few hundred runs at twice
//! the steady latency while the scheduler still had the caller and the
//! compute thread on one core.
//!
//! With one device there is nothing for actors to overlap: the device
//! runs one kernel at a time, in node order, micro-batch after
//! micro-batch. So the caller's thread does exactly that: it becomes
//! member 0 of the device's kernel team ([`hetflow_ops::kernels::Team`])
//! and runs the nodes in a topological order, the team's workers joining
//! its parallel loops as they join the compute thread's.
//!
//! ## What stays the same
//! Inputs are checked and never modified; constants are uploaded and
//! their weights prepared once, at build, as the actors' tasks do; each
//! node's output shapes are resolved once per input signature
//! ([`Resolver`]); a failing kernel (error or panic) ends the run with an
//! error naming the node, op and device, and the session is then
//! unusable, as with actors; traces record each kernel's span on the
//! device's compute row; [`super::Session::run_each_output`] hands each
//! output over as soon as its node has run. A value is dropped after its
//! last reader, so buffers go back to the pool as early as the actors'
//! credits let them.
//!
//! ## Views in place
//! The runner knows each value's last reader. A pure view (Reshape,
//! Flatten, Squeeze, Unsqueeze) that is its input's last reader, of a
//! value that is no graph output, takes the input's buffer under the new
//! shape ([`Device::relabel`]) instead of copying it, which the CPU's
//! tensors (they own their shape) otherwise need: ShuffleNet's 33
//! Reshapes went from 0.77 to 0.07 ms a run at 2 threads (2026-12-03).
//!
//! ## When not
//! Plans over several devices, replicated plans, multi-host sessions,
//! sessions with a kernel timeout (a hung kernel on the caller's thread
//! could not be reported), non-CPU devices, and sessions built with
//! [`super::SessionOptions::actors`] or under `HETFLOW_INLINE=0` run
//! through the actors.

use crate::error::{Result, RuntimeError};
use crate::resolve::{is_pure_view, run_op, Resolver};
use crate::trace::Recorder;
use hetflow_devices::{Device, DeviceKind, DeviceTensor};
use hetflow_ops::{Graph, Op, Tensor};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

/// Whether `HETFLOW_INLINE=0` asks for the actors everywhere.
pub(super) fn disabled_by_env() -> bool {
    std::env::var("HETFLOW_INLINE").is_ok_and(|v| v.trim() == "0")
}

/// Whether a plan on these devices may run on the caller's thread: one
/// CPU device alone.
pub(super) fn eligible(devices: &[Option<Arc<dyn Device>>]) -> bool {
    matches!(devices, [Some(d)] if d.id().kind == DeviceKind::Cpu)
}

/// Where a node reads one input from.
enum In {
    Omitted,
    /// A value computed in the run (a graph input or a node output).
    Value(usize),
    /// A constant, uploaded (and its weight prepared) at build.
    Const(DeviceTensor),
}

/// One node, ready to run.
struct Step {
    name: String,
    op: Op,
    inputs: Vec<In>,
    /// The values it writes, in output order.
    outputs: Vec<usize>,
    resolver: Resolver,
}

/// Where a graph output comes from.
enum Out {
    Value(usize),
    Const(Arc<Tensor>),
}

/// A plan on one CPU device, run on the caller's thread (module docs).
pub(super) struct Inline {
    device: Arc<dyn Device>,
    dev_name: String,
    steps: Vec<Step>,
    /// Per graph input, the value it sets (`None`: nobody reads it).
    inputs: Vec<Option<usize>>,
    outputs: Vec<Out>,
    /// Per value: how many node inputs and graph outputs read it.
    readers: Vec<u32>,
    /// Per value: whether it is a graph output.
    is_output: Vec<bool>,
    recorder: Arc<Recorder>,
    /// The run's values, kept between runs for their allocation only.
    pub(super) values: Vec<Option<DeviceTensor>>,
    left: Vec<u32>,
}

/// Why a run stopped early.
pub(super) enum Stop {
    /// A kernel, upload or download failed: the session is broken.
    Run(RuntimeError),
    /// The caller's output callback returned this error.
    Caller(RuntimeError),
}

/// Hands one output to the caller.
pub(super) type Part<'a> = dyn FnMut(usize, Arc<Tensor>) -> Result<()> + 'a;

impl Inline {
    /// Uploads the constants the nodes read and prepares their weights,
    /// and orders the nodes so that each runs after its inputs' producers.
    pub(super) fn build(
        g: &Graph,
        device: Arc<dyn Device>,
        recorder: Arc<Recorder>,
    ) -> Result<Inline> {
        let dev_name = device.id().to_string();
        let n_values = g.values.len();
        let mut readers = vec![0u32; n_values];
        let mut uploaded: std::collections::HashMap<usize, DeviceTensor> = Default::default();
        let order = topological(g)?;
        let mut steps = Vec::with_capacity(g.nodes.len());
        for &i in &order {
            let n = &g.nodes[i];
            let mut inputs = Vec::with_capacity(n.inputs.len());
            for (slot, inp) in n.inputs.iter().enumerate() {
                let Some(v) = inp else {
                    inputs.push(In::Omitted);
                    continue;
                };
                if !g.constants.contains_key(v) {
                    readers[v.0] += 1;
                    inputs.push(In::Value(v.0));
                    continue;
                }
                let t = super::build::node_constant(
                    g,
                    n,
                    slot,
                    *v,
                    &*device,
                    &dev_name,
                    &mut uploaded,
                )?;
                inputs.push(In::Const(t));
            }
            steps.push(Step {
                name: n.name.clone(),
                op: n.op.clone(),
                inputs,
                outputs: n.outputs.iter().map(|v| v.0).collect(),
                resolver: Resolver::default(),
            });
        }
        let mut is_output = vec![false; n_values];
        for o in &g.outputs {
            is_output[o.0] = true;
        }
        let outputs = g
            .outputs
            .iter()
            .map(|o| match g.constants.get(o) {
                Some(c) => Out::Const(c.clone()),
                None => {
                    readers[o.0] += 1;
                    Out::Value(o.0)
                }
            })
            .collect();
        let inputs = g
            .inputs
            .iter()
            .map(|v| (readers[v.0] > 0).then_some(v.0))
            .collect();
        Ok(Inline {
            device,
            dev_name,
            steps,
            inputs,
            outputs,
            readers,
            is_output,
            recorder,
            values: vec![None; n_values],
            left: Vec::with_capacity(n_values),
        })
    }

    /// Runs micro-batch `mb` on `inputs` (checked already); hands each
    /// graph output to `part` (output index, value) as soon as it is
    /// computed when given, and returns all outputs in order.
    pub(super) fn run(
        &mut self,
        mb: u64,
        inputs: &[Arc<Tensor>],
        mut part: Option<&mut Part<'_>>,
    ) -> std::result::Result<Vec<Arc<Tensor>>, Stop> {
        let mut steps = std::mem::take(&mut self.steps);
        let r = self.run_steps(&mut steps, mb, inputs, &mut part);
        self.steps = steps;
        // Nothing of a run outlives it, whatever happened.
        self.values.iter_mut().for_each(|v| *v = None);
        r
    }

    fn run_steps(
        &mut self,
        steps: &mut [Step],
        mb: u64,
        inputs: &[Arc<Tensor>],
        part: &mut Option<&mut Part<'_>>,
    ) -> std::result::Result<Vec<Arc<Tensor>>, Stop> {
        self.left.clear();
        self.left.extend_from_slice(&self.readers);
        for (i, v) in self.inputs.iter().enumerate() {
            let (Some(v), Some(t)) = (v, inputs.get(i)) else {
                continue;
            };
            let t = self.device.upload(t.clone()).map_err(|e| {
                Stop::Run(RuntimeError::Op {
                    node: "<input>".into(),
                    op: "upload".into(),
                    device: self.dev_name.clone(),
                    msg: e.to_string(),
                })
            })?;
            self.values[*v] = Some(t);
        }
        let mut handed = vec![false; self.outputs.len()];
        self.hand_ready(part, &mut handed)?;
        let tracing = self.recorder.enabled();
        for s in steps.iter_mut() {
            let start = Instant::now();
            if let Some(out) = self.relabel(s) {
                self.record(s, mb, start, tracing);
                self.finish_step(s, vec![out], part, &mut handed)?;
                continue;
            }
            let args = self.args(&s.inputs);
            let device = &*self.device;
            let n_outputs = s.outputs.len();
            let (op, resolver) = (&s.op, &mut s.resolver);
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                run_op(resolver, device, op, &args, n_outputs)
            }));
            drop(args);
            self.record(s, mb, start, tracing);
            let fail = |msg: String| {
                Stop::Run(RuntimeError::Op {
                    node: s.name.clone(),
                    op: s.op.name().to_string(),
                    device: self.dev_name.clone(),
                    msg,
                })
            };
            let outs = match r {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => return Err(fail(e.to_string())),
                Err(p) => {
                    return Err(fail(format!(
                        "kernel panicked: {}",
                        crate::actors::panic_text(&*p)
                    )))
                }
            };
            if outs.len() < s.outputs.len() {
                return Err(fail(format!(
                    "the kernel returned {} outputs, the node has {}",
                    outs.len(),
                    s.outputs.len()
                )));
            }
            self.finish_step(s, outs, part, &mut handed)?;
        }
        let mut result = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            result.push(match o {
                Out::Const(c) => c.clone(),
                Out::Value(v) => self.download(*v)?,
            });
        }
        if let Some(p) = part.as_mut() {
            for (i, t) in result.iter().enumerate() {
                if !handed[i] {
                    p(i, t.clone()).map_err(Stop::Caller)?;
                }
            }
        }
        Ok(result)
    }

    /// A pure view (Reshape, Flatten, ...) whose input has no reader after
    /// it and is no graph output: the input's buffer under the output's
    /// shape, taken over without a copy where the device can
    /// ([`Device::relabel`]); `None` to run the node as usual.
    fn relabel(&mut self, s: &mut Step) -> Option<DeviceTensor> {
        if !is_pure_view(&s.op) || s.outputs.len() != 1 {
            return None;
        }
        let v = match s.inputs.first() {
            Some(In::Value(v)) if self.left[*v] == 1 && !self.is_output[*v] => *v,
            _ => return None,
        };
        let shape = {
            let args = self.args(&s.inputs);
            let x = args.first().copied().flatten()?;
            let spec = s.resolver.resolve(&*self.device, &s.op, &args, 1).ok()?;
            match spec.first().and_then(|o| o.concrete()) {
                Some((dt, shape)) if dt == x.dtype => shape.to_vec(),
                _ => return None,
            }
        };
        let t = self.values[v].take()?;
        match self.device.relabel(t, shape) {
            Ok(out) => Some(out),
            Err(t) => {
                self.values[v] = Some(t);
                None
            }
        }
    }

    /// A step's inputs as the device takes them.
    fn args<'a>(&'a self, inputs: &'a [In]) -> Vec<Option<&'a DeviceTensor>> {
        inputs
            .iter()
            .map(|i| match i {
                In::Omitted => None,
                In::Value(v) => self.values[*v].as_ref(),
                In::Const(t) => Some(t),
            })
            .collect()
    }

    fn record(&self, s: &Step, mb: u64, start: Instant, tracing: bool) {
        if tracing {
            self.recorder.record_span(
                &s.name,
                s.op.name(),
                "kernel",
                &self.dev_name,
                "compute",
                mb,
                (start, Instant::now()),
                None,
            );
        }
    }

    /// After step `s` ran: releases the inputs it read last, keeps its
    /// outputs that have readers, and hands on graph outputs.
    fn finish_step(
        &mut self,
        s: &Step,
        outs: Vec<DeviceTensor>,
        part: &mut Option<&mut Part<'_>>,
        handed: &mut [bool],
    ) -> std::result::Result<(), Stop> {
        // Inputs read: a value whose last reader this was goes back to
        // the pool now.
        for i in &s.inputs {
            if let In::Value(v) = i {
                let l = &mut self.left[*v];
                *l = l.saturating_sub(1);
                if *l == 0 {
                    self.values[*v] = None;
                }
            }
        }
        let mut output_done = false;
        for (&v, t) in s.outputs.iter().zip(outs) {
            if self.readers[v] > 0 {
                self.values[v] = Some(t);
                output_done |= self.is_output[v];
            }
        }
        if output_done && part.is_some() {
            self.hand_ready(part, handed)?;
        }
        Ok(())
    }

    /// With `part`: hands on every computed output not handed on yet
    /// (constants wait for the end of the run, as with actors).
    fn hand_ready(
        &self,
        part: &mut Option<&mut Part<'_>>,
        handed: &mut [bool],
    ) -> std::result::Result<(), Stop> {
        let Some(p) = part.as_mut() else {
            return Ok(());
        };
        for (i, o) in self.outputs.iter().enumerate() {
            if let (Out::Value(v), false) = (o, handed[i]) {
                if self.values[*v].is_some() {
                    handed[i] = true;
                    p(i, self.download(*v)?).map_err(Stop::Caller)?;
                }
            }
        }
        Ok(())
    }

    fn download(&self, v: usize) -> std::result::Result<Arc<Tensor>, Stop> {
        let t = self.values[v].as_ref().ok_or_else(|| {
            Stop::Run(RuntimeError::Stopped(format!(
                "output value {v} was not computed"
            )))
        })?;
        self.device.download(t).map_err(|e| {
            Stop::Run(RuntimeError::Op {
                node: "<output>".into(),
                op: "download".into(),
                device: self.dev_name.clone(),
                msg: e.to_string(),
            })
        })
    }
}

/// The nodes in an order where every node comes after the producers of
/// its inputs (node order where it already is one).
fn topological(g: &Graph) -> Result<Vec<usize>> {
    let producers = g.producers();
    let mut waiting = vec![0usize; g.nodes.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for v in n.inputs.iter().flatten() {
            if g.constants.contains_key(v) {
                continue;
            }
            match producers[v.0] {
                Some(p) => {
                    waiting[i] += 1;
                    readers[p.0].push(i);
                }
                None if g.inputs.contains(v) => {}
                None => {
                    return Err(RuntimeError::Setup(format!(
                        "value '{}' has no producer",
                        g.name(*v)
                    )))
                }
            }
        }
    }
    // Lowest index first among the ready ones keeps node order.
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..g.nodes.len())
        .filter(|&i| waiting[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut order = Vec::with_capacity(g.nodes.len());
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for &r in &readers[i] {
            waiting[r] -= 1;
            if waiting[r] == 0 {
                ready.push(std::cmp::Reverse(r));
            }
        }
    }
    if order.len() < g.nodes.len() {
        let stuck = (0..g.nodes.len()).find(|&i| waiting[i] > 0).unwrap_or(0);
        return Err(RuntimeError::Setup(format!(
            "the graph has a cycle through node '{}'",
            g.nodes[stuck].name
        )));
    }
    Ok(order)
}
