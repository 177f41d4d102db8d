//! `hetflow launch` under Open MPI on this machine (cargo feature `mpi`):
//! fixtures planned as a pipeline across 2 and 3 ranks (`rankN/cpu:0`)
//! give the single-process outputs (≤ 1e-6) and onnxruntime's. Without
//! `mpirun` on PATH the tests say so and pass; CI installs Open MPI
//! (`scripts/setup.sh --mpi`) and runs them with the feature on.
#![cfg(feature = "mpi")]

mod common;

use hetflow::{Model, Plan};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hetflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(args)
        .env_remove("HETFLOW_MPI")
        .output()
        .expect("spawn hetflow")
}

fn have_mpirun() -> bool {
    let ok = Command::new("mpirun")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: mpirun not found (install Open MPI: bash scripts/setup.sh --mpi)");
    }
    ok
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hetflow-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Contiguous stages, one per rank, each on that rank's cpu:0.
fn write_plan(model: &Path, ranks: usize, file: &Path) {
    let m = Model::load(model).unwrap();
    let n = m.graph().nodes.len();
    let placement = (0..n).map(|i| i * ranks / n).collect();
    let devices = (0..ranks).map(|r| format!("rank{r}/cpu:0")).collect();
    let plan = Plan::from_placement(m.graph(), devices, placement);
    assert!(!plan.transfers.is_empty());
    std::fs::write(file, plan.to_json()).unwrap();
}

#[test]
fn fixtures_run_across_mpi_ranks() {
    if !have_mpirun() {
        return;
    }
    for name in ["transformer_encoder", "resnet_block"] {
        let c = common::case(name);
        let inputs: Vec<String> = c
            .inputs
            .iter()
            .map(|(n, p)| format!("{n}={}", p.display()))
            .collect();
        let run = |extra: &[&str], dir: &Path, launch: Option<usize>| {
            let mut args: Vec<String> = Vec::new();
            let np;
            if let Some(n) = launch {
                np = n.to_string();
                args.extend(["launch", "--np", &np, "--"].map(String::from));
            }
            args.extend(["run".to_string(), c.model.display().to_string()]);
            for i in &inputs {
                args.extend(["--input".to_string(), i.clone()]);
            }
            args.extend(["--threads", "1", "--output-dir"].map(String::from));
            args.push(dir.display().to_string());
            args.extend(extra.iter().map(|s| s.to_string()));
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            hetflow(&a)
        };
        let single = tmp(&format!("{name}-single"));
        let plan1 = single.join("plan.json");
        std::fs::write(
            &plan1,
            Plan::single_device(Model::load(&c.model).unwrap().graph(), "cpu:0").to_json(),
        )
        .unwrap();
        ok(
            &run(&["--plan", plan1.to_str().unwrap()], &single, None),
            "single-process run",
        );
        for ranks in [2, 3] {
            let dir = tmp(&format!("{name}-{ranks}"));
            let plan = dir.join("plan.json");
            write_plan(&c.model, ranks, &plan);
            let out = run(&["--plan", plan.to_str().unwrap()], &dir, Some(ranks));
            ok(&out, &format!("{name} on {ranks} MPI ranks"));
            for (oname, reference) in &c.outputs {
                let file = format!("{}.npy", hetflow::sanitize_name(oname));
                let got = common::read(&dir.join(&file));
                let one = common::read(&single.join(&file));
                let want = common::read(reference);
                let (g, o) = (got.to_f32_vec(), one.to_f32_vec());
                assert_eq!(got.shape(), one.shape());
                let d = g
                    .iter()
                    .zip(&o)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    d <= 1e-6,
                    "{name} on {ranks} ranks: max |diff| {d:e} against one process"
                );
                let e = common::rel_l2(&got, &want);
                assert!(
                    e <= c.rel_l2.min(1e-4),
                    "{name} on {ranks} ranks: rel L2 {e:e} against onnxruntime"
                );
            }
        }
    }
}

