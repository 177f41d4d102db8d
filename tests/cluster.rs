//! Multi-host sessions with ranks as threads of this process
//! (`hetflow::runtime::net::local_group`): the same actors, cross-host
//! edges and credits as an MPI job, without MPI. The MPI path itself is
//! tested in `tests/mpi.rs` (cargo feature `mpi`).

mod common;

use hetflow::ops::op::{BinaryOp, UnaryOp};
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::runtime::net::{local_group, Hub};
use hetflow::{Model, Plan, SessionBuilder, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Splits the graph's nodes (in topological order) into `ranks`
/// contiguous stages, one per rank, each on that rank's `cpu:0`.
fn pipeline_plan(g: &Graph, ranks: usize) -> Plan {
    let n = g.nodes.len();
    let placement = (0..n).map(|i| i * ranks / n).collect();
    let devices = (0..ranks).map(|r| format!("rank{r}/cpu:0")).collect();
    Plan::from_placement(g, devices, placement)
}

/// Runs `batches` through `model` planned over `hubs.len()` ranks (each a
/// thread); returns rank 0's outputs.
fn run_across(
    model: &Model,
    plan: &Plan,
    hubs: Vec<Arc<Hub>>,
    batches: Vec<Vec<Arc<Tensor>>>,
) -> Result<Vec<Vec<Arc<Tensor>>>, String> {
    let mut workers = Vec::new();
    let mut hubs = hubs.into_iter();
    let root = hubs.next().expect("rank 0");
    for hub in hubs {
        let model = Model::from_graph((**model.graph()).clone());
        let plan = plan.clone();
        workers.push(std::thread::spawn(move || -> Result<(), String> {
            let mut s = SessionBuilder::new(&model)
                .plan(plan)
                .threads(1)
                .hub(hub)
                .build()
                .map_err(|e| e.to_string())?;
            s.serve().map_err(|e| e.to_string())
        }));
    }
    let out = (|| {
        let mut s = SessionBuilder::new(model)
            .plan(plan.clone())
            .threads(1)
            .hub(root)
            .build()
            .map_err(|e| e.to_string())?;
        s.run_stream(batches).map_err(|e| e.to_string())
    })();
    for w in workers {
        let r = w.join().map_err(|_| "a rank panicked".to_string())?;
        if out.is_ok() {
            r?;
        }
    }
    out
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (x, y) = (a.to_f32_vec(), b.to_f32_vec());
    assert_eq!(a.shape(), b.shape());
    x.iter()
        .zip(&y)
        .map(|(p, q)| (p - q).abs() as f64)
        .fold(0.0, f64::max)
}

/// The fixtures split over 2 and 3 ranks equal the single-process run
/// (≤ 1e-6) and onnxruntime's reference, for 4 micro-batches at once.
#[test]
fn fixtures_across_ranks_equal_the_single_process_run() {
    for name in ["transformer_encoder", "resnet_block"] {
        let c = common::case(name);
        let model = Model::load(&c.model).unwrap();
        let inputs: Vec<Arc<Tensor>> = c
            .inputs
            .iter()
            .map(|(_, p)| Arc::new(common::read(p)))
            .collect();
        let single = {
            let plan = Plan::single_device(model.graph(), "cpu:0");
            let mut s = SessionBuilder::new(&model)
                .plan(plan)
                .threads(1)
                .build()
                .unwrap();
            s.run(inputs.clone()).unwrap()
        };
        common::check_outputs(&c, &single, name);
        for ranks in [2, 3] {
            let plan = pipeline_plan(model.graph(), ranks);
            assert!(
                !plan.transfers.is_empty(),
                "{name}: the plan must cut edges"
            );
            let outs = run_across(
                &model,
                &plan,
                local_group(ranks).unwrap(),
                vec![inputs.clone(); 4],
            )
            .unwrap_or_else(|e| panic!("{name} on {ranks} ranks: {e}"));
            assert_eq!(outs.len(), 4);
            for got in &outs {
                common::check_outputs(&c, got, &format!("{name} on {ranks} ranks"));
                for (a, b) in got.iter().zip(&single) {
                    let d = max_abs_diff(a, b);
                    assert!(d <= 1e-6, "{name} on {ranks} ranks: max |diff| {d:e}");
                }
            }
        }
    }
}

/// y = relu(x W0) W1 ... with `layers` square matmuls.
fn chain(layers: usize, width: usize) -> Model {
    let mut g = Graph::default();
    let mut x = g.add_input(
        "x",
        DType::F32,
        vec![Dim::Sym("b".into()), Dim::Known(width)],
    );
    for i in 0..layers {
        let w: Vec<f32> = (0..width * width)
            .map(|k| (((k * 7 + i * 3) % 13) as f32 - 6.0) / (6.0 * width as f32).sqrt())
            .collect();
        let w = g.add_const(
            &format!("w{i}"),
            Tensor::from_vec(vec![width, width], w).unwrap(),
        );
        let y = g.add_node(&format!("mm{i}"), Op::MatMul, &[x, w], 1)[0];
        x = g.add_node(&format!("relu{i}"), Op::Unary(UnaryOp::Relu), &[y], 1)[0];
    }
    g.add_output(x);
    Model::from_graph(g.finish().unwrap())
}

/// Credits bound what is in flight across hosts: with 1 credit per edge, a
/// 2-rank pipeline still completes many micro-batches in order (the
/// remote consumer's credits flow back), and outputs equal one process.
#[test]
fn credits_flow_back_across_ranks() {
    let model = chain(6, 32);
    let plan = pipeline_plan(model.graph(), 2).with_microbatches(1, 1);
    let batches: Vec<Vec<Arc<Tensor>>> = (0..40)
        .map(|m| {
            let v: Vec<f32> = (0..2 * 32)
                .map(|k| ((k + m) % 9) as f32 * 0.1 - 0.4)
                .collect();
            vec![Arc::new(Tensor::from_vec(vec![2, 32], v).unwrap())]
        })
        .collect();
    let outs = run_across(&model, &plan, local_group(2).unwrap(), batches.clone()).unwrap();
    let mut single = SessionBuilder::new(&model)
        .plan(Plan::single_device(model.graph(), "cpu:0"))
        .threads(1)
        .build()
        .unwrap();
    let want = single.run_stream(batches).unwrap();
    assert_eq!(outs.len(), 40);
    for (m, (a, b)) in outs.iter().zip(&want).enumerate() {
        assert!(max_abs_diff(&a[0], &b[0]) <= 1e-6, "micro-batch {m}");
    }
}

/// A kernel that fails on rank 1 ends rank 0's run with an error naming
/// the rank, the node and the op, quickly, and rank 1 reports it too.
#[test]
fn a_failure_on_another_rank_ends_the_run_with_its_name() {
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Known(4)]);
    let idx = g.add_input("idx", DType::I64, vec![Dim::Known(1)]);
    let y = g.add_node("double", Op::Binary(BinaryOp::Add), &[x, x], 1)[0];
    let z = g.add_node("pick", Op::Gather { axis: 0 }, &[y, idx], 1)[0];
    g.add_output(z);
    let model = Model::from_graph(g.finish().unwrap());
    let plan = Plan::from_placement(
        model.graph(),
        vec!["rank0/cpu:0".into(), "rank1/cpu:0".into()],
        vec![0, 1],
    );
    let x = Arc::new(Tensor::from_vec(vec![4], vec![1f32, 2.0, 3.0, 4.0]).unwrap());
    // In range: works.
    let ok = Arc::new(Tensor::from_vec(vec![1], vec![2i64]).unwrap());
    let outs = run_across(
        &model,
        &plan,
        local_group(2).unwrap(),
        vec![vec![x.clone(), ok]],
    )
    .unwrap();
    assert_eq!(outs[0][0].as_slice::<f32>().unwrap(), &[6.0]);
    // Out of range on rank 1.
    let bad = Arc::new(Tensor::from_vec(vec![1], vec![100i64]).unwrap());
    let start = Instant::now();
    let err = run_across(&model, &plan, local_group(2).unwrap(), vec![vec![x, bad]]).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(err.contains("rank 1") && err.contains("pick"), "{err}");
}

