//! [`CudaDevice`]: one GPU behind the [`Device`] trait.

use super::alloc::{Block, DevicePool, StagingPool};
use super::discovery::{self, GpuInfo};
use super::kernels::Kernels;
use super::timing::Watcher;
use crate::{Device, DeviceError, DeviceId, DeviceInfo, DeviceKind, DeviceTensor, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{result, sys, CudaContext, CudaEvent, CudaStream};
use hetflow_ops::{DType, Op, Tensor};
use std::sync::{Arc, Mutex};

/// Device memory holding one tensor, with the event that marks its data
/// complete. Dropping it returns the memory to the caching allocator
/// together with the events of its last uses.
pub(crate) struct CudaBuffer {
    block: Option<Block>,
    pub bytes: usize,
    /// Recorded on the stream that wrote the data.
    pub ready: Arc<CudaEvent>,
    /// Events after the last reads (kernels, copies).
    uses: Mutex<Vec<Arc<CudaEvent>>>,
    /// Timing event recorded before the kernel that wrote it (none for
    /// copies and host-computed results).
    started: Option<Arc<CudaEvent>>,
    /// Number of the watcher's report of that kernel, once asked for.
    report: Mutex<Option<u64>>,
    pool: Arc<DevicePool>,
}

impl CudaBuffer {
    pub fn ptr(&self) -> sys::CUdeviceptr {
        self.block.as_ref().map(|b| b.ptr).unwrap_or(0)
    }
    /// Records that work ending at `ev` reads this buffer.
    pub fn used_until(&self, ev: &Arc<CudaEvent>) {
        if let Ok(mut u) = self.uses.lock() {
            u.retain(|e| !e.is_complete());
            u.push(ev.clone());
        }
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.block.take() {
            let mut pending =
                std::mem::take(self.uses.get_mut().unwrap_or_else(|e| e.into_inner()));
            pending.push(self.ready.clone());
            self.pool.release(b, pending);
        }
    }
}

/// One NVIDIA GPU: a compute stream, a host-to-device and a
/// device-to-host copy stream, a caching allocator, pinned staging,
/// cuBLAS on the compute stream and the NVRTC kernels. See the module docs
/// of [`crate::cuda`].
pub struct CudaDevice {
    pub(crate) info: DeviceInfo,
    pub(crate) gpu: GpuInfo,
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) compute: Arc<CudaStream>,
    pub(crate) h2d: Arc<CudaStream>,
    pub(crate) d2h: Arc<CudaStream>,
    pub(crate) pool: Arc<DevicePool>,
    staging: StagingPool,
    pub(crate) blas: Result<Mutex<CudaBlas>, String>,
    pub(crate) kernels: Result<Kernels, String>,
    watcher: Watcher,
}

impl CudaDevice {
    /// Opens GPU `index`, or says why it cannot (no driver, no such GPU,
    /// a driver call that failed). Never panics when CUDA is absent.
    pub fn new(index: usize) -> Result<CudaDevice> {
        let id = DeviceId {
            kind: DeviceKind::Cuda,
            index,
        };
        let spec_err = |msg: String| DeviceError::Spec {
            spec: id.to_string(),
            msg,
        };
        let gpus = discovery::probe().map_err(spec_err)?;
        let gpu = gpus.get(index).cloned().ok_or_else(|| {
            spec_err(format!(
                "no such GPU: {} CUDA device(s) here (cuda:0..cuda:{})",
                gpus.len(),
                gpus.len().saturating_sub(1)
            ))
        })?;
        let drv = |what: &str, e: result::DriverError| spec_err(format!("{what}: {e}"));
        let ctx = CudaContext::new(index).map_err(|e| drv("creating the context", e))?;
        let compute = ctx.new_stream().map_err(|e| drv("compute stream", e))?;
        let h2d = ctx
            .new_stream()
            .map_err(|e| drv("host-to-device stream", e))?;
        let d2h = ctx
            .new_stream()
            .map_err(|e| drv("device-to-host stream", e))?;
        // SAFETY: only tries to dlopen libcublas.
        let blas = if unsafe { cudarc::cublas::sys::is_culib_present() } {
            CudaBlas::new(compute.clone())
                .map(Mutex::new)
                .map_err(|e| format!("cuBLAS init: {e}"))
        } else {
            Err("cuBLAS (libcublas.so) could not be loaded".into())
        };
        let kernels = Kernels::build(&ctx, gpu.compute_capability);
        if let Err(e) = &kernels {
            tracing::warn!("{id}: {e}");
        }
        let (major, minor) = gpu.compute_capability;
        let info = DeviceInfo {
            id,
            name: format!("{} (sm_{major}{minor})", gpu.name),
            memory_bytes: gpu.memory_bytes,
            compute_units: gpu.sm_count,
            peak_gflops_f32: gpu.peak_gflops_f32(),
            numa_node: None,
            host_pus: Vec::new(),
            locality: format!("pci {}", gpu.pci),
        };
        let pool = Arc::new(DevicePool::new(ctx.clone()));
        Ok(CudaDevice {
            info,
            gpu,
            staging: StagingPool::new(ctx.clone()),
            ctx,
            compute,
            h2d,
            d2h,
            pool,
            blas,
            kernels,
            watcher: Watcher::default(),
        })
    }

