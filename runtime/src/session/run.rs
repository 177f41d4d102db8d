//! Running a deployed session: one input set, a stream of micro-batches,
//! and the trace of what ran.

use super::inline::Stop;
use super::{check_inputs, Session};
use crate::actors::{Event, Feed};
use crate::error::{Result, RuntimeError};
use crate::trace::TraceEvent;
use hetflow_ops::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Where [`Session::run_stream_each_output`] hands each output.
type PartFn<'a> = dyn FnMut(usize, usize, Arc<Tensor>) -> Result<()> + 'a;
/// Where [`Session::run_stream_each`] hands each input set's outputs.
type OutputFn<'a> = dyn FnMut(usize, Vec<Arc<Tensor>>) -> Result<()> + 'a;

/// [`check_inputs`] on input set `fed` of a stream (`last`: no set comes
/// after it): the error names the set unless it is the only one.
fn check_set(g: &hetflow_ops::Graph, b: &[Arc<Tensor>], fed: usize, last: bool) -> Result<()> {
    check_inputs(g, b).map_err(|e| {
        if fed == 0 && last {
            e
        } else {
            RuntimeError::Input(format!("input set {fed}: {e}"))
        }
    })
}

impl Session {
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
        self.drive(inputs, None, &mut on_output)
    }

    /// Runs one input set and hands each graph output to `on_output` (its
    /// index, its value) as soon as the sink has it, while the rest of the
    /// graph still runs: a training step can start reducing the gradients
    /// the backward pass produced first. Every output comes exactly once
    /// (constant outputs when the run completes). Errors as in
    /// [`Session::run`]: a failing run returns its error, and an error
    /// from `on_output` is returned once the run has finished.
    pub fn run_each_output<F>(&mut self, inputs: Vec<Arc<Tensor>>, mut on_output: F) -> Result<()>
    where
        F: FnMut(usize, Arc<Tensor>) -> Result<()>,
    {
        self.run_stream_each_output(vec![inputs], |_, i, t| on_output(i, t))
            .map(|_| ())
    }

    /// [`Session::run_stream_each`], output by output: hands each output
    /// to `on_output` (input set's index, output index, value) as soon as
    /// the sink has it, in the order they arrive, not input order. Every
    /// output of every input set comes exactly once; an input set's
    /// constant outputs come when the set is complete.
    pub fn run_stream_each_output<I, F>(&mut self, inputs: I, mut on_output: F) -> Result<usize>
    where
        I: IntoIterator<Item = Vec<Arc<Tensor>>>,
        F: FnMut(usize, usize, Arc<Tensor>) -> Result<()>,
    {
        self.parts.store(true, Ordering::Release);
        let r = self.drive(inputs, Some(&mut on_output), &mut |_, _| Ok(()));
        self.parts.store(false, Ordering::Release);
        r
    }

    /// The run loop of [`Session::run_stream_each`] and
    /// [`Session::run_stream_each_output`]: with `parts`, each output goes
    /// to it as it arrives (and the rest of a complete input set's outputs,
    /// its constants, when the set is done), and `on_output` gets nothing.
    fn drive<I>(
        &mut self,
        inputs: I,
        mut parts: Option<&mut PartFn<'_>>,
        on_output: &mut OutputFn<'_>,
    ) -> Result<usize>
    where
        I: IntoIterator<Item = Vec<Arc<Tensor>>>,
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
        if self.inline.is_some() {
            return self.drive_inline(inputs, parts, on_output);
        }
        let mut inputs = inputs.into_iter().peekable();
        let first = self.next_mb;
        let k = self.sources.len().max(1) as u64;
        // Results that arrived ahead of an earlier one, by index.
        let mut early: BTreeMap<usize, Vec<Arc<Tensor>>> = BTreeMap::new();
        // With `parts`: which outputs of an unfinished input set were
        // handed on already.
        let mut handed: HashMap<usize, Vec<bool>> = HashMap::new();
        let (mut fed, mut done) = (0usize, 0usize);
        let mut stop: Option<RuntimeError> = None;
        loop {
            while stop.is_none() && fed - done < self.window {
                let Some(b) = inputs.next() else { break };
                if let Err(e) = check_set(&self.graph, &b, fed, inputs.peek().is_none()) {
                    stop = Some(e);
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
                let seen = handed.remove(&done).unwrap_or_default();
                if stop.is_none() {
                    let r = match parts.as_mut() {
                        Some(p) => o
                            .into_iter()
                            .enumerate()
                            .filter(|(s, _)| !seen.get(*s).copied().unwrap_or(false))
                            .try_for_each(|(s, t)| p(done, s, t)),
                        None => on_output(done, o),
                    };
                    if let Err(e) = r {
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
                Ok(Event::Part { mb, slot, tensor }) => {
                    let i = mb.wrapping_sub(first) as usize;
                    if let (Some(p), true) = (parts.as_mut(), i < fed && i >= done) {
                        let seen = handed.entry(i).or_default();
                        if seen.len() <= slot {
                            seen.resize(slot + 1, false);
                        }
                        if !seen[slot] && stop.is_none() {
                            seen[slot] = true;
                            if let Err(e) = p(i, slot, tensor) {
                                stop = Some(e);
                            }
                        }
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

    /// [`Session::drive`] for a plan run on the caller's thread: one input
    /// set after the other, each output handed on as [`Session::drive`]
    /// does.
    fn drive_inline<I>(
        &mut self,
        inputs: I,
        mut parts: Option<&mut PartFn<'_>>,
        on_output: &mut OutputFn<'_>,
    ) -> Result<usize>
    where
        I: IntoIterator<Item = Vec<Arc<Tensor>>>,
    {
        let mut inputs = inputs.into_iter().peekable();
        let mut fed = 0usize;
        while let Some(b) = inputs.next() {
            check_set(&self.graph, &b, fed, inputs.peek().is_none())?;
            let mb = self.next_mb;
            self.next_mb += 1;
            let outs = match (&self.constant_outputs, self.inline.as_mut()) {
                (Some(c), _) => Ok(c.clone()),
                (None, Some(runner)) => match parts.as_mut() {
                    Some(p) => {
                        let mut each = |slot: usize, t: Arc<Tensor>| p(fed, slot, t);
                        runner.run(mb, &b, Some(&mut each))
                    }
                    None => runner.run(mb, &b, None),
                },
                (None, None) => Err(Stop::Run(RuntimeError::Stopped("no runner".into()))),
            };
            let outs = match outs {
                Ok(o) => o,
                Err(Stop::Run(e)) => return Err(self.failed(e)),
                Err(Stop::Caller(e)) => return Err(e),
            };
            fed += 1;
            match parts.as_mut() {
                // Constant outputs are handed on only here.
                Some(p) if self.constant_outputs.is_some() => {
                    for (slot, t) in outs.into_iter().enumerate() {
                        p(fed - 1, slot, t)?;
                    }
                }
                Some(_) => {}
                None => on_output(fed - 1, outs)?,
            }
        }
        Ok(fed)
    }

    /// The next event from the actors; with a kernel timeout, wakes every
    /// few milliseconds to look for a kernel that has run too long, and
    /// fails the session naming it.
    fn next_event(&mut self) -> Result<std::result::Result<Event, ()>> {
        let Some(limit) = self.clock.as_ref().map(|c| c.1) else {
            // Spin for the result when the last one came within the spin
            // time (crate::hot); block at once behind long runs.
            let spin = crate::hot::spin_time();
            let budget = if self.hot && self.last_wait < spin {
                spin
            } else {
                Duration::ZERO
            };
            let start = std::time::Instant::now();
            let e = crate::hot::recv(&self.events, budget);
            self.last_wait = start.elapsed();
            return Ok(e.map_err(|_| ()));
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
