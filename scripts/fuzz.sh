#!/usr/bin/env bash
# Build the fuzz targets in fuzz/ (libFuzzer through libfuzzer-sys, no
# sanitizer, stable Rust) and run each for SECONDS against a scratch copy of
# its checked-in seed corpus (fuzz/corpus/<target>/).
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS defaults to 20; TARGETs default to all of them (fuzz/Cargo.toml's
# [[bin]]s). Any crash, abort, timeout (-timeout=10 s per input), RSS over
# 2 GiB or single allocation over 2 GiB (fuzz/src/lib.rs) fails the run:
# the script exits 1 and prints the reproducer's path and the command that
# replays it. Targets run one after another, one process each.
# Env: FUZZ_SCRATCH (default: a new mktemp dir; reusing one keeps the
# corpus earlier runs grew there), FUZZ_ARGS (extra libFuzzer flags),
# FUZZ_NICE (`nice -n` level of the build and the runs, default 0).
#
# Needs a C++ compiler (libfuzzer-sys builds libFuzzer's C++ sources):
# scripts/setup.sh installs g++.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi

ALL=(onnx_load npy tensor_pb plan_json cluster_toml)
SECS="${1:-20}"
case "$SECS" in
    ''|*[!0-9]*) echo "[fuzz] error: SECONDS_PER_TARGET must be a whole number, got '$SECS'" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && shift
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
    case " ${ALL[*]} " in
        *" $t "*) ;;
        *) echo "[fuzz] error: unknown target '$t' (known: ${ALL[*]})" >&2; exit 2 ;;
    esac
done

now() { date +%s.%N; }
t0=$(now)

# Coverage instrumentation without a sanitizer: what `cargo fuzz
# --sanitizer none` passes, on stable. `--target` keeps these flags off
# build scripts and proc macros (they only apply to the target's code).
HOST="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
echo "[fuzz] building fuzz/ ($HOST, release profile of fuzz/Cargo.toml)"
nice -n "${FUZZ_NICE:-0}" cargo build --release --manifest-path fuzz/Cargo.toml --target "$HOST" --bins
BIN="$ROOT/fuzz/target/$HOST/release"
t1=$(now)

SCRATCH="${FUZZ_SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/hetflow-fuzz.XXXXXX")}"
mkdir -p "$SCRATCH"
rc=0
for t in "${TARGETS[@]}"; do
    work="$SCRATCH/$t"
    # A reused FUZZ_SCRATCH keeps the corpus grown by earlier runs.
    rm -rf "$work/artifacts"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null || true
    log="$work/log.txt"
    echo "[fuzz] $t: ${SECS} s, corpus $(ls "$work/corpus" | wc -l) seeds, log $log"
    set +e
    # shellcheck disable=SC2086
    nice -n "${FUZZ_NICE:-0}" "$BIN/$t" "$work/corpus" \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$work/artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} \
        >"$log" 2>&1
    r=$?
    set -e
    stats="$(grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec' "$log" | awk '{printf "%s ", $2}')"
    last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    echo "[fuzz] $t: exit $r; execs, exec/s: ${stats:-?}; last: ${last:-none}"
    crashes=("$work"/artifacts/*)
    if [ "$r" -ne 0 ] || [ -e "${crashes[0]}" ]; then
        rc=1
        echo "[fuzz] $t FAILED; the end of its log:" >&2
        tail -n 40 "$log" >&2
        for c in "${crashes[@]}"; do
            [ -e "$c" ] || continue
            echo "[fuzz] reproducer: $c" >&2
            echo "[fuzz] replay:     $BIN/$t $c" >&2
        done
    fi
done
t2=$(now)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v rc="$rc" 'BEGIN {
    printf "[fuzz] build %.1f s, runs %.1f s, total %.1f s (exit %d)\n", b - a, c - b, c - a, rc }'
exit "$rc"