    /// The driver's description of this GPU.
    pub fn gpu(&self) -> &GpuInfo {
        &self.gpu
    }

    pub(crate) fn err(&self, op: &str, msg: impl std::fmt::Display) -> DeviceError {
        DeviceError::Kernel {
            device: self.info.id,
            op: op.into(),
            msg: msg.to_string(),
        }
    }

    pub(crate) fn buffer<'a>(&self, t: &'a DeviceTensor) -> Result<&'a Arc<CudaBuffer>> {
        t.on(self.info.id)?
            .payload::<Arc<CudaBuffer>>()
            .ok_or_else(|| self.err("payload", "tensor is not a CUDA buffer"))
    }

    pub(crate) fn event(&self, op: &str) -> Result<Arc<CudaEvent>> {
        self.ctx
            .new_event(None)
            .map(Arc::new)
            .map_err(|e| self.err(op, format!("cuEventCreate: {e}")))
    }

    /// An event that records a timestamp (for kernel timing).
    pub(crate) fn timing_event(&self, op: &str) -> Result<Arc<CudaEvent>> {
        self.ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map(Arc::new)
            .map_err(|e| self.err(op, format!("cuEventCreate: {e}")))
    }

    /// A new buffer of `bytes` whose memory `stream` may write; `ready`
    /// must be recorded after the write.
    pub(crate) fn alloc(
        &self,
        op: &str,
        bytes: usize,
        stream: &CudaStream,
        ready: &Arc<CudaEvent>,
    ) -> Result<Arc<CudaBuffer>> {
        self.alloc_timed(op, bytes, stream, ready, None)
    }

    /// As [`Self::alloc`], for the output of a kernel that began at `started`.
    pub(crate) fn alloc_timed(
        &self,
        op: &str,
        bytes: usize,
        stream: &CudaStream,
        ready: &Arc<CudaEvent>,
        started: Option<&Arc<CudaEvent>>,
    ) -> Result<Arc<CudaBuffer>> {
        let block = self
            .pool
            .alloc(bytes, stream)
            .map_err(|e| self.err(op, e))?;
        Ok(Arc::new(CudaBuffer {
            block: Some(block),
            bytes,
            ready: ready.clone(),
            uses: Mutex::new(Vec::new()),
            started: started.cloned(),
            report: Mutex::new(None),
            pool: self.pool.clone(),
        }))
    }

    pub(crate) fn wrap(&self, dtype: DType, shape: Vec<usize>, b: Arc<CudaBuffer>) -> DeviceTensor {
        DeviceTensor::new(self.info.id, dtype, shape, Arc::new(b))
    }

    /// Copies `src` of another GPU into a new buffer here, on this
    /// device's host-to-device stream, peer to peer (cuMemcpyPeerAsync:
    /// the driver uses NVLink/PCIe P2P when the pair allows it and stages
    /// through host memory otherwise).
    pub fn copy_from_peer(&self, src_dev: &CudaDevice, t: &DeviceTensor) -> Result<DeviceTensor> {
        let src = src_dev.buffer(t)?;
        let op = "peer copy";
        self.ctx.bind_to_thread().map_err(|e| self.err(op, e))?;
        self.h2d.wait(&src.ready).map_err(|e| self.err(op, e))?;
        let done = self.event(op)?;
        let dst = self.alloc(op, src.bytes, &self.h2d, &done)?;
        // SAFETY: both pointers are live allocations of at least `bytes`;
        // the stream waits for the source's producer first.
        unsafe {
            result::memcpy_peer_async(
                self.ctx.cu_ctx(),
                dst.ptr(),
                src_dev.ctx.cu_ctx(),
                src.ptr(),
                src.bytes,
                self.h2d.cu_stream(),
            )
        }
        .map_err(|e| self.err(op, e))?;
        done.record(&self.h2d).map_err(|e| self.err(op, e))?;
        src.used_until(&done);
        Ok(self.wrap(t.dtype, t.shape.clone(), dst))
    }
}

