//! The CPU backend.
//!
//! A [`CpuDevice`] owns a set of cores. A kernel [`Team`] runs the
//! multi-threaded kernels: the thread that runs the device's ops is
//! member 0 (the runtime's arbiter for the device, or the caller's own
//! thread for a plan on this device alone) and one worker per further
//! core joins the kernels' parallel loops (GEMM split by panels, conv by
//! output blocks or Winograd positions, element-wise ops in contiguous
//! chunks).
//!
//! Binding: the executor thread and the workers are bound to the device's
//! PUs, all of them, not one PU each: binding keeps the devices of a
//! split machine apart, and within a device the OS places the threads.
//! Pinned one per PU, a worker shared its core with an unbound thread
//! whenever the scheduler had put that thread there first (the caller of
//! a plan run on its own thread, or a spinning caller): MLP batch 32 at 2
//! threads ran in 0.48 ms for the first few hundred runs of a process
//! instead of 0.28-0.30, and LeNet at 1 thread in 0.26 ms instead of 0.05
//! in about one process of three (2026-12-03). The machine
//! can be split into several logical CPU devices (see
//! [`topology::CpuTopology::partition`]), so a pipeline's stages run side by
//! side on one box without sharing cores.
//!
//! Kernels are the host kernels of `hetflow-ops` ([`hetflow_ops::kernels`]).
//! Ops too small to gain from threads run serially on the executor thread:
//! that keeps per-op dispatch cost in the microseconds for chains of tiny
//! ops, and keeps a small model from running slower at 2 threads than at
//! one. "Too small" is measured work ([`hetflow_ops::kernels::parallel_work`])
//! under [`PAR_MACS`] multiply-adds, [`PAR_ELEMS_CHEAP`] elements for ops of
//! a few cycles per element, or [`PAR_ELEMS`] elements for the rest. A loop
//! costs ~1 µs to start on workers still spinning from the previous op
//! (see [`hetflow_ops::kernels::team`]) but 10–20 µs on sleeping ones, and
//! splitting moves the operands' cache lines between cores, so the
//! thresholds stay well above the hand-off. Ops whose kernels never split
//! their work ([`hetflow_ops::kernels::uses_threads`]: Concat, Reshape, ...)
//! always run serially. `HETFLOW_NO_BIND` (any value) leaves the executor
//! and the workers unbound (for hosts where another process manages CPU
//! affinity).

pub mod topology;

use crate::{Device, DeviceError, DeviceId, DeviceInfo, DeviceTensor, Result};
use hetflow_ops::kernels::team::Team;
use hetflow_ops::{Op, Tensor};
use std::sync::Arc;
use topology::CpuTopology;

/// Products and convolutions with fewer multiply-adds than this run
/// serially (about 40 µs of work at the 1-thread rate of these small
/// products).
pub const PAR_MACS: usize = 1 << 21;

/// Other ops whose inputs total fewer elements than this run inline.
pub const PAR_ELEMS: usize = 1 << 16;

/// Ops of a few cycles per element ([`hetflow_ops::kernels::cheap_per_element`]:
/// Add, Mul, Relu, BatchNormalization, ...) run inline below this many
/// input elements. DenseNet-121 at 2 threads spent 2.5x longer in its 121
/// Adds than at 1 thread (4.0 → 10.0 ms a run; 33 µs each alone) when each
/// was handed to the pool at the general threshold; inline, 5.5 ms, and
/// its Relus 4.9 → 2.8 ms (2026-12-03; what remains over 1 thread is the
/// operands' cache lines moving between the cores that wrote them).
pub const PAR_ELEMS_CHEAP: usize = 1 << 20;

/// Whether threads are bound to their cores: yes unless `HETFLOW_NO_BIND`
/// is set (to any value).
fn binding_enabled() -> bool {
    std::env::var_os("HETFLOW_NO_BIND").is_none()
}

/// A logical CPU device: a group of cores with its own kernel team.
pub struct CpuDevice {
    info: DeviceInfo,
    team: Team,
    pus: Vec<usize>,
}

