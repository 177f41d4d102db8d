//! [`CudaDevice`]: one GPU behind the [`Device`] trait.

use super::alloc::{Block, DevicePool, StagingPool};
use super::discovery::{self, GpuInfo};
use super::kernels::Kernels;
use crate::watcher::Watcher;
use crate::{DeviceError, DeviceId, DeviceInfo, DeviceKind, DeviceTensor, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{result, sys, CudaContext, CudaEvent, CudaStream};
use hetflow_ops::{DType, Tensor};
use std::sync::{Arc, Mutex, OnceLock};

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
    pub(crate) started: Option<Arc<CudaEvent>>,
    /// Number of the watcher's report of that kernel, once asked for.
    pub(crate) report: Mutex<Option<u64>>,
    /// The host tensor a small upload came from, so shape-like inputs
    /// (axes, starts, target shapes) are read without a download.
    pub host: OnceLock<Arc<Tensor>>,
    pool: Arc<DevicePool>,
}

/// Largest upload whose host copy is kept beside the device buffer.
pub(crate) const HOST_MIRROR_BYTES: usize = 4096;

/// A tensor sharing another's device memory under a new shape (Reshape,
/// Squeeze, ...). A distinct payload type, so the runtime is never told
/// about a kernel the view did not run.
pub(crate) struct CudaView(pub Arc<CudaBuffer>);

/// The CUDA buffer behind a tensor's payload, whichever GPU holds it.
pub(crate) fn payload_of(t: &DeviceTensor) -> Option<&Arc<CudaBuffer>> {
    payload_buffer(t)
}

fn payload_buffer(t: &DeviceTensor) -> Option<&Arc<CudaBuffer>> {
    t.payload::<Arc<CudaBuffer>>()
        .or_else(|| t.payload::<CudaView>().map(|v| &v.0))
}

/// How a tensor reaches this GPU from another device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRoute {
    /// Another GPU this one can address: `cuMemcpyPeerAsync`, a direct
    /// NVLink / PCIe P2P copy.
    Direct,
    /// Through host memory (the runtime's download + upload): the source
    /// is not a GPU, is this GPU, or the pair has no peer access.
    Host,
}

/// The route from `src` to `dst`; `can_access(dst, src)` asks the driver
/// whether GPU `dst` can address GPU `src`'s memory (`None` when it
/// cannot tell).
pub fn peer_route(
    src: DeviceId,
    dst: DeviceId,
    can_access: impl FnOnce(usize, usize) -> Option<bool>,
) -> PeerRoute {
    let gpus = src.kind == DeviceKind::Cuda && dst.kind == DeviceKind::Cuda;
    if gpus && src.index != dst.index && can_access(dst.index, src.index) == Some(true) {
        PeerRoute::Direct
    } else {
        PeerRoute::Host
    }
}

impl CudaBuffer {
    /// The context of the GPU holding the memory.
    pub fn ctx(&self) -> &Arc<CudaContext> {
        self.pool.ctx()
    }
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

/// Makes buffers on one GPU from a thread of its own (the NCCL wires).
#[derive(Clone)]
pub(crate) struct AllocHandle {
    id: DeviceId,
    ctx: Arc<CudaContext>,
    pool: Arc<DevicePool>,
}

impl AllocHandle {
    /// A buffer of `bytes` that `stream` will write, and the event to
    /// record after the write (the buffer's `ready`).
    pub fn alloc(
        &self,
        op: &str,
        bytes: usize,
        stream: &CudaStream,
    ) -> Result<(Arc<CudaBuffer>, Arc<CudaEvent>)> {
        let err = |msg: String| DeviceError::Kernel {
            device: self.id,
            op: op.into(),
            msg,
        };
        let ready = Arc::new(
            self.ctx
                .new_event(None)
                .map_err(|e| err(format!("cuEventCreate: {e}")))?,
        );
        let block = self.pool.alloc(bytes, stream).map_err(err)?;
        let buf = Arc::new(CudaBuffer {
            block: Some(block),
            bytes,
            ready: ready.clone(),
            uses: Mutex::new(Vec::new()),
            started: None,
            report: Mutex::new(None),
            host: OnceLock::new(),
            pool: self.pool.clone(),
        });
        Ok((buf, ready))
    }

