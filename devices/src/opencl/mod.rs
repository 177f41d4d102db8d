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
//! full table is in docs/opencl.md. Each launch file declares the ops it
//! runs (`table`: kernels, input dtypes, launch) and launches them:
//! `elementwise.rs`, `ops.rs` (MatMul, Gemm), `nn.rs` and `movement.rs`;
//! `dispatch.rs` gathers the tables (its module docs give the layering).
//! Ops with no kernel are
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

mod codes;
mod device;
pub mod discovery;
mod dispatch;
mod elementwise;
mod gemm;
mod host;
mod launch;
mod movement;
mod nn;
mod ops;
pub mod pool;
pub mod program;
#[cfg(test)]
mod tests;
mod timing;

pub use device::{ClTensor, OpenclDevice, OpenclOptions};
pub use discovery::list_devices;