impl CpuDevice {
    /// A device on the given cores (logical core indices of `topo`), with
    /// `threads` kernel threads (default: one per core; at most one per
    /// hardware thread of those cores).
    pub fn new(
        index: usize,
        topo: &CpuTopology,
        cores: &[usize],
        threads: Option<usize>,
    ) -> Result<CpuDevice> {
        if cores.is_empty() {
            return Err(DeviceError::Other(format!("cpu:{index} has no cores")));
        }
        let pus = topo.pus_of(cores, true);
        // More threads than the device's hardware threads only oversubscribe
        // its cores (and `--threads 4294967296` would spawn for minutes).
        let threads = threads
            .unwrap_or(cores.len())
            .clamp(1, cores.len().max(pus.len()));
        let bind = if binding_enabled() {
            pus.clone()
        } else {
            Vec::new()
        };
        // Member 0 of the team is the thread that calls `execute` (the
        // executor, bound to the first PU); workers 1.. take the next PUs.
        let team = Team::new(
            threads,
            move |i| format!("hetflow-cpu{index}-w{i}"),
            move |i| {
                if !bind.is_empty() {
                    if let Err(e) = topology::bind_current_thread(&bind) {
                        tracing::debug!("cpu:{index} worker {i} not bound to PUs {bind:?}: {e}");
                    }
                }
            },
        )
        .map_err(|e| {
            DeviceError::Other(format!("cpu:{index}: cannot start kernel threads: {e}"))
        })?;
        let numa = cores
            .first()
            .and_then(|&c| topo.cores.get(c))
            .and_then(|c| c.numa_node);
        let memory = match topo.numa_nodes.len() {
            0 | 1 => topo.total_memory_bytes,
            n => topo.total_memory_bytes / n as u64,
        };
        let info = DeviceInfo {
            id: DeviceId::cpu(index),
            name: format!(
                "{} ({} cores, {} threads)",
                topo.cpu_model,
                cores.len(),
                threads
            ),
            memory_bytes: memory,
            compute_units: threads,
            peak_gflops_f32: 0.0,
            numa_node: numa,
            host_pus: pus.clone(),
            locality: format!("cores {:?}", cores),
            copy_engine: true,
        };
        Ok(CpuDevice { info, team, pus })
    }

    /// Number of kernel threads.
    pub fn threads(&self) -> usize {
        self.team.threads()
    }

    fn host<'a>(&self, t: &'a DeviceTensor) -> Result<&'a Tensor> {
        t.on(self.info.id)?.payload::<Tensor>().ok_or_else(|| {
            DeviceError::Other(format!(
                "{}: tensor payload is not a host tensor",
                self.info.id
            ))
        })
    }

    fn wrap(&self, t: Tensor) -> DeviceTensor {
        DeviceTensor::new(self.info.id, t.dtype(), t.shape().to_vec(), Arc::new(t))
    }
}

