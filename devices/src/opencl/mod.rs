//! The OpenCL backend, on the `opencl3` crate.
//!
//! ## Discovery
//! [`discovery::list_devices`] walks every platform and every device of any
//! type (CPU, GPU, ACCELERATOR, CUSTOM) and reports memory, compute units and
//! work-group limits; `opencl:K` is the K-th device of that list. libOpenCL is
//! loaded at run time (opencl3's `dynamic` feature), so the crate builds and
//! runs on machines with no OpenCL at all: discovery then says "no OpenCL
//! platform" and `opencl:K` fails to open with that reason.
//!
//! ## Queues and events
//! Each [`OpenclDevice`] owns one context and two in-order queues: a
//! *compute* queue (kernels, with profiling enabled) and a *copy* queue
//! (uploads and downloads). Nothing blocks in `execute`: kernels are
//! enqueued and the output tensors carry the event of the kernel that
//! writes them. A kernel waits on the upload events of its inputs (copy ->
//! compute edges); a download waits on the producing kernel's event
//! (compute -> copy edges). Ops on the compute queue are ordered by the
//! queue itself.
//!
//! ## Buffers
//! Tensors are untyped byte buffers from a caching pool ([`pool`]) keyed by
//! size, shared (reference-counted) between a tensor and its views. A
//! buffer goes back to the pool when its last tensor is dropped; an upload
//! into a recycled buffer first waits on a marker of the compute queue, so
//! a kernel still reading the buffer's previous contents is never
//! overwritten. Views (Reshape, Flatten, Squeeze, Unsqueeze, Identity,
//! one-output Dropout) share the buffer and relabel the shape; they work
//! for every dtype. Their shape operands (small i64 tensors) are also kept
//! on the host at upload, so reading them never waits on the device.
//!
//! ## Programs
//! All kernels are OpenCL C in one program ([`program::SOURCE`]: `kernels.cl`
//! then `kernels_nn.cl`). Programs are cached per device by a hash of
//! (device name, source or binary, build options)
//! ([`program::ProgramCache`]); PoCL adds its own on-disk cache. The GEMM
//! block of one work-item (8x16 on CPU devices, 4x4 elsewhere; `gemm.rs`)
//! is a build option.
//!
//! ## The binary (FPGA) path
//! FPGA boards cannot compile OpenCL C at run time; they load offline-built
//! binaries. With `HETFLOW_OPENCL_BINARIES=DIR` (or
//! [`OpenclOptions::binaries`]), a device loads its program with
//! `clCreateProgramWithBinary` from the file the manifest
//! (`DIR/manifest.json`, format in [`program`]) lists for its
//! `CL_DEVICE_NAME`. Binary mode is on for ACCELERATOR devices whenever a
//! directory is configured, and for other devices when the manifest has an
//! entry for them. In binary mode an op whose kernels the binary does not
//! provide is refused by [`Device::supports`] at plan time, so the
//! scheduler places it on another device. [`OpenclDevice::save_binary`]
//! builds from source and writes `CL_PROGRAM_BINARIES` with a manifest
//! entry (how the tests exercise the path on PoCL).
//!
//! ## What runs
//! f32 kernels for the element-wise ops, broadcasting arithmetic and
//! comparisons, GEMM / MatMul (register-blocked, `gemm.rs`), Conv (im2col +
//! GEMM; direct for depthwise; groups, dilations, fused activation), pooling, reductions, normalisations and softmax; data
//! movement (Transpose, Concat, Slice, Split, Expand, Gather, Where) for
//! any element size; casts between f32 and i64 / i32 / bool; views. The
//! full table is in docs/opencl.md. Launches: `ops.rs` (dispatch, GEMM,
//! softmax, layer norm), `nn.rs` and `movement.rs`. Ops with no kernel are
//! refused at plan time ("no OpenCL kernel for X"); an op with a kernel
//! whose inputs the kernels do not take (i64 shape arithmetic, rank > 8)
//! runs through the host kernels (`host.rs`), counted in
//! [`OpenclDevice::host_evals`].
//!
//! ## Kernel times
//! The compute queue records profiling events. Through
//! [`Device::on_kernel_done`] each kernel's device-measured time goes to
//! the runtime's trace (a watcher thread, `timing.rs`); with
//! [`OpenclDevice::set_profiling`] on, times are also summed per kernel
//! name ([`OpenclDevice::kernel_times`]).

