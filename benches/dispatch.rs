//! Per-op dispatch overhead: a chain of 10,000 tiny ops (Neg on a
//! one-element tensor) run through a Session on one CPU device. The time per
//! run divided by 10,000 is the cost of one op: on the caller's thread (the
//! default for a one-CPU plan: shape lookup, kernel call, buffer release)
//! and through the actors (`actors`: message, ready queue, credit, kernel
//! call), which plans over several devices take. Target ≤ 5 µs per op.
//!
//! `cargo bench --bench dispatch`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hetflow::ops::op::UnaryOp;
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::{Model, SessionBuilder, Tensor};
use std::sync::Arc;

const CHAIN: usize = 10_000;

fn chain() -> Model {
    let mut g = Graph::default();
    let mut x = g.add_input("x", DType::F32, vec![Dim::Known(1)]);
    for i in 0..CHAIN {
        x = g.add_node(&format!("neg{i}"), Op::Unary(UnaryOp::Neg), &[x], 1)[0];
    }
    g.add_output(x);
    Model::from_graph(g.finish().expect("chain"))
}

fn bench(c: &mut Criterion) {
    let m = chain();
    let x = vec![Arc::new(Tensor::from_vec(vec![1], vec![1.5f32]).unwrap())];
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(CHAIN as u64));
    g.sample_size(20);
    for (name, actors) in [("chain_10000_neg", false), ("chain_10000_neg_actors", true)] {
        let mut s = SessionBuilder::new(&m)
            .devices("cpu")
            .threads(1)
            .actors(actors)
            .build()
            .expect("session");
        let out = s.run(x.clone()).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[1.5]); // even number of negations
        g.bench_function(name, |b| b.iter(|| s.run(x.clone()).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
