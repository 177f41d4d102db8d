//! The cost and memory model: how long an op takes on a device, how long a
//! transfer takes on a link, and how much memory a placement needs.
//!
//! **Ops** (roofline): `t = launch + max(flops / peak, bytes / mem_bw) / eff`
//! where `peak` is the device's rate for the op's dtype, `mem_bw` its
//! memory bandwidth and `eff` the fitted efficiency of the op's class
//! ([`OpClass`]). Flops and bytes come from the op itself
//! ([`hetflow_ops::cost::op_cost`]); nothing here guesses them.
//!
//! **Links**: `t = latency + bytes / bandwidth`; zero on one device.
//!
//! **Memory** of a device under a placement: the constants its nodes read
//! (each uploaded once per device) plus, for every value its nodes produce
//! or receive, `credits` buffers of that value's size (the runtime keeps
//! that many in flight per edge). This is an upper bound: the buffer pool
//! reuses memory between values whose lifetimes do not overlap.
//!
//! **History**: when the device's spec has a measured time for the node's
//! [`footprint`] (op type, attributes, input shapes and dtypes), that time
//! replaces the roofline (StarPU's history-based model); `hetflow profile
//! --model M` records every kernel of `M`. Footprints do not depend on
//! node names, so identical layers of other models hit the same entry.
//!
//! Shapes: symbolic dimensions are bound to one number (`batch`, 1 unless
//! said otherwise) so that every op has concrete costs.

use crate::cluster::ClusterSpec;
use hetflow_ops::cost::{op_class, op_cost, Cost, OpClass};
use hetflow_ops::infer::concrete_facts;
use hetflow_ops::{DType, Dim, Fact, Graph};
use std::collections::BTreeSet;

/// What the cost model needs to know about one node.
#[derive(Clone, Debug)]
pub struct NodeCost {
    /// Flops and bytes.
    pub cost: Cost,
    /// Class for the efficiency lookup.
    pub class: OpClass,
    /// The dtype its arithmetic runs in.
    pub dtype: Option<DType>,
    /// ONNX op type.
    pub op_type: &'static str,
    /// History key ([`footprint`]).
    pub footprint: String,
}

/// A node's key in a device's measured history: its op type and a 64-bit
/// FNV-1a hash of its attributes (the op's `Debug` form) and its inputs'
/// concrete shapes and dtypes, e.g. `Conv:9c1f0b2e4d6a8f10`. Stable across
/// processes and machines (no random hash seed).
pub fn footprint(op: &hetflow_ops::Op, inputs: &[Option<&Fact>]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(format!("{op:?}").as_bytes());
    for f in inputs {
        match f {
            Some(f) => eat(format!("|{:?}{:?}", f.dtype, f.concrete_shape()).as_bytes()),
            None => eat(b"|-"),
        }
    }
    format!("{}:{h:016x}", op.name())
}

/// Costs of every node and the size of every value, at concrete shapes.
#[derive(Clone, Debug)]
pub struct GraphCosts {
    /// Per node, in graph order.
    pub nodes: Vec<NodeCost>,
    /// Bytes of each value (0 when its shape stayed unknown).
    pub value_bytes: Vec<f64>,
    /// The binding used for symbolic dimensions.
    pub batch: usize,
}