pub mod discovery;
mod codes;
mod gemm;
mod host;
mod movement;
mod nn;
mod ops;
pub mod pool;
pub mod program;
#[cfg(test)]
mod tests;
mod timing;

use crate::{Device, DeviceError, DeviceId, DeviceInfo, DeviceKind, DeviceTensor, Result};
use discovery::{ClDeviceDesc, ClDeviceType};
use hetflow_ops::{DType, Op, Tensor};
use opencl3::command_queue::{CommandQueue, CL_QUEUE_PROFILING_ENABLE};
use opencl3::context::Context;
use opencl3::event::Event;
use opencl3::program::Program;
use opencl3::types::{cl_event, CL_BLOCKING, CL_NON_BLOCKING};
use pool::{BufferPool, PooledBuffer};
use program::{Manifest, ProgramCache, ProgramSource};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use discovery::list_devices;

/// Integer tensors up to this many elements are also kept on the host.
const HOST_MIRROR_ELEMS: usize = 64;

/// Serialises platform discovery, context creation and program builds
/// across threads: the ICD loader's first-call initialisation and some
/// drivers' compilers are not thread-safe (concurrent first calls crashed
/// PoCL 3.1 through ocl-icd here).
pub(crate) fn cl_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// How to open a device.
#[derive(Clone, Debug, Default)]
pub struct OpenclOptions {
    /// A binaries directory with a `manifest.json` (the FPGA path).
    pub binaries: Option<PathBuf>,
}

