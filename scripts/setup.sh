#!/usr/bin/env bash
# Set up a machine for hetflow's build and tests. Idempotent; re-runs are fast.
#   1. Debian packages (OpenCL/PoCL, hwloc, udev, pkg-config, hyperfine, g++), only if missing
#   2. .venv at the repo root with scripts/requirements.txt and
#      scripts/requirements-train.txt (scikit-learn, for the digits dataset)
#   3. fixtures-gen/ from scripts/gen_fixtures.py, only if the generator or the
#      requirements changed since the last run (fixtures-gen/.stamp), and
#      conformance-data/node/ (the onnx package's node tests) from
#      scripts/gen_node_tests.py, and train-data/ (digits, training models,
#      NumPy optimizer references) from scripts/gen_training_data.py
#
#   bash scripts/setup.sh --mpi   the CPU packages plus Open MPI and libclang
#                                 (mpi-sys runs bindgen): what building with
#                                 `--features mpi` needs (docs/cluster.md).
#                                 The full set-up installs them too.
#   bash scripts/setup.sh --cpu   only what building and running the CPU path
#                                 needs (libhwloc-dev, libudev-dev, pkg-config,
#                                 and a C toolchain when `cc` is missing): no
#                                 OpenCL, no venv, no fixtures. This is the
#                                 first half of README's main-job command.
# Env: PYTHON (default python3, must be 3.11+), SKIP_APT=1, SKIP_FIXTURES=1.
set -euo pipefail

MODE=full
for arg in "$@"; do
    case "$arg" in
        --cpu) MODE=cpu ;;
        --mpi) MODE=mpi ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "[setup] error: unknown argument '$arg' (expected --cpu, --mpi or nothing)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

# --- 1. apt -------------------------------------------------------------------
# iproute2: `ip netns` and `tc` for the two-namespace test (tests/netns.rs).
MPI_PKGS=(openmpi-bin libopenmpi-dev libclang-dev iproute2)
if [ "$MODE" = cpu ] || [ "$MODE" = mpi ]; then
    APT_PKGS=(libhwloc-dev libudev-dev pkg-config)
    # rustc links through the system C compiler.
    command -v cc >/dev/null 2>&1 || APT_PKGS+=(gcc libc6-dev)
    [ "$MODE" = mpi ] && APT_PKGS+=("${MPI_PKGS[@]}")
else
    # g++: libfuzzer-sys builds libFuzzer (C++) for scripts/fuzz.sh.
    APT_PKGS=(pocl-opencl-icd ocl-icd-opencl-dev clinfo libhwloc-dev hwloc libudev-dev pkg-config hyperfine g++ "${MPI_PKGS[@]}")
fi
PYTHON="${PYTHON:-python3}"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
if [ "${SKIP_APT:-0}" != 1 ]; then
    for p in "${APT_PKGS[@]}"; do
        installed "$p" || missing+=("$p")
    done
    # Debian's own python3 needs python3-venv for `python3 -m venv` (ensurepip).
    if [ "$MODE" = full ] && [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        installed python3-venv || missing+=(python3-venv)
    fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
        echo "[setup] error: not root and no sudo; install: ${missing[*]}" >&2
        exit 1
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "apt packages present"
fi

if [ "$MODE" = cpu ] || [ "$MODE" = mpi ]; then
    if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
        echo "[setup] error: no cargo; install Rust first: https://rustup.rs" >&2
        exit 1
    fi
    log "done ($MODE)"
    exit 0
fi

# --- 2. venv ------------------------------------------------------------------
REQ=scripts/requirements.txt
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    log "broken .venv, recreating"
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' || {
        echo "[setup] error: $PYTHON is older than 3.11 (numpy 2.4 needs 3.11+); set PYTHON" >&2
        exit 1
    }
    log "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi
req_hash="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ "$(cat .venv/.requirements.sha256 2>/dev/null || true)" != "$req_hash" ]; then
    log "pip install -r $REQ"
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$REQ"
    echo "$req_hash" > .venv/.requirements.sha256
else
    log ".venv up to date"
fi
# scikit-learn for the training data (separate, so the fixtures' stamp,
# which hashes requirements.txt, does not change with it).
REQ_TRAIN=scripts/requirements-train.txt
train_req_hash="$(sha256sum "$REQ_TRAIN" | cut -d' ' -f1)"
if [ "$(cat .venv/.requirements-train.sha256 2>/dev/null || true)" != "$train_req_hash" ]; then
    log "pip install -r $REQ_TRAIN"
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$REQ_TRAIN"
    echo "$train_req_hash" > .venv/.requirements-train.sha256
fi

# --- 3. fixtures --------------------------------------------------------------
if [ "${SKIP_FIXTURES:-0}" != 1 ]; then
    FIX=fixtures-gen
    fix_hash="$(cat scripts/gen_fixtures.py "$REQ" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$FIX/.stamp" 2>/dev/null || true)" != "$fix_hash" ]; then
        log "generating $FIX/"
        rm -rf "$FIX"
        .venv/bin/python scripts/gen_fixtures.py --out "$FIX"
        echo "$fix_hash" > "$FIX/.stamp"
    else
        log "$FIX/ up to date"
    fi
    # Digits, models and NumPy references for tests/train.rs and the
    # training example.
    TD=train-data
    td_hash="$(cat scripts/gen_training_data.py "$REQ" "$REQ_TRAIN" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$TD/.stamp" 2>/dev/null || true)" != "$td_hash" ]; then
        log "generating $TD/"
        rm -rf "$TD"
        .venv/bin/python scripts/gen_training_data.py --out "$TD"
        echo "$td_hash" > "$TD/.stamp"
    else
        log "$TD/ up to date"
    fi
    # ONNX backend node tests for tests/conformance.rs (stamped by onnx version).
    .venv/bin/python scripts/gen_node_tests.py conformance-data/node
fi
log "done"
