#!/usr/bin/env python3
"""The OpenCL backend against the CPU backend, measured in the same run.

    .venv/bin/python scripts/bench_opencl.py [--rounds 3] [--baseline BIN]

Uses the release binary (target/release/hetflow; build it first with
`cargo build --release --bin hetflow`). Benchmarks: f32 GEMM 256^3, 512^3,
1024^3 (a one-MatMul ONNX model, A fed, B a weight; scripts/bench_compare.py
writes it) and fixtures-gen/zoo_squeezenet (batch 1), each on
  * opencl:0            `hetflow bench MODEL --device opencl:0`
  * cpu:0, 1 thread     `hetflow bench MODEL --device cpu:0 --threads 1`
  * cpu:0, all threads  `hetflow bench MODEL --device cpu:0 --threads N`
  * (with --baseline BIN) opencl:0 with another hetflow binary, e.g. one
    built before a kernel change.
Every round runs all sides of a benchmark back to back, rotating which side
goes first; the table keeps the best median of the rounds per side (the
2-core machines are shared and drift). The OpenCL times include the upload
of the input and the download of the output. Prints a markdown table and
the load average before and after.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HF = str(ROOT / "target" / "release" / "hetflow")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_compare import gemm_model  # noqa: E402


def median_ms(binary: str, model: Path, args: list[str], iters: int, warmup: int) -> float:
    cmd = [binary, "bench", str(model), *args, "--iters", str(iters), "--warmup", str(warmup)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{r.stderr}")
    last = r.stdout.strip().splitlines()[-1]
    if not last.startswith("median_ms="):
        sys.exit(f"unexpected last line from {' '.join(cmd)}: {last}")
    return float(last.split("=")[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--fixtures", default=os.environ.get("HETFLOW_FIXTURES", str(ROOT / "fixtures-gen")))
    ap.add_argument("--baseline", help="another hetflow binary to time on opencl:0")
    a = ap.parse_args()
    threads = os.cpu_count() or 1
    sides = [
        ("opencl:0", HF, ["--device", "opencl:0"]),
        ("cpu:0 1 thread", HF, ["--device", "cpu:0", "--threads", "1"]),
        (f"cpu:0 {threads} threads", HF, ["--device", "cpu:0", "--threads", str(threads)]),
    ]
    if a.baseline:
        sides.append(("opencl:0 baseline", a.baseline, ["--device", "opencl:0"]))
    benches = []
    for n in (int(s) for s in a.sizes.split(",")):
        iters = 20 if n <= 512 else 10
        benches.append((f"f32 GEMM {n}^3", gemm_model(n), 2.0 * n**3, iters))
    sq = Path(a.fixtures) / "zoo_squeezenet" / "model.onnx"
    benches.append(("zoo_squeezenet batch 1", sq, None, 10))
    load0 = os.getloadavg()
    best: dict[tuple[str, str], float] = {}
    for r in range(a.rounds):
        for name, model, _, iters in benches:
            order = sides[r % len(sides):] + sides[: r % len(sides)]
            for side, binary, args in order:
                ms = median_ms(binary, model, args, iters, 2)
                key = (name, side)
                best[key] = min(best.get(key, float("inf")), ms)
                print(f"round {r} {name} {side}: {ms:.2f} ms", file=sys.stderr)
    load1 = os.getloadavg()
    names = [s[0] for s in sides]
    print("| benchmark | " + " | ".join(f"{s} ms" for s in names) + " | opencl:0 vs cpu:0 1 thread | opencl:0 vs cpu:0 all threads |")
    print("|---" * (len(names) + 3) + "|")
    for name, _, flop, _ in benches:
        cells = []
        for s in names:
            ms = best[(name, s)]
            rate = f" ({flop / ms / 1e6:.1f} GFLOP/s)" if flop else ""
            cells.append(f"{ms:.2f}{rate}")
        ocl = best[(name, "opencl:0")]
        r1 = best[(name, names[1])] / ocl
        rn = best[(name, names[2])] / ocl
        print(f"| {name} | " + " | ".join(cells) + f" | {r1:.2f}x | {rn:.2f}x |")
    print()
    print(f"best median of {a.rounds} rounds per side; ratio = CPU time / OpenCL time (above 1: OpenCL faster)")
    print(f"load average (1, 5, 15 min) before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
          f"after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; {threads} logical CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
