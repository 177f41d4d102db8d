//! [`OpenclDevice`]: one OpenCL device, its context and queues, its
//! buffers ([`ClTensor`]) and programs; what every launch file builds on.
//! The op table and the [`crate::Device`] implementation are in
//! `dispatch.rs`, above every launch file; this file imports none of them.

use super::discovery::{cl_lock, list_devices, ClDeviceDesc, ClDeviceType};
use super::pool::{self, BufferPool, PooledBuffer};
use super::program::{self, Manifest, ProgramCache, ProgramSource};
use super::timing;
use crate::{Device, DeviceError, DeviceId, DeviceInfo, DeviceKind, DeviceTensor, Result};
use hetflow_ops::{DType, Tensor};
use opencl3::command_queue::{CommandQueue, CL_QUEUE_PROFILING_ENABLE};
use opencl3::context::Context;
use opencl3::event::Event;
use opencl3::program::Program;
use opencl3::types::cl_event;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Integer tensors up to this many elements are also kept on the host.
pub(super) const HOST_MIRROR_ELEMS: usize = 64;

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
    pub(super) buf: Arc<PooledBuffer>,
    /// The command that writes the buffer (upload or kernel).
    pub(super) ready: Option<Arc<Event>>,
    /// Keeps the host source of a non-blocking upload alive.
    pub(super) upload_src: Option<Arc<Tensor>>,
    /// Host copy of small integer tensors (shape operands).
    pub(super) host: Option<Arc<Tensor>>,
    /// True when `ready` is the kernel that wrote this tensor (not an
    /// upload, and not a view of another op's output).
    pub(super) kernel: bool,
    /// The first kernel of an op made of several launches (im2col and the
    /// GEMM kernels): its report spans from this kernel's start to the end
    /// of `ready`.
    pub(super) first: Option<Arc<Event>>,
    /// The number of the watcher's report of that kernel, once asked.
    pub(super) report: Arc<Mutex<Option<u64>>>,
}

impl ClTensor {
    /// Another handle on the same buffer (views, identity casts).
    pub(super) fn share(&self) -> ClTensor {
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
    pub(super) info: DeviceInfo,
    pub(super) desc: ClDeviceDesc,
    // Field order is drop order: queues and programs before the context.
    pub(super) compute: CommandQueue,
    pub(super) copy: CommandQueue,
    pub(super) programs: ProgramCache,
    pub(super) pool: Arc<BufferPool>,
    pub(super) source: ProgramSource,
    pub(super) gemm: GemmConfig,
    pub(super) work_groups: Mutex<HashMap<&'static str, usize>>,
    pub(super) im2col_limit: std::sync::atomic::AtomicUsize,
    pub(super) profiling: AtomicBool,
    pub(super) pending: Mutex<Vec<(&'static str, Event)>>,
    pub(super) times: Mutex<HashMap<&'static str, (usize, u64)>>,
    pub(super) host_evals: Mutex<HashMap<String, usize>>,
    pub(super) watcher: crate::watcher::Watcher,
    pub(super) ctx: Arc<Context>,
}

pub(super) fn other(id: DeviceId, what: impl std::fmt::Display) -> DeviceError {
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
        let gemm = GemmConfig::for_device(desc.device_type, &desc.max_work_item_sizes);
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

    pub(super) fn build_options(&self) -> String {
        format!("-DWM={} -DGW={} -cl-mad-enable", self.gemm.wm, self.gemm.gw)
    }

    /// `CL_KERNEL_WORK_GROUP_SIZE` of `kernel` on this device (queried once).
    pub(super) fn kernel_work_group(&self, kernel: &'static str) -> Result<usize> {
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
    pub(super) fn program_for(&self, kernel: &str) -> Result<Arc<Program>> {
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

    pub(super) fn binary_entry<'m>(
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

    pub(super) fn count_host(&self, op: &str) {
        if let Ok(mut m) = self.host_evals.lock() {
            *m.entry(op.to_string()).or_insert(0) += 1;
        }
    }

    /// A marker on the compute queue (the event of an output no kernel
    /// writes, such as an empty tensor).
    pub(super) fn marker(&self) -> Result<Event> {
        // SAFETY: a marker with no wait list.
        unsafe { self.compute.enqueue_marker_with_wait_list(&[]) }
            .map_err(|e| other(self.info.id, format!("marker: {e}")))
    }

    pub(super) fn record(&self, kernel: &'static str, ev: &Event) {
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

    pub(super) fn cl<'a>(&self, t: &'a DeviceTensor) -> Result<&'a ClTensor> {
        t.on(self.info.id)?
            .payload::<ClTensor>()
            .ok_or_else(|| other(self.info.id, "tensor payload is not an OpenCL buffer"))
    }

    /// Host value of a small tensor (shape operands): the mirror, else a
    /// download.
    pub(super) fn host_value(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        match &self.cl(t)?.host {
            Some(h) => Ok(h.clone()),
            None => self.download(t),
        }
    }

    /// `x`'s buffer under `shape` (same element count): a view, its host
    /// mirror reshaped with it.
    pub(super) fn share_as(&self, x: &DeviceTensor, shape: Vec<usize>) -> Result<DeviceTensor> {
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

    pub(super) fn wrap(&self, dtype: DType, shape: Vec<usize>, c: ClTensor) -> DeviceTensor {
        DeviceTensor::new(self.info.id, dtype, shape, Arc::new(c))
    }
}

pub(super) fn wait_list(events: &[&Option<Arc<Event>>]) -> Vec<cl_event> {
    events
        .iter()
        .filter_map(|e| e.as_ref().map(|e| e.get()))
        .collect()
}

/// The GEMM block shape and work-group of a device, fixed at open.
#[derive(Clone, Copy, Debug)]
pub(super) struct GemmConfig {
    /// Rows of Y per work-item (`-DWM`).
    pub wm: usize,
    /// Columns of Y per work-item, the vector width (`-DGW`).
    pub gw: usize,
    /// Preferred work-group (columns, rows of blocks), clamped at launch to
    /// the kernel's `CL_KERNEL_WORK_GROUP_SIZE`.
    pub local: [usize; 2],
}

impl GemmConfig {
    /// CPU devices (PoCL): 8 x 16 blocks (16-wide vectors map onto AVX-512
    /// or two AVX2 registers) and work-groups of one column strip by 8 row
    /// blocks, which run on one core and share the B strip in its cache
    /// (measured best on PoCL, docs/opencl.md). Other devices: 4 x 4
    /// blocks in 16 x 4 work-groups, a conventional GPU shape.
    pub(super) fn for_device(t: ClDeviceType, max_items: &[usize]) -> GemmConfig {
        let mut c = if t == ClDeviceType::Cpu {
            GemmConfig {
                wm: 8,
                gw: 16,
                local: [1, 8],
            }
        } else {
            GemmConfig {
                wm: 4,
                gw: 4,
                local: [16, 4],
            }
        };
        for (d, l) in c.local.iter_mut().enumerate() {
            if let Some(&m) = max_items.get(d) {
                *l = (*l).min(m.max(1));
            }
        }
        c
    }
}
