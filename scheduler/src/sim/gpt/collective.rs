//! α–β cost of collectives on the two-level network of a [`NodeSpec`].
//!
//! A communicator ([`Group`]) has `n` ranks, `per_node` of them on each
//! of its `n / per_node` nodes, and `concurrent` communicators of the same
//! shape run at once on every node (the 8 data-parallel groups of a
//! tensor-parallel-8 layout each own one GPU per node). Two bandwidths
//! bound a step:
//! - β_intra: one GPU's NVLink bandwidth per direction;
//! - β_inter: the node's NIC bandwidth (after oversubscription) shared by
//!   the `concurrent` communicators crossing it. A ring enters and leaves
//!   each node once per channel, and NCCL spreads its channels over the
//!   NICs, so one communicator may use all of the NICs it does not share.
//!
//! With β = min(β_intra, β_inter) when the group spans nodes (β_intra
//! otherwise) and α the latency of the slowest hop, the closed forms are
//! (S the bytes each rank holds):
//! - ring all-reduce: 2(n−1)·α + 2(n−1)/n · S/β;
//! - ring reduce-scatter and all-gather: (n−1)·α + (n−1)/n · S/β;
//! - tree all-reduce (double binary tree between nodes, a chain inside
//!   each node, pipelined): 2(⌈log₂ k⌉·α_inter + (g−1)·α_intra) + 2·S/β,
//!   with k nodes and g ranks per node;
//! - point-to-point: α + S/β over the link between the two ranks.
//!
//! All-reduce takes the faster of ring and tree, as NCCL's tuner does.

use super::node::NodeSpec;

/// The collective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coll {
    /// Sum, everybody gets the result.
    AllReduce,
    /// Sum, each rank gets `1/n` of it.
    ReduceScatter,
    /// Each rank's `1/n` to everybody.
    AllGather,
}

/// The algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    /// Ring.
    Ring,
    /// Double binary tree.
    Tree,
}

/// A communicator's placement (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// Ranks.
    pub n: usize,
    /// Ranks per node.
    pub per_node: usize,
    /// Communicators of this shape sharing each node's NICs.
    pub concurrent: usize,
}

impl Group {
    /// Nodes the group spans.
    pub fn nodes(&self) -> usize {
        self.n.div_ceil(self.per_node.max(1))
    }
}

/// (α seconds, β bytes/s) of the group's slowest hop.
pub fn alpha_beta(g: &Group, spec: &NodeSpec) -> (f64, f64) {
    if g.nodes() <= 1 {
        (spec.intra_lat(), spec.intra_bw())
    } else {
        let inter = spec.node_inter_bw() / g.concurrent.max(1) as f64;
        (spec.inter_lat(), spec.intra_bw().min(inter))
    }
}

/// Ring time of `c` on `bytes` per rank.
pub fn ring(c: Coll, bytes: f64, g: &Group, spec: &NodeSpec) -> f64 {
    if g.n <= 1 || bytes <= 0.0 {
        return 0.0;
    }
    let (a, b) = alpha_beta(g, spec);
    let n = g.n as f64;
    let steps = match c {
        Coll::AllReduce => 2.0 * (n - 1.0),
        Coll::ReduceScatter | Coll::AllGather => n - 1.0,
    };
    steps * a + steps / n * bytes / b
}

/// Double-binary-tree all-reduce time on `bytes` per rank.
pub fn tree_allreduce(bytes: f64, g: &Group, spec: &NodeSpec) -> f64 {
    if g.n <= 1 || bytes <= 0.0 {
        return 0.0;
    }
    let (_, b) = alpha_beta(g, spec);
    let k = g.nodes();
    let depth = (k as f64).log2().ceil();
    let chain = (g.per_node.min(g.n) as f64 - 1.0).max(0.0);
    2.0 * (depth * spec.inter_lat() + chain * spec.intra_lat()) + 2.0 * bytes / b
}

/// The time of `c` on `bytes` per rank and the algorithm chosen.
pub fn time(c: Coll, bytes: f64, g: &Group, spec: &NodeSpec) -> (f64, Algo) {
    let r = ring(c, bytes, g, spec);
    if c == Coll::AllReduce {
        let t = tree_allreduce(bytes, g, spec);
        if t < r {
            return (t, Algo::Tree);
        }
    }
    (r, Algo::Ring)
}

/// Point-to-point transfer of `bytes` between two ranks, on one node
/// (`same_node`) or across nodes with `concurrent` such transfers leaving
/// each node at once.
pub fn p2p(bytes: f64, same_node: bool, concurrent: usize, spec: &NodeSpec) -> f64 {
    if bytes <= 0.0 {
        return 0.0;
    }
    if same_node {
        spec.intra_lat() + bytes / spec.intra_bw()
    } else {
        let inter = spec.node_inter_bw() / concurrent.max(1) as f64;
        spec.inter_lat() + bytes / inter.min(spec.intra_bw())
    }
}
