//! NCCL wires: GPU-to-GPU channels between the ranks of a multi-host job
//! (see [`crate::wire`] for the contract the runtime relies on).
//!
//! Each wire is a two-rank NCCL communicator of its own (the sender is
//! NCCL rank 0, the receiver rank 1) with its own CUDA stream, made from
//! a unique id that the sending GPU creates ([`unique_id`]) and the
//! runtime carries to the receiving rank over MPI. A communicator per
//! direction keeps every communicator's queue one-way (module docs of
//! [`crate::wire`]); the same choice, a communicator per peer pair for
//! point-to-point traffic, is what PyTorch's NCCL process group makes.
//!
//! The wire's thread binds the GPU's context, creates the communicator
//! (`ncclCommInitRank` blocks until the other end joins, which is why it
//! runs there and not in the caller) and then runs the jobs in order:
//! * a send makes the wire's stream wait on the tensor's `ready` event,
//!   queues `ncclSend` of its bytes and waits for the stream, so the
//!   tensor stays alive until NCCL has read it;
//! * a receive allocates a buffer from the GPU's caching allocator, queues
//!   `ncclRecv`, records the buffer's `ready` event after it and waits, so
//!   consumers see complete data (their streams wait on the event too).
//!
//! Data moves as bytes (`ncclUint8`), so every dtype travels; an empty
//! tensor moves nothing on either side (both know its shape from the
//! header).
//!
//! NCCL is loaded with `dlopen` on first use, like the rest of CUDA:
//! without `libnccl.so.2` the calls here return an error saying so, and a
//! job that asked for NCCL wires fails at session build with that error.
//! Nothing here runs without a GPU; `scripts/gpu-check.sh` exercises it on
//! one.

use super::device::CudaDevice;
use crate::wire::{spawn_worker, Wire, WireEnd, WorkerWire};
use crate::{DeviceError, DeviceTensor, Result};
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{result as nccl, sys as nccl_sys};
use hetflow_ops::DType;
use std::sync::Arc;

/// Length of an NCCL unique id.
pub const ID_BYTES: usize = 128;

/// Whether `libnccl` can be loaded here (never panics).
pub fn available() -> bool {
    // SAFETY: only tries to dlopen the library.
    std::panic::catch_unwind(|| unsafe { nccl_sys::is_culib_present() }).unwrap_or(false)
}

fn missing() -> DeviceError {
    DeviceError::Other(
        "NCCL (libnccl.so.2) cannot be loaded on this host: install NCCL, or leave HETFLOW_NCCL unset to move GPU tensors through host memory"
            .into(),
    )
}

/// A new NCCL unique id, as bytes.
pub fn unique_id() -> Result<Vec<u8>> {
    if !available() {
        return Err(missing());
    }
    let id =
        nccl::get_uniqueid().map_err(|e| DeviceError::Other(format!("ncclGetUniqueId: {e:?}")))?;
    Ok(id.internal.iter().map(|&c| c as u8).collect())
}

/// Decodes an id made by [`unique_id`].
pub fn decode_id(bytes: &[u8]) -> Result<nccl_sys::ncclUniqueId> {
    if bytes.len() != ID_BYTES {
        return Err(DeviceError::Other(format!(
            "an NCCL unique id has {ID_BYTES} bytes, got {}",
            bytes.len()
        )));
    }
    let mut internal = [0 as std::ffi::c_char; ID_BYTES];
    for (d, &s) in internal.iter_mut().zip(bytes) {
        *d = s as std::ffi::c_char;
    }
    Ok(nccl_sys::ncclUniqueId { internal })
}

/// What a wire's thread owns once the communicator is up.
struct Comm {
    comm: nccl_sys::ncclComm_t,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
}

impl Drop for Comm {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        let _ = self.stream.synchronize();
        // SAFETY: the communicator was created by this thread and no
        // operation on it is in flight after the synchronize.
        unsafe {
            let _ = nccl::comm_destroy(self.comm);
        }
    }
}

