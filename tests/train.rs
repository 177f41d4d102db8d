//! Training end to end: optimizer steps against a float64 NumPy
//! implementation, accuracy on scikit-learn's digits, the exported model
//! in `hetflow run` and onnxruntime, checkpoint resume, and micro-batches
//! (also pipelined over two CPU devices) against whole batches.
//!
//! The data, models and NumPy references come from
//! scripts/gen_training_data.py (run by scripts/setup.sh into train-data/,
//! or HETFLOW_TRAIN_DATA).

use hetflow::ops::graph::Dim;
use hetflow::ops::op::UnaryOp;
use hetflow::ops::{npy, DType, Graph, Op};
use hetflow::scheduler::plan::{Plan, Schedule as PlanSchedule};
use hetflow::train::data::Dataset;
use hetflow::train::optim::{Config, Schedule};
use hetflow::train::{Loss, TrainOptions, Trainer};
use hetflow::{Model, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

/// bf16 training: the graph's casts and numerics, loss scaling, accuracy.
#[path = "train/bf16.rs"]
mod bf16;

fn data() -> PathBuf {
    let p = std::env::var_os("HETFLOW_TRAIN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("train-data"));
    assert!(
        p.join("models/mlp.onnx").is_file(),
        "{}: no training data; run `bash scripts/setup.sh` (or scripts/gen_training_data.py)",
        p.display()
    );
    p
}

fn model(name: &str) -> Model {
    Model::load_unoptimized(data().join(format!("models/{name}.onnx"))).unwrap()
}

fn sgd(lr: f32, momentum: f32, wd: f32) -> Config {
    let mut c = Config::sgd(lr, momentum);
    c.weight_decay = wd;
    c
}

fn trainer(name: &str, optimizer: Config, devices: Option<&str>, microbatches: usize) -> Trainer {
    replicated(name, optimizer, devices, microbatches, 1)
}

fn replicated(
    name: &str,
    optimizer: Config,
    devices: Option<&str>,
    microbatches: usize,
    replicas: usize,
) -> Trainer {
    let opts = TrainOptions {
        loss: Loss::CrossEntropy,
        optimizer,
        devices: devices.map(String::from),
        threads: Some(1),
        microbatches,
        replicas,
        seed: 0,
        ..TrainOptions::default()
    };
    Trainer::new(&model(name), opts).unwrap()
}

/// A pipelined trainer: `schedule` over `devices` (or `plan`'s stages).
fn pipelined(
    name: &str,
    devices: Option<&str>,
    schedule: PlanSchedule,
    microbatches: usize,
    plan: Option<Plan>,
) -> Trainer {
    let opts = TrainOptions {
        loss: Loss::CrossEntropy,
        optimizer: sgd(0.05, 0.9, 0.0),
        devices: devices.map(String::from),
        threads: Some(1),
        microbatches,
        schedule: Some(schedule),
        plan,
        ..TrainOptions::default()
    };
    Trainer::new(&model(name), opts).unwrap()
}

/// Three steps of batch 32 from the digits training split; the weights.
fn three_steps(t: &mut Trainer, sample: &[usize]) -> Vec<(String, Tensor)> {
    let train = digits("train");
    for s in 0..3 {
        let mut shape = vec![32];
        shape.extend(sample);
        let x = hetflow::train::rows(&train.x, s * 32, 32, &shape).unwrap();
        let y = hetflow::train::rows(&train.y, s * 32, 32, &[32]).unwrap();
        t.step(&x, &y).unwrap();
    }
    t.tensors().unwrap()
}

/// Max |a - b| over max |b|, per tensor.
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.cast(DType::F64), b.cast(DType::F64));
    let (a, b) = (a.as_slice::<f64>().unwrap(), b.as_slice::<f64>().unwrap());
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn two_sgd_and_two_adam_steps_match_numpy_float64() {
    let d = data();
    let x = npy::read_npy(d.join("step/x.npy")).unwrap();
    let y = npy::read_npy(d.join("step/y.npy")).unwrap();
    for (tag, cfg) in [("sgd", sgd(0.1, 0.9, 1e-4)), ("adam", Config::adam(0.01))] {
        let mut t = trainer("mlp", cfg, None, 1);
        t.step(&x, &y).unwrap();
        t.step(&x, &y).unwrap();
        for (name, w) in t.tensors().unwrap() {
            let want = npy::read_npy(d.join(format!("step/{tag}_{name}.npy"))).unwrap();
            let r = rel(&w, &want);
            assert!(
                r <= 1e-5,
                "{tag}: weight {name} off by {r:.2e} (relative) from NumPy float64"
            );
        }
    }
}

fn digits(split: &str) -> Dataset {
    Dataset::load(data().join("digits").join(split)).unwrap()
}

fn fit(t: &mut Trainer, epochs: usize, batch: usize) -> f64 {
    let (train, test) = (digits("train"), digits("test"));
    for e in 0..epochs {
        t.epoch(&train, batch, e, 0, |_, _| {}).unwrap();
    }
    t.evaluate(&test.x, &test.y, 360).unwrap().accuracy
}

#[test]
fn the_mlp_reaches_97_percent_on_digits() {
    // SGD, lr 0.1 with cosine decay, weight decay 5e-4, batch 16, 40 epochs.
    let mut c = sgd(0.1, 0.9, 5e-4);
    c.schedule = Schedule::Cosine {
        total: 40 * (1437 / 16) as u64,
    };
    let mut t = trainer("mlp", c, None, 1);
    let acc = fit(&mut t, 40, 16);
    eprintln!("MLP test accuracy {acc:.4}");
    assert!(acc >= 0.97, "MLP test accuracy {acc:.4} < 0.97");
}

#[test]
fn the_cnn_with_batchnorm_and_dropout_reaches_98_percent_on_digits() {
    let mut c = sgd(0.05, 0.9, 0.0);
    c.schedule = Schedule::Cosine {
        total: 20 * (1437 / 32) as u64,
    };
    let mut t = trainer("cnn", c, None, 1);
    let acc = fit(&mut t, 20, 32);
    eprintln!("CNN test accuracy {acc:.4}");
    assert!(acc >= 0.98, "CNN test accuracy {acc:.4} < 0.98");
}

#[test]
fn micro_batches_pipelined_devices_and_replicas_equal_whole_batches() {
    let train = digits("train");
    let run = |devices: Option<&str>, m: usize, k: usize| {
        let mut t = replicated("mlp", sgd(0.05, 0.9, 0.0), devices, m, k);
        for s in 0..3 {
            let x = hetflow::train::rows(&train.x, s * 32, 32, &[32, 64]).unwrap();
            let y = hetflow::train::rows(&train.y, s * 32, 32, &[32]).unwrap();
            t.step(&x, &y).unwrap();
        }
        t.tensors().unwrap()
    };
    let whole = run(None, 1, 1);
    let cases = [
        (None, 4, 1),
        (Some("cpu:0,cpu:1"), 4, 1),
        (Some("cpu:0,cpu:1"), 8, 1),
        // Data parallel: two replicas (cpu:0 and cpu:1), then with two
        // micro-batches each.
        (None, 1, 2),
        (None, 2, 2),
    ];
    for (devices, m, k) in cases {
        for ((name, a), (_, b)) in run(devices, m, k).iter().zip(&whole) {
            let r = rel(a, b);
            assert!(
                r <= 1e-5,
                "{devices:?} x{m}, {k} replica(s): weight {name} differs by {r:.2e}"
            );
        }
    }
}

/// Data parallel across the ranks of a job (issue 16): two ranks of an
/// in-process group (`local_group`: the hub API that MPI ranks use, with
/// an in-memory all-reduce), each training its half of every batch, end
/// with bit-identical weights that equal one process's whole-batch steps.
/// The CNN's BatchNorm running statistics are averaged over the ranks.
/// A batch that does not split over the ranks is refused on every rank.
#[test]
fn ranks_of_a_job_train_like_one_process() {
    for (name, sample) in [("mlp", vec![64]), ("cnn", vec![1, 8, 8])] {
        let opt = || sgd(0.05, 0.9, 1e-4);
        let hubs = hetflow::runtime::net::local_group(2).unwrap();
        let threads: Vec<_> = hubs
            .into_iter()
            .map(|h| {
                let sample = sample.clone();
                std::thread::spawn(move || {
                    let mut t = trainer(name, opt(), None, 1);
                    t.across_ranks(h);
                    three_steps(&mut t, &sample)
                })
            })
            .collect();
        let ranks: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // The reference: one process, the two halves as two replicas.
        let whole = three_steps(&mut replicated(name, opt(), None, 1, 2), &sample);
        for ((n0, a), (_, b)) in ranks[0].iter().zip(&ranks[1]) {
            assert_eq!(a, b, "{name}: ranks disagree on {n0}");
        }
        for ((n, a), (_, b)) in ranks[0].iter().zip(&whole) {
            let r = rel(a, b);
            assert!(
                r <= 1e-5,
                "{name}: weight {n} differs by {r:.2e} from one process"
            );
        }
    }
    let hubs = hetflow::runtime::net::local_group(3).unwrap();
    let threads: Vec<_> = hubs
        .into_iter()
        .map(|h| {
            std::thread::spawn(move || {
                let mut t = trainer("mlp", sgd(0.05, 0.0, 0.0), None, 1);
                t.across_ranks(h);
                let train = digits("train");
                let x = hetflow::train::rows(&train.x, 0, 32, &[32, 64]).unwrap();
                let y = hetflow::train::rows(&train.y, 0, 32, &[32]).unwrap();
                t.step(&x, &y).map(|_| ()).unwrap_err().to_string()
            })
        })
        .collect();
    for t in threads {
        let e = t.join().unwrap();
        assert!(e.contains("does not split evenly over 3 ranks"), "{e}");
    }
}

#[test]
fn gpipe_and_1f1b_on_two_cpus_equal_single_device_training() {
    // The MLP (no batch statistics, no dropout): pipelined steps over
    // cpu:0 and cpu:1 give the weights of whole-batch steps on one device.
    let whole = three_steps(&mut trainer("mlp", sgd(0.05, 0.9, 0.0), None, 1), &[64]);
    for schedule in [PlanSchedule::Gpipe, PlanSchedule::OneFOneB] {
        for m in [4, 8] {
            let mut t = pipelined("mlp", Some("cpu:0,cpu:1"), schedule, m, None);
            let got = three_steps(&mut t, &[64]);
            for ((name, a), (_, b)) in got.iter().zip(&whole) {
                let r = rel(a, b);
                assert!(
                    r <= 1e-5,
                    "{schedule:?} m={m}: weight {name} differs by {r:.2e}"
                );
            }
            let st = t.pipeline_stats().unwrap();
            assert_eq!(st.stages.len(), 2);
            assert_eq!(st.microbatches, m);
            assert!(st.step_ms > 0.0 && st.bound_ms > 0.0);
        }
    }
}

#[test]
fn the_stash_holds_p_micro_batches_under_1f1b_and_m_under_gpipe() {
    let (p, m) = (2, 8);
    let stats = |schedule| {
        let mut t = pipelined("mlp", Some("cpu:0,cpu:1"), schedule, m, None);
        three_steps(&mut t, &[64]);
        t.pipeline_stats().unwrap().clone()
    };
    let gpipe = stats(PlanSchedule::Gpipe);
    let ofob = stats(PlanSchedule::OneFOneB);
    for (s, (g, o)) in gpipe.stages.iter().zip(&ofob.stages).enumerate() {
        // GPipe: every micro-batch's activations wait for the backward.
        assert_eq!(g.peak_in_flight, m, "GPipe stage {s}: {g:?}");
        // 1F1B: stage s holds p - s micro-batches at most.
        assert!(o.peak_in_flight <= p - s, "1F1B stage {s}: {o:?}");
        assert!(
            o.peak_stash_bytes <= (p - s) as u64 * o.microbatch_stash_bytes,
            "1F1B stage {s}: {o:?}"
        );
        assert!(o.microbatch_stash_bytes > 0, "stage {s} stashes nothing");
        assert!(
            o.peak_stash_bytes * 2 < g.peak_stash_bytes,
            "stage {s}: 1F1B {} bytes vs GPipe {}",
            o.peak_stash_bytes,
            g.peak_stash_bytes
        );
    }
}

#[test]
fn a_pipelined_cnn_with_batchnorm_and_dropout_follows_the_plans_stages() {
    // BatchNorm's statistics are per micro-batch, and dropout's masks are
    // seeded per micro-batch: the reference accumulates the same four
    // micro-batches on one device.
    let reference = three_steps(
        &mut trainer("cnn", sgd(0.05, 0.9, 0.0), None, 4),
        &[1, 8, 8],
    );
    // A plan of the model: its first three nodes on cpu:1, the rest on
    // cpu:0 (stages follow the plan's devices, whatever their names).
    let g = model("cnn").graph().clone();
    let placement: Vec<usize> = (0..g.nodes.len()).map(|n| usize::from(n >= 3)).collect();
    let plan = Plan::from_placement(&g, vec!["cpu:1".into(), "cpu:0".into()], placement);
    let mut t = pipelined("cnn", None, PlanSchedule::OneFOneB, 4, Some(plan));
    let got = three_steps(&mut t, &[1, 8, 8]);
    assert_eq!(got.len(), reference.len());
    for ((name, a), (_, b)) in got.iter().zip(&reference) {
        let r = rel(a, b);
        assert!(r <= 1e-5, "weight or statistic {name} differs by {r:.2e}");
    }
    let st = t.pipeline_stats().unwrap();
    let devices: Vec<&str> = st.stages.iter().map(|s| s.device.as_str()).collect();
    assert_eq!(devices, ["cpu:1", "cpu:0"]);
}

#[test]
fn replicas_reduce_gradient_buckets_while_the_backward_pass_runs() {
    use hetflow::train::allreduce::{AllReduceStats, BucketCap};
    // The CNN (BatchNorm, Dropout, ten weight tensors) on two replicas of
    // two micro-batches each. Batch statistics are per micro-batch, so
    // the reference runs the same four micro-batches on one device.
    let train = digits("train");
    let run = |cap: BucketCap, batch: usize, steps: usize| {
        let mut t = replicated("cnn", sgd(0.05, 0.9, 0.0), None, 2, 2);
        t.data_parallel_mut().cap = cap;
        let mut stats: Vec<AllReduceStats> = Vec::new();
        for s in 0..steps {
            let x = hetflow::train::rows(&train.x, s * batch, batch, &[batch, 1, 8, 8]).unwrap();
            let y = hetflow::train::rows(&train.y, s * batch, batch, &[batch]).unwrap();
            t.step(&x, &y).unwrap();
            stats.push(t.data_parallel().last().unwrap().clone());
        }
        (t.tensors().unwrap(), stats)
    };
    let reference = three_steps(
        &mut trainer("cnn", sgd(0.05, 0.9, 0.0), None, 4),
        &[1, 8, 8],
    );
    let one_tensor = BucketCap {
        bytes: 1 << 20,
        params: 1,
    };
    for cap in [BucketCap::default(), one_tensor] {
        let (got, stats) = run(cap, 32, 3);
        for ((name, a), (_, b)) in got.iter().zip(&reference) {
            let r = rel(a, b);
            assert!(
                r <= 1e-5,
                "{cap:?}: weight or statistic {name} differs by {r:.2e}"
            );
        }
        let n_params = stats[0].gradients / 4;
        let want = n_params.div_ceil(cap.params);
        for s in &stats {
            assert_eq!((s.replicas, s.microbatches), (2, 2));
            assert_eq!(s.buckets.len(), want, "{cap:?}: {s:?}");
            let mut params: Vec<usize> = s.buckets.iter().flat_map(|b| b.params.clone()).collect();
            params.sort();
            assert_eq!(
                params,
                (0..n_params).collect::<Vec<_>>(),
                "each weight in one bucket"
            );
            for b in &s.buckets {
                // A bucket starts only once its own gradients are in.
                assert!(b.delivered_at_start >= 4 * b.params.len(), "{b:?}");
                assert!(b.start_ms <= b.end_ms);
            }
            assert!(s.hidden_ms <= s.reduce_ms + 1e-9 && s.backward_end_ms <= s.end_ms);
        }
    }
    // The ordering fact: some bucket's ring all-reduce began before the
    // step's last gradient had left a replica's session (a larger batch
    // leaves more backward pass after the first bucket is complete).
    let (_, stats) = run(BucketCap::default(), 128, 6);
    assert!(
        stats.iter().any(|s| s.overlapped()),
        "no bucket started before the backward pass ended: {stats:?}"
    );
    assert!(stats.iter().any(|s| s.hidden_ms > 0.0), "{stats:?}");
}

#[test]
fn the_simulator_costs_the_real_backward_pass_of_each_stage() {
    use hetflow::scheduler::sim::simulate;
    let m = model("cnn");
    let tg = hetflow::train::training_graph(m.graph(), 8, Loss::CrossEntropy).unwrap();
    // Measured kernel times of this training graph on both cores.
    let mut cluster = hetflow::profile::profile(&hetflow::profile::ProfileOptions {
        devices: "cpu:0,cpu:1".into(),
        threads: Some(1),
        graphs: vec![std::sync::Arc::new(tg.graph.clone())],
        iters: 1,
        ..Default::default()
    })
    .unwrap();
    for d in &mut cluster.devices {
        d.contention = 1.0;
    }
    let mb = 4;
    let w = hetflow::train::pipeline::simulated(
        &tg,
        m.graph(),
        None,
        "cpu:0,cpu:1",
        &cluster,
        PlanSchedule::OneFOneB,
        mb,
    )
    .unwrap();
    assert_eq!(w.backward.len(), w.units.len());
    assert_eq!(w.stages.len(), 2);
    // Every backward node is costed once, on its forward node's stage.
    let cm = hetflow::scheduler::cost::CostModel::new(&cluster);
    let all = hetflow::scheduler::cost::GraphCosts::new(&tg.graph, 1);
    let costed: f64 = w.backward.iter().sum();
    let names = ["cpu:0", "cpu:1"];
    let (fwd, _) =
        hetflow::train::pipeline::forward_stages(&tg, m.graph(), None, "cpu:0,cpu:1").unwrap();
    let bwd_on = |d: &str| -> f64 {
        let i = cluster.device_index(d).unwrap();
        (tg.n_forward..tg.graph.nodes.len())
            .filter(|&n| match tg.origins[n - tg.n_forward] {
                Some(o) => names[fwd[o]] == d,
                None => false,
            })
            .map(|n| cm.op_time(i, &all.nodes[n]) * 1e3)
            .sum()
    };
    let owned = bwd_on("cpu:0") + bwd_on("cpu:1");
    assert!(
        costed >= owned * (1.0 - 1e-9) && owned > 0.0,
        "{costed} < {owned}"
    );
    // The engine runs each unit's backward time once per micro-batch.
    let r = simulate(&w).unwrap();
    for (d, stats) in r.devices.iter().enumerate() {
        let want: f64 = w
            .units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.device == d)
            .map(|(i, u)| u.time + w.backward[i])
            .sum::<f64>()
            * mb as f64;
        assert!(
            (stats.busy - want).abs() <= 1e-6 * want,
            "{}: busy {} vs {want}",
            stats.name,
            stats.busy
        );
    }
    // The CLI: a training step, and a clear error without a schedule.
    let dir = tempdir("simtrain");
    std::fs::write(dir.join("c.toml"), cluster.to_toml()).unwrap();
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let base = [
        "simulate".to_string(),
        s(data().join("models/cnn.onnx")),
        "--cluster".into(),
        s(dir.join("c.toml")),
        "--train".into(),
        "--batch".into(),
        "8".into(),
    ];
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend(["--schedule", "1f1b", "--microbatches", "4"]);
    let o = hetflow(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.lines().last().unwrap().starts_with("makespan="),
        "{out}"
    );
    let args: Vec<&str> = base.iter().map(String::as_str).collect();
    let o = hetflow(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("gpipe or 1f1b"));
}

