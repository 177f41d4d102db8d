#!/usr/bin/env python3
"""The small-model benchmark set (issue 17), written as ONNX with seeded
random weights. None of these is among the tests' fixtures: they are the
shapes a new user tries first, built here so the comparison does not reward
tuning on the test set.

    .venv/bin/python scripts/gen_bench_models.py [--out target/bench/small]

Writes DIR/<name>.onnx for each model of MODELS (opset 17, float32, fixed
shapes) and prints the names. Same seed, same bytes: rerunning is cheap and
the files are not committed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent


class Builder:
    """A tiny graph builder: nodes, weights and fresh value names."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def weight(self, shape, scale=None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
        s = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
        w = (self.rng.standard_normal(shape) * s).astype(np.float32)
        nm = self.name("w")
        self.inits.append(numpy_helper.from_array(w, nm))
        return nm

    def const(self, arr, dtype=np.int64) -> str:
        nm = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), nm))
        return nm

    def op(self, kind: str, inputs: list[str], **attrs) -> str:
        o = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [o], **attrs))
        return o

    def gemm(self, x: str, k: int, n: int) -> str:
        # PyTorch's Linear export: weight [out, in], transB=1, bias.
        return self.op("Gemm", [x, self.weight([n, k]), self.weight([n], 0.1)], transB=1)

    def conv(self, x: str, cin: int, cout: int, k: int, stride=1, group=1) -> str:
        w = self.weight([cout, cin // group, k, k])
        b = self.weight([cout], 0.1)
        p = k // 2
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], pads=[p] * 4,
                       strides=[stride] * 2, group=group)

    def model(self, name: str, x_shape, out: str, out_shape) -> onnx.ModelProto:
        g = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
            self.inits,
        )
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def mlp(batch: int) -> onnx.ModelProto:
    b = Builder(17 + batch)
    h = b.op("Relu", [b.gemm("x", 784, 512)])
    h = b.op("Relu", [b.gemm(h, 512, 512)])
    return b.model(f"mlp_b{batch}", [batch, 784], b.gemm(h, 512, 10), [batch, 10])


def lenet() -> onnx.ModelProto:
    b = Builder(5)
    h = b.op("Relu", [b.conv("x", 1, 6, 5)])
    h = b.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    w = b.weight([16, 6, 5, 5])
    h = b.op("Relu", [b.op("Conv", [h, w, b.weight([16], 0.1)], kernel_shape=[5, 5])])
    h = b.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = b.op("Flatten", [h], axis=1)
    h = b.op("Relu", [b.gemm(h, 400, 120)])
    h = b.op("Relu", [b.gemm(h, 120, 84)])
    return b.model("lenet", [1, 1, 28, 28], b.gemm(h, 84, 10), [1, 10])


def resnet_block() -> onnx.ModelProto:
    b = Builder(50)
    h = b.op("Relu", [b.conv("x", 64, 64, 3)])
    h = b.op("Add", [b.conv(h, 64, 64, 3), "x"])
    return b.model("resnet_block", [1, 64, 56, 56], b.op("Relu", [h]), [1, 64, 56, 56])


def mobilenet_block() -> onnx.ModelProto:
    # MobileNetV2 inverted residual: 1x1 expand x6, ReLU6, 3x3 depthwise,
    # ReLU6, 1x1 project, residual add.
    b = Builder(2)
    lo, hi = b.const(0.0, np.float32), b.const(6.0, np.float32)
    h = b.op("Clip", [b.conv("x", 32, 192, 1), lo, hi])
    h = b.op("Clip", [b.conv(h, 192, 192, 3, group=192), lo, hi])
    h = b.op("Add", [b.conv(h, 192, 32, 1), "x"])
    return b.model("mobilenet_block", [1, 32, 56, 56], h, [1, 32, 56, 56])


def encoder(name: str, seq: int, d: int, heads: int, ffn: int, seed: int) -> onnx.ModelProto:
    """One post-norm transformer encoder layer (BERT's), batch 1, with GELU
    written as ONNX exports it (Erf)."""
    b = Builder(seed)
    dh = d // heads

    def linear(x: str, k: int, n: int) -> str:
        return b.op("Add", [b.op("MatMul", [x, b.weight([k, n])]), b.weight([n], 0.1)])

    def layer_norm(x: str) -> str:
        g = b.weight([d], 0.0)
        b.inits[-1] = numpy_helper.from_array(np.ones(d, np.float32), g)
        return b.op("LayerNormalization", [x, g, b.weight([d], 0.1)], axis=-1, epsilon=1e-5)

    def split_heads(x: str) -> str:
        r = b.op("Reshape", [x, b.const([1, seq, heads, dh])])
        return b.op("Transpose", [r], perm=[0, 2, 1, 3])

    q = split_heads(linear("x", d, d))
    k = b.op("Transpose", [b.op("Reshape", [linear("x", d, d), b.const([1, seq, heads, dh])])],
             perm=[0, 2, 3, 1])
    v = split_heads(linear("x", d, d))
    s = b.op("Mul", [b.op("MatMul", [q, k]), b.const(1.0 / np.sqrt(dh), np.float32)])
    p = b.op("Softmax", [s], axis=-1)
    a = b.op("Transpose", [b.op("MatMul", [p, v])], perm=[0, 2, 1, 3])
    a = b.op("Reshape", [a, b.const([1, seq, d])])
    h = layer_norm(b.op("Add", [linear(a, d, d), "x"]))
    f = linear(h, d, ffn)
    erf = b.op("Erf", [b.op("Mul", [f, b.const(1.0 / np.sqrt(2.0), np.float32)])])
    gelu = b.op("Mul", [b.op("Mul", [f, b.op("Add", [erf, b.const(1.0, np.float32)])]),
                        b.const(0.5, np.float32)])
    o = layer_norm(b.op("Add", [linear(gelu, ffn, d), h]))
    return b.model(name, [1, seq, d], o, [1, seq, d])


MODELS = {
    "mlp_b1": lambda: mlp(1),
    "mlp_b32": lambda: mlp(32),
    "lenet_b1": lenet,
    "resnet_block": resnet_block,
    "mobilenet_block": mobilenet_block,
    "transformer_block": lambda: encoder("transformer_block", 64, 256, 4, 1024, 7),
    "bert_base_layer": lambda: encoder("bert_base_layer", 128, 768, 12, 3072, 11),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "target" / "bench" / "small"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, make in MODELS.items():
        onnx.save(make(), out / f"{name}.onnx")
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