impl GraphCosts {
    /// Evaluates shapes with every symbolic dimension bound to `batch`.
    pub fn new(g: &Graph, batch: usize) -> GraphCosts {
        let inputs: Vec<Fact> = g
            .inputs
            .iter()
            .map(|i| {
                let f = &g.value(*i).fact;
                Fact {
                    dtype: f.dtype,
                    shape: f.shape.as_ref().map(|s| {
                        s.iter()
                            .map(|d| Dim::Known(d.known().unwrap_or(batch)))
                            .collect()
                    }),
                    value: None,
                }
            })
            .collect();
        let facts = concrete_facts(g, &inputs)
            .unwrap_or_else(|_| g.values.iter().map(|v| v.fact.clone()).collect());
        let value_bytes = facts
            .iter()
            .map(|f| {
                f.concrete_shape()
                    // In f64: a declared shape can multiply past usize.
                    .map(|s| {
                        s.iter().map(|&d| d as f64).product::<f64>()
                            * f.dtype.map(|d| d.size()).unwrap_or(4) as f64
                    })
                    .unwrap_or(0.0)
            })
            .collect();
        let nodes = g
            .nodes
            .iter()
            .map(|n| {
                let ins: Vec<Option<&Fact>> =
                    n.inputs.iter().map(|i| i.map(|i| &facts[i.0])).collect();
                let outs: Vec<&Fact> = n.outputs.iter().map(|o| &facts[o.0]).collect();
                let dtype = ins
                    .iter()
                    .flatten()
                    .find_map(|f| f.dtype)
                    .or_else(|| outs.first().and_then(|f| f.dtype));
                NodeCost {
                    cost: op_cost(&n.op, &ins, &outs),
                    class: op_class(&n.op),
                    dtype,
                    op_type: n.op.name(),
                    footprint: footprint(&n.op, &ins),
                }
            })
            .collect();
        GraphCosts {
            nodes,
            value_bytes,
            batch,
        }
    }
}

impl GraphCosts {
    /// Flops of each node, at least 1: every node costs at least its
    /// launch, and 1 flop keeps flop-balanced splits sane on graphs of pure
    /// data movement.
    pub fn flops(&self) -> Vec<f64> {
        self.nodes.iter().map(|n| n.cost.flops.max(1.0)).collect()
    }
}

/// The model over one cluster.
#[derive(Clone, Copy, Debug)]
pub struct CostModel<'a> {
    /// The hardware.
    pub cluster: &'a ClusterSpec,
}

impl<'a> CostModel<'a> {
    /// A model of `cluster`.
    pub fn new(cluster: &'a ClusterSpec) -> Self {
        CostModel { cluster }
    }

    /// Seconds for one execution of a node on device `dev`; infinite when
    /// the device cannot run the op.
    pub fn op_time(&self, dev: usize, n: &NodeCost) -> f64 {
        let d = &self.cluster.devices[dev];
        if !d.runs(n.op_type) {
            return f64::INFINITY;
        }
        match d.history.get(&n.footprint) {
            Some(us) => us * 1e-6,
            None => self.time_of(dev, n.class, n.dtype, &n.cost),
        }
    }

    /// Seconds for an op of class `class` with cost `cost` on `dev`.
    pub fn time_of(&self, dev: usize, class: OpClass, dtype: Option<DType>, cost: &Cost) -> f64 {
        let d = &self.cluster.devices[dev];
        let compute = cost.flops / d.peak_flops(dtype);
        let memory = cost.bytes() / (d.mem_bw_gbps * 1e9);
        d.launch_us * 1e-6 + compute.max(memory) / d.efficiency(class)
    }

    /// Seconds to move `bytes` from device `a` to device `b`.
    pub fn transfer_time(&self, a: usize, b: usize, bytes: f64) -> f64 {
        if a == b {
            return 0.0;
        }
        match self.cluster.link(a, b) {
            Some(l) => l.latency_us * 1e-6 + bytes / (l.bandwidth_gbps * 1e9),
            // validate() guarantees links; an unvalidated spec costs nothing
            // sensible, so make the pair unattractive rather than free.
            None => f64::INFINITY,
        }
    }

    /// Predicted memory (bytes) of each device under `placement`, with
    /// `credits` buffers per edge (see the module docs).
    pub fn memory(
        &self,
        g: &Graph,
        costs: &GraphCosts,
        placement: &[usize],
        credits: usize,
    ) -> Vec<f64> {
        placement_memory(g, costs, placement, self.cluster.devices.len(), credits)
    }
}

