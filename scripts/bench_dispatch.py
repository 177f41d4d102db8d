#!/usr/bin/env python3
"""Per-op dispatch: hetflow beside StarPU's per-task overhead, in one run.

    .venv/bin/python scripts/bench_dispatch.py [--n 10000] [--rounds 5]
        [--hetflow PATH] [--no-build]

hetflow side: `hetflow bench` on a chain of N one-element Neg nodes (an ONNX
model written to target/bench/, one CPU device, 1 kernel thread); the
median time of a run divided by N is the cost of one op: the same chain as
`cargo bench --bench dispatch`. Two figures: the default path, where a plan
on one CPU device runs on the caller's thread (shape resolution, kernel
call, buffer release), and the actor path (`HETFLOW_INLINE=0`: message,
ready queue, credit, kernel call), which every plan over several devices
takes.

StarPU side: benches/peers/starpu_dispatch.c (built here with gcc and
`pkg-config starpu-1.3`; Debian package libstarpu-dev), N tiny dependent
tasks (each reads and writes one registered float) under the eager
scheduler on 2 CPU workers, the figure StarPU users quote for per-task
overhead; its independent-task figure is printed beside it.

Rounds alternate the two sides; each side keeps its best round (these
shared 2-core machines drift). Prints a markdown row for
docs/benchmarks.md and the ratio hetflow / StarPU chain (issue 17 asks
for <= 0.5). Exit status 0 when both sides ran, 1 otherwise.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"


def chain_model(n: int) -> Path:
    import onnx
    from onnx import TensorProto, helper

    path = OUT / f"chain_neg_{n}.onnx"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    names = ["x"] + [f"t{i}" for i in range(1, n)] + ["y"]
    nodes = [helper.make_node("Neg", [names[i]], [names[i + 1]], name=f"neg{i}") for i in range(n)]
    g = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def build_starpu() -> Path:
    if shutil.which("pkg-config") is None or subprocess.run(
        ["pkg-config", "--exists", "starpu-1.3"]
    ).returncode != 0:
        sys.exit("bench_dispatch: StarPU not found (apt-get install libstarpu-dev pkg-config)")
    src = ROOT / "benches" / "peers" / "starpu_dispatch.c"
    exe = OUT / "starpu_dispatch"
    OUT.mkdir(parents=True, exist_ok=True)
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        flags = subprocess.run(
            ["pkg-config", "--cflags", "--libs", "starpu-1.3"], capture_output=True, text=True, check=True
        ).stdout.split()
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src), *flags], check=True)
    return exe


def run(cmd: list[str], env=None) -> str:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"bench_dispatch: {' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--hetflow", default=str(ROOT / "target" / "release" / "hetflow"))
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "hetflow"], cwd=ROOT, check=True)
    model = chain_model(a.n)
    starpu = build_starpu()
    env = dict(os.environ, STARPU_SCHED="eager", STARPU_SILENT="1", STARPU_NCPU="2",
               STARPU_NOPENCL="0", STARPU_NCUDA="0", STARPU_NMIC="0")
    hf, actors, chain, indep = [], [], [], []
    for r in range(a.rounds):
        for side, extra in ((hf, {}), (actors, {"HETFLOW_INLINE": "0"})):
            out = run([a.hetflow, "bench", str(model), "--threads", "1", "--device", "cpu",
                       "--iters", "10", "--warmup", "2"], dict(os.environ, **extra))
            ms = float(out.strip().splitlines()[-1].split("=")[1])
            side.append(ms * 1e3 / a.n)
        line = run([str(starpu), str(a.n), "1"], env).strip().splitlines()[-1]
        kv = dict(p.split("=") for p in line.split())
        chain.append(float(kv["chain_us"]))
        indep.append(float(kv["indep_us"]))
        print(f"round {r + 1}: hetflow {hf[-1]:.3f} us/op (actors {actors[-1]:.3f}), "
              f"StarPU chain {chain[-1]:.3f} indep {indep[-1]:.3f} us/task", flush=True)
    h, ac, c, i = min(hf), min(actors), min(chain), min(indep)
    print()
    print("| date | N | hetflow µs/op (1 thread) | hetflow actors µs/op | StarPU eager chain µs/task "
          "| StarPU independent µs/task | hetflow / StarPU chain | actors / StarPU chain |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {time.strftime('%Y-%m-%d')} | {a.n} | {h:.3f} | {ac:.3f} | {c:.3f} | {i:.3f} "
          f"| {h / c:.2f} | {ac / c:.2f} |")
    print(f"dispatch_ratio={h / c:.3f}")
    print(f"dispatch_ratio_actors={ac / c:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