impl OpenclOptions {
    /// From the environment: `HETFLOW_OPENCL_BINARIES=DIR`.
    pub fn from_env() -> OpenclOptions {
        OpenclOptions {
            binaries: std::env::var_os("HETFLOW_OPENCL_BINARIES")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// A tensor's storage on an OpenCL device.
pub struct ClTensor {
    buf: Arc<PooledBuffer>,
    /// The command that writes the buffer (upload or kernel).
    ready: Option<Arc<Event>>,
    /// Keeps the host source of a non-blocking upload alive.
    upload_src: Option<Arc<Tensor>>,
    /// Host copy of small integer tensors (shape operands).
    host: Option<Arc<Tensor>>,
    /// True when `ready` is the kernel that wrote this tensor (not an
    /// upload, and not a view of another op's output).
    kernel: bool,
    /// The first kernel of an op made of several launches (im2col and the
    /// GEMM kernels): its report spans from this kernel's start to the end
    /// of `ready`.
    first: Option<Arc<Event>>,
    /// The number of the watcher's report of that kernel, once asked.
    report: Arc<Mutex<Option<u64>>>,
}

impl ClTensor {
    /// Another handle on the same buffer (views, identity casts).
    fn share(&self) -> ClTensor {
        ClTensor {
            buf: self.buf.clone(),
            ready: self.ready.clone(),
            upload_src: self.upload_src.clone(),
            host: self.host.clone(),
            kernel: false,
            first: None,
            report: self.report.clone(),
        }
    }
}

impl Drop for ClTensor {
    fn drop(&mut self) {
        // A non-blocking write reads its host source until it completes.
        if self.upload_src.is_some() {
            if let Some(e) = &self.ready {
                let _ = e.wait();
            }
        }
    }
}

/// An OpenCL device. See the module docs.
pub struct OpenclDevice {
    info: DeviceInfo,
    desc: ClDeviceDesc,
    // Field order is drop order: queues and programs before the context.
    compute: CommandQueue,
    copy: CommandQueue,
    programs: ProgramCache,
    pool: Arc<BufferPool>,
    source: ProgramSource,
    gemm: gemm::GemmConfig,
    work_groups: Mutex<HashMap<&'static str, usize>>,
    im2col_limit: std::sync::atomic::AtomicUsize,
    profiling: AtomicBool,
    pending: Mutex<Vec<(&'static str, Event)>>,
    times: Mutex<HashMap<&'static str, (usize, u64)>>,
    host_evals: Mutex<HashMap<String, usize>>,
    watcher: crate::watcher::Watcher,
    ctx: Arc<Context>,
}

fn other(id: DeviceId, what: impl std::fmt::Display) -> DeviceError {
    DeviceError::Other(format!("{id}: {what}"))
}

impl OpenclDevice {
    /// Opens `opencl:index` (the index-th device of all platforms).
    pub fn open(index: usize, opts: &OpenclOptions) -> Result<OpenclDevice> {
        let spec = format!("opencl:{index}");
        let devs = list_devices().map_err(|msg| DeviceError::Spec {
            spec: spec.clone(),
            msg,
        })?;
        let n = devs.len();
        let desc = devs
            .into_iter()
            .nth(index)
            .ok_or_else(|| DeviceError::Spec {
                spec: spec.clone(),
                msg: format!(
                    "only {n} OpenCL device(s) here (opencl:0..opencl:{})",
                    n - 1
                ),
            })?;
        Self::from_desc(desc, opts)
    }

    /// Opens a device described by discovery.
    pub fn from_desc(desc: ClDeviceDesc, opts: &OpenclOptions) -> Result<OpenclDevice> {
        let id = DeviceId {
            kind: DeviceKind::Opencl,
            index: desc.index,
        };
        let cl_dev = opencl3::device::Device::new(desc.cl_id());
        let guard = cl_lock();
        let ctx = Arc::new(
            Context::from_device(&cl_dev)
                .map_err(|e| other(id, format!("clCreateContext: {e}")))?,
        );
        // SAFETY: the device belongs to the context just made from it.
        #[allow(deprecated)]
        let compute =
            unsafe { CommandQueue::create(&ctx, desc.cl_id(), CL_QUEUE_PROFILING_ENABLE) }
                .map_err(|e| other(id, format!("clCreateCommandQueue: {e}")))?;
        #[allow(deprecated)]
        let copy = unsafe { CommandQueue::create(&ctx, desc.cl_id(), 0) }
            .map_err(|e| other(id, format!("clCreateCommandQueue: {e}")))?;
        drop(guard);
        let source = match &opts.binaries {
            None => ProgramSource::Source,
            Some(dir) => {
                let manifest = Manifest::load(dir).map_err(|e| other(id, e))?;
                let listed = manifest.find(program::PROGRAM, &desc.name).is_some();
                if listed || desc.device_type == ClDeviceType::Accelerator {
                    ProgramSource::Binaries {
                        dir: dir.clone(),
                        manifest,
                    }
                } else {
                    ProgramSource::Source
                }
            }
        };
        let gemm = gemm::GemmConfig::for_device(desc.device_type, &desc.max_work_item_sizes);
        // Nominal rate: one FMA per cycle per compute unit (a floor for the
        // default planner; `hetflow profile` measures the real one).
        let peak = 2.0 * desc.compute_units as f64 * desc.clock_mhz as f64 / 1e3;
        let info = DeviceInfo {
            id,
            name: format!(
                "{} ({}, {}, {} CUs, work-group {})",
                desc.name,
                desc.platform,
                desc.device_type.name(),
                desc.compute_units,
                desc.max_work_group
            ),
            memory_bytes: desc.global_mem_bytes,
            compute_units: desc.compute_units,
            peak_gflops_f32: peak,
            numa_node: None,
            host_pus: vec![],
            locality: format!(
                "{}; local mem {} KiB; programs from {}",
                desc.version,
                desc.local_mem_bytes / 1024,
                match &source {
                    ProgramSource::Source => "source".to_string(),
                    ProgramSource::Binaries { dir, .. } => format!("binaries in {}", dir.display()),
                }
            ),
            // PoCL and other CPU drivers run transfers on their kernel threads.
            copy_engine: desc.device_type != ClDeviceType::Cpu,
        };
        let cap = (desc.global_mem_bytes / 4).min(1 << 30) as usize;
        let im2col_limit = desc.max_alloc_bytes.min(1 << 30) as usize;
        Ok(OpenclDevice {
            info,
            programs: ProgramCache::new(&desc.name),
            pool: BufferPool::new(ctx.clone(), cap),
            desc,
            compute,
            copy,
            source,
            gemm,
            work_groups: Mutex::new(HashMap::new()),
            im2col_limit: std::sync::atomic::AtomicUsize::new(im2col_limit),
            profiling: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            times: Mutex::new(HashMap::new()),
            host_evals: Mutex::new(HashMap::new()),
            watcher: crate::watcher::Watcher::default(),
            ctx,
        })
    }

    /// What discovery reported for this device.
    pub fn desc(&self) -> &ClDeviceDesc {
        &self.desc
    }

    /// True when programs come from binaries.
    pub fn uses_binaries(&self) -> bool {
        matches!(self.source, ProgramSource::Binaries { .. })
    }

    /// The buffer pool's counters.
    pub fn pool_stats(&self) -> pool::PoolStats {
        self.pool.stats()
    }

    /// Programs built or loaded so far.
    pub fn programs_built(&self) -> usize {
        self.programs.len()
    }

    fn build_options(&self) -> String {
        format!("-DWM={} -DGW={} -cl-mad-enable", self.gemm.wm, self.gemm.gw)
    }

    /// `CL_KERNEL_WORK_GROUP_SIZE` of `kernel` on this device (queried once).
    fn kernel_work_group(&self, kernel: &'static str) -> Result<usize> {
        if let Some(&n) = self
            .work_groups
            .lock()
            .ok()
            .and_then(|m| m.get(kernel).copied())
            .as_ref()
        {
            return Ok(n);
        }
        let prog = self.program_for(kernel)?;
        let k = opencl3::kernel::Kernel::create(&prog, kernel)
            .map_err(|e| other(self.info.id, format!("kernel {kernel}: {e}")))?;
        let n = k
            .get_work_group_size(self.desc.cl_id())
            .map_err(|e| {
                other(
                    self.info.id,
                    format!("CL_KERNEL_WORK_GROUP_SIZE of {kernel}: {e}"),
                )
            })?
            .max(1);
        if let Ok(mut m) = self.work_groups.lock() {
            m.insert(kernel, n);
        }
        Ok(n)
    }

    /// The program holding `kernel`, built or loaded on first use.
    fn program_for(&self, kernel: &str) -> Result<Arc<Program>> {
        let opts = self.build_options();
        match &self.source {
            ProgramSource::Source => self
                .programs
                .from_source(&self.ctx, program::SOURCE, &opts)
                .map_err(|e| other(self.info.id, e)),
            ProgramSource::Binaries { dir, manifest } => {
                let e = self
                    .binary_entry(manifest, kernel)
                    .map_err(|e| other(self.info.id, e))?;
                self.programs
                    .from_binary(&self.ctx, self.desc.cl_id(), &dir.join(&e.file), &opts)
                    .map_err(|e| other(self.info.id, e))
            }
        }
    }

    fn binary_entry<'m>(
        &self,
        manifest: &'m Manifest,
        kernel: &str,
    ) -> std::result::Result<&'m program::BinaryEntry, String> {
        let e = manifest
            .find(program::PROGRAM, &self.desc.name)
            .ok_or_else(|| {
                format!(
                    "no OpenCL binary of {} for device '{}'",
                    program::PROGRAM,
                    self.desc.name
                )
            })?;
        match &e.kernels {
            Some(ks) if !ks.iter().any(|k| k == kernel) => Err(format!(
                "the OpenCL binary {} for '{}' has no kernel {kernel}",
                e.file, self.desc.name
            )),
            _ => Ok(e),
        }
    }

    /// Builds the program from source for this device and saves its
    /// `CL_PROGRAM_BINARIES` to `dir` (with a manifest entry for this
    /// device providing `kernels`, `None` = all). Returns the file written.
    pub fn save_binary(&self, dir: &Path, kernels: Option<Vec<String>>) -> Result<PathBuf> {
        let prog = self
            .programs
            .from_source(&self.ctx, program::SOURCE, &self.build_options())
            .map_err(|e| other(self.info.id, e))?;
        let file = format!("{}-{}.bin", program::PROGRAM, self.info.id.index);
        program::save_binary(&prog, dir, &self.desc.name, &file, kernels)
            .map_err(|e| other(self.info.id, e))
    }

    /// The largest im2col buffer (bytes) Conv allocates; a conv whose
    /// buffer would be larger runs the direct kernel. Default: the device's
    /// max allocation, at most 1 GiB.
    pub fn set_im2col_limit(&self, bytes: usize) {
        self.im2col_limit.store(bytes, Ordering::Relaxed);
    }

    /// Turns recording of kernel times on or off.
    pub fn set_profiling(&self, on: bool) {
        self.profiling.store(on, Ordering::Relaxed);
    }

    /// Kernel times recorded so far, per kernel: (launches, total ns from
    /// the profiling events). Waits for pending kernels.
    pub fn kernel_times(&self) -> Result<HashMap<&'static str, (usize, u64)>> {
        let pending = std::mem::take(
            &mut *self
                .pending
                .lock()
                .map_err(|_| other(self.info.id, "poisoned"))?,
        );
        let mut times = self
            .times
            .lock()
            .map_err(|_| other(self.info.id, "poisoned"))?;
        for (name, ev) in pending {
            ev.wait()
                .map_err(|e| other(self.info.id, format!("{name}: {e}")))?;
            let t = times.entry(name).or_insert((0, 0));
            t.0 += 1;
            t.1 += timing::duration_ns(&ev);
        }
        Ok(times.clone())
    }

    /// Ops evaluated by the host kernels so far (see `host.rs`), per op
    /// type: inputs the OpenCL kernels do not take, such as i64 shape
    /// arithmetic.
    pub fn host_evals(&self) -> HashMap<String, usize> {
        self.host_evals
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    fn count_host(&self, op: &str) {
        if let Ok(mut m) = self.host_evals.lock() {
            *m.entry(op.to_string()).or_insert(0) += 1;
        }
    }

    /// A marker on the compute queue (the event of an output no kernel
    /// writes, such as an empty tensor).
    fn marker(&self) -> Result<Event> {
        // SAFETY: a marker with no wait list.
        unsafe { self.compute.enqueue_marker_with_wait_list(&[]) }
            .map_err(|e| other(self.info.id, format!("marker: {e}")))
    }

    fn record(&self, kernel: &'static str, ev: &Event) {
        if self.profiling.load(Ordering::Relaxed) {
            // Event wraps a retained cl_event; take another reference.
            let raw = ev.get();
            if unsafe { cl3::event::retain_event(raw) }.is_ok() {
                if let Ok(mut p) = self.pending.lock() {
                    p.push((kernel, Event::new(raw)));
                }
            }
        }
    }

    fn cl<'a>(&self, t: &'a DeviceTensor) -> Result<&'a ClTensor> {
        t.on(self.info.id)?
            .payload::<ClTensor>()
            .ok_or_else(|| other(self.info.id, "tensor payload is not an OpenCL buffer"))
    }

