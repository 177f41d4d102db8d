//! The CUDA backend: NVIDIA GPUs through the driver API, cuBLAS and NVRTC
//! (all by [cudarc](https://docs.rs/cudarc)).
//!
//! ## Dynamic loading: one build for machines with and without CUDA
//! cudarc is built with `dynamic-loading`: `libcuda`, `libcublas` and
//! `libnvrtc` are opened with `dlopen` on first use, so the crate needs no
//! CUDA toolkit or driver to build, link or run its tests. cudarc panics
//! when a library (or one of its symbols) is missing, so every entry point
//! here checks first ([`discovery::probe`] asks `is_culib_present()` and
//! runs the driver calls under `catch_unwind`) and turns absence into an
//! error: `hetflow devices` shows "no CUDA driver ...", and `--device
//! cuda:0` fails with the same reason. The bindings target the CUDA 12.2
//! API (`cuda-12020`), so any 12.x driver (>= 535) has every symbol we use.
//!
//! ## Streams and events
//! Each GPU gets three streams: `compute` (kernels and cuBLAS, in the order
//! the runtime's executor calls `execute`), `h2d` for uploads and `d2h`
//! for downloads. Every buffer carries the event recorded after the work
//! that wrote it; a stream that reads the buffer first waits on that event
//! (`cuStreamWaitEvent`, no host blocking). So the upload of micro-batch
//! k+1 on `h2d` runs while `compute` works on micro-batch k, and the
//! download of k on `d2h` overlaps both; only `download` blocks the host,
//! and only for its own copy.
//!
//! ## Timing
//! Every kernel is bracketed by two timing events; when the runtime traces
//! a run, a per-device watcher thread waits on the end event and reports
//! the GPU-measured span through `Device::on_kernel_done`, so traces show
//! when kernels ran on the GPU, not when they were queued.
//!
//! ## Memory
//! A caching allocator (`alloc.rs`) keeps freed blocks by size class and
//! reuses them without driver calls; a reused block's new stream waits on
//! the events of its last uses first. Uploads and downloads go through
//! page-locked staging buffers (a small pool) so copies are DMA and truly
//! asynchronous.
//!
//! ## Between GPUs
//! The runtime's transfer actors first ask the target device for a direct
//! path ([`Device::copy_from_device`](crate::Device::copy_from_device)).
//! A GPU answers for a tensor on another GPU that it can address
//! (`cuDeviceCanAccessPeer`, decided by [`peer_route`]): peer
//! access is enabled once per pair and [`CudaDevice::copy_from_peer`]
//! queues `cuMemcpyPeerAsync` on its host-to-device stream after the
//! source's event, an NVLink / PCIe P2P DMA. Other pairs go through the
//! host (download, upload).
//!
//! ## What runs on the GPU
//! - MatMul (numpy batching where one stride per operand expresses it)
//!   and Gemm (with broadcast C) on cuBLAS `cublasGemmStridedBatchedEx`:
//!   f32 in true f32, f16 and bf16 on tensor cores with f32 accumulation.
//! - Conv (`conv.rs`): a direct depthwise kernel, else im2col per image
//!   and one strided-batched GEMM over the groups, then bias and the
//!   fused activation in one pass.
//! - NVRTC kernels (`kernels/*.cu`, compiled at device open for the
//!   device's compute capability) for element-wise ops, Softmax,
//!   LayerNorm, pooling, BatchNormalization, LRN, reductions (`nn.rs`)
//!   and shape ops / data movement (`data.rs`); float kernels store f32,
//!   f16, bf16 and compute in f32, data movement works on any element
//!   size. docs/cuda.md has the table.
//! - Host-side geometry (launch sizes, layouts, windows, reduction
//!   folding) is pure Rust in `geom.rs`, unit-tested against the CPU
//!   kernels without a GPU; `launch.rs` holds what every launch shares.
//! - [`Device::supports`](crate::Device::supports) refuses every other op,
//!   so the planner keeps it on a CPU. Inside a supported op, cases the
//!   kernels do not cover (integer dtypes, for instance) run through the
//!   host kernel via the copy streams (see `ops.rs`).
//!
//! Nothing of this module has run on a GPU yet: see docs/gpu-results.md
//! for the checks that remain, and `scripts/nvrtc_check.py` for the
//! GPU-free compile check of every kernel.

mod alloc;
mod codes;
mod conv;
mod data;
mod device;
pub mod discovery;
mod dispatch;
pub mod geom;
pub mod kernels;
mod launch;
pub mod nccl;
mod nn;
mod ops;
mod timing;

pub use device::{peer_route, CudaDevice, PeerRoute};
pub use discovery::{probe, GpuInfo};
pub use dispatch::op_supported;
