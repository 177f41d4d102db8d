#!/usr/bin/env python3
"""Peer timings for comparison with hetflow in the same run. One JSON line per run.

    .venv/bin/python scripts/bench_peers.py gemm --n 1024 --threads 1 [--reps 30] [--warmup 3]
    .venv/bin/python scripts/bench_peers.py ort MODEL.onnx --threads 1 [--iters 50] [--warmup 5]

gemm: numpy float32 C = A @ B (n x n x n, 2 n^3 flop) with the BLAS thread pool
limited by threadpoolctl; reports median and best seconds over --reps timed runs
after --warmup untimed ones, GFLOP/s of both, and the BLAS threadpoolctl sees
(library, version, core type it picked). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
can be set on the build machines and slow OpenBLAS down; this command re-executes
itself once without them (only in its own process) and says so in "env_removed".
Pass --keep-env to measure with them.

ort: onnxruntime CPUExecutionProvider latency of one sess.run: intra_op_num_threads
= --threads, inter_op_num_threads = 1, sequential execution, default graph
optimizations (ORT_ENABLE_ALL). Inputs are random (float: standard normal, ints:
zeros, bool: False) of the model's declared shapes with symbolic or unknown dims
set to 1 (or --dim NAME=VALUE). Reports median, min, p90 milliseconds over --iters
runs after --warmup untimed ones.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

STRIP_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REEXEC_MARK = "HETFLOW_BENCH_PEERS_REEXEC"


def emit(obj: dict) -> None:
    print(json.dumps(obj, sort_keys=False), flush=True)


def maybe_reexec_clean_env(keep_env: bool) -> list[str]:
    """Re-exec this process without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (before numpy loads)."""
    if os.environ.get(REEXEC_MARK):
        return [v for v in os.environ[REEXEC_MARK].split(",") if v]
    present = [v for v in STRIP_ENV if v in os.environ]
    if keep_env or not present:
        return []
    env = {k: v for k, v in os.environ.items() if k not in STRIP_ENV}
    env[REEXEC_MARK] = ",".join(present) or ","
    os.execve(sys.executable, [sys.executable] + sys.argv, env)
    return present  # not reached


def cmd_gemm(args) -> None:
    removed = maybe_reexec_clean_env(args.keep_env)
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    n = args.n
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        blas = [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                    "threading_layer", "filepath")}
            for p in threadpool_info() if p.get("user_api") == "blas"
        ]
        for _ in range(args.warmup):
            np.matmul(a, b, out=c)
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            np.matmul(a, b, out=c)
            times.append(time.perf_counter() - t)
    # sanity: one row against float64
    ref = a[:1].astype(np.float64) @ b.astype(np.float64)
    err = float(np.abs(c[:1] - ref).max() / np.abs(ref).max())
    flop = 2.0 * n ** 3
    med, best = statistics.median(times), min(times)
    emit({
        "bench": "gemm", "impl": "numpy", "dtype": "float32", "n": n, "threads": args.threads,
        "reps": args.reps, "warmup": args.warmup,
        "median_s": med, "min_s": best,
        "gflops_median": flop / med / 1e9, "gflops_best": flop / best / 1e9,
        "max_rel_err_row0": err,
        "blas": blas, "env_removed": removed,
        "numpy": np.__version__, "cpu_count": os.cpu_count(), "machine": platform.machine(),
    })


_NP_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(bool)": "bool",
}


def _status_mb(key: str) -> float:
    """A VmRSS/VmHWM line of /proc/self/status, in MiB (nan off Linux)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def cmd_ort(args) -> None:
    import numpy as np

    # The interpreter and numpy before onnxruntime is imported: subtracted
    # from the peak so the figure is onnxruntime's own (library, weights,
    # arena), comparable with `hetflow bench`'s peak over its start.
    base_rss = _status_mb("VmRSS")
    import onnxruntime as ort

    dims = {}
    for d in args.dim or []:
        k, _, v = d.partition("=")
        dims[k] = int(v)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    t = time.perf_counter()
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    init_s = time.perf_counter() - t

    rng = np.random.default_rng(0)
    feeds, shapes = {}, {}
    for i in sess.get_inputs():
        shape = [s if isinstance(s, int) and s >= 0 else dims.get(str(s), 1) for s in i.shape]
        dt = _NP_TYPES.get(i.type)
        if dt is None:
            raise SystemExit(f"input {i.name}: unsupported type {i.type}")
        if dt.startswith("float"):
            feeds[i.name] = rng.standard_normal(shape).astype(dt)
        else:
            feeds[i.name] = np.zeros(shape, dtype=dt)
        shapes[i.name] = shape
    for _ in range(args.warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    times_sorted = sorted(times)
    emit({
        "bench": "ort", "model": args.model, "threads": args.threads,
        "iters": args.iters, "warmup": args.warmup,
        "median_ms": statistics.median(times), "min_ms": times_sorted[0],
        "p90_ms": times_sorted[min(len(times) - 1, int(0.9 * len(times)))],
        "session_init_s": init_s, "inputs": shapes,
        "graph_optimization_level": "ORT_ENABLE_ALL", "execution_mode": "ORT_SEQUENTIAL",
        "inter_op_threads": 1, "onnxruntime": ort.__version__, "cpu_count": os.cpu_count(),
        "peak_rss_mb": _status_mb("VmHWM"), "base_rss_mb": base_rss,
    })


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gemm", help="numpy/OpenBLAS float32 GEMM")
    g.add_argument("--n", type=int, default=1024)
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--reps", type=int, default=30)
    g.add_argument("--warmup", type=int, default=3)
    g.add_argument("--keep-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE if set")
    o = sub.add_parser("ort", help="onnxruntime latency of one model")
    o.add_argument("model")
    o.add_argument("--threads", type=int, default=1)
    o.add_argument("--iters", type=int, default=50)
    o.add_argument("--warmup", type=int, default=5)
    o.add_argument("--dim", action="append", metavar="NAME=VALUE",
                   help="value of a symbolic dim (default 1)")
    args = ap.parse_args()
    if args.cmd == "gemm":
        if args.reps < 20:
            ap.error("--reps must be >= 20")
        cmd_gemm(args)
    else:
        cmd_ort(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
