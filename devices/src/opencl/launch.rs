//! What every OpenCL launch shares: kernel arguments, the launch itself
//! (kernel creation, work sizes, wait lists, profiling record), output
//! buffers and their completion, and small index helpers.

use super::device::{other, wait_list, ClTensor, OpenclDevice};
use super::pool::PooledBuffer;
use crate::{DeviceError, DeviceTensor, Result};
use hetflow_ops::DType;
use opencl3::event::Event;
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, CL_MEM_COPY_HOST_PTR, CL_MEM_READ_ONLY};
use std::sync::Arc;

/// Ranks the broadcasting and transpose kernels handle.
pub(super) const MAX_RANK: usize = 8;

/// A kernel argument.
pub(super) enum Arg<'a> {
    Buf(&'a Buffer<u8>),
    U32(u32),
    F32(f32),
    I32(i32),
    V8([u32; 8]),
    I8([i32; 8]),
}

pub(super) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| DeviceError::Other(format!("{what} {v} exceeds 32 bits")))
}

pub(super) fn v8(v: &[usize]) -> Result<[u32; 8]> {
    let mut a = [0u32; 8];
    for (k, &x) in v.iter().enumerate() {
        a[k] = u32_of(x, "dimension")?;
    }
    Ok(a)
}

pub(super) fn contiguous_strides(d: &[usize]) -> Vec<usize> {
    let mut s = vec![1; d.len()];
    for k in (0..d.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * d[k + 1];
    }
    s
}

/// Strides of `shape` (right-aligned) when read as `out` (0 on broadcast dims).
pub(super) fn bcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = contiguous_strides(shape);
    let pad = out.len() - shape.len();
    (0..out.len())
        .map(|k| {
            if k < pad || shape[k - pad] == 1 {
                0
            } else {
                st[k - pad]
            }
        })
        .collect()
}

pub(super) fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m).max(1) * m
}

pub(super) struct In<'a> {
    pub(super) t: &'a DeviceTensor,
    pub(super) c: &'a ClTensor,
}

impl OpenclDevice {
    pub(super) fn launch(
        &self,
        name: &'static str,
        args: &[Arg],
        global: &[usize],
        local: Option<&[usize]>,
        waits: &[&Option<Arc<Event>>],
    ) -> Result<Event> {
        let prog = self.program_for(name)?;
        let k = Kernel::create(&prog, name)
            .map_err(|e| other(self.info.id, format!("kernel {name}: {e}")))?;
        let mut ek = ExecuteKernel::new(&k);
        // SAFETY: argument types match the kernel signatures in kernels.cl.
        unsafe {
            for a in args {
                match a {
                    Arg::Buf(b) => ek.set_arg(*b),
                    Arg::U32(v) => ek.set_arg(v),
                    Arg::F32(v) => ek.set_arg(v),
                    Arg::I32(v) => ek.set_arg(v),
                    Arg::V8(v) => ek.set_arg(v),
                    Arg::I8(v) => ek.set_arg(v),
                };
            }
        }
        ek.set_global_work_sizes(global);
        if let Some(l) = local {
            ek.set_local_work_sizes(l);
        }
        let wl = wait_list(waits);
        ek.set_event_wait_list(&wl);
        // SAFETY: buffers are sized by the callers for these work sizes.
        let ev = unsafe { ek.enqueue_nd_range(&self.compute) }
            .map_err(|e| other(self.info.id, format!("enqueue {name}: {e}")))?;
        self.record(name, &ev);
        Ok(ev)
    }

    pub(super) fn out_buf(&self, elems: usize) -> Result<PooledBuffer> {
        self.pool.get(elems * 4).map_err(|e| other(self.info.id, e))
    }

    pub(super) fn finish_out(
        &self,
        shape: Vec<usize>,
        buf: PooledBuffer,
        ev: Event,
    ) -> DeviceTensor {
        self.finish_out_as(DType::F32, shape, buf, ev)
    }

    /// An output of `dtype` written by the command `ev`.
    pub(super) fn finish_out_as(
        &self,
        dtype: DType,
        shape: Vec<usize>,
        buf: PooledBuffer,
        ev: Event,
    ) -> DeviceTensor {
        self.finish_span(dtype, shape, buf, None, ev)
    }

    /// An output written by the kernels from `first` (None: `last` alone)
    /// to `last` on the in-order compute queue.
    pub(super) fn finish_span(
        &self,
        dtype: DType,
        shape: Vec<usize>,
        buf: PooledBuffer,
        first: Option<Arc<Event>>,
        ev: Event,
    ) -> DeviceTensor {
        self.wrap(
            dtype,
            shape,
            ClTensor {
                buf: Arc::new(buf),
                ready: Some(Arc::new(ev)),
                upload_src: None,
                host: None,
                kernel: true,
                first,
                report: Arc::default(),
            },
        )
    }

    /// A small read-only u32 buffer with its data copied in at creation.
    pub(super) fn const_u32(&self, v: &[u32]) -> Result<Buffer<u8>> {
        let mut bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        if bytes.is_empty() {
            bytes.resize(4, 0);
        }
        // SAFETY: the host pointer is copied during the call.
        unsafe {
            Buffer::<u8>::create(
                &self.ctx,
                CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                bytes.len(),
                bytes.as_mut_ptr().cast(),
            )
        }
        .map_err(|e| other(self.info.id, format!("clCreateBuffer: {e}")))
    }
}
