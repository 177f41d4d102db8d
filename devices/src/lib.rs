//! # hetflow-devices
//!
//! The [`Device`] trait every backend implements, the tensors that live on a
//! device ([`DeviceTensor`]), the registry that resolves `--device` specs
//! such as `cpu:0,cpu:1` ([`registry`]), and the backends: the CPU backend
//! ([`cpu`]), NVIDIA GPUs ([`cuda`], loaded at run time, so the crate
//! builds and runs without CUDA) and the emulated TPU-like device
//! ([`tpu`]); OpenCL slots into the same trait and registry.
//!
//! ## Threading and ownership
//! A device is shared (`Arc<dyn Device>`) between the runtime's executor for
//! that device and whoever uploads or downloads data. `execute` is called by
//! exactly one executor thread per device, so calls on one device are
//! ordered: that thread *is* the device's in-order compute queue for the CPU
//! backend (the equivalent of a CUDA stream or OpenCL command queue).
//! Backends with real asynchronous queues return tensors whose data may
//! still be in flight; [`DeviceTensor`] carries the backend's handle, and
//! downloading it waits for completion. Inputs are never modified: kernels
//! read their inputs and allocate outputs, so the caller's tensors are
//! untouched whatever happens.
//!
//! Asynchronous backends (the TPU-like device) return from `execute` as
//! soon as the work is queued; their kernels report how they ran through
//! [`Device::on_kernel_done`], which the runtime's tracer uses to record
//! the device's own start, end and modelled time.

pub mod cpu;
pub mod cuda;
pub mod fault;
pub mod opencl;
pub mod registry;
#[cfg(test)]
mod testing;
pub mod throttle;
pub mod tpu;
mod watcher;
pub mod wire;

pub use registry::{discover, open_devices, parse_device_list, BackendStatus, DeviceSpec};

use hetflow_ops::{Op, Tensor};
use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// Result alias for device operations.
pub type Result<T, E = DeviceError> = std::result::Result<T, E>;

/// A device failure, naming the device (and the op when there is one).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A kernel failed.
    #[error("{op} failed on {device}: {msg}")]
    Kernel {
        /// The device.
        device: DeviceId,
        /// Op type.
        op: String,
        /// What went wrong.
        msg: String,
    },
    /// The device cannot run this op at all (reported at plan time).
    #[error("{device} does not support {op}: {why}")]
    Unsupported {
        /// The device.
        device: DeviceId,
        /// Op type.
        op: String,
        /// Why.
        why: String,
    },
    /// A device spec could not be resolved.
    #[error("device '{spec}': {msg}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor was handed to a device it does not live on.
    #[error("tensor lives on {actual}, not on {expected}")]
    WrongDevice {
        /// The device that was asked.
        expected: DeviceId,
        /// Where the tensor is.
        actual: DeviceId,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// The class of a device.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Host cores.
    Cpu,
    /// NVIDIA GPU through CUDA.
    Cuda,
    /// Any OpenCL device (GPU, CPU, FPGA).
    Opencl,
    /// The TPU-like matrix-unit device.
    Tpu,
}

impl DeviceKind {
    /// Lower-case name used in device specs.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
            DeviceKind::Opencl => "opencl",
            DeviceKind::Tpu => "tpu",
        }
    }
}

/// A device's name in specs and messages: `kind:index`, e.g. `cpu:1`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct DeviceId {
    /// Backend.
    pub kind: DeviceKind,
    /// Index within the backend.
    pub index: usize,
}

impl DeviceId {
    /// `cpu:index`.
    pub fn cpu(index: usize) -> DeviceId {
        DeviceId {
            kind: DeviceKind::Cpu,
            index,
        }
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.index)
    }
}

/// What a device says about itself; the scheduler's cluster spec starts here.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceInfo {
    /// Its id.
    pub id: DeviceId,
    /// Human name (CPU model, GPU name, ...).
    pub name: String,
    /// Memory the device can use, in bytes.
    pub memory_bytes: u64,
    /// Compute units (cores, SMs, ...).
    pub compute_units: usize,
    /// Nominal peak f32 rate in GFLOP/s (0 when unknown; `hetflow profile`
    /// measures the real one).
    pub peak_gflops_f32: f64,
    /// NUMA node of the device (or of the cores it is bound to).
    pub numa_node: Option<usize>,
    /// OS indices of the host PUs its executor threads are bound to.
    pub host_pus: Vec<usize>,
    /// Free-form locality (PCI bus id for accelerators).
    pub locality: String,
    /// Whether copies to and from the device run beside its kernels (a
    /// DMA engine, or the host's own threads for the CPU device). False
    /// where the driver's compute threads also execute the transfers (an
    /// OpenCL CPU device such as PoCL): a copy then waits behind the
    /// kernels already submitted, which the simulator models.
    pub copy_engine: bool,
}