/// A plan that names another host is refused outside a multi-host job,
/// and a device of a rank the job lacks is named.
#[test]
fn host_names_are_checked() {
    let model = chain(2, 8);
    let plan = pipeline_plan(model.graph(), 2);
    let err = SessionBuilder::new(&model)
        .plan(plan.clone())
        .build()
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("rank0/cpu:0") || err.contains("rank1/cpu:0"),
        "{err}"
    );
    assert!(err.contains("launch"), "{err}");
    let hub = local_group(1).unwrap().remove(0);
    let err = SessionBuilder::new(&model)
        .plan(plan)
        .hub(hub)
        .build()
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("rank1/cpu:0") && err.contains("1 rank"),
        "{err}"
    );
}

/// The launcher's job protocol over in-process ranks: rank 0 shares the
/// model file and the plan, the others build and serve the session, and
/// rank 0 merges every rank's timeline into one (rows `rankN/...`).
#[test]
fn the_job_protocol_shares_the_model_and_merges_the_timelines() {
    let c = common::case("resnet_block");
    let model = Model::load(&c.model).unwrap();
    let plan = pipeline_plan(model.graph(), 2);
    let inputs: Vec<Arc<Tensor>> = c
        .inputs
        .iter()
        .map(|(_, p)| Arc::new(common::read(p)))
        .collect();
    let mut hubs = local_group(2).unwrap();
    let worker_hub = hubs.pop().unwrap();
    let root = hubs.pop().unwrap();
    let worker = std::thread::spawn(move || hetflow::cluster::serve_jobs(&worker_hub));
    hetflow::cluster::share_job(&root, &c.model, &plan, None, Some(1), true).unwrap();
    let mut s = SessionBuilder::new(&model)
        .plan(plan)
        .threads(1)
        .trace(true)
        .hub(root.clone())
        .build()
        .unwrap();
    let outs = s.run_stream(vec![inputs.clone(); 3]).unwrap();
    for o in &outs {
        common::check_outputs(&c, o, "resnet_block through the job protocol");
    }
    let own = s.take_trace_events();
    let origin = s.trace_origin_unix_us();
    drop(s);
    let merged = hetflow::cluster::gather_trace(&root, own, origin, 0.0).unwrap();
    hetflow::cluster::end_jobs(&root, None).unwrap();
    worker.join().unwrap().unwrap();
    for row in ["rank0/cpu:0", "rank1/cpu:0", "rank0/net", "rank1/net"] {
        assert!(merged.iter().any(|e| e.device == row), "no events on {row}");
    }
    // Three micro-batches of each rank's kernels are in the timeline.
    let g = model.graph();
    let kernels = merged.iter().filter(|e| e.cat == "kernel").count();
    assert_eq!(kernels, 3 * g.nodes.len());
    let f = hetflow::cluster::transfer_hidden_fraction(&merged).expect("cross-host transfers");
    assert!((0.0..=1.0).contains(&f), "{f}");
}

