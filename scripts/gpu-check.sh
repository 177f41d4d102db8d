#!/usr/bin/env bash
# The GPU checks of the CUDA backend (issue #5). Needs an NVIDIA GPU with a
# CUDA 12.x driver; libcublas and libnvrtc found by the dynamic loader (a
# CUDA toolkit, or the nvidia-cublas-cu12 / nvidia-cuda-nvrtc-cu12 wheels'
# lib directories on LD_LIBRARY_PATH); torch with CUDA in .venv for the
# peer columns (optional: without it they read "-").
#   bash scripts/gpu-check.sh            # prints a table; paste into docs/gpu-results.md
# Steps: 0. the GPU-free checks (NVRTC compile of every kernel, the host-side
# geometry tests); 1. release build and `hetflow devices`; 2. tests/cuda.rs and tests/devices.rs
# ::cuda:: (foundation models, op cases, light zoo CNNs on cuda:0 vs references, bf16 GEMM
# and conv stack vs f32, peer copies when two GPUs are here); 3. the light zoo
# (random weights) through `hetflow run --device cuda:0,cpu:0` (ops the
# GPU refuses run on cpu:0) vs the references; 4. a CPU+CUDA split run
# streamed in micro-batches with a trace, and how much copy time overlaps
# compute on cuda:0; 5. GEMM f32/bf16 and a transformer encoder layer,
# hetflow vs PyTorch, same run; 6. with two GPUs, the ResNet block split
# over two MPI ranks with tensors over NCCL wires and through host memory
# (outputs vs onnxruntime, and the bench time of each).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FIX="${HETFLOW_FIXTURES:-$ROOT/fixtures-gen}"
PY=.venv/bin/python
H=./target/release/hetflow
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
fail=0
row() { printf '%-34s %-12s %s\n' "$1" "$2" "$3"; }

echo "== 0. GPU-free checks: kernels compile, host-side geometry"
$PY scripts/nvrtc_check.py | tail -1 || fail=1
cargo test --release --quiet -p hetflow-devices cuda:: 2>&1 | grep -E 'test result|FAILED|panicked' || true
cargo test --release --quiet -p hetflow-devices cuda:: >/dev/null 2>&1 || { echo "hetflow-devices cuda tests failed" >&2; fail=1; }

echo "== 1. build and discovery"
[ -d "$FIX" ] || bash scripts/setup.sh
cargo build --release --quiet
$H devices | tee "$TMP/devices.txt"
if ! grep -qE '^ *cuda:0 ' "$TMP/devices.txt"; then
    echo "gpu-check: cuda:0 is not available (see the cuda line above)" >&2
    exit 1
fi

echo "== 2. tests/cuda.rs and the cuda modules of tests/devices.rs on the GPU"
{
    HETFLOW_FIXTURES="$FIX" cargo test --release --test cuda -- --nocapture --test-threads 1
    HETFLOW_FIXTURES="$FIX" cargo test --release --test devices -- ::cuda:: --nocapture --test-threads 1
} 2>&1 | tee "$TMP/cuda-tests.txt" | grep -E '^test |relative L2|SKIP|test result' || true
# The two-GPU test skips on a one-GPU machine; any other SKIP is a failure.
if grep 'SKIP' "$TMP/cuda-tests.txt" | grep -qv 'needs 2' || grep -q 'test result: FAILED' "$TMP/cuda-tests.txt" \
    || ! grep -q 'test result: ok' "$TMP/cuda-tests.txt"; then
    echo "tests/cuda.rs: FAILED or skipped" >&2
    fail=1
fi