    /// Host value of a small tensor (shape operands): the mirror, else a
    /// download.
    fn host_value(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        match &self.cl(t)?.host {
            Some(h) => Ok(h.clone()),
            None => self.download(t),
        }
    }

    /// `x`'s buffer under `shape` (same element count): a view, its host
    /// mirror reshaped with it.
    fn share_as(&self, x: &DeviceTensor, shape: Vec<usize>) -> Result<DeviceTensor> {
        if shape.iter().product::<usize>() != x.shape.iter().product::<usize>() {
            return Err(DeviceError::Other(format!(
                "view {:?} -> {shape:?} changes the element count",
                x.shape
            )));
        }
        let mut v = self.cl(x)?.share();
        if let Some(h) = v.host.take() {
            let h = (*h)
                .clone()
                .reshape(shape.clone())
                .map_err(|e| DeviceError::Other(e.to_string()))?;
            v.host = Some(Arc::new(h));
        }
        Ok(self.wrap(x.dtype, shape, v))
    }

    fn wrap(&self, dtype: DType, shape: Vec<usize>, c: ClTensor) -> DeviceTensor {
        DeviceTensor::new(self.info.id, dtype, shape, Arc::new(c))
    }
}

fn wait_list(events: &[&Option<Arc<Event>>]) -> Vec<cl_event> {
    events
        .iter()
        .filter_map(|e| e.as_ref().map(|e| e.get()))
        .collect()
}

