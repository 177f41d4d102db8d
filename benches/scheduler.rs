//! Planning speed: HEFT (the planner's variant) on random task graphs of
//! 10,000 tasks over 64 devices (target: under 1 s), and the pipeline
//! partitioner on a 48-layer chain over 4 devices.
//!
//! `cargo bench --bench scheduler`

use criterion::{criterion_group, criterion_main, Criterion};
use hetflow::scheduler::dag::RandomDag;
use hetflow::scheduler::heft::{greedy, heft_planner};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("heft");
    group.sample_size(10);
    for &(n, p) in &[(1_000usize, 16usize), (10_000, 64)] {
        let g = RandomDag {
            n,
            p,
            shape: 1.0,
            out_degree: 4,
            ccr: 1.0,
            beta: 1.0,
            mean_cost: 20.0,
        }
        .generate(42);
        let h = heft_planner(&g).expect("plan").makespan;
        let b = greedy(&g).expect("plan").makespan;
        println!(
            "n={n} p={p}: heft makespan {h:.1}, greedy {b:.1} ({:.3}x)",
            h / b
        );
        group.bench_function(format!("{n}_tasks_{p}_devices"), |bch| {
            bch.iter(|| heft_planner(&g).expect("plan"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
