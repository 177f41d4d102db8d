#!/usr/bin/env python3
"""Compile every CUDA kernel of the CUDA backend to PTX with NVRTC, on the CPU.

No GPU, driver or CUDA toolkit is needed: NVRTC comes from the
`nvidia-cuda-nvrtc-cu12` wheel pinned in scripts/requirements.txt (this
script installs nothing). Each `devices/src/cuda/kernels/*.cu` is compiled
exactly as the backend compiles it at device open (common.cuh prepended,
same options), once per target architecture. Prints one line per kernel
file and architecture; exits 1 with NVRTC's log on any failure, 2 when
NVRTC cannot be loaded.

Usage: .venv/bin/python scripts/nvrtc_check.py [--arch compute_80 ...]
"""
import argparse
import ctypes
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "devices", "src", "cuda", "kernels")
# Keep in step with `NVRTC_OPTIONS` in devices/src/cuda/kernels.rs.
OPTIONS = ["--std=c++17"]
DEFAULT_ARCHS = ["compute_80", "compute_90"]


def load_nvrtc():
    """libnvrtc from the nvidia-cuda-nvrtc-cu12 wheel (or $NVRTC_LIB)."""
    cands = []
    if os.environ.get("NVRTC_LIB"):
        cands.append(os.environ["NVRTC_LIB"])
    try:
        import nvidia.cuda_nvrtc as pkg  # namespace package from the wheel

        for d in pkg.__path__:
            cands += sorted(glob.glob(os.path.join(d, "lib", "libnvrtc.so*")))
    except ImportError:
        pass
    errors = []
    for c in cands:
        if "builtins" in os.path.basename(c) or ".alt." in os.path.basename(c):
            continue
        try:
            return ctypes.CDLL(c), c
        except OSError as e:
            errors.append(f"{c}: {e}")
    sys.exit(
        "nvrtc_check: cannot load libnvrtc (pip install the nvidia-cuda-nvrtc-cu12 pin "
        "from scripts/requirements.txt into .venv): " + ("; ".join(errors) or "wheel not installed")
    )


def check(lib, rc, what):
    if rc != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise RuntimeError(f"{what}: {lib.nvrtcGetErrorString(rc).decode()}")


def compile_one(lib, name, src, arch):
    prog = ctypes.c_void_p()
    check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), name.encode(), 0, None, None),
          "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}"] + OPTIONS
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        if rc != 0:
            return None, log.value.decode(errors="replace")
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        check(lib, lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        return ptx.value.decode(), log.value.decode(errors="replace")
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="compute_XY (repeatable)")
    args = ap.parse_args()
    archs = args.arch or DEFAULT_ARCHS
    lib, path = load_nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    print(f"[nvrtc] NVRTC {major.value}.{minor.value} from {path}")
    with open(os.path.join(KERNELS, "common.cuh")) as f:
        common = f.read()
    files = sorted(glob.glob(os.path.join(KERNELS, "*.cu")))
    if not files:
        sys.exit(f"nvrtc_check: no .cu files under {KERNELS}")
    failed = 0
    for fpath in files:
        name = os.path.basename(fpath)
        with open(fpath) as f:
            src = common + "\n" + f.read()
        for arch in archs:
            ptx, log = compile_one(lib, name, src, arch)
            if ptx is None:
                failed += 1
                print(f"[nvrtc] FAIL {name} {arch}\n{log}")
                continue
            entries = ptx.count(".entry ")
            print(f"[nvrtc] ok   {name} {arch}: {entries} kernels, {len(ptx)} bytes of PTX")
            if log.strip():
                print(log.rstrip())
    total = len(files) * len(archs)
    print(f"nvrtc: {total - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