/// Opens `end` of the wire `id` on `dev` (module docs).
pub(crate) fn open(dev: &CudaDevice, end: WireEnd, id: &[u8]) -> Result<Arc<dyn Wire>> {
    if !available() {
        return Err(missing());
    }
    let uid = decode_id(id)?;
    let ctx = dev.ctx.clone();
    let me = dev.info.id;
    let rank: i32 = match end {
        WireEnd::Send => 0,
        WireEnd::Recv => 1,
    };
    let err = move |op: &str, e: String| DeviceError::Kernel {
        device: me,
        op: op.into(),
        msg: e,
    };
    let alloc_dev = dev.alloc_handle();
    let jobs = spawn_worker(
        format!("hetflow-nccl-{me}"),
        move || {
            ctx.bind_to_thread()
                .map_err(|e| err("nccl init", e.to_string()))?;
            let stream = ctx
                .new_stream()
                .map_err(|e| err("nccl init", e.to_string()))?;
            let mut comm: nccl_sys::ncclComm_t = std::ptr::null_mut();
            // SAFETY: `comm` is a valid out-pointer; the id came from
            // ncclGetUniqueId on the sending rank.
            unsafe { nccl::comm_init_rank(&mut comm, 2, uid, rank) }
                .map_err(|e| err("ncclCommInitRank", format!("{e:?}")))?;
            Ok(Comm { comm, stream, ctx })
        },
        move |c: &mut Comm, t: &DeviceTensor| {
            let buf = super::device::payload_of(t)
                .ok_or_else(|| err("ncclSend", "tensor is not a CUDA buffer".into()))?;
            if buf.bytes == 0 {
                return Ok(());
            }
            c.stream
                .wait(&buf.ready)
                .map_err(|e| err("ncclSend", e.to_string()))?;
            // SAFETY: the buffer holds `bytes` bytes and stays alive (the
            // job owns the tensor) until the synchronize below.
            unsafe {
                nccl::send(
                    buf.ptr() as *const std::ffi::c_void,
                    buf.bytes,
                    nccl_sys::ncclDataType_t::ncclUint8,
                    1,
                    c.comm,
                    c.stream.cu_stream() as _,
                )
            }
            .map_err(|e| err("ncclSend", format!("{e:?}")))?;
            c.stream
                .synchronize()
                .map_err(|e| err("ncclSend", e.to_string()))
        },
        move |c: &mut Comm, dtype: DType, shape: &[usize]| {
            let bytes = shape
                .iter()
                .try_fold(dtype.size(), |a, &d| a.checked_mul(d))
                .ok_or_else(|| err("ncclRecv", format!("{dtype}{shape:?} overflows")))?;
            let (buf, ready) = alloc_dev.alloc("ncclRecv", bytes, &c.stream)?;
            if bytes > 0 {
                // SAFETY: the new buffer holds `bytes` bytes.
                unsafe {
                    nccl::recv(
                        buf.ptr() as *mut std::ffi::c_void,
                        bytes,
                        nccl_sys::ncclDataType_t::ncclUint8,
                        0,
                        c.comm,
                        c.stream.cu_stream() as _,
                    )
                }
                .map_err(|e| err("ncclRecv", format!("{e:?}")))?;
            }
            ready
                .record(&c.stream)
                .map_err(|e| err("ncclRecv", e.to_string()))?;
            c.stream
                .synchronize()
                .map_err(|e| err("ncclRecv", e.to_string()))?;
            Ok(alloc_dev.wrap(dtype, shape.to_vec(), buf))
        },
    )?;
    Ok(Arc::new(WorkerWire { kind: "nccl", jobs }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_bad_ones_are_named() {
        let bytes: Vec<u8> = (0..ID_BYTES).map(|i| (i * 7 % 256) as u8).collect();
        let id = decode_id(&bytes).unwrap();
        let back: Vec<u8> = id.internal.iter().map(|&c| c as u8).collect();
        assert_eq!(back, bytes);
        let e = decode_id(&bytes[..5]).unwrap_err().to_string();
        assert!(e.contains("128 bytes, got 5"), "{e}");
    }

    /// Without libnccl (as on CI), asking for an id or a wire is an error
    /// that says what to install or unset, never a panic.
    #[test]
    fn without_nccl_ids_are_refused_clearly() {
        if available() {
            eprintln!("SKIPPED: libnccl is present here; the absent-library path is not exercised");
            return;
        }
        let e = unique_id().unwrap_err().to_string();
        assert!(
            e.contains("libnccl.so.2") && e.contains("HETFLOW_NCCL"),
            "{e}"
        );
    }
}