/// A tensor resident on a device. Cheap to clone (shared handle).
///
/// The runtime moves these between actors as the "buffer handles" of the
/// design: the payload is backend-specific (a host [`Tensor`] for the CPU
/// backend) and only the owning backend looks inside.
#[derive(Clone)]
pub struct DeviceTensor {
    /// Where the data lives.
    pub device: DeviceId,
    /// Element type.
    pub dtype: hetflow_ops::DType,
    /// Dimensions.
    pub shape: Vec<usize>,
    payload: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for DeviceTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DeviceTensor({} {}{:?})",
            self.device, self.dtype, self.shape
        )
    }
}

impl DeviceTensor {
    /// Wraps a backend payload.
    pub fn new<P: Any + Send + Sync>(
        device: DeviceId,
        dtype: hetflow_ops::DType,
        shape: Vec<usize>,
        payload: Arc<P>,
    ) -> Self {
        DeviceTensor {
            device,
            dtype,
            shape,
            payload,
        }
    }
    /// The tensor itself if it lives on `device`, else the
    /// [`DeviceError::WrongDevice`] every backend reports.
    pub fn on(&self, device: DeviceId) -> Result<&Self> {
        if self.device != device {
            return Err(DeviceError::WrongDevice {
                expected: device,
                actual: self.device,
            });
        }
        Ok(self)
    }
    /// The backend payload, if it is of type `P`.
    pub fn payload<P: Any + Send + Sync>(&self) -> Option<&P> {
        self.payload.downcast_ref::<P>()
    }
    /// The backend payload itself when it is of type `P`; the tensor back
    /// otherwise.
    pub fn into_payload<P: Any + Send + Sync>(self) -> std::result::Result<Arc<P>, Self> {
        let DeviceTensor {
            device,
            dtype,
            shape,
            payload,
        } = self;
        payload.downcast::<P>().map_err(|payload| DeviceTensor {
            device,
            dtype,
            shape,
            payload,
        })
    }
    /// Bytes of data.
    pub fn byte_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

/// How one kernel of an asynchronous device ran.
#[derive(Clone, Debug)]
pub struct KernelReport {
    /// When the device started it.
    pub start: Instant,
    /// When its outputs were complete.
    pub end: Instant,
    /// The device's cost model's estimate of its duration on the modelled
    /// hardware, in microseconds (emulated devices; `None` otherwise).
    pub modelled_us: Option<f64>,
}

/// One output of an op as the runtime resolved it before handing the op to
/// [`Device::execute`]: its element type and concrete shape, each `None`
/// where only running the op can tell (NonZero's length, a shape computed
/// from data). Shape inference is the runtime's job (it knows the graph
/// and reads shape operands once); devices take the result as given and
/// never infer shapes themselves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OutputSpec {
    /// Element type, when known.
    pub dtype: Option<hetflow_ops::DType>,
    /// Concrete shape, when known.
    pub shape: Option<Vec<usize>>,
}

impl OutputSpec {
    /// An output whose dtype and shape are both known.
    pub fn known(dtype: hetflow_ops::DType, shape: Vec<usize>) -> OutputSpec {
        OutputSpec {
            dtype: Some(dtype),
            shape: Some(shape),
        }
    }
    /// `n` outputs about which nothing is known.
    pub fn unknown(n: usize) -> Vec<OutputSpec> {
        vec![OutputSpec::default(); n]
    }
    /// Dtype and shape, when both are known.
    pub fn concrete(&self) -> Option<(hetflow_ops::DType, &[usize])> {
        Some((self.dtype?, self.shape.as_deref()?))
    }
}

/// Refuses what only the CPU kernels implement: a Conv with a residual
/// fused in ([`hetflow_ops::optimize::fuse_residual`], applied to CPU-only
/// sessions), a Gemm with an activation fused in
/// ([`hetflow_ops::optimize::fuse_gemm_activations`], the same), and the ops with subgraphs (control flow, FlexAttention),
/// whose bodies run with the host interpreter (one task on one CPU device). Other backends call it first
/// in `supports`.
pub(crate) fn cpu_only(op: &Op) -> std::result::Result<(), String> {
    match op {
        Op::Conv(a) if a.residual => {
            Err("a Conv with a fused residual input runs on CPU devices only".into())
        }
        Op::Gemm { act, .. } if *act != hetflow_ops::op::Activation::None => {
            Err("a Gemm with a fused activation runs on CPU devices only".into())
        }
        Op::If { .. } | Op::Loop { .. } | Op::Scan { .. } | Op::FlexAttention(_) => Err(format!(
            "{} runs its body with the host interpreter, on a CPU device",
            op.name()
        )),
        _ => Ok(()),
    }
}

/// A compute device. See the crate docs for the threading contract.
pub trait Device: Send + Sync {
    /// Identity, capacity and locality.
    fn info(&self) -> &DeviceInfo;

    /// Its id (shorthand for `info().id`).
    fn id(&self) -> DeviceId {
        self.info().id
    }

    /// Whether this device can run `op` at all; `Err(why)` is reported at
    /// plan time so the op is placed elsewhere.
    fn supports(&self, op: &Op) -> std::result::Result<(), String>;

    /// Copies a host tensor to the device (on the device's copy queue).
    fn upload(&self, t: Arc<Tensor>) -> Result<DeviceTensor>;

