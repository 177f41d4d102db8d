#!/usr/bin/env python3
"""hetflow against its peers, measured in the same run, sides alternated.

    .venv/bin/python scripts/bench_compare.py [--rounds 3] [--sets gemm,resnet]
        [--threads 1,2] [--hetflow PATH] [--no-build] [--json OUT]

Builds the release binary (unless --no-build), then for each thread count:
  * `gemm`: f32 GEMM 1024^3, `hetflow bench` on a one-MatMul ONNX model (A
    fed, B a weight) vs numpy/OpenBLAS (scripts/bench_peers.py gemm);
  * `resnet`: ResNet-50 224x224 (fixtures-gen/zoo_resnet50, random weights)
    vs onnxruntime (scripts/bench_peers.py ort);
  * `small`: the small-model set of scripts/gen_bench_models.py (MLP batch 1
    and 32, LeNet, a ResNet block, a MobileNet block, a transformer encoder
    block, a BERT-base-shaped encoder layer; seeded, not test fixtures)
    vs onnxruntime;
  * `zoo`: the light-zoo CNNs present in fixtures-gen (zoo_*) vs onnxruntime.
Each round runs hetflow then the peer for every model; the table keeps the
best median of the rounds per side (these 2-core machines drift by up to 40%
between runs) and the ratio. For the `small` and `zoo` sets the ratio is the
latency ratio hetflow / onnxruntime (below 1 is faster than onnxruntime) and
each set ends with its geometric mean per thread count. Prints markdown
tables for docs/benchmarks.md; --json writes the rows for scripts such as
scripts/bench_regress.py.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = os.environ.get("HETFLOW_PYTHON", sys.executable)
HF = str(ROOT / "target" / "release" / "hetflow")
FIXTURES = Path(os.environ.get("HETFLOW_FIXTURES", ROOT / "fixtures-gen"))


def sh(cmd: list[str], env=None) -> str:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def hetflow_run(model: Path, threads: int, iters: int, warmup: int) -> dict:
    """`hetflow bench`'s median and, when it reports them, peak RSS and RSS at start."""
    out = sh([HF, "bench", str(model), "--threads", str(threads), "--iters", str(iters), "--warmup", str(warmup)])
    r = {}
    for line in out.strip().splitlines():
        for part in line.split():
            k, eq, v = part.partition("=")
            if eq and k in ("median_ms", "peak_rss_mb", "start_rss_mb"):
                r[k] = float(v)
    return r


def hetflow_ms(model: Path, threads: int, iters: int, warmup: int) -> float:
    return hetflow_run(model, threads, iters, warmup)["median_ms"]


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


def small_models() -> list[tuple[str, Path]]:
    out = ROOT / "target" / "bench" / "small"
    names = sh([PY, "scripts/gen_bench_models.py", "--out", str(out)]).split()
    return [(n, out / f"{n}.onnx") for n in names]


def zoo_models() -> list[tuple[str, Path]]:
    return [(d.name.removeprefix("zoo_"), d / "model.onnx")
            for d in sorted(FIXTURES.glob("zoo_*")) if (d / "model.onnx").exists()]


def ort_vs_hetflow(models, threads: list[int], rounds: int, iters: int, warmup: int) -> list[dict]:
    """Best medians of `rounds` alternated hetflow / onnxruntime runs."""
    rows = []
    for t in threads:
        for name, path in models:
            hf, ort = [], []
            for _ in range(rounds):
                hf.append(hetflow_ms(path, t, iters, warmup))
                ort.append(peer(["ort", str(path), "--threads", str(t), "--iters", str(iters),
                                 "--warmup", str(warmup)])["median_ms"])
            rows.append({"model": name, "threads": t, "hetflow_ms": min(hf), "ort_ms": min(ort),
                         "ratio": min(hf) / min(ort)})
            print(f"# {name} t={t}: {min(hf):.3f} vs {min(ort):.3f} ms", file=sys.stderr, flush=True)
    return rows


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def ratio_table(title: str, rows: list[dict], threads: list[int]) -> None:
    print(f"\n**{title}** (latency ratio hetflow / onnxruntime; below 1.00 is faster)\n")
    head = " | ".join(f"{t} thread(s): hetflow ms / ort ms / ratio" for t in threads)
    print(f"| model | {head} |")
    print("|---|" + "---|" * len(threads))
    by = {(r["model"], r["threads"]): r for r in rows}
    for name in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for t in threads:
            r = by.get((name, t))
            cells.append(f"{r['hetflow_ms']:.3f} / {r['ort_ms']:.3f} / **{r['ratio']:.2f}**" if r else "")
        print(f"| {name} | " + " | ".join(cells) + " |")
    gm = [f"**{geomean([r['ratio'] for r in rows if r['threads'] == t]):.2f}**" for t in threads]
    print("| geometric mean | " + " | ".join(gm) + " |")