#[test]
fn a_multi_rank_run_without_a_plan_is_refused_clearly() {
    if !have_mpirun() {
        return;
    }
    let c = common::case("mlp");
    let dir = tmp("noplan");
    let out = hetflow(&[
        "launch",
        "--np",
        "2",
        "--",
        "run",
        c.model.to_str().unwrap(),
        "--input",
        c.inputs[0].1.to_str().unwrap(),
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --plan"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The pid of the hetflow process that is MPI rank `rank` and whose
/// command line mentions `marker`.
fn rank_pid(rank: usize, marker: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmd).contains(marker) {
            continue;
        }
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let want = format!("OMPI_COMM_WORLD_RANK={rank}");
        if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// `kill -9` of rank 1 in the middle of a bench ends the job within 5 s
/// with one line naming the rank, its host and the stage it ran, and
/// leaves no process behind; `HETFLOW_KILL_ROUNDS` rounds (default 3;
/// docs/cluster.md records 20).
#[test]
fn a_killed_rank_ends_the_job_quickly_with_its_name() {
    if !have_mpirun() {
        return;
    }
    let rounds: usize = std::env::var("HETFLOW_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let c = common::case("resnet_block");
    let dir = tmp("kill");
    let plan = dir.join("plan-kill.json");
    write_plan(&c.model, 2, &plan);
    for round in 0..rounds {
        let child = Command::new(env!("CARGO_BIN_EXE_hetflow"))
            .args([
                "launch",
                "--np",
                "2",
                "--",
                "bench",
                c.model.to_str().unwrap(),
                "--plan",
                plan.to_str().unwrap(),
                "--threads",
                "1",
                "--iters",
                "1000000",
            ])
            .env_remove("HETFLOW_MPI")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let marker = plan.to_str().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let pid = loop {
            if let Some(p) = rank_pid(1, marker) {
                break p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: rank 1 never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        // Let the pipeline run, then kill the stage on rank 1.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let killed = std::time::Instant::now();
        assert!(Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let out = child.wait_with_output().unwrap();
        let took = killed.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "round {round}: the job succeeded");
        assert!(
            took.as_secs_f64() < 5.0,
            "round {round}: the job took {took:?} to end"
        );
        let last = err.trim_end().lines().last().unwrap_or("");
        assert!(
            last.contains("rank 1 (host") && last.contains("stage 1 on rank1/cpu:0"),
            "round {round}: last line: {last}\nall: {err}"
        );
        assert!(
            rank_pid(0, marker).is_none(),
            "round {round}: rank 0 left behind"
        );
        eprintln!(
            "round {round}: ended {:.2} s after the kill",
            took.as_secs_f64()
        );
    }
}

/// `launch -- profile` writes one spec with every rank's devices
/// (`rankN/cpu:0` on host `rankN`) and measured links between the ranks,
/// which `plan` and `simulate` take unchanged.
#[test]
fn profile_across_ranks_writes_one_spec_that_plan_and_simulate_take() {
    if !have_mpirun() {
        return;
    }
    let dir = tmp("profile");
    let spec = dir.join("cluster.toml");
    let out = hetflow(&[
        "launch",
        "--np",
        "2",
        "--",
        "profile",
        "--threads",
        "1",
        "--iters",
        "2",
        "--out",
        spec.to_str().unwrap(),
    ]);
    ok(&out, "launch -- profile");
    let c = hetflow::scheduler::ClusterSpec::from_toml(&std::fs::read_to_string(&spec).unwrap())
        .unwrap();
    let names: Vec<&str> = c.devices.iter().map(|d| d.name.as_str()).collect();
    assert!(
        names.contains(&"rank0/cpu:0") && names.contains(&"rank1/cpu:0"),
        "{names:?}"
    );
    assert!(c
        .devices
        .iter()
        .all(|d| d.host == d.name.split('/').next().unwrap()));
    let link = c
        .links
        .iter()
        .find(|l| l.from == "rank0/cpu:0" && l.to == "rank1/cpu:0")
        .expect("a measured link between the ranks");
    assert!(
        link.bandwidth_gbps > 0.0 && link.bandwidth_gbps.is_finite(),
        "{link:?}"
    );
    assert!(link.latency_us > 0.0 && link.latency_us < 1e6, "{link:?}");
    assert!(c.defaults.inter_host.is_some());
    let m = common::case("resnet_block");
    let plan = dir.join("plan.json");
    ok(
        &hetflow(&[
            "plan",
            m.model.to_str().unwrap(),
            "--cluster",
            spec.to_str().unwrap(),
            "--out",
            plan.to_str().unwrap(),
        ]),
        "plan on the profiled spec",
    );
    let p = Plan::from_json(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert!(
        p.devices.iter().all(|d| d.starts_with("rank")),
        "{:?}",
        p.devices
    );
    ok(
        &hetflow(&[
            "simulate",
            "--plan",
            plan.to_str().unwrap(),
            m.model.to_str().unwrap(),
            "--cluster",
            spec.to_str().unwrap(),
        ]),
        "simulate on the profiled spec",
    );
}

/// An unreachable host in the hostfile is refused before anything starts,
/// naming the file, the line and the host (issue 15): 127.0.0.2 is a
/// loopback address `mpirun` would reach over ssh, and nothing listens on
/// port 1 there. The probe waits at most 3 s.
#[test]
fn an_unreachable_host_is_refused_before_the_job_starts() {
    let dir = tmp("unreachable");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "localhost slots=1\n127.0.0.2 slots=1\n").unwrap();
    let t0 = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(["launch", "--hostfile", hosts.to_str().unwrap(), "--"])
        .args(["run", "m.onnx"])
        .env_remove("HETFLOW_MPI")
        .env_remove("OMPI_MCA_plm_rsh_agent")
        .env_remove("HETFLOW_LAUNCH_NO_PROBE")
        .env("HETFLOW_SSH_PORT", "1")
        .output()
        .unwrap();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("hosts:2: host '127.0.0.2' is unreachable")
            && err.contains("ssh port 1")
            && err.contains("nothing was started"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(took.as_secs_f64() < 6.0, "took {took:?}");
    // A port that is not one is named.
    let out = Command::new(env!("CARGO_BIN_EXE_hetflow"))
        .args(["launch", "--hostfile", hosts.to_str().unwrap(), "--"])
        .args(["run", "m.onnx"])
        .env_remove("HETFLOW_MPI")
        .env("HETFLOW_SSH_PORT", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("HETFLOW_SSH_PORT must be a port from 1 to 65535, got '0'"),
        "{err}"
    );
}

/// Data-parallel training across MPI ranks (issue 16): `hetflow launch
/// --np 2 -- train` (rank 0 reads the files and sends them; each rank
/// trains half of every batch; gradients summed by MPI's Iallreduce) writes
/// the same weights, within 1e-5 relative, as one process training the
/// whole batch as two replicas, and its report lines come from rank 0 only.
#[test]
fn training_across_mpi_ranks_equals_one_process() {
    if !have_mpirun() {
        return;
    }
    let data = std::env::var_os("HETFLOW_TRAIN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("train-data"));
    let model = data.join("models/cnn.onnx");
    assert!(
        model.is_file(),
        "{}: run `bash scripts/setup.sh`",
        model.display()
    );
    let dir = tmp("train");
    let train = |out: &Path, launch: bool, batch: &str, extra: &[&str]| {
        let mut args: Vec<String> = Vec::new();
        if launch {
            args.extend(["launch", "--np", "2", "--"].map(String::from));
        }
        args.extend(["train".to_string(), model.display().to_string()]);
        args.extend([
            "--data".to_string(),
            data.join("digits/train").display().to_string(),
        ]);
        args.extend([
            "--eval".to_string(),
            data.join("digits/test").display().to_string(),
        ]);
        args.extend(
            [
                "--epochs",
                "1",
                "--batch",
                batch,
                "--lr",
                "0.05",
                "--momentum",
                "0.9",
                "--threads",
                "1",
                "--seed",
                "3",
                "--out",
            ]
            .map(String::from),
        );
        args.push(out.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        hetflow(&a)
    };
    let (one, two) = (dir.join("one.onnx"), dir.join("two.onnx"));
    let o1 = train(&one, false, "64", &["--replicas", "2"]);
    ok(&o1, "one process, two replicas");
    let o2 = train(&two, true, "64", &[]);
    ok(&o2, "two MPI ranks");
    let text = String::from_utf8_lossy(&o2.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("epoch 1/1")).count(),
        1,
        "one report line (rank 0's): {text}"
    );
    assert!(
        text.lines().last().is_some_and(|l| l.starts_with("loss=")),
        "{text}"
    );
    let weights = |p: &Path| {
        let g = Model::load_unoptimized(p).unwrap().graph().clone();
        let mut w: Vec<(String, Vec<f32>)> = g
            .constants
            .iter()
            .filter(|(_, t)| t.dtype() == hetflow::ops::DType::F32)
            .map(|(v, t)| (g.name(*v).to_string(), t.to_f32_vec()))
            .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    };
    let (a, b) = (weights(&two), weights(&one));
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let d = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(d / scale <= 1e-5, "{name}: differs by {:.2e}", d / scale);
    }
    // A batch that does not split over the ranks: a clear error.
    let bad = train(&dir.join("bad.onnx"), true, "63", &[]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success(),
        "an uneven batch was accepted: {err}\n{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    assert!(err.contains("does not split evenly over 2 ranks"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