    /// Copies a device tensor back to the host, waiting for its data.
    fn download(&self, t: &DeviceTensor) -> Result<Arc<Tensor>>;

    /// Runs `op` on the compute queue. `inputs` are positional (`None` for
    /// an omitted optional input) and must live on this device; `outputs`
    /// says what the runtime resolved about each output (see
    /// [`OutputSpec`]). Returns exactly `outputs.len()` tensors. Never
    /// modifies its inputs.
    ///
    /// The shapes in `outputs` are the contract's one source of output
    /// shapes: a backend that needs them (a view, a statically shaped
    /// compile) reads them here and fails with a clear error when one it
    /// needs is missing; it does not run shape inference of its own.
    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        outputs: &[OutputSpec],
    ) -> Result<Vec<DeviceTensor>>;

    /// Prepares weight `t`, input `slot` of a node running `op` on this
    /// device, for the device's kernel: called once per (node, weight) when
    /// the session is built, after [`Device::upload`]. `lhs_shape` is the
    /// node's input 0 shape when known at build time. The CPU device packs
    /// GEMM weights and the filters of pointwise convs here
    /// (`hetflow_ops::kernels::prepare`); the default does nothing. A
    /// failure fails the session build.
    fn prepare_weight(
        &self,
        _op: &Op,
        _slot: usize,
        _t: &DeviceTensor,
        _lhs_shape: Option<&[usize]>,
    ) -> Result<()> {
        Ok(())
    }

    /// The same data as `t` under `shape` (same element count), sharing
    /// `t`'s memory: how the runtime runs the pure views (Reshape, Flatten,
    /// Squeeze, Unsqueeze) without a kernel. `None` (the default) when the
    /// backend cannot share a buffer under a new shape; the runtime then
    /// runs the view through [`Device::execute`].
    fn view(&self, _t: &DeviceTensor, _shape: Vec<usize>) -> Option<Result<DeviceTensor>> {
        None
    }

    /// `t` under `shape` (same element count) without a copy, when the
    /// caller hands over a handle no one else holds: a backend whose
    /// tensors own their shape (the CPU's) relabels the buffer in place.
    /// The runtime calls it for a pure view whose input has no other
    /// reader left. `Err(t)` (the default) gives the tensor back
    /// unchanged; the runtime then runs the view as it would have.
    fn relabel(
        &self,
        t: DeviceTensor,
        _shape: Vec<usize>,
    ) -> std::result::Result<DeviceTensor, DeviceTensor> {
        Err(t)
    }

    /// The value of a small tensor (a shape operand: Reshape's target
    /// shape, Slice's starts) on the host, for the runtime's shape
    /// resolution. Backends that keep a host mirror of small uploads
    /// answer from it; the default downloads.
    fn host_value(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        self.download(t)
    }

    /// Called once on the executor thread that will drive this device,
    /// before any `execute`: binds it near the device (hwloc) and sets up
    /// thread-local state. Failure to bind is logged, not fatal.
    fn init_executor_thread(&self) {}

    /// For backends whose `execute` returns before the kernel has run:
    /// arranges for `done` to be called (on any thread) once the kernel
    /// that produced `output` has finished, before anyone waiting on
    /// `output` wakes. Returns `false`, and never calls `done`, when the
    /// kernel ran inside `execute` (the default) or `output` was not
    /// produced by a kernel.
    fn on_kernel_done(
        &self,
        _output: &DeviceTensor,
        _done: Box<dyn FnOnce(KernelReport) + Send>,
    ) -> bool {
        false
    }

    /// For emulated devices: the modelled time, in microseconds, of moving
    /// `bytes` between the host and this device (either way). `None` (the
    /// default) when the device has no model of its link.
    fn transfer_modelled_us(&self, _bytes: u64) -> Option<f64> {
        None
    }

    /// Copies `t`, which lives on another device, straight into this
    /// device's memory (a peer-to-peer DMA between two GPUs), queued on
    /// this device's copy queue; the result is ready when its event says
    /// so, like an upload's. `None` (the default) when there is no direct
    /// path from `t`'s device: the runtime then copies through the host
    /// (`download` on the source, `upload` here).
    fn copy_from_device(&self, _t: &DeviceTensor) -> Option<Result<DeviceTensor>> {
        None
    }

    /// For devices with a direct transport to devices of other ranks
    /// ([`wire`]: NCCL for CUDA GPUs): a new id for a wire whose sending
    /// end is this device. `None` (the default) when the device has no
    /// such transport; `Some(Err)` when it has one that cannot work here
    /// (its library is missing).
    fn wire_id(&self) -> Option<Result<Vec<u8>>> {
        None
    }

    /// Opens `end` of the wire `id` on this device (see [`wire`]); returns
    /// at once, the set-up finishing on the wire's thread. `None` (the
    /// default) when the device has no direct transport.
    fn open_wire(&self, _end: wire::WireEnd, _id: &[u8]) -> Option<Result<Arc<dyn wire::Wire>>> {
        None
    }
}
