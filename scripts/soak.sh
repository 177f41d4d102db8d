#!/usr/bin/env bash
# Soak: stream inference through a two-stage pipeline for SECONDS (default
# 60) with examples/soak.rs, keep its RSS samples in OUT_DIR/soak-rss.csv
# (default target/soak), and fail when a request is lost or wrong, or when
# resident memory after warm-up spans more than LIMIT_MB (default 16).
#   bash scripts/soak.sh [SECONDS] [OUT_DIR]
# docs/reliability.md records a one-hour run (bash scripts/soak.sh 3600).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
out="${2:-target/soak}"
limit="${LIMIT_MB:-16}"
case "$secs" in
    ''|*[!0-9]*) echo "[soak] error: SECONDS must be a whole number, got '$secs'" >&2; exit 2 ;;
esac
mkdir -p "$out"
log="$out/soak.log"
echo "[soak] ${secs} s through cpu:0,cpu:1; samples in $out/soak-rss.csv"
cargo run --release --quiet --example soak -- --seconds "$secs" > "$log"
grep -E '^[0-9t]' "$log" | grep -v '^soak:' > "$out/soak-rss.csv" || true
grep -E '^(soak:|rss_)' "$log"
span="$(sed -n 's/^rss_steady_mb=\([0-9.]*\)\.\.\([0-9.]*\) .*/\1 \2/p' "$log")"
read -r lo hi <<< "$span"
awk -v lo="$lo" -v hi="$hi" -v lim="$limit" 'BEGIN {
    d = hi - lo
    if (d > lim) { printf "[soak] FAIL: steady RSS spans %.2f MB (> %s MB)\n", d, lim; exit 1 }
    printf "[soak] ok: steady RSS spans %.2f MB (limit %s MB), no request lost or wrong\n", d, lim }'