/// Rank 0's outputs, and the tensors each rank sent over its wires.
type WiredRun = (Vec<Vec<Arc<Tensor>>>, Vec<u64>);

/// Runs `batches` over `hubs.len()` ranks whose `cpu:0` is wrapped in a
/// [`Loopback`] wire device, with wires on for CPU devices, so every
/// cross-host edge between two stages travels over a wire (graph inputs
/// and outputs still go through the host). Returns rank 0's outputs and
/// the tensors each rank sent over its wires.
fn run_wired(
    model: &Model,
    plan: &Plan,
    hubs: Vec<Arc<Hub>>,
    batches: Vec<Vec<Arc<Tensor>>>,
    credits: usize,
) -> Result<WiredRun, String> {
    use hetflow::devices::wire::Loopback;
    use hetflow::devices::{Device, DeviceKind};
    let wired = || -> Arc<Loopback> {
        let specs = hetflow::devices::parse_device_list("cpu:0").unwrap();
        let cpu = hetflow::devices::open_devices(&specs, Some(1))
            .unwrap()
            .remove(0);
        Arc::new(Loopback::new(cpu))
    };
    fn builder<'m>(
        m: &'m Model,
        plan: &Plan,
        dev: &Arc<Loopback>,
        hub: Arc<Hub>,
        credits: usize,
    ) -> SessionBuilder<'m> {
        let d: Arc<dyn Device> = dev.clone();
        SessionBuilder::new(m)
            .plan(plan.clone())
            .with_devices(vec![d])
            .wires(&[DeviceKind::Cpu])
            .credits(credits)
            .hub(hub)
    }
    let mut workers = Vec::new();
    let mut hubs = hubs.into_iter();
    let root = hubs.next().expect("rank 0");
    for hub in hubs {
        let model = Model::from_graph((**model.graph()).clone());
        let dev = wired();
        let b = builder(&model, plan, &dev, hub, credits)
            .build()
            .map_err(|e| e.to_string());
        // Built here, served on a thread: every rank builds before rank 0
        // runs, as the job protocol does.
        workers.push((
            dev,
            std::thread::spawn(move || -> Result<(), String> {
                let mut s = b?;
                s.serve().map_err(|e| e.to_string())
            }),
        ));
    }
    let dev = wired();
    let out = builder(model, plan, &dev, root, credits)
        .build()
        .map_err(|e| e.to_string())
        .and_then(|mut s| s.run_stream(batches).map_err(|e| e.to_string()));
    let mut sent = vec![dev.sent()];
    for (d, w) in workers {
        let r = w.join().map_err(|_| "a rank panicked".to_string())?;
        if out.is_ok() {
            r?;
        }
        sent.push(d.sent());
    }
    Ok((out?, sent))
}

