//! Planning speed: HEFT (the planner's variant) on random task graphs of
//! 10,000 tasks over 64 devices (target: under 1 s), and the pipeline
//! partitioner on a 48-layer chain over 4 devices; the simulator on a
//! 10,000-op graph over 1,024 devices (target: under 1 s): a random DAG
//! under a round-robin list schedule, and a 10,000-op pipeline with
//! copies on shared links and 4 micro-batches.
//!
//! `cargo bench --bench scheduler`

use criterion::{criterion_group, criterion_main, Criterion};
use hetflow::scheduler::dag::RandomDag;
use hetflow::scheduler::heft::{greedy, heft_planner, round_robin};
use hetflow::scheduler::sim::{simulate, LinkInfo, Workload};

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

    let mut group = c.benchmark_group("sim");
    group.sample_size(10);
    let (n, p) = (10_000usize, 1_024usize);
    let g = RandomDag {
        n,
        p,
        shape: 1.0,
        out_degree: 4,
        ccr: 1.0,
        beta: 1.0,
        mean_cost: 20.0,
    }
    .generate(7);
    let s = round_robin(&g).expect("schedule");
    group.bench_function(format!("dag_{n}_ops_{p}_devices"), |b| {
        b.iter(|| simulate(&Workload::from_task_graph(&g, &s).expect("workload")).expect("sim"))
    });
    let w = pipeline(n, p);
    let r = simulate(&w).expect("sim");
    println!(
        "pipeline n={n} p={p}: makespan {:.3} ms, {} events",
        r.makespan,
        r.events.len()
    );
    group.bench_function(format!("pipeline_{n}_ops_{p}_devices_4mb"), |b| {
        b.iter(|| simulate(&w).expect("sim"))
    });
    group.finish();
}

/// A chain of `n` ops cut into `p` contiguous stages, one per device, with
/// a 64 KiB value between consecutive ops and shared links.
fn pipeline(n: usize, p: usize) -> Workload {
    let mut w = Workload::new((0..p).map(|i| format!("d{i}")).collect(), "ms", 1e3);
    for i in 0..n {
        let u = w.add_unit(
            &format!("op{i}"),
            "MatMul",
            i * p / n,
            0.01 + (i % 7) as f64 * 0.001,
        );
        if i > 0 {
            w.add_value(&format!("v{i}"), u - 1, vec![u], 65536.0, None);
        }
    }
    w.links = vec![
        LinkInfo {
            latency: 0.01,
            per_byte: 1e-7,
            shared: Some(0),
        };
        p * p
    ];
    w.microbatches = 4;
    w
}

criterion_group!(benches, bench);
criterion_main!(benches);
