#!/usr/bin/env python3
"""Reproduces the cluster-scale validation table of docs/simulator-accuracy.md.

Runs `hetflow simulate --workload gpt` on every row of Table 1 of Narayanan
et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
Megatron-LM" (SC'21), with the micro-batch, interleaving and data-parallel
settings of the authors' script examples/sc21/run_table_1.sh
(github.com/NVIDIA/Megatron-LM), on docs/clusters/dgx-a100-80gb.toml, and
prints predicted vs published TFLOP/s per GPU, the error per row and the
median. Then runs `--search` on the 1T row's cluster (384 nodes).

The two constants of the spec that were calibrated (gemm_max, mem_eff) come
from the two smallest rows; `cargo test -p hetflow-scheduler megatron_table1`
recomputes that calibration and checks the spec carries it.

Usage: python3 scripts/validate_megatron.py [--bin target/release/hetflow]
"""

import argparse
import re
import statistics
import subprocess
import time

# params_B, heads, hidden, layers, tp, pp, gpus, batch, published TFLOP/s,
# micro-batch, layers per virtual stage (0: 1F1B), DDP=torch (overlapped)
TABLE1 = [
    (1.7, 24, 2304, 24, 1, 1, 32, 512, 137, 16, 0, True),
    (3.6, 32, 3072, 30, 2, 1, 64, 512, 138, 16, 0, True),
    (7.5, 32, 4096, 36, 4, 1, 128, 512, 142, 16, 0, True),
    (18.4, 48, 6144, 40, 8, 1, 256, 1024, 135, 8, 0, True),
    (39.1, 64, 8192, 48, 8, 2, 512, 1536, 138, 4, 0, False),
    (76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140, 2, 5, False),
    (145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148, 2, 5, False),
    (310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155, 1, 3, False),
    (529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163, 1, 1, False),
    (1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163, 1, 0, False),
]

# Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
# Models" (MLSys'23, arXiv:2205.05198): one pipeline replica (DP 1), iteration
# times in seconds with full recomputation and with sequence parallelism +
# selective recomputation, as transcribed (times and layouts) in Calculon's
# validation (github.com/calculon-ai/calculon: calculon/megatron/validation.py,
# validation/*.json). Not used for calibration.
# name, layers, hidden, heads, tp, pp, batch, micro-batch, chunks, full s, seq+sel s
KORTHIKANTI = [
    ("22B", 48, 6144, 64, 8, 1, 4, 4, 1, 1.42, 1.10),
    ("175B", 96, 12288, 96, 8, 8, 64, 1, 3, 18.13, 13.75),
    ("530B", 105, 20480, 128, 8, 35, 280, 1, 3, 49.05, 37.83),
    ("1T", 128, 25600, 160, 8, 64, 512, 1, 1, 94.42, 71.49),
]

CLUSTER = "docs/clusters/dgx-a100-80gb.toml"
LAST = re.compile(r"^iteration_s=([0-9.eE+-]+) tflops_per_device=([0-9.eE+-]+)$")


def args_for(row):
    (_, heads, hidden, layers, tp, pp, gpus, batch, _, mb, lpv, torch) = row
    dp = gpus // (tp * pp)
    a = ["simulate", "--workload", "gpt", "--layers", str(layers), "--hidden", str(hidden),
         "--heads", str(heads), "--seq", "2048", "--vocab", "51200",
         "--global-batch", str(batch), "--micro-batch", str(mb), "--tp", str(tp),
         "--pp", str(pp), "--dp", str(dp), "--recompute", "full",
         "--cluster", CLUSTER, "--nodes", str(gpus // 8)]
    if lpv:
        a += ["--schedule", "interleaved", "--chunks", str(layers // (pp * lpv))]
    if not torch:
        a += ["--no-dp-overlap"]
    return a


def run(binary, a):
    out = subprocess.run([binary] + a, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(a)}: {out.stderr.strip()}")
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/hetflow")
    opt = ap.parse_args()
    print("| params | layers | hidden | heads | TP | PP | DP | GPUs | batch | micro-batch | schedule "
          "| published TFLOP/s | predicted TFLOP/s | error | iteration s | bubble | memory GiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    errs = []
    for row in TABLE1:
        out = run(opt.bin, args_for(row))
        it, tf = map(float, LAST.match(out.strip().splitlines()[-1]).groups())
        bubble = re.search(r"bubble ([0-9.]+)%", out).group(1)
        mem = re.search(r"total ([0-9.]+) GiB", out).group(1)
        err = tf / row[8] - 1.0
        errs.append(abs(err))
        (p, heads, hidden, layers, tp, pp, gpus, batch, pub, mb, lpv, _) = row
        sched = f"interleaved v={layers // (pp * lpv)}" if lpv else "1F1B"
        print(f"| {p}B | {layers} | {hidden} | {heads} | {tp} | {pp} | {gpus // (tp * pp)} | {gpus} "
              f"| {batch} | {mb} | {sched} | {pub} | {tf:.1f} | {100 * err:+.1f}% | {it:.2f} "
              f"| {bubble}% | {mem} |")
    print(f"\nmedian |error| = {100 * statistics.median(errs):.1f}%, "
          f"max = {100 * max(errs):.1f}% (calibrated rows: 1.7B, 3.6B)")
    print("\nKorthikanti et al. (MLSys'23), DP 1, iteration time:\n")
    print("| model | GPUs | TP | PP | batch | micro-batch | schedule | recompute | published s | predicted s | error |")
    print("|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|")
    kerrs = []
    for (name, layers, hidden, heads, tp, pp, batch, mb, v, full_s, sel_s) in KORTHIKANTI:
        for mode, pub in (("full", full_s), ("selective + SP", sel_s)):
            a = ["simulate", "--workload", "gpt", "--layers", str(layers), "--hidden", str(hidden),
                 "--heads", str(heads), "--seq", "2048", "--vocab", "51200",
                 "--global-batch", str(batch), "--micro-batch", str(mb), "--tp", str(tp),
                 "--pp", str(pp), "--dp", "1", "--no-dp-overlap", "--cluster", CLUSTER]
            if v > 1:
                a += ["--schedule", "interleaved", "--chunks", str(v)]
            a += ["--recompute", "full"] if mode == "full" else \
                ["--recompute", "selective", "--sequence-parallel"]
            out = run(opt.bin, a)
            it, _ = map(float, LAST.match(out.strip().splitlines()[-1]).groups())
            err = it / pub - 1.0
            kerrs.append(abs(err))
            sched = f"interleaved v={v}" if v > 1 else "1F1B"
            print(f"| {name} | {tp * pp} | {tp} | {pp} | {batch} | {mb} | {sched} | {mode} "
                  f"| {pub} | {it:.2f} | {100 * err:+.1f}% |")
    print(f"\nmedian |error| = {100 * statistics.median(kerrs):.1f}%, max = {100 * max(kerrs):.1f}%")
    a = ["simulate", "--workload", "gpt", "--layers", "128", "--hidden", "25600", "--heads", "160",
         "--seq", "2048", "--vocab", "51200", "--global-batch", "3072", "--no-dp-overlap",
         "--cluster", CLUSTER, "--nodes", "384", "--search", "--top", "10",
         "--tp", "8", "--pp", "64", "--dp", "6", "--micro-batch", "1", "--schedule", "1f1b",
         "--recompute", "full"]
    t0 = time.time()
    out = run(opt.bin, a)
    print(f"\n$ hetflow {' '.join(a)}   # {time.time() - t0:.2f} s wall\n")
    print(out)


if __name__ == "__main__":
    main()
