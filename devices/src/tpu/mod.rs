//! The TPU-like device: an emulated systolic matrix unit with TPU numerics
//! and a cycle-level cost model, shaped after PJRT so that an adapter to a
//! real PJRT plugin can take the emulator's place.
//!
//! ## Architecture
//! * **Matrix units (MXUs)**: `mxu_count` weight-stationary systolic arrays
//!   of `mxu_rows x mxu_cols` (default 4 of 128 x 128). They run MatMul,
//!   Gemm and Conv (lowered to a GEMM by im2col per image and group) with
//!   bf16 operands and f32 accumulation ([`mxu`]).
//! * **Vector unit**: element-wise ops, reductions, normalisations,
//!   pooling, softmax and data movement in f32 (and the integer dtypes),
//!   using the reference host kernels of `hetflow-ops`; it also runs the
//!   f32 epilogue of matrix ops (bias, alpha/beta, fused activation).
//! * **Memories**: HBM of `hbm_bytes` (every live buffer counts against
//!   it; allocation beyond it fails with "out of device memory") and
//!   on-chip VMEM of `onchip_bytes`, which sets the row blocking of GEMMs
//!   in the cost model.
//! * **Queue**: one worker thread per device is its in-order queue; it
//!   emulates each execution on a private rayon pool
//!   (`emulation_threads`, default one per host core). `execute` returns
//!   at once with pending buffers; downloads and later executions wait on
//!   their completion events. A failed execution completes its outputs
//!   with an error naming the op and the device, and executions fed by it
//!   pass that error on, so a failure surfaces wherever the data goes and
//!   nothing waits forever.
//!
//! ## PJRT mapping
//! | PJRT                                  | here                                   |
//! |---------------------------------------|----------------------------------------|
//! | `PJRT_Client` / `PJRT_Device`         | [`TpuClient`] (one device per client), [`TpuDevice`] |
//! | `PJRT_Client_Compile` (HLO module)    | [`TpuClient::compile`] of a [`FusedComputation`] |
//! | `PJRT_LoadedExecutable`               | [`TpuExecutable`] (cached per computation and shapes) |
//! | `PJRT_LoadedExecutable_Execute`       | [`TpuClient::execute`]: output buffers returned before completion |
//! | `PJRT_Buffer`, its ready `PJRT_Event` | [`TpuBuffer`], [`TpuBuffer::wait`] / [`TpuBuffer::on_ready`] |
//! | `PJRT_Client_BufferFromHostBuffer`    | [`TpuClient::buffer_from_host`]        |
//! | `PJRT_Buffer_ToHostBuffer` + await    | [`TpuBuffer::wait`] (via `Device::download`) |
//!
//! A real plugin adapter would implement the same [`crate::Device`] trait
//! with the PJRT C API behind these calls: it would lower a
//! [`FusedComputation`] to StableHLO instead of building an emulated
//! program, and forward buffer events to `on_kernel_done`.
//!
//! ## Executables and fusion
//! The runtime runs one actor per graph node, so [`TpuDevice::execute`]
//! compiles one node's op per input-shape signature (cached). Fusion comes
//! from two places: the load-time optimizer already folds BatchNorm into
//! Conv and fuses Conv+Relu/Clip (one node, one executable whose epilogue
//! is bias + activation; Gemm's alpha/beta/C are its epilogue too), and
//! [`TpuClient::compile`] accepts a [`FusedComputation`] — a MatMul, Gemm
//! or Conv root plus any chain of element-wise ops with extra operands
//! (bias Add, residual Add, Relu, ...) — for callers that fuse subgraphs
//! themselves. Epilogues run in f32 on the vector unit; the result is
//! narrowed to the output dtype once, at the end.
//!
//! Output shapes are static and come with the call: the runtime resolves
//! them (reading a shape operand such as Reshape's shape tensor or Slice's
//! bounds when the shape depends on it) and hands them to `execute`, so
//! an executable is specialised on them as XLA specialises on static
//! shapes, and the device runs no shape inference. An output the runtime
//! could not resolve fails the kernel with a "dynamic shape" error. Ops
//! whose output shape depends on data the device cannot know (Range,
//! ConstantOfShape) and gathers are refused by
//! [`crate::Device::supports`] at plan time, so the planner puts them on
//! another device.
//!
//! ## Numerics
//! Matrix-unit operands are rounded from f32 to bf16 with round to nearest,
//! ties to even ([`mxu::round_bf16`], bit-identical to the `half` crate);
//! products are exact in f32; sums are f32. The accumulation order is
//! fixed: per output, the products of one K tile of `mxu_rows` are summed
//! in increasing k starting from +0.0 (the partial sum running down an
//! array column), and the tile sums are added to an f32 accumulator in
//! increasing tile order, also from +0.0. Results are therefore
//! bit-reproducible and independent of the emulation's thread count.
//! Biases and epilogues are f32 (not rounded to bf16). Against f32
//! references the foundation models land at relative L2 1e-3 to 5e-3;
//! errors grow with depth (docs/tpu.md has the figures). As on a real TPU,
//! [`config::MatmulPrecision`] (`"matmul_precision": "high"` or
//! `"highest"` in the configuration, XLA's bf16_3x / bf16_6x) trades 3 or
//! 6 passes of the arrays for near-f32 products ([`mxu::matmul_at`]); the
//! cost model counts the passes.
//!
//! ## Cost model
//! [`cost`] is pure (a [`TpuConfig`] and shapes in, cycles out) so a
//! scheduler can price ops for a TPU that is not here; its module docs
//! give the pass schedule and the closed form
//! `R + (P - 1) max(M, R) + M + R + C - 2` cycles for a compute-bound GEMM.
//! Every execution carries its modelled time: with tracing on, the run's
//! trace shows each TPU kernel with its emulation wall time as duration
//! and the modelled time as `args.modelled_us`; copies to and from the
//! device carry the modelled host-link time the same way
//! ([`crate::Device::transfer_modelled_us`]). Defaults follow Cloud TPU
//! v5e ([`TpuConfig::v5e`], with sources).
//!
//! ## The op table
//! `dispatch.rs` says which ops the device refuses and which unit runs
//! each of the others; an op new to the host kernels runs on the vector
//! unit with no line there.
//!
//! ## Enabling
//! `--device tpu:0` opens the device; `hetflow devices` lists it when
//! `HETFLOW_TPU=1` is set. `HETFLOW_TPU_CONFIG=file.json` replaces the
//! default [`TpuConfig`] (any subset of its fields, e.g.
//! `{"mxu_rows": 256, "mxu_cols": 256}`); in code, build a [`TpuDevice`]
//! with any configuration and hand it to `hetflow_runtime::Session::new`.