def main() -> int:
    global HF
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--sets", default="gemm,resnet", help="comma list of gemm,resnet,small,zoo")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--skip-resnet", action="store_true", help="same as leaving resnet out of --sets")
    ap.add_argument("--hetflow", help="the hetflow binary (default target/release/hetflow)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--json", help="write the small/zoo rows here")
    a = ap.parse_args()
    sets = set(a.sets.split(","))
    if a.skip_resnet:
        sets.discard("resnet")
    threads = [int(t) for t in a.threads.split(",")]
    if a.hetflow:
        HF = a.hetflow
    if not a.no_build:
        sh(["cargo", "build", "--release", "--bin", "hetflow"])
    n = a.n
    flop = 2.0 * n**3
    rows = []
    mem_rows = []
    for t in threads if "gemm" in sets else []:
        gm = gemm_model(n)
        hf, np_ = [], []
        for _ in range(a.rounds):
            hf.append(hetflow_ms(gm, t, 20, 3))
            np_.append(peer(["gemm", "--n", str(n), "--threads", str(t)])["median_s"] * 1e3)
        h, p = min(hf), min(np_)
        rows.append((f"f32 GEMM {n}^3, {t} thread(s)", "numpy/OpenBLAS", h, p,
                     f"{flop / h / 1e6:.0f} vs {flop / p / 1e6:.0f} GFLOP/s", p / h))
    if "resnet" in sets:
        rn = FIXTURES / "zoo_resnet50" / "model.onnx"
        for t in threads:
            hf, ort, hf_mem, ort_mem = [], [], [], []
            for _ in range(a.rounds):
                r = hetflow_run(rn, t, 10, 2)
                hf.append(r["median_ms"])
                if "peak_rss_mb" in r:
                    hf_mem.append(r["peak_rss_mb"] - r["start_rss_mb"])
                o = peer(["ort", str(rn), "--threads", str(t), "--iters", "10", "--warmup", "2"])
                ort.append(o["median_ms"])
                if "peak_rss_mb" in o:
                    ort_mem.append(o["peak_rss_mb"] - o["base_rss_mb"])
            h, p = min(hf), min(ort)
            rows.append((f"ResNet-50 224x224 batch 1, {t} thread(s)", "onnxruntime", h, p, "", p / h))
            if hf_mem and ort_mem:
                # Peak RSS over each process's start (ort: over the
                # interpreter and numpy before onnxruntime is imported).
                mem_rows.append((t, min(hf_mem), min(ort_mem)))
    if rows:
        print("| benchmark | peer | hetflow median ms | peer median ms | rate | speed vs peer (peer time / hetflow time) |")
        print("|---|---|---|---|---|---|")
        for name, peer_name, h, p, rate, ratio in rows:
            print(f"| {name} | {peer_name} | {h:.2f} | {p:.2f} | {rate} | {ratio:.2f}x |")
    if mem_rows:
        print("\n| ResNet-50 peak RSS over start | hetflow MiB | onnxruntime MiB | hetflow / onnxruntime |")
        print("|---|---|---|---|")
        for t, h, p in mem_rows:
            print(f"| {t} thread(s) | {h:.0f} | {p:.0f} | {h / p:.2f} |")
    out = {}
    if "small" in sets:
        out["small"] = ort_vs_hetflow(small_models(), threads, a.rounds, 30, 5)
        ratio_table("Small-model set", out["small"], threads)
    if "zoo" in sets:
        out["zoo"] = ort_vs_hetflow(zoo_models(), threads, a.rounds, 10, 2)
        ratio_table("Light-zoo CNNs (batch 1, seeded random weights)", out["zoo"], threads)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
