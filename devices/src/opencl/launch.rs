//! What every OpenCL launch shares: kernel arguments, the launch itself
//! (kernel creation, work sizes, wait lists, profiling record), output
//! buffers and their completion, small index helpers, and the shape of
//! the op table every launch file declares its ops in ([`Decl`]).

use super::device::{other, wait_list, ClTensor, OpenclDevice};
use super::pool::PooledBuffer;
use crate::{DeviceError, DeviceTensor, Result};
use hetflow_ops::{DType, Op};
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

/// Which inputs an op's kernels take; inputs they do not take send the op
/// through the host kernel (`host.rs`), never to an error.
#[derive(Clone, Copy)]
pub(super) enum Takes {
    /// Every input f32 (the float kernels).
    F32,
    /// Input 0 of any element size the copy kernels have (1, 2, 4, 8 bytes).
    Sized,
    /// A rule of the op's own, given the op and its inputs.
    Check(fn(&Op, &[Option<In>]) -> bool),
}

impl Takes {
    /// Whether these inputs are taken.
    pub(super) fn accepts(self, op: &Op, ins: &[Option<In>]) -> bool {
        let first = ins.first().and_then(Option::as_ref);
        match self {
            Takes::F32 => ins.iter().flatten().all(|x| x.t.dtype == DType::F32),
            Takes::Sized => first.is_some_and(|x| matches!(x.t.dtype.size(), 1 | 2 | 4 | 8)),
            Takes::Check(f) => f(op, ins),
        }
    }
}

/// A launch of one op: the device, the op, the kernels its declaration
/// names, its inputs (input 0 present) and how many outputs are asked.
pub(super) struct Call<'a> {
    pub(super) dev: &'a OpenclDevice,
    pub(super) op: &'a Op,
    pub(super) kernels: &'static [&'static str],
    pub(super) ins: &'a [Option<In<'a>>],
    pub(super) x: &'a In<'a>,
    pub(super) n_outputs: usize,
}

impl<'a> Call<'a> {
    /// Input `i`, or an error naming it.
    pub(super) fn need(&self, i: usize) -> Result<&'a In<'a>> {
        self.opt(i)
            .ok_or_else(|| DeviceError::Other(format!("input {i} is missing")))
    }

    /// Input `i` when given.
    pub(super) fn opt(&self, i: usize) -> Option<&'a In<'a>> {
        self.ins.get(i).and_then(Option::as_ref)
    }

    /// The first kernel of the declaration.
    pub(super) fn kernel(&self) -> &'static str {
        self.kernels.first().copied().unwrap_or("")
    }

    /// The error of a launch asked to run an op it does not declare.
    pub(super) fn mismatch(&self) -> DeviceError {
        DeviceError::Other(format!(
            "internal: the launch of {} was given another op",
            self.op.name()
        ))
    }
}

/// How an op runs.
#[derive(Clone, Copy)]
pub(super) enum Run {
    /// A launch of its own with one output.
    One(fn(&Call) -> Result<DeviceTensor>),
    /// A launch of its own with any number of outputs (Split).
    Many(fn(&Call) -> Result<Vec<DeviceTensor>>),
    /// No kernel: the output shares input 0's buffer under the shape the
    /// runtime resolved (Reshape, Flatten, ...).
    View,
    /// No kernel: computed on the host from metadata or a small host value
    /// (Shape, Size, ConstantOfShape).
    Host,
}

/// One op's line in the backend's op table: the kernels it needs (checked
/// at plan time, and against a binary's manifest), the inputs they take,
/// and how it runs. Each launch file declares its ops in a `table`
/// function; `dispatch.rs` asks them in turn.
#[derive(Clone, Copy)]
pub(super) struct Decl {
    pub(super) kernels: &'static [&'static str],
    pub(super) takes: Takes,
    pub(super) run: Run,
}

impl Decl {
    /// A launch of its own over f32 inputs.
    pub(super) const fn f32(
        kernels: &'static [&'static str],
        run: fn(&Call) -> Result<DeviceTensor>,
    ) -> Decl {
        Decl {
            kernels,
            takes: Takes::F32,
            run: Run::One(run),
        }
    }

    /// A launch of its own over the inputs `takes` accepts.
    pub(super) const fn one(
        kernels: &'static [&'static str],
        takes: Takes,
        run: fn(&Call) -> Result<DeviceTensor>,
    ) -> Decl {
        Decl {
            kernels,
            takes,
            run: Run::One(run),
        }
    }

    /// An op that runs no kernel.
    pub(super) const fn no_kernel(run: Run) -> Decl {
        Decl {
            kernels: &[],
            takes: Takes::Sized,
            run,
        }
    }
}