echo "== 3. foundation models and light zoo on cuda:0 (refused ops on cpu:0) vs references"
row case result detail
for dir in "$FIX"/*/; do
    c="$(basename "$dir")"
    [ -f "$dir/model.onnx" ] || continue
    args=()
    for f in $($PY -c "import json,sys; print(' '.join(i['file'] for i in json.load(open(sys.argv[1]))['inputs']))" "$dir/manifest.json"); do
        args+=(--input "$dir/$f")
    done
    rm -rf "$TMP/out" && mkdir -p "$TMP/out"
    if ! $H run "$dir/model.onnx" "${args[@]}" --device cuda:0,cpu:0 --output-dir "$TMP/out" >/dev/null 2>"$TMP/err"; then
        row "$c" ERROR "$(head -c 200 "$TMP/err")"
        fail=1
        continue
    fi
    if res="$($PY scripts/gpu_check.py compare "$dir" "$TMP/out")"; then
        row "$c" ok "$res"
    else
        row "$c" MISMATCH "$res"
        fail=1
    fi
done

echo "== 4. CPU+CUDA split, 8 micro-batches, trace"
SPLIT="$FIX/zoo_resnet50/model.onnx"
$H bench "$SPLIT" --device cpu:0,cuda:0 --microbatches 8 --iters 3 --warmup 1 \
    --trace "$TMP/split.json" | tail -3
cp "$TMP/split.json" "$ROOT/target/gpu-check-split-trace.json"
$PY scripts/gpu_check.py overlap "$TMP/split.json" cuda:0 || { echo "no copy/compute overlap on cuda:0" >&2; fail=1; }
echo "(trace kept in target/gpu-check-split-trace.json; open it in Perfetto)"

echo "== 5. hetflow vs PyTorch on cuda:0 (hetflow times include the per-iteration"
echo "   upload of the input and download of the output; torch's do not)"
has_torch=0
$PY -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null && has_torch=1
printf '%-30s %12s %12s\n' benchmark hetflow_ms torch_ms
bench() { $H bench "$1" --device "$2" --iters 30 --warmup 5 | sed -n 's/^median_ms=//p'; }
for spec in "4096 4096 4096 f32" "4096 4096 4096 bf16" "1024 1024 1024 f32" "1024 1024 1024 bf16"; do
    set -- $spec
    $PY scripts/gpu_check.py gemm-model "$1" "$2" "$3" "$4" "$TMP/gemm.onnx"
    ours="$(bench "$TMP/gemm.onnx" cuda:0)"
    theirs=-
    [ "$has_torch" = 1 ] && theirs="$($PY scripts/gpu_check.py torch-gemm "$1" "$2" "$3" "$4")"
    printf '%-30s %12s %12s\n' "gemm ${1}x${2}x${3} $4" "$ours" "$theirs"
done
if [ "$has_torch" = 1 ]; then
    $PY scripts/gpu_check.py encoder-model "$TMP/enc.onnx"
    ours="$(bench "$TMP/enc.onnx" cuda:0,cpu:0)"
    theirs="$($PY scripts/gpu_check.py torch-encoder)"
    printf '%-30s %12s %12s\n' "encoder layer 8x128x512 f32" "$ours" "$theirs"
else
    printf '%-30s %12s %12s\n' "encoder layer 8x128x512 f32" - "(no torch)"
fi

echo "== 6. NCCL wires: the ResNet block split over two ranks on two GPUs (HETFLOW_NCCL=1)"
ngpu="$(grep -cE '^ *cuda:[0-9]+ ' "$TMP/devices.txt" || true)"
if [ "$ngpu" -lt 2 ]; then
    echo "SKIP NCCL wires: needs 2 GPUs (NCCL refuses two ranks on one GPU); $ngpu here"
elif ! command -v mpirun >/dev/null; then
    echo "SKIP NCCL wires: needs Open MPI (bash scripts/setup.sh --mpi)"
else
    cargo build --release --quiet --features mpi
    cat > "$TMP/two-gpus.toml" <<TOML
[[host]]
name = "rank0"
[[host]]
name = "rank1"
[[device]]
name = "rank0/cuda:0"
host = "rank0"
kind = "cuda"
peak_gflops = { f32 = 50000.0 }
memory_gib = 80.0
mem_bw_gbps = 3000.0
[[device]]
name = "rank1/cuda:1"
host = "rank1"
kind = "cuda"
peak_gflops = { f32 = 50000.0 }
memory_gib = 80.0
mem_bw_gbps = 3000.0
[defaults]
intra_host = { bandwidth_gbps = 100.0, latency_us = 10.0 }
inter_host = { bandwidth_gbps = 25.0, latency_us = 10.0 }
TOML
    RB="$FIX/resnet_block"
    $H plan "$RB/model.onnx" --cluster "$TMP/two-gpus.toml" --out "$TMP/two-gpus.json" >/dev/null
    args=()
    for f in $($PY -c "import json,sys; print(' '.join(i['file'] for i in json.load(open(sys.argv[1]))['inputs']))" "$RB/manifest.json"); do
        args+=(--input "$RB/$f")
    done
    for nccl in 1 0; do
        rm -rf "$TMP/out" && mkdir -p "$TMP/out"
        if HETFLOW_NCCL=$nccl $H launch --np 2 -- run "$RB/model.onnx" "${args[@]}" --plan "$TMP/two-gpus.json" \
            --output-dir "$TMP/out" >/dev/null 2>"$TMP/err" && res="$($PY scripts/gpu_check.py compare "$RB" "$TMP/out")"; then
            row "resnet_block 2 ranks NCCL=$nccl" ok "$res"
        else
            row "resnet_block 2 ranks NCCL=$nccl" FAILED "$(head -c 300 "$TMP/err")"
            fail=1
        fi
        t="$(HETFLOW_NCCL=$nccl $H launch --np 2 -- bench "$RB/model.onnx" --plan "$TMP/two-gpus.json" \
            --microbatches 16 --iters 10 --warmup 2 2>/dev/null | sed -n 's/^median_ms=//p')"
        row "bench 16 micro-batches NCCL=$nccl" "${t:-?} ms" "(median; NCCL=0 stages every tensor through host memory and MPI)"
    done
fi

if [ "$fail" = 0 ]; then echo "gpu-check: all checks passed"; else echo "gpu-check: FAILURES above" >&2; fi
exit "$fail"
