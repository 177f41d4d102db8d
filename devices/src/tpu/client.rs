//! The PJRT-shaped client: compiles computations (with a cache), moves
//! buffers between host and device, and enqueues executions on the
//! device's in-order queue, a worker thread that emulates the units on a
//! private rayon pool.

use super::buffer::TpuBuffer;
use super::config::TpuConfig;
use super::program::{CompileError, FusedComputation, TpuExecutable};
use crate::{DeviceId, KernelReport};
use hetflow_ops::graph::Fact;
use hetflow_ops::{DType, Tensor};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

struct Job {
    exe: Arc<TpuExecutable>,
    inputs: Vec<Option<Arc<TpuBuffer>>>,
    outputs: Vec<Arc<TpuBuffer>>,
}

/// One emulated device's client (PJRT_Client with its one PJRT_Device).
pub struct TpuClient {
    id: DeviceId,
    config: TpuConfig,
    queue: Mutex<Option<Sender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    cache: Mutex<HashMap<String, Arc<TpuExecutable>>>,
    in_use: Arc<AtomicU64>,
}

impl TpuClient {
    /// Starts the device `id` with `config`: its queue worker and the host
    /// threads that emulate its units.
    pub fn new(id: DeviceId, config: TpuConfig) -> Result<TpuClient, String> {
        config.validate().map_err(|e| format!("{id}: {e}"))?;
        let threads = match config.emulation_threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("hetflow-{}{}-w{i}", id.kind.name(), id.index))
            .build()
            .map_err(|e| format!("{id}: cannot start emulation threads: {e}"))?;
        let (tx, rx) = channel::<Job>();
        let worker = std::thread::Builder::new()
            .name(format!("hetflow-{}{}-queue", id.kind.name(), id.index))
            .spawn(move || {
                // Runs until the client is dropped and the queue drained.
                while let Ok(job) = rx.recv() {
                    run_job(id, &pool, job);
                }
            })
            .map_err(|e| format!("{id}: cannot start queue thread: {e}"))?;
        Ok(TpuClient {
            id,
            config,
            queue: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            cache: Mutex::new(HashMap::new()),
            in_use: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The device's configuration.
    pub fn config(&self) -> &TpuConfig {
        &self.config
    }

    /// Bytes of device memory held by live buffers.
    pub fn memory_in_use(&self) -> u64 {
        self.in_use.load(Ordering::SeqCst)
    }

    fn reserve(&self, bytes: u64) -> Result<(), String> {
        let used = self.memory_in_use();
        if used.saturating_add(bytes) > self.config.hbm_bytes {
            return Err(format!(
                "out of device memory: {bytes} more bytes with {used} of {} in use",
                self.config.hbm_bytes
            ));
        }
        Ok(())
    }

    /// Copies a host tensor into device memory
    /// (PJRT_Client_BufferFromHostBuffer). The copy is complete on return.
    pub fn buffer_from_host(&self, t: &Tensor) -> Result<Arc<TpuBuffer>, String> {
        self.reserve(t.byte_len() as u64)?;
        Ok(TpuBuffer::ready_with(
            Arc::new(t.clone()),
            self.in_use.clone(),
        ))
    }

    /// Compiles `comp` for parameters of the given facts and the output
    /// shapes the caller resolved, or returns the cached executable
    /// (PJRT_Client_Compile).
    pub fn compile(
        &self,
        comp: &FusedComputation,
        params: &[Option<Fact>],
        outputs: &[(DType, Vec<usize>)],
    ) -> Result<Arc<TpuExecutable>, CompileError> {
        let key = format!("{comp:?}|{params:?}|{outputs:?}");
        if let Some(e) = lock(&self.cache).get(&key) {
            return Ok(e.clone());
        }
        let exe = Arc::new(TpuExecutable::compile(comp, params, outputs, &self.config)?);
        lock(&self.cache).insert(key, exe.clone());
        Ok(exe)
    }

    /// Enqueues `exe` on the device's queue and returns its output buffers
    /// at once (PJRT_LoadedExecutable_Execute); each completes when the
    /// run ends. Inputs must be buffers of this client.
    pub fn execute(
        &self,
        exe: &Arc<TpuExecutable>,
        inputs: Vec<Option<Arc<TpuBuffer>>>,
    ) -> Result<Vec<Arc<TpuBuffer>>, String> {
        let sizes: Vec<u64> = exe
            .outputs
            .iter()
            .map(|(dt, s)| (s.iter().product::<usize>() * dt.size()) as u64)
            .collect();
        self.reserve(sizes.iter().sum())?;
        let outputs: Vec<Arc<TpuBuffer>> = sizes
            .iter()
            .map(|&b| TpuBuffer::pending(b, self.in_use.clone()))
            .collect();
        let job = Job {
            exe: exe.clone(),
            inputs,
            outputs: outputs.clone(),
        };
        let sent = lock(&self.queue)
            .as_ref()
            .map(|q| q.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(format!("{}: the device queue has stopped", self.id));
        }
        Ok(outputs)
    }
}

impl Drop for TpuClient {
    fn drop(&mut self) {
        // Closing the queue lets the worker finish what is queued and exit.
        lock(&self.queue).take();
        if let Some(w) = lock(&self.worker).take() {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one queued execution and completes its outputs, with the data or
/// with an error naming the executable and the device.
fn run_job(id: DeviceId, pool: &rayon::ThreadPool, job: Job) {
    let start = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut hosts = Vec::with_capacity(job.inputs.len());
        for b in &job.inputs {
            match b {
                // An input that failed carries its producer's message.
                Some(b) => hosts.push(Some(b.wait().map_err(Failed::Input)?)),
                None => hosts.push(None),
            }
        }
        let refs: Vec<Option<&Tensor>> = hosts.iter().map(|h| h.as_deref()).collect();
        pool.install(|| job.exe.run(&refs)).map_err(Failed::Here)
    }));
    let report = KernelReport {
        start,
        end: Instant::now(),
        modelled_us: Some(job.exe.cost.micros),
    };
    let here = |msg: String| format!("{} failed on {id}: {msg}", job.exe.name);
    let err = match result {
        Ok(Ok(outs)) => {
            for (b, t) in job.outputs.iter().zip(outs) {
                b.complete(Ok(Arc::new(t)), Some(report.clone()));
            }
            return;
        }
        Ok(Err(Failed::Input(msg))) => msg,
        Ok(Err(Failed::Here(msg))) => here(msg),
        Err(p) => here(format!(
            "emulation panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    };
    for b in &job.outputs {
        b.complete(Err(err.clone()), Some(report.clone()));
    }
}

enum Failed {
    Input(String),
    Here(String),
}