impl Device for CudaDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, op: &Op) -> std::result::Result<(), String> {
        super::ops::supports(self, op)
    }

    /// Stages the bytes in pinned memory and queues the copy on the
    /// host-to-device stream; returns before the copy completes (the
    /// tensor's `ready` event marks it).
    fn upload(&self, t: Arc<Tensor>) -> Result<DeviceTensor> {
        let op = "upload";
        let bytes = t.to_le_bytes();
        let n = bytes.len();
        self.ctx.bind_to_thread().map_err(|e| self.err(op, e))?;
        let mut st = self.staging.take(n).map_err(|e| self.err(op, e))?;
        st.bytes_mut(n).copy_from_slice(&bytes);
        let done = self.event(op)?;
        let buf = self.alloc(op, n, &self.h2d, &done)?;
        let queued = (|| -> std::result::Result<(), result::DriverError> {
            // SAFETY: `buf` holds at least n bytes; the staging buffer is
            // not reused before `done` completes.
            unsafe { result::memcpy_htod_async(buf.ptr(), st.bytes_mut(n), self.h2d.cu_stream()) }?;
            done.record(&self.h2d)
        })();
        st.inflight = Some(done.clone());
        self.staging.give(st);
        queued.map_err(|e| self.err(op, e))?;
        Ok(self.wrap(t.dtype(), t.shape().to_vec(), buf))
    }

    /// Queues the copy on the device-to-host stream after the tensor's
    /// producer, then waits for it.
    fn download(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        let op = "download";
        let buf = self.buffer(t)?;
        let n = t.byte_len();
        self.ctx.bind_to_thread().map_err(|e| self.err(op, e))?;
        self.d2h.wait(&buf.ready).map_err(|e| self.err(op, e))?;
        let mut st = self.staging.take(n).map_err(|e| self.err(op, e))?;
        let done = self.event(op)?;
        let copied = (|| -> std::result::Result<(), result::DriverError> {
            // SAFETY: the staging buffer holds n bytes and is ours until given back.
            unsafe { result::memcpy_dtoh_async(st.bytes_mut(n), buf.ptr(), self.d2h.cu_stream()) }?;
            done.record(&self.d2h)?;
            done.synchronize()
        })();
        let out = copied.map_err(|e| self.err(op, e)).and_then(|()| {
            Tensor::from_le_bytes(t.dtype, t.shape.clone(), st.bytes_mut(n))
                .map_err(|e| self.err(op, e))
        });
        buf.used_until(&done);
        self.staging.give(st);
        if let Some(seq) = buf.report.lock().ok().and_then(|r| *r) {
            self.watcher.wait_for(seq);
        }
        out.map(Arc::new)
    }

    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        n_outputs: usize,
    ) -> Result<Vec<DeviceTensor>> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| self.err(op.name(), e))?;
        super::ops::execute(self, op, inputs, n_outputs)
    }

    /// Kernels run asynchronously on the compute stream: the report comes
    /// from the watcher thread with the GPU-measured duration (see
    /// `timing.rs`).
    fn on_kernel_done(
        &self,
        output: &DeviceTensor,
        done: Box<dyn FnOnce(crate::KernelReport) + Send>,
    ) -> bool {
        let Ok(buf) = self.buffer(output) else {
            return false;
        };
        let Some(start) = buf.started.clone() else {
            return false;
        };
        match self.watcher.watch(start, buf.ready.clone(), done) {
            Some(seq) => {
                if let Ok(mut r) = buf.report.lock() {
                    *r = Some(seq);
                }
                true
            }
            None => false,
        }
    }

    fn init_executor_thread(&self) {
        if let Err(e) = self.ctx.bind_to_thread() {
            tracing::warn!("{}: binding the CUDA context: {e}", self.info.id);
        }
    }
}