pub mod buffer;
pub mod client;
pub mod config;
pub mod cost;
pub mod dispatch;
mod matrix;
pub mod mxu;
pub mod program;
#[cfg(test)]
mod tests;

pub use buffer::TpuBuffer;
pub use client::TpuClient;
pub use config::TpuConfig;
pub use program::{EpilogueOp, FusedComputation, TpuExecutable};

use crate::{
    Device, DeviceError, DeviceId, DeviceInfo, DeviceKind, DeviceTensor, KernelReport, Result,
};
use hetflow_ops::graph::Fact;
use hetflow_ops::{Op, Tensor};
use std::sync::Arc;

/// The emulated TPU-like device behind the [`Device`] trait.
pub struct TpuDevice {
    info: DeviceInfo,
    client: TpuClient,
}

impl TpuDevice {
    /// Opens `tpu:index` with `config`.
    pub fn new(index: usize, config: TpuConfig) -> Result<TpuDevice> {
        let id = DeviceId {
            kind: DeviceKind::Tpu,
            index,
        };
        let client = TpuClient::new(id, config).map_err(DeviceError::Other)?;
        let c = client.config();
        let info = DeviceInfo {
            id,
            name: format!(
                "emulated TPU-like ({} MXU {}x{} bf16, {:.2} GHz, {:.0} TFLOP/s modelled)",
                c.mxu_count,
                c.mxu_rows,
                c.mxu_cols,
                c.clock_hz / 1e9,
                c.peak_flops() / 1e12
            ),
            memory_bytes: c.hbm_bytes,
            compute_units: c.mxu_count,
            // The modelled matrix-unit peak (bf16 operands, f32 results).
            peak_gflops_f32: c.peak_flops() / 1e9,
            numa_node: None,
            host_pus: Vec::new(),
            locality: "emulated on host threads".into(),
            copy_engine: true,
        };
        Ok(TpuDevice { info, client })
    }