/// Wires (issue 15, the path NCCL takes between GPUs): a pipeline whose
/// 8 stages hop between 3 ranks in both directions
/// (0→1→0→1→2→1→2→0), with two edges sharing each of the 0→1 and 1→2
/// wires, moves every stage-to-stage tensor over the ranks' wires, which
/// block a send until its receive is posted, as NCCL does. It must not
/// deadlock, must keep the tensors in order (a mismatched shape or order
/// fails the wire) and must give the single-process outputs; with
/// 1 credit and with 3.
#[test]
fn wires_carry_stage_tensors_in_order_both_ways_across_three_ranks() {
    let model = chain(16, 24);
    let n = model.graph().nodes.len();
    let stage_rank = [0, 1, 0, 1, 2, 1, 2, 0];
    let placement: Vec<usize> = (0..n).map(|i| stage_rank[i * 8 / n]).collect();
    let devices = (0..3).map(|r| format!("rank{r}/cpu:0")).collect();
    let plan = Plan::from_placement(model.graph(), devices, placement);
    let batches: Vec<Vec<Arc<Tensor>>> = (0..30)
        .map(|m| {
            let v: Vec<f32> = (0..3 * 24)
                .map(|k| ((k * 5 + m) % 11) as f32 * 0.1 - 0.5)
                .collect();
            vec![Arc::new(Tensor::from_vec(vec![3, 24], v).unwrap())]
        })
        .collect();
    let mut single = SessionBuilder::new(&model)
        .plan(Plan::single_device(model.graph(), "cpu:0"))
        .threads(1)
        .build()
        .unwrap();
    let want = single.run_stream(batches.clone()).unwrap();
    for credits in [1, 3] {
        let start = Instant::now();
        let (outs, sent) = run_wired(
            &model,
            &plan,
            local_group(3).unwrap(),
            batches.clone(),
            credits,
        )
        .unwrap();
        assert!(start.elapsed() < Duration::from_secs(60));
        assert_eq!(outs.len(), 30);
        for (m, (a, b)) in outs.iter().zip(&want).enumerate() {
            assert!(
                max_abs_diff(&a[0], &b[0]) <= 1e-6,
                "credits {credits}, micro-batch {m}"
            );
        }
        // Per micro-batch: rank 0 sends 0→1 twice, rank 1 sends 1→0 and
        // 1→2 twice, rank 2 sends 2→1 and 2→0 (the input reaches rank 0
        // from the caller, and the output leaves rank 0 to the caller).
        assert_eq!(sent, vec![2 * 30, 3 * 30, 2 * 30], "credits {credits}");
    }
}

/// Asking for wires on devices that have none fails the build on each
/// rank with the device named, instead of silently going through the
/// host or hanging.
#[test]
fn wires_on_a_device_without_one_are_refused_at_build() {
    use hetflow::devices::DeviceKind;
    let model = chain(3, 8);
    let n = model.graph().nodes.len();
    let placement: Vec<usize> = (0..n).map(|i| [0, 1, 0][i * 3 / n]).collect();
    let devices = (0..2).map(|r| format!("rank{r}/cpu:0")).collect();
    let plan = Plan::from_placement(model.graph(), devices, placement);
    let mut hubs = local_group(2).unwrap();
    let h1 = hubs.pop().unwrap();
    let m1 = Model::from_graph((**model.graph()).clone());
    let p1 = plan.clone();
    let other = std::thread::spawn(move || {
        SessionBuilder::new(&m1)
            .plan(p1)
            .threads(1)
            .wires(&[DeviceKind::Cpu])
            .hub(h1)
            .build()
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let e = SessionBuilder::new(&model)
        .plan(plan)
        .threads(1)
        .wires(&[DeviceKind::Cpu])
        .hub(hubs.pop().unwrap())
        .build()
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wire from cpu:0 to rank 1") && e.contains("no direct transport"),
        "{e}"
    );
    let e = other.join().unwrap().unwrap_err();
    assert!(e.contains("wire from cpu:0 to rank 0"), "{e}");
}
