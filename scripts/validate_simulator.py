#!/usr/bin/env python3
"""Simulator accuracy: run plans for real on this machine and compare with
`hetflow simulate` on the ClusterSpec that `hetflow profile` measured.

For each case (model, devices, micro-batches):
  1. `hetflow plan MODEL --cluster C --devices D --microbatches M --out plan.json`
  2. `hetflow bench MODEL --plan plan.json --microbatches M --trace real.json`
     -> measured median_ms of one run of M micro-batches
  3. `hetflow simulate MODEL --plan plan.json --cluster C --trace sim.json`
     -> predicted makespan (ms)
and prints |predicted - measured| / measured per plan, the median over the
plans, and the table as Markdown (for docs/simulator-accuracy.md).

Runtime overheads (per kernel/copy and per run, `simulate --task-overhead-us
--run-overhead-us`) are fitted first on calibration models that are not
among the validated plans (CALIBRATION, one device, 1 and 4 micro-batches,
three benches each): the measured-minus-simulated time is run_overhead +
(micro-batches x kernels) x task_overhead, fitted by least squares.
--no-overheads skips this (pure cost-model prediction).

The emulated TPU cases (--tpu) are reported apart: the cluster spec holds
the TPU's *modelled* times (a TPU v5e-like chip) while a real run measures
the host emulation, so they measure the emulator, not the simulator.

With --repeat K the whole experiment (profile, calibration, plan, run,
prediction) is done K times; a plan's error is the median of its K
errors, which takes out the machine's minute-to-minute drift (a shared VM
moves 10-20% between runs) but not a bias of the model.

Usage: scripts/validate_simulator.py [--bin target/release/hetflow]
       [--fixtures fixtures-gen] [--out DIR] [--iters 10] [--tpu] [--opencl]
       [--repeat K]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

# (model, devices, micro-batches): differ in model, device count and
# micro-batch count.
CASES = [
    ("mlp", "cpu:0", 1),
    ("mlp", "cpu:0,cpu:1", 4),
    ("lenet", "cpu:0,cpu:1", 8),
    ("resnet_block", "cpu:0", 2),
    ("resnet_block", "cpu:0,cpu:1", 4),
    ("transformer_encoder", "cpu:0,cpu:1", 4),
    ("mobilenet_block", "cpu:0,cpu:1", 2),
    ("zoo_squeezenet", "cpu:0,cpu:1", 2),
]
CALIBRATION = "ops_mix_a,ops_mix_b,ops_mix_c,gelu20,weird_names,symbolic_batch"
TPU_CASES = [("lenet", "cpu:0,tpu:0", 4), ("mlp", "cpu:0,tpu:0", 4)]
# PoCL's OpenCL device shares the CPU cores: run with POCL_CPU_MAX_CU_NUM=1
# so that it takes one core.
OPENCL_CASES = [("zoo_squeezenet", "cpu:0,opencl:0", 4), ("lenet", "cpu:0,opencl:0", 4)]


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr.strip()}")
    return p.stdout


def last_number(out, key):
    m = re.findall(rf"^{key}=([0-9.eE+-]+)", out, re.M)
    if not m:
        raise RuntimeError(f"no {key}= in output:\n{out}")
    return float(m[-1])


def calibrate(a, cluster, env):
    """Fits (task overhead, run overhead) in µs on the calibration models;
    returns the simulate flags.

    For each calibration model (one device) at 1 and 4 micro-batches, the
    gap measured - simulated is `run + (m x kernels) x task`; the two are
    fitted by least squares over all points (three benches per point, the
    median kept), clamped at 0."""
    import json
    pts = []
    for model in a.calibration.split(","):
        onnx = os.path.join(a.fixtures, model, "model.onnx")
        for m in (1, 4):
            plan = os.path.join(a.out, f"calib-{model}-m{m}.plan.json")
            run([a.bin, "plan", onnx, "--cluster", cluster, "--devices", "cpu:0",
                 "--microbatches", str(m), "--out", plan], env)
            n = len(json.load(open(plan))["placement"])
            reals = [last_number(run([a.bin, "bench", onnx, "--plan", plan, "--microbatches", str(m),
                                      "--device", a.devices,
                                      "--iters", str(a.iters), "--warmup", str(a.warmup)], env),
                                 "median_ms") for _ in range(3)]
            sim = last_number(run([a.bin, "simulate", onnx, "--plan", plan, "--cluster", cluster], env),
                              "makespan")
            pts.append((m * n, (statistics.median(reals) - sim) * 1e3))
    # Least squares for gap = run + x * task.
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    task = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx > 0 else 0.0
    task = max(0.0, task)
    run_us = max(0.0, my - task * mx)
    print(f"calibration on {a.calibration} ({len(pts)} points): task overhead {task:.2f} us, "
          f"run overhead {run_us:.2f} us", file=sys.stderr)
    print(f"calibration ({a.calibration}, cpu:0, 1 and 4 micro-batches, least squares): "
          f"--task-overhead-us {task:.2f} --run-overhead-us {run_us:.2f}\n")
    return ["--task-overhead-us", f"{task:.3f}", "--run-overhead-us", f"{run_us:.3f}"]


def one_round(a, cases, devices, env, r):
    """Profile, calibrate and run every case once; returns
    {tag: (model, devs, ndev, m, measured_ms, predicted_ms)}."""
    out = {}
    cluster = os.path.join(a.out, "cluster.toml")
    if not (a.reuse_cluster and os.path.exists(cluster)):
        # The calibration model is profiled too, so that the overhead fit
        # sees measured kernel times rather than the roofline's error.
        models = sorted({c[0] for c in cases} | set(a.calibration.split(",")))
        cmd = [a.bin, "profile", "--device", ",".join(devices), "--iters", str(a.iters),
               "--out", cluster]
        for m in models:
            cmd += ["--model", os.path.join(a.fixtures, m, "model.onnx")]
        t = time.time()
        run(cmd, env)
        print(f"profiled {','.join(devices)} in {time.time() - t:.0f} s -> {cluster}", file=sys.stderr)
    over = []
    if not a.no_overheads:
        over = calibrate(a, cluster, env)
    for model, devs, m in cases:
        tag = f"{model}-{devs.replace(',', '+').replace(':', '')}-m{m}"
        onnx = os.path.join(a.fixtures, model, "model.onnx")
        plan = os.path.join(a.out, f"{tag}.plan.json")
        try:
            run([a.bin, "plan", onnx, "--cluster", cluster, "--devices", devs,
                 "--microbatches", str(m), "--out", plan], env)
            # The devices as profiled: "cpu:0" alone would own every core.
            real = run([a.bin, "bench", onnx, "--plan", plan, "--microbatches", str(m),
                        "--device", a.devices,
                        "--iters", str(a.iters), "--warmup", str(a.warmup),
                        "--trace", os.path.join(a.out, f"{tag}.real.json")], env)
            sim = run([a.bin, "simulate", onnx, "--plan", plan, "--cluster", cluster,
                       "--trace", os.path.join(a.out, f"{tag}.sim.json"),
                       "--svg", os.path.join(a.out, f"{tag}.sim.svg")] + over, env)
        except RuntimeError as e:
            print(f"{tag}: skipped: {e}", file=sys.stderr)
            continue
        measured = last_number(real, "median_ms")
        predicted = last_number(sim, "makespan")
        ndev = len(set(__import__("json").load(open(plan))["placement"]))
        err = (predicted - measured) / measured
        out[tag] = (model, devs, ndev, m, measured, predicted)
        print(f"round {r + 1}: {tag}: measured {measured:.3f} ms, predicted {predicted:.3f} ms, error {100 * err:+.1f}%",
              file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/hetflow")
    ap.add_argument("--fixtures", default="fixtures-gen")
    ap.add_argument("--out", default="target/sim-validation")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tpu", action="store_true", help="also plans with the emulated TPU")
    ap.add_argument("--opencl", action="store_true", help="also plans with opencl:0 (PoCL)")
    ap.add_argument("--calibration", default=CALIBRATION,
                    help="calibration models, comma-separated (not validated)")
    ap.add_argument("--no-overheads", action="store_true", help="do not fit runtime overheads")
    ap.add_argument("--reuse-cluster", action="store_true", help="keep an existing cluster.toml")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of profile + calibration + every case; a plan's error is the "
                         "median of its per-round errors (times shown: medians over the rounds)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    env = dict(os.environ, HETFLOW_TPU="1")
    cases = CASES + (TPU_CASES if a.tpu else []) + (OPENCL_CASES if a.opencl else [])
    cases = [c for c in cases if os.path.exists(os.path.join(a.fixtures, c[0], "model.onnx"))]
    devices = sorted({d for c in cases for d in c[1].split(",")})
    a.devices = ",".join(devices)
    rounds = [one_round(a, cases, devices, env, r) for r in range(a.repeat)]
    rows = []
    for tag in rounds[0]:
        got = [rd[tag] for rd in rounds if tag in rd]
        model, devs, ndev, m = got[0][:4]
        measured = statistics.median(g[4] for g in got)
        predicted = statistics.median(g[5] for g in got)
        errs = [(g[5] - g[4]) / g[4] for g in got]
        # A plan's error: the median of its per-round errors (each round
        # is a whole experiment: its own profile, plan, run and prediction).
        rows.append((model, devs, ndev, m, measured, predicted, statistics.median(errs), errs))
    if a.repeat > 1:
        for r in range(a.repeat):
            e = [abs((g[5] - g[4]) / g[4]) for g in rounds[r].values() if "tpu" not in g[1]]
            if e:
                print(f"round {r + 1} alone: median |error| {100 * statistics.median(e):.1f}%")
        print()
    if not rows:
        sys.exit("no case ran")
    print("| model | devices offered | devices used | micro-batches | measured ms | predicted ms | error | error per round |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for model, devs, ndev, m, meas, pred, err, errs in rows:
        per = ", ".join(f"{100 * e:+.0f}%" for e in errs)
        print(f"| {model} | {devs} | {ndev} | {m} | {meas:.3f} | {pred:.3f} | {100 * err:+.1f}% | {per} |")
    # Real devices (CPU, PoCL): the TPU rows measure the emulator.
    cpu_rows = [r for r in rows if "tpu" not in r[1]]
    med = statistics.median(abs(r[6]) for r in cpu_rows or rows)
    if len(cpu_rows) != len(rows):
        print("\n(the median is over the plans on real devices; TPU rows measure the emulator, see the docstring)")
    print(f"\nplans: {len(cpu_rows or rows)}; median |predicted - measured| / measured = {100 * med:.1f}%")
    print(f"median_abs_error={med:.4f}")


if __name__ == "__main__":
    main()
