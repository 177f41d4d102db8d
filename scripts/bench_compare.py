#!/usr/bin/env python3
"""hetflow against its peers, measured in the same run, sides alternated.

    .venv/bin/python scripts/bench_compare.py [--rounds 3] [--skip-resnet]

Builds the release binary, then for 1 and 2 threads:
  * f32 GEMM 1024^3: `hetflow bench` on a one-MatMul ONNX model (A fed, B a
    weight) vs numpy/OpenBLAS (scripts/bench_peers.py gemm);
  * ResNet-50 224x224 (fixtures-gen/zoo_resnet50, random weights):
    `hetflow bench` vs onnxruntime (scripts/bench_peers.py ort).
Each round runs hetflow then the peer; the table keeps the best median of the
rounds per side (these 2-core machines drift by up to 40% between runs) and
the ratio. Prints a markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
HF = str(ROOT / "target" / "release" / "hetflow")


def sh(cmd: list[str], env=None) -> str:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def hetflow_ms(model: Path, threads: int, iters: int, warmup: int) -> float:
    out = sh([HF, "bench", str(model), "--threads", str(threads), "--iters", str(iters), "--warmup", str(warmup)])
    return float(out.strip().splitlines()[-1].split("=")[1])


def peer(args: list[str]) -> dict:
    return json.loads(sh([PY, "scripts/bench_peers.py", *args]).strip().splitlines()[-1])


def gemm_model(n: int) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = ROOT / "target" / "bench" / f"gemm{n}.onnx"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b, "b")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--skip-resnet", action="store_true")
    a = ap.parse_args()
    sh(["cargo", "build", "--release", "--bin", "hetflow"])
    n = a.n
    flop = 2.0 * n**3
    gm = gemm_model(n)
    rows = []
    for t in (1, 2):
        hf, np_ = [], []
        for _ in range(a.rounds):
            hf.append(hetflow_ms(gm, t, 20, 3))
            np_.append(peer(["gemm", "--n", str(n), "--threads", str(t)])["median_s"] * 1e3)
        h, p = min(hf), min(np_)
        rows.append((f"f32 GEMM {n}^3, {t} thread(s)", "numpy/OpenBLAS", h, p,
                     f"{flop / h / 1e6:.0f} vs {flop / p / 1e6:.0f} GFLOP/s", p / h))
    if not a.skip_resnet:
        rn = ROOT / "fixtures-gen" / "zoo_resnet50" / "model.onnx"
        for t in (1, 2):
            hf, ort = [], []
            for _ in range(a.rounds):
                hf.append(hetflow_ms(rn, t, 10, 2))
                ort.append(peer(["ort", str(rn), "--threads", str(t), "--iters", "10", "--warmup", "2"])["median_ms"])
            h, p = min(hf), min(ort)
            rows.append((f"ResNet-50 224x224 batch 1, {t} thread(s)", "onnxruntime", h, p, "", p / h))
    print("| benchmark | peer | hetflow median ms | peer median ms | rate | speed vs peer (peer time / hetflow time) |")
    print("|---|---|---|---|---|---|")
    for name, peer_name, h, p, rate, ratio in rows:
        print(f"| {name} | {peer_name} | {h:.2f} | {p:.2f} | {rate} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