impl Device for OpenclDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, op: &Op) -> std::result::Result<(), String> {
        crate::cpu_only(op)?;
        let kernels =
            ops::kernels_for(op).ok_or_else(|| format!("no OpenCL kernel for {}", op.name()))?;
        if let ProgramSource::Binaries { manifest, .. } = &self.source {
            for k in kernels {
                self.binary_entry(manifest, k)
                    .map_err(|e| format!("{} needs kernel {k}: {e}", op.name()))?;
            }
        }
        Ok(())
    }

    fn upload(&self, t: Arc<Tensor>) -> Result<DeviceTensor> {
        let id = self.info.id;
        let mut buf = self
            .pool
            .get(t.byte_len())
            .map_err(|e| other(id, format!("upload: {e}")))?;
        // A recycled buffer may still be read by queued kernels.
        // SAFETY: a marker with no wait list.
        let fence = unsafe { self.compute.enqueue_marker_with_wait_list(&[]) }
            .map_err(|e| other(id, format!("upload: {e}")))?;
        let host = (t.dtype().is_int() && t.len() <= HOST_MIRROR_ELEMS).then(|| t.clone());
        let bytes = t.to_le_bytes();
        let (ready, src) = if bytes.is_empty() {
            (None, None)
        } else {
            let b = buf.buffer_mut();
            match &bytes {
                // SAFETY: the source lives in `t`, which the ClTensor keeps
                // alive until the write completes (see its Drop).
                Cow::Borrowed(s) => {
                    let ev = unsafe {
                        self.copy
                            .enqueue_write_buffer(b, CL_NON_BLOCKING, 0, s, &[fence.get()])
                    }
                    .map_err(|e| other(id, format!("upload: {e}")))?;
                    (Some(Arc::new(ev)), Some(t.clone()))
                }
                // A converted copy: write it before it goes away.
                Cow::Owned(v) => {
                    let ev = unsafe {
                        self.copy
                            .enqueue_write_buffer(b, CL_BLOCKING, 0, v, &[fence.get()])
                    }
                    .map_err(|e| other(id, format!("upload: {e}")))?;
                    (Some(Arc::new(ev)), None)
                }
            }
        };
        self.copy
            .flush()
            .map_err(|e| other(id, format!("upload: {e}")))?;
        let c = ClTensor {
            buf: Arc::new(buf),
            ready,
            upload_src: src,
            host,
            kernel: false,
            first: None,
            report: Arc::default(),
        };
        Ok(self.wrap(t.dtype(), t.shape().to_vec(), c))
    }

    fn download(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        let id = self.info.id;
        let c = self.cl(t)?;
        let seq = c.report.lock().ok().and_then(|r| *r);
        if let Some(seq) = seq {
            self.compute
                .flush()
                .map_err(|e| other(id, format!("download: {e}")))?;
            self.watcher.wait_for(seq);
        }
        let n = t.byte_len();
        let mut out = vec![0u8; n];
        if n > 0 {
            self.compute
                .flush()
                .map_err(|e| other(id, format!("download: {e}")))?;
            let waits = wait_list(&[&c.ready]);
            // SAFETY: `out` outlives the blocking read.
            unsafe {
                self.copy
                    .enqueue_read_buffer(c.buf.buffer(), CL_BLOCKING, 0, &mut out, &waits)
            }
            .map_err(|e| other(id, format!("download: {e}")))?;
        }
        let host = Tensor::from_le_bytes(t.dtype, t.shape.clone(), &out)
            .map_err(|e| other(id, format!("download: {e}")))?;
        Ok(Arc::new(host))
    }

    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        outputs: &[crate::OutputSpec],
    ) -> Result<Vec<DeviceTensor>> {
        ops::execute(self, op, inputs, outputs).map_err(|msg| match msg {
            e @ (DeviceError::WrongDevice { .. } | DeviceError::Kernel { .. }) => e,
            e => DeviceError::Kernel {
                device: self.info.id,
                op: op.name().to_string(),
                msg: e.to_string(),
            },
        })
    }

    fn view(&self, t: &DeviceTensor, shape: Vec<usize>) -> Option<Result<DeviceTensor>> {
        Some(self.share_as(t, shape))
    }

    fn host_value(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        OpenclDevice::host_value(self, t)
    }

    /// Kernels run asynchronously on the compute queue: the report comes
    /// from the watcher thread with the time measured by the kernel's
    /// profiling event (see `timing.rs`). MatMul, Gemm and Conv (up to
    /// four launches: im2col and the GEMM kernels) report the span from
    /// their first kernel's start to their last one's end; other ops of
    /// several launches (Concat, Sum) report their last kernel; views,
    /// uploads and host-path outputs report nothing (`false`).
    fn on_kernel_done(
        &self,
        output: &DeviceTensor,
        done: Box<dyn FnOnce(crate::KernelReport) + Send>,
    ) -> bool {
        let Ok(c) = self.cl(output) else {
            return false;
        };
        let Some(ev) = c.ready.clone().filter(|_| c.kernel) else {
            return false;
        };
        if self.compute.flush().is_err() {
            return false;
        }
        self.watcher
            .watch(timing::measure(ev, c.first.clone()), done, &c.report)
    }
}