impl Device for CpuDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn supports(&self, _op: &Op) -> std::result::Result<(), String> {
        Ok(())
    }

    fn upload(&self, t: Arc<Tensor>) -> Result<DeviceTensor> {
        // Host memory is shared: the handle is the tensor itself, no copy.
        let (dtype, shape) = (t.dtype(), t.shape().to_vec());
        Ok(DeviceTensor::new(self.info.id, dtype, shape, t))
    }

    fn download(&self, t: &DeviceTensor) -> Result<Arc<Tensor>> {
        self.host(t)?;
        // The payload is an `Arc<Tensor>` shared with the producer.
        let any = t.payload.clone();
        any.downcast::<Tensor>().map_err(|_| {
            DeviceError::Other(format!(
                "{}: tensor payload is not a host tensor",
                self.info.id
            ))
        })
    }

    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        outputs: &[crate::OutputSpec],
    ) -> Result<Vec<DeviceTensor>> {
        let n_outputs = outputs.len();
        let mut host: Vec<Option<&Tensor>> = Vec::with_capacity(inputs.len());
        for t in inputs {
            match t {
                Some(t) => host.push(Some(self.host(t)?)),
                None => host.push(None),
            }
        }
        let run = || hetflow_ops::kernels::eval(op, &host, n_outputs);
        let heavy = matches!(op, Op::MatMul | Op::Gemm { .. } | Op::Conv(_));
        let work = hetflow_ops::kernels::parallel_work(op, &host);
        // Kernels see the threads of the team they run in and run serially
        // outside one, so a one-thread device runs everything inline.
        let outs = if self.threads() > 1
            && work
                >= if heavy {
                    PAR_MACS
                } else if hetflow_ops::kernels::cheap_per_element(op) {
                    PAR_ELEMS_CHEAP
                } else {
                    PAR_ELEMS
                }
            && hetflow_ops::kernels::uses_threads(op)
        {
            self.team.run(run)
        } else {
            run()
        };
        let outs = outs.map_err(|e| DeviceError::Kernel {
            device: self.info.id,
            op: op.name().to_string(),
            msg: e.to_string(),
        })?;
        Ok(outs.into_iter().map(|t| self.wrap(t)).collect())
    }

    fn relabel(
        &self,
        t: DeviceTensor,
        shape: Vec<usize>,
    ) -> std::result::Result<DeviceTensor, DeviceTensor> {
        if t.device != self.info.id
            || shape.iter().product::<usize>() != t.shape.iter().product::<usize>()
        {
            return Err(t);
        }
        let (device, dtype, old) = (t.device, t.dtype, t.shape.clone());
        let host = t.into_payload::<Tensor>()?;
        match Arc::try_unwrap(host) {
            Ok(mut host) => match host.set_shape(shape) {
                Ok(()) => Ok(self.wrap(host)),
                Err(_) => Err(DeviceTensor::new(device, dtype, old, Arc::new(host))),
            },
            Err(shared) => Err(DeviceTensor::new(device, dtype, old, shared)),
        }
    }

    fn prepare_weight(
        &self,
        op: &Op,
        slot: usize,
        t: &DeviceTensor,
        lhs_shape: Option<&[usize]>,
    ) -> Result<()> {
        let w = self.host(t)?;
        hetflow_ops::kernels::prepare(op, slot, w, lhs_shape).map_err(|e| DeviceError::Kernel {
            device: self.info.id,
            op: op.name().to_string(),
            msg: format!("preparing weight {slot}: {e}"),
        })?;
        Ok(())
    }

    /// Binds an executor thread to the device's PUs, as the team's
    /// workers are (module docs).
    fn init_executor_thread(&self) {
        if !binding_enabled() || self.pus.is_empty() {
            return;
        }
        if let Err(e) = topology::bind_current_thread(&self.pus) {
            tracing::debug!(
                "{} executor not bound to PUs {:?}: {e}",
                self.info.id,
                self.pus
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PUs a fresh thread is bound to once it has become `d`'s
    /// executor.
    fn executor_pus(d: &CpuDevice) -> Vec<usize> {
        std::thread::scope(|s| {
            s.spawn(|| {
                d.init_executor_thread();
                topology::current_thread_pus().expect("binding")
            })
            .join()
            .expect("thread")
        })
    }

    /// The executor thread and the team's workers are bound to the
    /// device's PUs, all of them, whatever the thread count.
    #[test]
    fn threads_are_bound_to_the_device_pus() {
        let topo = CpuTopology::discover();
        let all: Vec<usize> = (0..topo.cores.len()).collect();
        let pus = topo.pus_of(&all, true);
        if pus.len() < 2 || !binding_enabled() || topology::current_thread_pus().is_err() {
            eprintln!("SKIP thread binding: fewer than 2 PUs, or binding unavailable here");
            return;
        }
        let mut want = pus.clone();
        want.sort_unstable();
        for threads in [1, pus.len()] {
            let d = CpuDevice::new(0, &topo, &all, Some(threads)).expect("device");
            assert_eq!(executor_pus(&d), want, "executor, {threads} thread(s)");
        }
        // A device on the first core alone binds its threads there.
        let d = CpuDevice::new(0, &topo, &[0], Some(1)).expect("device");
        let mut one = topo.pus_of(&[0], true);
        one.sort_unstable();
        assert_eq!(executor_pus(&d), one, "a one-core device");
    }
}

#[cfg(test)]
mod relabel_tests {
    use super::*;

    /// A handle no one else holds is relabelled in place (same buffer);
    /// a shared one, or a wrong element count, comes back untouched.
    #[test]
    fn relabel_takes_a_lone_handle_only() {
        let topo = CpuTopology::discover();
        let d = CpuDevice::new(0, &topo, &[0], Some(1)).expect("device");
        let t = Arc::new(Tensor::from_vec(vec![6], (0..6).map(|i| i as f32).collect()).unwrap());
        let ptr = t.as_slice::<f32>().unwrap().as_ptr();
        let lone = d.upload(t).unwrap();
        let r = d.relabel(lone, vec![2, 3]).expect("relabelled");
        assert_eq!(r.shape, [2, 3]);
        let host = d.download(&r).unwrap();
        assert_eq!(host.shape(), [2, 3]);
        assert_eq!(host.as_slice::<f32>().unwrap().as_ptr(), ptr, "copied");
        drop(host);
        let kept = d.download(&r).unwrap(); // a second holder
        let back = d
            .relabel(r, vec![3, 2])
            .expect_err("shared handle relabelled");
        assert_eq!(back.shape, [2, 3]);
        assert_eq!(kept.shape(), [2, 3]);
        let wrong = d
            .relabel(back, vec![4])
            .expect_err("wrong count relabelled");
        assert_eq!(
            d.download(&wrong).unwrap().to_f32_vec(),
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
    }
}
