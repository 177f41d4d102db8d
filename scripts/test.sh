#!/usr/bin/env bash
# Set up (scripts/setup.sh), compile the CUDA kernels with NVRTC (scripts/nvrtc_check.py),
# run the workspace tests against the generated fixtures with the optional
# engines on (`--features hetflow/mpi`: the MPI launcher tests), then README's
# main-job command as written and every example in examples/ with the default
# features (which proves the default build needs no MPI), then a 60 s soak
# (scripts/soak.sh) and the latency regression check against onnxruntime
# (scripts/bench_regress.py). Everything builds in
# the release profile, so the tests and the examples share their dependencies.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi

now() { date +%s.%N; }
t0=$(now)
bash scripts/setup.sh
t1=$(now)

rc=0
# Every CUDA kernel must compile to PTX (NVRTC runs on the CPU).
.venv/bin/python scripts/nvrtc_check.py || rc=$?
HETFLOW_FIXTURES="$PWD/fixtures-gen" cargo test --workspace --release --features hetflow/mpi || rc=$?
# 20 s of each fuzz target over its seed corpus (docs/reliability.md, "Fuzzing").
bash scripts/fuzz.sh 20 || rc=$?
t2=$(now)

# README's main-job command, exactly as README.md writes it (the first ```sh
# block under "## Two commands"; README's other command is this script), then
# every example. Both share one release build.
main_cmd="$(awk '/^## Two commands/ { s = 1 } s && /^```sh/ { b = 1; next } b && /^```/ { exit } b { print }' README.md)"
case "$main_cmd" in
    *"--example quickstart"*) ;;
    *) echo "[test] README.md's main-job command not found under '## Two commands'" >&2; rc=1 ;;
esac
if [ -n "$main_cmd" ]; then
    echo "[test] README main-job command: $main_cmd"
    bash -c "$main_cmd" || { echo "[test] README main-job command failed" >&2; rc=1; }
fi
for ex in examples/*.rs; do
    ex="$(basename "$ex" .rs)"
    [ "$ex" = quickstart ] && continue # run above, as README writes it
    echo "[test] example $ex"
    cargo run --release --example "$ex" || { echo "[test] example $ex failed" >&2; rc=1; }
done
# 60 s of streaming through a two-stage pipeline: no request lost, RSS flat.
bash scripts/soak.sh 60 || { echo "[test] soak failed" >&2; rc=1; }
# Latency regressions (issue 17): the small-model set's hetflow/onnxruntime
# ratios from this run against scripts/bench_baseline.json, failing a model
# only above 2x its recorded ratio twice in a row (docs/benchmarks.md).
echo "[test] latency regression check against onnxruntime"
.venv/bin/python scripts/bench_regress.py --factor 2.0 --rounds 2 || { echo "[test] latency regression check failed" >&2; rc=1; }
t3=$(now)

awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v rc="$rc" 'BEGIN {
    printf "[test] setup %.1f s, cargo test %.1f s, README command + examples %.1f s, total %.1f s (exit %d)\n", b - a, c - b, d - c, d - a, rc }'
exit "$rc"
