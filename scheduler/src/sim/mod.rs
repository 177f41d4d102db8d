//! The scheduling simulator: a discrete-event twin of the runtime that
//! executes a [`Workload`] (made from a [`crate::Plan`] and a graph, from a
//! plan alone, or from a research DAG and a list schedule) and reports
//! makespan, throughput, per-device busy and bubble fractions, peak memory
//! per device and the critical path ([`SimReport`]).
//!
//! Transformer training at cluster scale (tensor, pipeline and data
//! parallelism on thousands of GPUs described by a node spec and a node
//! count) is a separate, layer-level model in [`gpt`]: expanding such a
//! run into kernels for this engine would mean millions of tasks.
//!
//! ## What is modelled (and how it mirrors the runtime)
//! - **Compute queues**: one in-order queue per device. A kernel joins its
//!   device's queue when its inputs are there (and, streaming, when its
//!   credits allow), and the queue runs the oldest micro-batch's earliest
//!   node first, as the runtime's per-device ready queue does; a finished
//!   kernel's successors join their queues before the device picks its
//!   next task, so, like the runtime, a device finishes one micro-batch's
//!   ready work before it starts the next one's (fixed
//!   orders — list schedules, training schedules — are dependencies, so
//!   they hold whatever the queue picks). A kernel's
//!   time comes from the cost model ([`crate::cost::CostModel::op_time`]),
//!   which includes the device's launch overhead (`launch_us`).
//! - **Copy engines per direction**: a value that crosses devices is one
//!   copy task on the *destination's* inbound copy queue (the runtime's copy
//!   arbiter), so inbound copies to one device are serialised, copies in
//!   other directions proceed in parallel and all overlap compute. A
//!   device without a copy engine (`copy_engine = false` in the cluster
//!   spec; `hetflow profile` writes it for OpenCL CPU devices such as
//!   PoCL, whose kernel threads also execute transfers) runs the copies
//!   to and from it on its compute queue instead, and that queue takes
//!   kernels and copies first come first served, as the driver does with
//!   what was submitted: a read of micro-batch `k`'s output waits behind
//!   micro-batch `k + 1`'s kernels already queued.
//! - **Links**: a copy costs the link's latency plus bytes over bandwidth.
//!   On a link marked `shared` (a bus, a NIC) the bandwidth is split
//!   equally between the transfers in flight on it at each instant
//!   (processor sharing, recomputed whenever one joins or leaves). Shared
//!   link identity: an explicit `[[link]]` is one link for both
//!   directions; a shared `intra_host` default is one link per host, a
//!   shared `inter_host` default one per pair of hosts.
//! - **Credits** (streaming): micro-batch `k` of a producer fires only once
//!   every reader of its outputs has consumed micro-batch `k - credits`,
//!   and every task handles micro-batches in order (the runtime's rules).
//! - **Training schedules** (GPipe, 1F1B): each node gets a backward task
//!   costing what [`Workload::backward`] gives it (`hetflow simulate
//!   --train` costs the node's share of the real backward graph that the
//!   trainer runs, `hetflow::train::pipeline::simulated`), else **2× its
//!   forward time**; gradients flow back along the same edges
//!   (copies of the same size in the other direction), and each stage runs
//!   its forward and backward micro-batches in the schedule's fixed order
//!   (GPipe: all forwards, then all backwards; 1F1B: `p - s - 1` warm-up
//!   forwards on stage `s`, then alternating, then the remaining
//!   backwards). With uniform stages and free links this gives the
//!   textbook bubble fraction `(p - 1) / (m + p - 1)`.
//! - **Memory**: each device holds its constants for the whole run, plus a
//!   buffer for every value a task produces or receives, allocated when the
//!   task starts and freed when the last task reading it has finished
//!   (streaming: its forward readers and outbound copies; training: the
//!   backward tasks of its readers, as activations are stashed). Gradient
//!   buffers are not counted.
//! - **Replicas** ([`crate::Plan::replicas`]): micro-batch `i` runs on copy
//!   `i mod K`; each copy's tasks take that copy's micro-batches in order
//!   and its credits count them, kernels take their time on the copy's
//!   device, and a device several copies share (a stage not replicated)
//!   serves all of them from one queue, oldest micro-batch first — the
//!   runtime's rules for copies.
//! - **Contention**: a kernel progresses at `1 / contention` of its speed
//!   while another device of its host is computing, at full speed
//!   otherwise; rates are revised whenever a kernel starts or ends on the
//!   host (the factor is measured by `hetflow profile`: the same work alone
//!   and with every device of the host busy; shared cores, caches and
//!   memory bandwidth). Factors of 1 (hand-written specs, research DAGs)
//!   leave the engine's exact path untouched.
//! - **Kernel times**: the cost model's, so a device's measured history
//!   (`hetflow profile --model`, how long each kernel held the device)
//!   where the node's footprint has one, the fitted roofline otherwise.
//! - **Research DAGs**: each device runs its tasks in the order of the
//!   given list schedule, and an edge between devices is a pure delay
//!   (`comm`, the contention-free model of Topcuoglu et al.), so a HEFT
//!   schedule is reproduced exactly.
//!
//! - **Runtime overheads** (optional, 0 by default): `task_overhead` is
//!   added to every kernel and copy (actor dispatch, the message hop
//!   between executor threads), `run_overhead` delays the first task
//!   (feeding inputs, waking executors). `hetflow simulate
//!   --task-overhead-us --run-overhead-us` sets them;
//!   scripts/validate_simulator.py fits them on a calibration model that
//!   is not among the validated plans.
//!
//! Not modelled: host input upload and output download (free), kernel
//! time variance, and the runtime's message-passing overhead beyond what
//! the history's device occupancy and the link latency contain. Those are what
//! the accuracy table (docs/simulator-accuracy.md) measures.
//!
//! Cost: O((V + E) log V) in the expanded task graph (tasks × micro-batches);
//! see `cargo bench --bench scheduler` for 10,000 ops on 1,024 devices.

mod engine;
pub mod gpt;
mod render;
mod report;
#[cfg(test)]
mod tests;
mod workload;

pub use engine::simulate;
pub use render::{chrome_trace_json, svg_gantt};
pub use report::{DeviceStats, PathStep, SimEvent, SimReport};
pub use workload::{LinkInfo, Unit, Value, Workload};
