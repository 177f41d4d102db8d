#!/usr/bin/env python3
"""Helpers for scripts/gpu-check.sh (needs numpy and onnx; torch optional).

  compare CASE_DIR OUT_DIR         outputs of `hetflow run` vs the case's references
  gemm-model M K N DTYPE OUT.onnx  Y = A @ W, A an input, W a random initializer
  encoder-model OUT.onnx           one torch TransformerEncoderLayer, exported
  torch-gemm M K N DTYPE           median ms of torch.matmul on cuda:0
  torch-encoder                    median ms of the same encoder layer in torch
  overlap TRACE DEVICE             how much copy time on DEVICE overlaps its compute
"""
import json
import os
import sys

import numpy as np

ENC = dict(d_model=512, nhead=8, dim_feedforward=2048, batch=8, seq=128)


def rel_l2(got, want):
    got, want = got.astype(np.float64).ravel(), want.astype(np.float64).ravel()
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def sanitise(name):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def compare(case_dir, out_dir):
    m = json.load(open(os.path.join(case_dir, "manifest.json")))
    tol = max(m.get("rel_l2", 1e-4), 1e-4)
    worst, ok = 0.0, True
    for o in m["outputs"]:
        want = np.load(os.path.join(case_dir, o["file"]))
        path = os.path.join(out_dir, sanitise(o["name"]) + ".npy")
        if not os.path.exists(path):
            print(f"missing output {o['name']}")
            return 1
        got = np.load(path)
        if got.shape != want.shape:
            print(f"{o['name']}: shape {got.shape} != {want.shape}")
            return 1
        if want.dtype.kind == "f":
            e = rel_l2(got, want)
            worst = max(worst, e)
            ok &= e <= tol
        else:
            ok &= bool(np.array_equal(got, want))
    print(f"rel_l2={worst:.2e} tol={tol:.0e} {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def gemm_model(m, k, n, dtype, out):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ty = {"f32": TensorProto.FLOAT, "bf16": TensorProto.BFLOAT16, "f16": TensorProto.FLOAT16}[dtype]
    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32) / np.sqrt(k)
    if dtype == "f32":
        init = numpy_helper.from_array(w, "W")
    elif dtype == "f16":
        init = numpy_helper.from_array(w.astype(np.float16), "W")
    else:
        bits = (w.view(np.uint32) + 0x7FFF + ((w.view(np.uint32) >> 16) & 1)) >> 16
        init = helper.make_tensor("W", TensorProto.BFLOAT16, [k, n], bits.astype(np.uint16).tobytes(), raw=True)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["A", "W"], ["Y"])],
        f"gemm_{m}x{k}x{n}_{dtype}",
        [helper.make_tensor_value_info("A", ty, [m, k])],
        [helper.make_tensor_value_info("Y", ty, [m, n])],
        [init],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), out)
    return 0


def encoder_layer():
    import torch

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        ENC["d_model"], ENC["nhead"], ENC["dim_feedforward"], batch_first=True, dropout=0.0
    ).eval()
    x = torch.randn(ENC["batch"], ENC["seq"], ENC["d_model"])
    return layer, x


def encoder_model(out):
    import torch

    layer, x = encoder_layer()
    # The fast path (fused kernels) is off in export; keep the plain graph.
    torch.backends.mha.set_fastpath_enabled(False)
    torch.onnx.export(layer, (x,), out, input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)
    return 0


def cuda_median_ms(fn, iters=50, warmup=10):
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return float(np.median(times))


def torch_gemm(m, k, n, dtype):
    import torch

    dt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype]
    torch.backends.cuda.matmul.allow_tf32 = False  # hetflow's f32 GEMM is true f32
    a = torch.randn(m, k, device="cuda", dtype=dt)
    w = torch.randn(k, n, device="cuda", dtype=dt)
    print(f"{cuda_median_ms(lambda: a @ w):.4f}")
    return 0


def torch_encoder():
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    layer, x = encoder_layer()
    layer, x = layer.cuda(), x.cuda()
    with torch.inference_mode():
        print(f"{cuda_median_ms(lambda: layer(x)):.4f}")
    return 0


def overlap(trace, device):
    ev = json.load(open(trace))["traceEvents"]
    pid = next(e["pid"] for e in ev if e.get("name") == "process_name" and e["args"]["name"] == device)
    spans = [e for e in ev if e.get("ph") == "X" and e["pid"] == pid]
    comp = [(e["ts"], e["ts"] + e["dur"]) for e in spans if e["tid"] == 1]
    copy = [(e["ts"], e["ts"] + e["dur"]) for e in spans if e["tid"] == 2]
    total = sum(b - a for a, b in copy)
    shared = sum(max(0.0, min(b, d) - max(a, c)) for a, b in copy for c, d in comp)
    frac = shared / total if total else 0.0
    print(f"{device}: {len(comp)} kernels, {len(copy)} copies, copy time {total:.0f} us, "
          f"{shared:.0f} us of it overlapping compute ({100 * frac:.0f}%)")
    return 0 if len(copy) and shared > 0 else 1


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "compare":
        return compare(*args)
    if cmd == "gemm-model":
        return gemm_model(int(args[0]), int(args[1]), int(args[2]), args[3], args[4])
    if cmd == "encoder-model":
        return encoder_model(args[0])
    if cmd == "torch-gemm":
        return torch_gemm(int(args[0]), int(args[1]), int(args[2]), args[3])
    if cmd == "torch-encoder":
        return torch_encoder()
    if cmd == "overlap":
        return overlap(args[0], args[1])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