    /// `b` as a tensor of this GPU.
    pub fn wrap(&self, dtype: DType, shape: Vec<usize>, b: Arc<CudaBuffer>) -> DeviceTensor {
        DeviceTensor::new(self.id, dtype, shape, Arc::new(b))
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
    pub(crate) staging: StagingPool,
    pub(crate) blas: Result<Mutex<CudaBlas>, String>,
    pub(crate) kernels: Result<Kernels, String>,
    pub(crate) watcher: Watcher,
    /// GPUs whose memory this one has enabled peer access to.
    peers: Mutex<std::collections::HashSet<usize>>,
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
            copy_engine: true,
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
            peers: Mutex::new(Default::default()),
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
        payload_buffer(t.on(self.info.id)?)
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
            host: OnceLock::new(),
            pool: self.pool.clone(),
        }))
    }

    /// What another thread (an NCCL wire's) needs to make buffers here.
    pub(crate) fn alloc_handle(&self) -> AllocHandle {
        AllocHandle {
            id: self.info.id,
            ctx: self.ctx.clone(),
            pool: self.pool.clone(),
        }
    }

    pub(crate) fn wrap(&self, dtype: DType, shape: Vec<usize>, b: Arc<CudaBuffer>) -> DeviceTensor {
        DeviceTensor::new(self.info.id, dtype, shape, Arc::new(b))
    }

    /// `t`'s memory under a new shape (same element count and dtype).
    pub(crate) fn view(&self, t: &DeviceTensor, shape: Vec<usize>) -> Result<DeviceTensor> {
        let b = self.buffer(t)?.clone();
        Ok(DeviceTensor::new(
            self.info.id,
            t.dtype,
            shape,
            Arc::new(CudaView(b)),
        ))
    }

    /// Whether GPU `dst` can address the memory of GPU `src`
    /// (`cuDeviceCanAccessPeer`); `None` when the driver cannot say.
    pub(crate) fn can_access_peer(dst: usize, src: usize) -> Option<bool> {
        let dev = |i: usize| result::device::get(i as i32).ok();
        let (d, s) = (dev(dst)?, dev(src)?);
        let mut ok = 0i32;
        // SAFETY: writes one int; both handles come from the driver.
        let r = unsafe { sys::cuDeviceCanAccessPeer(&mut ok, d, s) };
        (r == sys::CUresult::CUDA_SUCCESS).then_some(ok != 0)
    }

    /// Copies `t` of another GPU into a new buffer here, on this device's
    /// host-to-device stream, with `cuMemcpyPeerAsync` (a direct P2P copy
    /// once peer access is enabled, which this does on first use of the
    /// pair; the driver stages through host memory where the pair has no
    /// P2P).
    pub fn copy_from_peer(&self, t: &DeviceTensor) -> Result<DeviceTensor> {
        let op = "peer copy";
        let src = payload_buffer(t).ok_or_else(|| self.err(op, "tensor is not a CUDA buffer"))?;
        self.ctx.bind_to_thread().map_err(|e| self.err(op, e))?;
        if let Ok(mut on) = self.peers.lock() {
            if on.insert(t.device.index) {
                // SAFETY: enables access from the bound context (this GPU)
                // to the source's context; "already enabled" is fine.
                let r = unsafe { sys::cuCtxEnablePeerAccess(src.ctx().cu_ctx(), 0) };
                let fine = [
                    sys::CUresult::CUDA_SUCCESS,
                    sys::CUresult::CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED,
                ];
                if !fine.contains(&r) {
                    tracing::debug!("{}: peer access to {}: {r:?}", self.info.id, t.device);
                }
            }
        }
        self.h2d.wait(&src.ready).map_err(|e| self.err(op, e))?;
        let done = self.event(op)?;
        let dst = self.alloc(op, src.bytes, &self.h2d, &done)?;
        // SAFETY: both pointers are live allocations of at least `bytes`;
        // the stream waits for the source's producer first.
        unsafe {
            result::memcpy_peer_async(
                self.ctx.cu_ctx(),
                dst.ptr(),
                src.ctx().cu_ctx(),
                src.ptr(),
                t.byte_len(),
                self.h2d.cu_stream(),
            )
        }
        .map_err(|e| self.err(op, e))?;
        done.record(&self.h2d).map_err(|e| self.err(op, e))?;
        src.used_until(&done);
        Ok(self.wrap(t.dtype, t.shape.clone(), dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: DeviceKind, index: usize) -> DeviceId {
        DeviceId { kind, index }
    }

    #[test]
    fn peer_copies_only_between_gpus_with_peer_access() {
        let (g0, g1) = (id(DeviceKind::Cuda, 0), id(DeviceKind::Cuda, 1));
        let yes = |_: usize, _: usize| Some(true);
        assert_eq!(peer_route(g0, g1, yes), PeerRoute::Direct);
        // The driver is asked whether the destination can address the source.
        let asked = std::cell::Cell::new(None);
        peer_route(g0, g1, |d, s| {
            asked.set(Some((d, s)));
            Some(false)
        });
        assert_eq!(asked.get(), Some((1, 0)));
        assert_eq!(peer_route(g0, g1, |_, _| Some(false)), PeerRoute::Host);
        assert_eq!(peer_route(g0, g1, |_, _| None), PeerRoute::Host);
        assert_eq!(peer_route(g1, g1, yes), PeerRoute::Host, "same GPU");
        assert_eq!(peer_route(DeviceId::cpu(0), g1, yes), PeerRoute::Host);
        assert_eq!(
            peer_route(g0, id(DeviceKind::Opencl, 1), yes),
            PeerRoute::Host
        );
    }
}
