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

Usage: scripts/validate_simulator.py [--bin target/release/hetflow]
       [--fixtures fixtures-gen] [--out DIR] [--iters 10] [--tpu]
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
TPU_CASES = [("lenet", "cpu:0,tpu:0", 4), ("mlp", "cpu:0,tpu:0", 4)]


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/hetflow")
    ap.add_argument("--fixtures", default="fixtures-gen")
    ap.add_argument("--out", default="target/sim-validation")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tpu", action="store_true", help="also plans with the emulated TPU")
    ap.add_argument("--reuse-cluster", action="store_true", help="keep an existing cluster.toml")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    env = dict(os.environ, HETFLOW_TPU="1")
    cases = CASES + (TPU_CASES if a.tpu else [])
    cases = [c for c in cases if os.path.exists(os.path.join(a.fixtures, c[0], "model.onnx"))]
    devices = sorted({d for c in cases for d in c[1].split(",")})
    cluster = os.path.join(a.out, "cluster.toml")
    if not (a.reuse_cluster and os.path.exists(cluster)):
        models = sorted({c[0] for c in cases})
        cmd = [a.bin, "profile", "--device", ",".join(devices), "--out", cluster]
        for m in models:
            cmd += ["--model", os.path.join(a.fixtures, m, "model.onnx")]
        t = time.time()
        run(cmd, env)
        print(f"profiled {','.join(devices)} in {time.time() - t:.0f} s -> {cluster}", file=sys.stderr)
    rows = []
    for model, devs, m in cases:
        tag = f"{model}-{devs.replace(',', '+').replace(':', '')}-m{m}"
        onnx = os.path.join(a.fixtures, model, "model.onnx")
        plan = os.path.join(a.out, f"{tag}.plan.json")
        try:
            run([a.bin, "plan", onnx, "--cluster", cluster, "--devices", devs,
                 "--microbatches", str(m), "--out", plan], env)
            real = run([a.bin, "bench", onnx, "--plan", plan, "--microbatches", str(m),
                        "--iters", str(a.iters), "--warmup", str(a.warmup),
                        "--trace", os.path.join(a.out, f"{tag}.real.json")], env)
            sim = run([a.bin, "simulate", onnx, "--plan", plan, "--cluster", cluster,
                       "--trace", os.path.join(a.out, f"{tag}.sim.json"),
                       "--svg", os.path.join(a.out, f"{tag}.sim.svg")], env)
        except RuntimeError as e:
            print(f"{tag}: skipped: {e}", file=sys.stderr)
            continue
        measured = last_number(real, "median_ms")
        predicted = last_number(sim, "makespan")
        ndev = len(set(__import__("json").load(open(plan))["placement"]))
        err = (predicted - measured) / measured
        rows.append((model, devs, ndev, m, measured, predicted, err))
        print(f"{tag}: measured {measured:.3f} ms, predicted {predicted:.3f} ms, error {100 * err:+.1f}%",
              file=sys.stderr)
    if not rows:
        sys.exit("no case ran")
    print("| model | devices offered | devices used | micro-batches | measured ms | predicted ms | error |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model, devs, ndev, m, meas, pred, err in rows:
        print(f"| {model} | {devs} | {ndev} | {m} | {meas:.3f} | {pred:.3f} | {100 * err:+.1f}% |")
    med = statistics.median(abs(r[6]) for r in rows)
    print(f"\nplans: {len(rows)}; median |predicted - measured| / measured = {100 * med:.1f}%")
    print(f"median_abs_error={med:.4f}")


if __name__ == "__main__":
    main()
