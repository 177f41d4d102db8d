#!/usr/bin/env python3
"""Training data and references for hetflow's training tests and examples.

Writes, under OUT (default train-data/):
  digits/train/{x,y}.npy, digits/test/{x,y}.npy
      scikit-learn's digits (1,797 8x8 images shipped inside its wheel),
      pixels scaled to [0, 1], a fixed stratified 80/20 split (seed 0).
  models/mlp.onnx   64 -> 128 (Relu) -> 10, Gemm with transB=1, batch symbolic.
  models/cnn.onnx   [N,1,8,8] -> Conv 16 + BatchNorm + Relu -> Conv 32 + Relu
                    -> MaxPool 2 -> Flatten -> Gemm 64 + Relu -> Dropout 0.1
                    -> Gemm 10.
      Weights drawn like PyTorch's defaults (uniform +-1/sqrt(fan_in)), seed 0.
  step/             one batch (x.npy, y.npy) and the MLP's weights after two
                    steps of SGD (lr 0.1, momentum 0.9, weight decay 1e-4)
                    and of Adam (lr 0.01), computed here in float64 numpy:
                    sgd_<weight>.npy, adam_<weight>.npy.
  sklearn_mlp.txt   test accuracy of scikit-learn's MLPClassifier (128
                    hidden units, adam, seed 0) on the same split.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

p = argparse.ArgumentParser()
p.add_argument("--out", default="train-data")
args = p.parse_args()
OUT = args.out


def save(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, arr)


# --- digits ---------------------------------------------------------------
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

d = load_digits()
x = (d.data / 16.0).astype(np.float32)
y = d.target.astype(np.int64)
xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
save(f"{OUT}/digits/train/x.npy", xtr)
save(f"{OUT}/digits/train/y.npy", ytr)
save(f"{OUT}/digits/test/x.npy", xte)
save(f"{OUT}/digits/test/y.npy", yte)

clf = MLPClassifier(hidden_layer_sizes=(128,), max_iter=500, random_state=0)
clf.fit(xtr, ytr)
with open(f"{OUT}/sklearn_mlp.txt", "w") as f:
    f.write(f"{clf.score(xte, yte):.4f}\n")

# --- models ---------------------------------------------------------------
rng = np.random.default_rng(0)


def uniform(shape, fan_in):
    b = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-b, b, size=shape).astype(np.float32)


def model(nodes, inits, inp, out_shape, name):
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, inp)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    os.makedirs(f"{OUT}/models", exist_ok=True)
    onnx.save(m, f"{OUT}/models/{name}.onnx")


mlp = {
    "fc1.weight": uniform((128, 64), 64),
    "fc1.bias": uniform((128,), 64),
    "fc2.weight": uniform((10, 128), 128),
    "fc2.bias": uniform((10,), 128),
}
model(
    [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["logits"], transB=1),
    ],
    mlp,
    ["batch", 64],
    ["batch", 10],
    "mlp",
)

cnn = {
    "conv1.weight": uniform((16, 1, 3, 3), 9),
    "conv1.bias": uniform((16,), 9),
    "bn1.scale": np.ones(16, np.float32),
    "bn1.bias": np.zeros(16, np.float32),
    "bn1.mean": np.zeros(16, np.float32),
    "bn1.var": np.ones(16, np.float32),
    "conv2.weight": uniform((32, 16, 3, 3), 144),
    "conv2.bias": uniform((32,), 144),
    "fc1.weight": uniform((64, 512), 512),
    "fc1.bias": uniform((64,), 512),
    "fc2.weight": uniform((10, 64), 64),
    "fc2.bias": uniform((10,), 64),
    "drop.ratio": np.array(0.1, np.float32),
}
model(
    [
        helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c1", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"], ["b1"]
        ),
        helper.make_node("Relu", ["b1"], ["r1"]),
        helper.make_node("Conv", ["r1", "conv2.weight", "conv2.bias"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc1.weight", "fc1.bias"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Dropout", ["a", "drop.ratio"], ["dr"]),
        helper.make_node("Gemm", ["dr", "fc2.weight", "fc2.bias"], ["logits"], transB=1),
    ],
    cnn,
    ["batch", 1, 8, 8],
    ["batch", 10],
    "cnn",
)

# --- one-step references (float64) ----------------------------------------
bx = xtr[:16].astype(np.float64)
by = ytr[:16]
save(f"{OUT}/step/x.npy", xtr[:16])
save(f"{OUT}/step/y.npy", by)


def grads(w):
    h = bx @ w["fc1.weight"].T + w["fc1.bias"]
    a = np.maximum(h, 0)
    z = a @ w["fc2.weight"].T + w["fc2.bias"]
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    dz = p.copy()
    dz[np.arange(len(by)), by] -= 1
    dz /= len(by)
    da = dz @ w["fc2.weight"]
    dh = da * (h > 0)
    return {
        "fc2.weight": dz.T @ a,
        "fc2.bias": dz.sum(0),
        "fc1.weight": dh.T @ bx,
        "fc1.bias": dh.sum(0),
    }


def sgd(steps, lr=0.1, mu=0.9, wd=1e-4):
    w = {k: v.astype(np.float64) for k, v in mlp.items()}
    buf = {}
    for t in range(steps):
        g = grads(w)
        for k in w:
            d = g[k] + wd * w[k]
            buf[k] = d if t == 0 else mu * buf[k] + d
            w[k] = w[k] - lr * buf[k]
    return w


def adam(steps, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
    w = {k: v.astype(np.float64) for k, v in mlp.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    for t in range(1, steps + 1):
        g = grads(w)
        for k in w:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            mh = m[k] / (1 - b1**t)
            vh = v[k] / (1 - b2**t)
            w[k] = w[k] - lr * mh / (np.sqrt(vh) + eps)
    return w


for k, v in sgd(2).items():
    save(f"{OUT}/step/sgd_{k}.npy", v)
for k, v in adam(2).items():
    save(f"{OUT}/step/adam_{k}.npy", v)
print(f"[gen_training_data] wrote {OUT}/ (sklearn MLP test accuracy {clf.score(xte, yte):.4f})")
