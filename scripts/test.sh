#!/usr/bin/env bash
# Set up (scripts/setup.sh), compile the CUDA kernels with NVRTC (scripts/nvrtc_check.py),
# then run the workspace tests against the generated fixtures.
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
HETFLOW_FIXTURES="$PWD/fixtures-gen" cargo test --workspace || rc=$?
t2=$(now)

awk -v a="$t0" -v b="$t1" -v c="$t2" -v rc="$rc" 'BEGIN {
    printf "[test] setup %.1f s, cargo test %.1f s, total %.1f s (exit %d)\n", b - a, c - b, c - a, rc }'
exit "$rc"