#[test]
fn a_resumed_checkpoint_continues_exactly() {
    let train = digits("train");
    let dir = tempdir("resume");
    let ck = dir.join("ck.safetensors");
    let mut straight = trainer("cnn", Config::adam(1e-3), None, 1);
    let mut first = trainer("cnn", Config::adam(1e-3), None, 1);
    let small = train.take(&(0..256).collect::<Vec<_>>()).unwrap();
    for e in 0..2 {
        straight.epoch(&small, 64, e, 5, |_, _| {}).unwrap();
    }
    first.epoch(&small, 64, 0, 5, |_, _| {}).unwrap();
    first.save_checkpoint(&ck, 1).unwrap();
    let mut resumed = trainer("cnn", Config::adam(1e-3), None, 1);
    assert_eq!(resumed.resume(&ck).unwrap(), 1);
    resumed.epoch(&small, 64, 1, 5, |_, _| {}).unwrap();
    assert_eq!(resumed.steps(), straight.steps());
    for ((name, a), (_, b)) in resumed
        .tensors()
        .unwrap()
        .iter()
        .zip(straight.tensors().unwrap())
    {
        assert_eq!(a, &b, "{name} differs after resuming");
    }
    // A checkpoint of another model is refused by name.
    let mut other = trainer("mlp", Config::adam(1e-3), None, 1);
    let e = other.resume(&ck).unwrap_err().to_string();
    assert!(e.contains("fc1.weight") || e.contains("fc"), "{e}");
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hetflow-train-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn hetflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_cli_trains_writes_a_model_that_runs_in_hetflow_and_onnxruntime() {
    let d = data();
    let dir = tempdir("cli");
    let out = dir.join("trained.onnx");
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let o = hetflow(&[
        "train",
        &s(d.join("models/cnn.onnx")),
        "--data",
        &s(d.join("digits/train")),
        "--eval",
        &s(d.join("digits/test")),
        "--epochs",
        "2",
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
        "--out",
        &s(out.clone()),
        "--checkpoint",
        &s(dir.join("ck.safetensors")),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "one line per epoch, then the result: {stdout}"
    );
    let last = lines[2];
    let acc: f64 = last
        .strip_prefix("loss=")
        .and_then(|r| r.split(" accuracy=").nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("last line {last:?}"));
    assert!(acc > 0.9, "{last}");
    // The written model runs in `hetflow run` ...
    let x = npy::read_npy(d.join("digits/test/x.npy")).unwrap();
    let x4 = x.clone().reshape(vec![360, 1, 8, 8]).unwrap();
    let xin = dir.join("x.npy");
    npy::write_npy(&xin, &x4).unwrap();
    let o = hetflow(&[
        "run",
        &s(out.clone()),
        "--input",
        &s(xin.clone()),
        "--output-dir",
        &s(dir.clone()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let logits = npy::read_npy(dir.join("logits.npy")).unwrap();
    let y = npy::read_npy(d.join("digits/test/y.npy"))
        .unwrap()
        .to_i64_vec();
    let v = logits.to_f32_vec();
    let correct = (0..360)
        .filter(|&i| {
            let r = &v[i * 10..(i + 1) * 10];
            let best = (0..10).fold(0, |b, k| if r[k] > r[b] { k } else { b });
            best as i64 == y[i]
        })
        .count();
    let run_acc = correct as f64 / 360.0;
    // The printed accuracy has 4 decimals.
    assert!(
        (run_acc - acc).abs() < 6e-5,
        "hetflow run {run_acc} vs train's eval {acc}"
    );
    // ... and in onnxruntime, with the same predictions.
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !py.is_file() {
        eprintln!("SKIPPED the onnxruntime half: no .venv (run scripts/setup.sh)");
        return;
    }
    let script = format!(
        "import numpy as np, onnxruntime as ort\n\
         s = ort.InferenceSession({m:?})\n\
         p = s.run(None, {{'x': np.load({x:?})}})[0]\n\
         q = np.load({l:?})\n\
         assert np.allclose(p, q, rtol=1e-4, atol=1e-4), abs(p - q).max()\n",
        m = s(out),
        x = s(xin),
        l = s(dir.join("logits.npy"))
    );
    let o = Command::new(py).args(["-c", &script]).output().unwrap();
    assert!(
        o.status.success(),
        "onnxruntime disagrees: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn the_cli_trains_pipelined_by_schedule_or_by_plan() {
    let d = data();
    let dir = tempdir("pipe");
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let g = model("mlp").graph().clone();
    let n = g.nodes.len();
    let mut plan = Plan::from_placement(
        &g,
        vec!["cpu:0".into(), "cpu:1".into()],
        (0..n).map(|i| usize::from(i >= n / 2)).collect(),
    );
    plan.schedule = PlanSchedule::Gpipe;
    std::fs::write(dir.join("plan.json"), plan.to_json()).unwrap();
    let runs: [(&[&str], &str); 2] = [
        (
            &["--device", "cpu:0,cpu:1", "--schedule", "1f1b"],
            "pipeline 1f1b: 2 stage(s) x 4",
        ),
        (
            &["--plan", &s(dir.join("plan.json"))],
            "pipeline gpipe: 2 stage(s) x 4",
        ),
    ];
    for (extra, want) in runs {
        let mut args = vec![
            "train".to_string(),
            s(d.join("models/mlp.onnx")),
            "--data".into(),
            s(d.join("digits/train")),
            "--epochs".into(),
            "1".into(),
            "--batch".into(),
            "32".into(),
            "--microbatches".into(),
            "4".into(),
            "--threads".into(),
            "1".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = hetflow(&args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(out.contains(want), "{out}");
        assert!(out.lines().last().unwrap().starts_with("loss="), "{out}");
    }
}

#[test]
fn bad_requests_get_clear_errors() {
    let d = data();
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let o = hetflow(&[
        "train",
        &s(d.join("models/mlp.onnx")),
        "--data",
        "/nonexistent/dir",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("x.npy"));
    let o = hetflow(&[
        "train",
        &s(d.join("models/mlp.onnx")),
        "--data",
        &s(d.join("digits/train")),
        "--schedule",
        "1f1b",
        "--replicas",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("choose one"));
    // Precision: an unknown one, and options it does not combine with.
    let mlp = s(d.join("models/mlp.onnx"));
    let dir = s(d.join("digits/train"));
    let cases: [(&[&str], &[&str]); 3] = [
        (&["--precision", "fp16"], &["fp16", "f32 or bf16"]),
        (
            &["--precision", "bf16", "--schedule", "1f1b"],
            &["--precision bf16", "--schedule"],
        ),
        (
            &["--loss-scale", "8"],
            &["--loss-scale", "--precision bf16"],
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["train", &mlp, "--data", &dir];
        args.extend(extra);
        let o = hetflow(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(want.iter().all(|w| err.contains(w)), "{extra:?}: {err}");
    }
    let o = hetflow(&[
        "train",
        &mlp,
        "--data",
        &dir,
        "--epochs",
        "1",
        "--precision",
        "bf16",
        "--loss-scale",
        "1024",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("bf16 loss scale 1024 (0 step(s) skipped)"),
        "{out}"
    );
    // An op without a gradient rule is refused at build, naming the node.
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Sym("n".into()), Dim::Known(4)]);
    let w = g.add_const("w", Tensor::from_vec(vec![4, 3], vec![0.1f32; 12]).unwrap());
    let h = g.add_node("mm", Op::MatMul, &[x, w], 1)[0];
    let z = g.add_node("the_sine", Op::Unary(UnaryOp::Sin), &[h], 1)[0];
    g.add_output(z);
    let m = Model::from_graph(g.finish().unwrap());
    let e = Trainer::new(&m, TrainOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("the_sine") && e.contains("Sin"), "{e}");
}
