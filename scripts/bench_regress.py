#!/usr/bin/env python3
"""Latency regression check against onnxruntime, for CI (issue 17).

    .venv/bin/python scripts/bench_regress.py [--hetflow PATH] [--factor 1.6]
        [--rounds 3] [--bless]

Not a timed test: absolute times on shared 2-core machines move by 40%, so
this compares *ratios* hetflow / onnxruntime measured in the same run, sides
alternated, best median of --rounds rounds per side (scripts/bench_compare.py
does the measuring), on the small-model set of scripts/gen_bench_models.py
at 1 thread (the thread count whose timings are steady here). A model fails
when its ratio is above --factor times its recorded ratio in
scripts/bench_baseline.json; a failing model is measured once more and
fails the check only if it fails again, so one noisy round does not fail
CI. --bless records the ratios of this run as the new baseline.

Runs in about a minute (the binary must be built: target/release/hetflow).
Exit status 0 when every model is within its limit, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compare as bc  # noqa: E402

BASELINE = Path(__file__).resolve().parent / "bench_baseline.json"


def isa() -> str:
    """The widest x86 vector ISA the kernels pick on this CPU (ratios
    recorded on one do not hold on another: the kernels differ)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "unknown"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    return "plain"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hetflow", help="the hetflow binary (default target/release/hetflow)")
    ap.add_argument("--factor", type=float, default=1.6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bless", action="store_true")
    ap.add_argument("--baseline", default=str(BASELINE), help="the recorded ratios (JSON)")
    a = ap.parse_args()
    baseline = Path(a.baseline)
    if a.hetflow:
        bc.HF = a.hetflow
    if not Path(bc.HF).exists():
        sys.exit(f"bench_regress: {bc.HF} not built (cargo build --release --bin hetflow)")
    if not a.bless and not baseline.exists():
        print(f"bench_regress: no recorded ratios in {baseline} (run with --bless on a quiet machine)")
        return 2
    base = {} if a.bless else json.loads(baseline.read_text())
    if base.pop("_isa", None) not in (None, isa()):
        print(f"bench_regress: ratios were recorded on another ISA; this CPU is {isa()}: skipped "
              "(record this machine's with --bless)")
        return 0
    models = bc.small_models()
    rows = bc.ort_vs_hetflow(models, [1], a.rounds, 20, 3)
    ratios = {r["model"]: r["ratio"] for r in rows}
    if a.bless:
        rec = {"_isa": isa(), **{k: round(v, 3) for k, v in ratios.items()}}
        baseline.write_text(json.dumps(rec, indent=1) + "\n")
        print(f"bench_regress: recorded {len(ratios)} ratios in {baseline}")
        return 0
    paths = dict(models)
    failed = []
    for name, ratio in ratios.items():
        if name not in base:
            print(f"bench_regress: {name}: no recorded ratio (run --bless)")
            failed.append(name)
            continue
        limit = base[name] * a.factor
        if ratio > limit:
            # Once more before calling it a regression.
            again = bc.ort_vs_hetflow([(name, paths[name])], [1], a.rounds, 20, 3)[0]["ratio"]
            ratio = min(ratio, again)
        ok = ratio <= limit
        print(f"bench_regress: {name}: ratio {ratio:.2f} (recorded {base[name]:.2f}, limit {limit:.2f})"
              f" {'ok' if ok else 'REGRESSION'}")
        if not ok:
            failed.append(name)
    if failed:
        print(f"bench_regress: {len(failed)} model(s) over their limit: {', '.join(failed)}")
        return 1
    print(f"bench_regress: {len(ratios)} models within {a.factor}x of their recorded ratios")
    return 0


if __name__ == "__main__":
    sys.exit(main())