    /// The PJRT-shaped client underneath.
    pub fn client(&self) -> &TpuClient {
        &self.client
    }

    fn buffer<'a>(&self, t: &'a DeviceTensor) -> Result<&'a TpuBuffer> {
        t.on(self.info.id)?.payload::<TpuBuffer>().ok_or_else(|| {
            DeviceError::Other(format!(
                "{}: tensor payload is not a TPU buffer",
                self.info.id
            ))
        })
    }

    fn buffer_arc(&self, t: &DeviceTensor) -> Result<Arc<TpuBuffer>> {
        self.buffer(t)?;
        t.payload
            .clone()
            .downcast::<TpuBuffer>()
            .map_err(|_| DeviceError::Other(format!("{}: not a TPU buffer", self.info.id)))
    }

    fn kernel_error(&self, op: &Op, msg: String) -> DeviceError {
        DeviceError::Kernel {
            device: self.info.id,
            op: op.name().to_string(),
            msg,
        }
    }
}

impl Device for TpuDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, op: &Op) -> std::result::Result<(), String> {
        dispatch::supports(op)
    }

    fn upload(&self, t: Arc<Tensor>) -> Result<DeviceTensor> {
        let b = self
            .client
            .buffer_from_host(&t)
            .map_err(|e| DeviceError::Other(format!("{}: upload: {e}", self.info.id)))?;
        Ok(DeviceTensor::new(
            self.info.id,
            t.dtype(),
            t.shape().to_vec(),
            b,
        ))
    }

    fn download(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        self.buffer(t)?.wait().map_err(DeviceError::Other)
    }

    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        outputs: &[crate::OutputSpec],
    ) -> Result<Vec<DeviceTensor>> {
        let mut bufs = Vec::with_capacity(inputs.len());
        let mut facts = Vec::with_capacity(inputs.len());
        for t in inputs {
            match t {
                Some(t) => {
                    bufs.push(Some(self.buffer_arc(t)?));
                    facts.push(Some(Fact::known(t.dtype, &t.shape)));
                }
                None => {
                    bufs.push(None);
                    facts.push(None);
                }
            }
        }
        let mut shapes = Vec::with_capacity(outputs.len());
        for (i, o) in outputs.iter().enumerate() {
            let (dt, s) = o.concrete().ok_or_else(|| {
                self.kernel_error(
                    op,
                    format!(
                        "the shape of output {i} depends on input values (a dynamic shape); \
                         the device runs static shapes only"
                    ),
                )
            })?;
            shapes.push((dt, s.to_vec()));
        }
        let comp = FusedComputation::single(op, inputs.len(), outputs.len());
        let exe = self
            .client
            .compile(&comp, &facts, &shapes)
            .map_err(|program::CompileError::Invalid(e)| self.kernel_error(op, e))?;
        let outs = self
            .client
            .execute(&exe, bufs)
            .map_err(|e| self.kernel_error(op, e))?;
        Ok(outs
            .into_iter()
            .zip(&exe.outputs)
            .map(|(b, (dt, shape))| DeviceTensor::new(self.info.id, *dt, shape.clone(), b))
            .collect())
    }

    fn on_kernel_done(
        &self,
        output: &DeviceTensor,
        done: Box<dyn FnOnce(KernelReport) + Send>,
    ) -> bool {
        match self.buffer(output) {
            Ok(b) => b.on_ready(done),
            Err(_) => false,
        }
    }

    fn transfer_modelled_us(&self, bytes: u64) -> Option<f64> {
        Some(cost::transfer_seconds(self.client.config(), bytes) * 1e6)
    }
}
