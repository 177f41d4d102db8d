#!/usr/bin/env bash
# Pipeline efficiency on this machine: profile two logical CPU devices,
# plan each model over them (pipeline partitioner, m micro-batches), stream
# the micro-batches through the plan and compare with the ideal
# (m + p - 1) x slowest stage, stage times taken from the same run's trace.
# Also, for comparison, the same stream on one CPU device with every core
# (intra-op parallelism) and as two data-parallel replicas (one per core).
#   bash scripts/bench_pipeline.sh [M] [ITERS]
# DEVICES=cpu:0,opencl:0 pipelines over a CPU device and PoCL's OpenCL
# device instead (run with POCL_CPU_MAX_CU_NUM=1 so that each device has
# one of the two cores); MODELS overrides the model list.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
M="${1:-8}"
ITERS="${2:-5}"
FIX="${HETFLOW_FIXTURES:-$ROOT/fixtures-gen}"
cargo build --release --quiet
H=./target/release/hetflow
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
DEVICES="${DEVICES:-cpu:0,cpu:1}"
MODELS="${MODELS:-zoo_resnet50 zoo_squeezenet zoo_inception_v1}"
# One thread per CPU device: with two devices on two cores each gets one.
$H profile --device "$DEVICES" --threads 1 --iters 5 --out "$TMP/cluster.toml" >/dev/null
printf '%-22s %-10s %10s %10s %10s %8s\n' model plan stage0_ms stage1_ms run_ms efficiency
for m in $MODELS; do
    model="$FIX/$m/model.onnx"
    $H plan "$model" --cluster "$TMP/cluster.toml" --microbatches "$M" --out "$TMP/pipe.json" >/dev/null
    out="$($H bench "$model" --plan "$TMP/pipe.json" --device "$DEVICES" --threads 1 --microbatches "$M" --iters "$ITERS" --warmup 2)"
    s=$(echo "$out" | grep '^stage ' | awk '{print $3}' | tr '\n' ' ')
    eff=$(echo "$out" | sed -n 's/^pipeline_efficiency=//p')
    med=$(echo "$out" | sed -n 's/^median_ms=//p')
    printf '%-22s %-10s %10s %10s %10s %8s\n' "$m" pipeline $(echo $s | cut -d' ' -f1) $(echo $s | cut -d' ' -f2) "$med" "$eff"
    med1=$($H bench "$model" --device cpu --microbatches "$M" --iters "$ITERS" --warmup 2 | sed -n 's/^median_ms=//p')
    printf '%-22s %-10s %10s %10s %10s %8s\n' "$m" whole-cpu - - "$med1" -
    [ "$DEVICES" = cpu:0,cpu:1 ] || continue
    $H plan "$model" --cluster "$TMP/cluster.toml" --replicas 2 --microbatches "$M" --out "$TMP/rep.json" >/dev/null
    medr=$($H bench "$model" --plan "$TMP/rep.json" --microbatches "$M" --iters "$ITERS" --warmup 2 | sed -n 's/^median_ms=//p')
    printf '%-22s %-10s %10s %10s %10s %8s\n' "$m" 2-replicas - - "$medr" -
done