/// Predicted memory (bytes) of each of `n_devices` devices under
/// `placement` (node index to device index), with `credits` buffers per
/// edge (see the module docs): what the planners price, and what a session
/// checks against each device's budget at build time.
pub fn placement_memory(
    g: &Graph,
    costs: &GraphCosts,
    placement: &[usize],
    n_devices: usize,
    credits: usize,
) -> Vec<f64> {
    let mut mem = vec![0.0; n_devices];
    let mut consts = BTreeSet::new();
    let mut received = BTreeSet::new();
    let producers = g.producers();
    for (ni, n) in g.nodes.iter().enumerate() {
        let d = placement[ni];
        for v in n.inputs.iter().flatten() {
            if g.constants.contains_key(v) {
                if consts.insert((v.0, d)) {
                    mem[d] += costs.value_bytes[v.0];
                }
            } else {
                let from = producers[v.0].map(|p| placement[p.0]);
                if from != Some(d) && received.insert((v.0, d)) {
                    mem[d] += costs.value_bytes[v.0] * credits as f64;
                }
            }
        }
        for o in &n.outputs {
            mem[d] += costs.value_bytes[o.0] * credits as f64;
        }
    }
    mem
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterSpec;

    /// Found by `scripts/fuzz.sh` (target `onnx_load`): value sizes were
    /// multiplied in usize, and a declared `[2^40, 2^40]` input overflowed.
    #[test]
    fn value_bytes_of_huge_shapes_do_not_overflow() {
        let mut g = Graph::default();
        let big = Dim::Known(1 << 40);
        let x = g.add_input("x", DType::F32, vec![big.clone(), big]);
        g.add_output(x);
        let c = GraphCosts::new(&g.finish().unwrap(), 1);
        assert_eq!(c.value_bytes[x.0], 4.0 * 2f64.powi(80));
    }

    fn cluster() -> ClusterSpec {
        ClusterSpec::from_toml(
            r#"
[[device]]
name = "cpu:0"
kind = "cpu"
peak_gflops = { f32 = 100.0 }
memory_gib = 1.0
mem_bw_gbps = 10.0
launch_us = 2.0
efficiency = { gemm = 0.5 }
[[device]]
name = "cpu:1"
kind = "cpu"
peak_gflops = { f32 = 50.0 }
memory_gib = 1.0
mem_bw_gbps = 10.0
unsupported = ["MatMul"]
[defaults]
intra_host = { bandwidth_gbps = 4.0, latency_us = 10.0 }
"#,
        )
        .unwrap()
    }

    #[test]
    fn roofline_and_links() {
        let c = cluster();
        let m = CostModel::new(&c);
        // 1 GFLOP of GEMM with few bytes: compute-bound, at half of 100 GF/s.
        let cost = Cost {
            flops: 1e9,
            bytes_read: 1e3,
            bytes_written: 1e3,
        };
        let t = m.time_of(0, OpClass::Gemm, Some(DType::F32), &cost);
        assert!((t - (2e-6 + 0.02)).abs() < 1e-12, "{t}");
        // Memory-bound element-wise: 1 GB at 10 GB/s.
        let cost = Cost {
            flops: 1e6,
            bytes_read: 5e8,
            bytes_written: 5e8,
        };
        let t = m.time_of(1, OpClass::Elementwise, Some(DType::F32), &cost);
        assert!((t - 0.1).abs() < 1e-12, "{t}");
        let t = m.transfer_time(0, 1, 4e9);
        assert!((t - (1.0 + 1e-5)).abs() < 1e-12, "{t}");
        assert_eq!(m.transfer_time(1, 1, 4e9), 0.0);
        let nc = NodeCost {
            cost,
            class: OpClass::Gemm,
            dtype: None,
            op_type: "MatMul",
            footprint: "MatMul:0".into(),
        };
        assert!(m.op_time(1, &nc).is_infinite());
        assert!(m.op_time(0, &nc).is_finite());
    }
}
