#!/usr/bin/env python3
"""Generate ONNX test fixtures with onnxruntime reference outputs for hetflow.

Usage:
    .venv/bin/python scripts/gen_fixtures.py --out fixtures-gen [--only CASE ...] [--no-zoo]

For every case this writes DIR/<case>/:
    model.onnx      the model (onnx.save, no external data)
    input_<i>.npy   inputs, in graph-input order (initializers excluded)
    output_<i>.npy  onnxruntime reference outputs, in graph-output order
    manifest.json   {"case", "inputs": [{"name", "file", "dtype", "shape",
                     "declared_shape"}], "outputs": [...], "rel_l2", "note", ...}
and DIR/index.json listing the cases.

File names are positional, so value names with '/' or ':' do not matter.
All float tensors are float32, little-endian, C-contiguous (np.save).
"declared_shape" is the shape written in the graph: a string is a symbolic dim
(dim_param), null an unknown one. "rel_l2" is the tolerance for
||got - ref||_2 / max(||ref||_2, 1e-30), per output.

References come from onnxruntime's CPUExecutionProvider with all graph
optimizations disabled and one intra-op thread. Every random value comes from a
numpy Generator seeded from the case name, so reruns are bit-identical.

Cases: mlp, lenet, resnet_block, transformer_encoder, mobilenet_block,
symbolic_batch, dynamic_mlp, weird_names, ops_mix_a (opset 13), ops_mix_b (opset 11),
ops_mix_c (opset 18), gelu20 (opset 20, skipped if onnxruntime refuses),
loop_dynamic and rnn_scan (control flow: Loop with a nested If, Scan), and
zoo_<name> for each model of onnx's "light" model zoo with random weights.

The light zoo (onnx/backend/test/data/light/light_*.onnx, IR 3, opset 9,
exported by onnx-caffe2) holds almost no weights: each weight is a
ConstantOfShape node (value 0.02) fed by an int64 "<w>__SHAPE" initializer; a few
small float initializers (biases, BN parameters) are real. For zoo_<name> every
such ConstantOfShape becomes a float initializer of the same name holding random
values (He-normal for conv/gemm weights, small biases, BN scale ~1), the unused
__SHAPE initializers are dropped, and the float initializers with more than one
element are re-drawn too. The IR version (3) and opset (9) are kept, so every
initializer is also listed in graph.input, as IR < 4 requires. For models with
BatchNormalization the BN mean/var are then set, in one onnxruntime pass, to the
statistics of each BN's input (var times U(0.5, 1.5), floored), so activations
stay O(1) through deep nets, as in a trained net (see _calibrate_bn).
Conv/Gemm outputs stay at RMS ~0.6-10 and final logits at std ~0.6-7 in every
zoo model.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

F32 = TensorProto.FLOAT
I64 = TensorProto.INT64
PRODUCER = "hetflow-gen_fixtures"
BIG_MODEL_BYTES = 256 << 20


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def case_rng(case: str) -> np.random.Generator:
    """A Generator seeded from the case name (stable across runs and machines)."""
    return np.random.default_rng(zlib.crc32(case.encode()) + 20261122)


def f32(a) -> np.ndarray:
    # np.array(order="C"), not np.ascontiguousarray, which turns 0-d into 1-d
    return np.array(a, dtype=np.float32, order="C")


def i64(a) -> np.ndarray:
    return np.array(a, dtype=np.int64, order="C")


class GraphBuilder:
    """Minimal builder around onnx.helper: nodes, initializers, unique names."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    # weights -------------------------------------------------------------
    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def he(self, name: str, shape, fan_in: int) -> str:
        w = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(math.sqrt(2.0 / fan_in))
        return self.init(name, w)

    def small(self, name: str, shape, std: float = 0.05) -> str:
        return self.init(name, self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std))

    def bn(self, x: str, prefix: str, c: int, scale=(0.5, 1.5), out: str | None = None) -> str:
        r = self.rng
        s = self.init(prefix + "_scale", f32(r.uniform(*scale, c)))
        b = self.init(prefix + "_bias", f32(r.normal(0, 0.1, c)))
        m = self.init(prefix + "_mean", f32(r.normal(0, 0.1, c)))
        v = self.init(prefix + "_var", f32(r.uniform(0.5, 1.5, c)))
        return self.op("BatchNormalization", [x, s, b, m, v], out=out, epsilon=1e-5)

    # nodes ---------------------------------------------------------------
    def op(self, op_type: str, inputs, out=None, n_out: int = 1, **attrs):
        self.count += 1
        if out is None:
            base = f"{op_type.lower()}_{self.count}"
            outs = [base] if n_out == 1 else [f"{base}_{i}" for i in range(n_out)]
        elif isinstance(out, str):
            outs = [out]
        else:
            outs = list(out)
        self.nodes.append(helper.make_node(op_type, list(inputs), outs,
                                           name=f"{op_type}_{self.count}", **attrs))
        return outs[0] if len(outs) == 1 else outs

    def const(self, arr: np.ndarray, name: str | None = None) -> str:
        """A Constant node (not an initializer)."""
        self.count += 1
        name = name or f"const_{self.count}"
        self.nodes.append(helper.make_node(
            "Constant", [], [name], name=f"Constant_{self.count}",
            value=numpy_helper.from_array(np.asarray(arr), name + "_value")))
        return name

    def model(self, name: str, inputs, outputs, opset: int, ir: int = 8) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(graph, producer_name=PRODUCER,
                              opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = ir
        return m


def vi(name: str, shape, elem=F32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def declared_shape(v: onnx.ValueInfoProto):
    t = v.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def make_session(model, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    src = str(model) if isinstance(model, (str, Path)) else model
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def graph_inputs(model: onnx.ModelProto):
    inits = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def op_summary(model: onnx.ModelProto) -> list[str]:
    return sorted({n.op_type for n in model.graph.node})


def case_loop_dynamic(rng):
    """A Loop whose trip count depends on the data, with an If nested in its
    body; both bodies read outer-scope values (initializers and values of
    the enclosing body)."""
    g = GraphBuilder(rng)
    g.init("w", f32(rng.uniform(0.1, 0.3, 4)))
    g.init("limit", f32(40.0))
    g.init("half", f32(0.5))
    g.init("axes0", i64([0]))

    # then / else branches of the If: read the loop body's "x1" (one level
    # up) and the model's "half" (two levels up).
    then_g = helper.make_graph(
        [helper.make_node("Add", ["x1", "half"], ["t_out"])],
        "then_branch", [], [vi("t_out", [4])])
    else_g = helper.make_graph(
        [helper.make_node("Add", ["x1", "w"], ["e_out"])],
        "else_branch", [], [vi("e_out", [4])])
    body = helper.make_graph(
        [
            helper.make_node("Cast", ["iter"], ["iter_f"], to=F32),
            helper.make_node("Mul", ["x_in", g.init("growth", f32(1.5))], ["x0"]),
            helper.make_node("Add", ["x0", "w"], ["x0w"]),
            helper.make_node("Mul", ["iter_f", g.init("step", f32(0.01))], ["di"]),
            helper.make_node("Add", ["x0w", "di"], ["x1"]),
            helper.make_node("ReduceSum", ["x1", "axes0"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", g.init("ten", f32(10.0))], ["big"]),
            helper.make_node("If", ["big"], ["x_out"], then_branch=then_g, else_branch=else_g),
            helper.make_node("ReduceSum", ["x_out", "axes0"], ["s_out"], keepdims=0),
            helper.make_node("Less", ["s_out", "limit"], ["cond_out"]),
            helper.make_node("Identity", ["s_out"], ["scan_s"]),
        ],
        "loop_body",
        [vi("iter", [], I64), vi("cond_in", [], TensorProto.BOOL), vi("x_in", [4])],
        [vi("cond_out", [], TensorProto.BOOL), vi("x_out", [4]), vi("scan_s", [])],
    )
    g.op("Loop", [g.init("max_trips", i64(64)), g.init("go", np.array(True)), "x"],
         out=["x_final", "sums"], body=body)
    m = g.model("loop_dynamic", [vi("x", [4])],
                [vi("x_final", [4]), vi("sums", ["iterations"])], opset=13)
    return m, [f32(rng.uniform(0.5, 2.0, 4))], 1e-5, \
        "Loop (opset 13) with a data-dependent trip count (while sum < limit, at most 64), " \
        "an If nested in the body; the bodies read outer values (w, half, limit, x1); " \
        "scan output 'sums' stacks one scalar per iteration"


def case_rnn_scan(rng):
    """An Elman RNN exported as Scan: h_t = tanh(x_t Wx + h_{t-1} Wh + b),
    the weights read from the outer scope; scan outputs every h_t along
    axis 0 and, reversed, along axis 1."""
    g = GraphBuilder(rng)
    t_len, batch, n_in, n_hid = 6, 2, 3, 5
    g.small("Wx", (n_in, n_hid), 0.5)
    g.small("Wh", (n_hid, n_hid), 0.5)
    g.small("b", (n_hid,), 0.1)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["x_t", "Wx"], ["xw"]),
            helper.make_node("MatMul", ["h_prev", "Wh"], ["hw"]),
            helper.make_node("Add", ["xw", "hw"], ["pre0"]),
            helper.make_node("Add", ["pre0", "b"], ["pre"]),
            helper.make_node("Tanh", ["pre"], ["h_next"]),
            helper.make_node("Identity", ["h_next"], ["y_t"]),
            helper.make_node("Identity", ["h_next"], ["y_rev_t"]),
        ],
        "rnn_cell",
        [vi("h_prev", [batch, n_hid]), vi("x_t", [batch, n_in])],
        [vi("h_next", [batch, n_hid]), vi("y_t", [batch, n_hid]), vi("y_rev_t", [batch, n_hid])],
    )
    g.op("Scan", ["h0", "x"], out=["h_last", "y", "y_rev"], body=body, num_scan_inputs=1,
         scan_output_axes=[0, 1], scan_output_directions=[0, 1])
    m = g.model("rnn_scan", [vi("h0", [batch, n_hid]), vi("x", [t_len, batch, n_in])],
                [vi("h_last", [batch, n_hid]), vi("y", [t_len, batch, n_hid]),
                 vi("y_rev", [batch, t_len, n_hid])], opset=16)
    return m, [f32(rng.standard_normal((batch, n_hid)) * 0.5),
               f32(rng.standard_normal((t_len, batch, n_in)))], 1e-5, \
        "Scan (opset 16) as an Elman RNN over 6 steps; weights are outer-scope initializers; " \
        "scan outputs along axis 0 and, reversed, along axis 1"


def write_case(out_dir: Path, case: str, model: onnx.ModelProto, feeds: list[np.ndarray],
               rel_l2: float, note: str, extra: dict | None = None,
               nonfinite: bool = False, numpy_ref=None) -> dict:
    """Save model + inputs, run onnxruntime, save outputs and manifest.json."""
    d = out_dir / case
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    path = d / "model.onnx"
    onnx.save(model, str(path))
    size = path.stat().st_size
    # Path-based check copes with big models; full_check runs strict shape inference.
    onnx.checker.check_model(str(path), full_check=size < BIG_MODEL_BYTES)

    ins = graph_inputs(model)
    if len(ins) != len(feeds):
        raise RuntimeError(f"{case}: {len(ins)} graph inputs but {len(feeds)} feeds")
    sess = make_session(path)
    ort_ins = [i.name for i in sess.get_inputs()]
    if ort_ins != [i.name for i in ins]:
        raise RuntimeError(f"{case}: onnxruntime inputs {ort_ins} != graph inputs {[i.name for i in ins]}")
    outs = sess.run(None, {v.name: a for v, a in zip(ins, feeds)})
    reference = f"onnxruntime {ort.__version__} CPUExecutionProvider, ORT_DISABLE_ALL, 1 thread"
    if numpy_ref is not None:
        # onnxruntime loads and runs the model above; the values come from numpy.
        outs = numpy_ref(*feeds)
        reference = "numpy float64 (scripts/gen_fixtures.py), IEEE maximum/minimum: NaN propagates"
    out_vis = list(model.graph.output)
    if [o.name for o in sess.get_outputs()] != [o.name for o in out_vis]:
        raise RuntimeError(f"{case}: output order differs between onnxruntime and the graph")

    def entry(prefix: str, i: int, v: onnx.ValueInfoProto, arr: np.ndarray) -> dict:
        arr = np.ascontiguousarray(arr) if arr.ndim else np.array(arr)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        fname = f"{prefix}_{i}.npy"
        np.save(d / fname, arr, allow_pickle=False)
        decl = declared_shape(v)
        if decl is not None:
            if len(decl) != arr.ndim or any(isinstance(x, int) and x != s for x, s in zip(decl, arr.shape)):
                raise RuntimeError(f"{case}: {v.name}: declared shape {decl} but got {list(arr.shape)}")
        return {"name": v.name, "file": fname, "dtype": str(arr.dtype),
                "shape": list(arr.shape), "declared_shape": decl}

    in_entries = [entry("input", i, v, a) for i, (v, a) in enumerate(zip(ins, feeds))]
    out_entries = []
    for i, (v, a) in enumerate(zip(out_vis, outs)):
        if a.dtype.kind == "f" and not nonfinite and not np.all(np.isfinite(a)):
            raise RuntimeError(f"{case}: output {v.name} has non-finite values")
        out_entries.append(entry("output", i, v, a))

    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    manifest = {
        "case": case,
        "inputs": in_entries,
        "outputs": out_entries,
        "rel_l2": rel_l2,
        "note": note,
        "opset": opsets.get("ai.onnx"),
        "ir_version": model.ir_version,
        "ops": op_summary(model),
        "reference": reference,
        "model_bytes": size,
        "nonfinite": nonfinite,
    }
    if extra:
        manifest.update(extra)
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    def fmt(es):
        return ", ".join(f"{e['name']}{e['shape']}" for e in es)
    print(f"  {case:<24} {size / 1e6:9.2f} MB  in: {fmt(in_entries)}  out: {fmt(out_entries)}", flush=True)
    return manifest


# --------------------------------------------------------------------------
# hand-built cases
# --------------------------------------------------------------------------

def case_mlp(rng):
    g = GraphBuilder(rng)
    h = g.op("Gemm", ["x", g.he("fc1.weight", (128, 64), 64), g.small("fc1.bias", 128)], transB=1)
    h = g.op("Relu", [h])
    h = g.op("MatMul", [h, g.he("fc2.weight", (128, 32), 128)])
    h = g.op("Add", [h, g.small("fc2.bias", 32)])
    h = g.op("Sigmoid", [h])
    g.op("Softmax", [h], out="y", axis=-1)
    m = g.model("mlp", [vi("x", [4, 64])], [vi("y", [4, 32])], opset=17)
    return m, [f32(rng.standard_normal((4, 64)))], 1e-4, \
        "Gemm(transB=1)+Relu, MatMul+Add, Sigmoid, Softmax(axis=-1)"


def case_lenet(rng):
    g = GraphBuilder(rng)
    h = g.op("Conv", ["x", g.he("conv1.w", (6, 1, 5, 5), 25), g.small("conv1.b", 6)],
             kernel_shape=[5, 5], pads=[2, 2, 2, 2])
    h = g.op("Relu", [h])
    h = g.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.op("Conv", [h, g.he("conv2.w", (16, 6, 5, 5), 150), g.small("conv2.b", 16)],
             kernel_shape=[5, 5])
    h = g.op("Tanh", [h])
    h = g.op("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2])
    h = g.op("Flatten", [h], axis=1)
    h = g.op("Gemm", [h, g.he("fc1.w", (400, 120), 400), g.small("fc1.b", 120)])  # transB=0
    h = g.op("Relu", [h])
    h = g.op("Gemm", [h, g.he("fc2.w", (10, 120), 120), g.small("fc2.b", 10)],
             transB=1, alpha=0.75, beta=2.0)
    g.op("LogSoftmax", [h], out="logprob", axis=1)
    m = g.model("lenet", [vi("x", [2, 1, 28, 28])], [vi("logprob", [2, 10])], opset=17)
    return m, [f32(rng.standard_normal((2, 1, 28, 28)))], 1e-4, \
        "Conv pads 2 / MaxPool / Conv / Tanh / AveragePool / Flatten / Gemm(transB=0) / " \
        "Gemm(transB=1, alpha=0.75, beta=2) / LogSoftmax"


def case_resnet_block(rng):
    g = GraphBuilder(rng)

    def conv(x, name, cin, cout, k, stride=1):
        p = k // 2
        return g.op("Conv", [x, g.he(name + ".w", (cout, cin, k, k), cin * k * k)],
                    kernel_shape=[k, k], pads=[p, p, p, p], strides=[stride, stride])

    # block 1: identity skip
    h = conv("x", "b1.conv1", 16, 16, 3)
    h = g.op("Relu", [g.bn(h, "b1.bn1", 16)])
    h = conv(h, "b1.conv2", 16, 16, 3)
    h = g.bn(h, "b1.bn2", 16)
    h = g.op("Add", [h, "x"])
    b1 = g.op("Relu", [h], out="block1_out")
    # block 2: stride 2 with 1x1 projection on the skip path
    h = conv(b1, "b2.conv1", 16, 32, 3, stride=2)
    h = g.op("Relu", [g.bn(h, "b2.bn1", 32)])
    h = conv(h, "b2.conv2", 32, 32, 3)
    h = g.bn(h, "b2.bn2", 32)
    s = conv(b1, "b2.down", 16, 32, 1, stride=2)
    s = g.bn(s, "b2.down_bn", 32)
    h = g.op("Add", [h, s])
    g.op("Relu", [h], out="y")
    m = g.model("resnet_block", [vi("x", [1, 16, 32, 32])], [vi("y", [1, 32, 16, 16])], opset=17)
    return m, [f32(rng.standard_normal((1, 16, 32, 32)))], 1e-4, \
        "basic block (identity skip) then downsampling block (stride 2, 1x1 projection + BN on skip); " \
        "convs without bias; inference BatchNormalization with random mean/var"


def case_transformer_encoder(rng):
    b, s, d, heads = 2, 8, 32, 4
    dh = d // heads
    g = GraphBuilder(rng)

    def linear(x, name, din, dout):
        h = g.op("MatMul", [x, g.he(name + ".w", (din, dout), din)])
        return g.op("Add", [h, g.small(name + ".b", dout)])

    split_heads = g.init("shape_split_heads", i64([0, 0, heads, -1]))   # [b, s, h, dh]
    merge_heads = g.init("shape_merge_heads", i64([0, 0, -1]))          # [b, s, d]
    q = g.op("Transpose", [g.op("Reshape", [linear("x", "q", d, d), split_heads])], perm=[0, 2, 1, 3])
    k = g.op("Transpose", [g.op("Reshape", [linear("x", "k", d, d), split_heads])], perm=[0, 2, 1, 3])
    v = g.op("Transpose", [g.op("Reshape", [linear("x", "v", d, d), split_heads])], perm=[0, 2, 1, 3])
    kt = g.op("Transpose", [k], perm=[0, 1, 3, 2])                     # [b, h, dh, s]
    scores = g.op("MatMul", [q, kt])                                     # [b, h, s, s]
    scores = g.op("Div", [scores, g.init("sqrt_dh", f32(math.sqrt(dh)))])
    scores = g.op("Add", [scores, "mask"])
    probs = g.op("Softmax", [scores], axis=-1)
    ctx = g.op("MatMul", [probs, v])                                     # [b, h, s, dh]
    ctx = g.op("Transpose", [ctx], perm=[0, 2, 1, 3])                    # [b, s, h, dh]
    ctx = g.op("Reshape", [ctx, merge_heads])
    attn = linear(ctx, "o", d, d)
    h = g.op("Add", [attn, "x"])
    h = g.op("LayerNormalization", [h, g.init("ln1.g", f32(rng.uniform(0.8, 1.2, d))),
                                    g.small("ln1.b", d)], axis=-1, epsilon=1e-5)
    f = linear(h, "ff1", d, 4 * d)
    # GELU(x) = x * 0.5 * (1 + erf(x / sqrt(2)))
    e = g.op("Erf", [g.op("Div", [f, g.init("sqrt2", f32(math.sqrt(2.0)))])])
    e = g.op("Add", [e, g.init("one", f32(1.0))])
    gl = g.op("Mul", [g.op("Mul", [f, e]), g.init("half", f32(0.5))])
    f = linear(gl, "ff2", 4 * d, d)
    h = g.op("Add", [f, h])
    g.op("LayerNormalization", [h, g.init("ln2.g", f32(rng.uniform(0.8, 1.2, d))),
                                g.small("ln2.b", d)], out="y", axis=-1, epsilon=1e-5)
    m = g.model("transformer_encoder", [vi("x", [b, s, d]), vi("mask", [b, 1, s, s])],
                [vi("y", [b, s, d])], opset=17)
    # batch 0: causal mask; batch 1: padding mask (last 3 keys masked)
    mask = np.zeros((b, 1, s, s), np.float32)
    mask[0, 0][np.triu(np.ones((s, s), bool), k=1)] = -1e9
    mask[1, 0, :, s - 3:] = -1e9
    return m, [f32(rng.standard_normal((b, s, d))), mask], 1e-4, \
        "post-LN encoder layer, d_model 32, 4 heads; Reshape shapes [0,0,4,-1] and [0,0,-1] as int64 " \
        "initializers; additive mask input (batch 0 causal, batch 1 last 3 keys padded, -1e9); " \
        "GELU from Erf; LayerNormalization (opset 17)"


def case_mobilenet_block(rng):
    g = GraphBuilder(rng)
    lo = g.init("clip_min", f32(0.0))
    hi = g.init("clip_max", f32(6.0))
    h = g.op("Conv", ["x", g.he("expand.w", (32, 8, 1, 1), 8), g.small("expand.b", 32)],
             kernel_shape=[1, 1])
    h = g.bn(h, "expand_bn", 32, scale=(2.0, 5.0))   # large enough that Clip(max=6) bites
    h = g.op("Clip", [h, lo, hi])
    h = g.op("Conv", [h, g.he("dw.w", (32, 1, 3, 3), 9)], kernel_shape=[3, 3], group=32,
             strides=[2, 2], auto_pad="SAME_UPPER")
    h = g.bn(h, "dw_bn", 32, scale=(1.0, 3.0))
    h = g.op("Clip", [h, lo, hi])
    h = g.op("Conv", [h, g.he("project.w", (16, 32, 1, 1), 32)], kernel_shape=[1, 1])
    h = g.bn(h, "project_bn", 16)
    h = g.op("GlobalAveragePool", [h])
    g.op("Flatten", [h], out="y")
    m = g.model("mobilenet_block", [vi("x", [1, 8, 32, 32])], [vi("y", [1, 16])], opset=17)
    return m, [f32(rng.standard_normal((1, 8, 32, 32)))], 1e-4, \
        "inverted residual: 1x1 expand, BN, Clip(0,6 as inputs), depthwise 3x3 group=32 stride 2 " \
        "auto_pad=SAME_UPPER (pads 0 before, 1 after), BN, Clip, 1x1 project, BN, GlobalAveragePool, Flatten"


def case_symbolic_batch(rng):
    g = GraphBuilder(rng)
    h = g.op("Conv", ["x", g.he("conv.w", (8, 4, 3, 3), 36), g.small("conv.b", 8)],
             kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = g.op("Relu", [h])                                   # [batch, 8, 8, 8]
    shp = g.op("Shape", [h])
    bdim = g.op("Gather", [shp, g.init("idx0", i64(0))], axis=0)            # scalar
    bdim = g.op("Unsqueeze", [bdim, g.init("axes0", i64([0]))])             # [1]
    newshape = g.op("Concat", [bdim, g.init("feat", i64([512]))], axis=0)    # [batch, 512]
    h = g.op("Reshape", [h, newshape])
    h = g.op("MatMul", [h, g.he("fc.w", (512, 10), 512)])
    g.op("Add", [h, g.small("fc.b", 10)], out="y")
    m = g.model("symbolic_batch", [vi("x", ["batch", 4, 8, 8])], [vi("y", ["batch", 10])], opset=17)
    return m, [f32(rng.standard_normal((3, 4, 8, 8)))], 1e-4, \
        "dim 0 of input and output is dim_param 'batch'; reference at batch 3; " \
        "Shape -> Gather(0) -> Unsqueeze -> Concat -> Reshape uses the runtime batch"


def case_dynamic_mlp(rng):
    """An MLP exported with a dynamic batch: its flatten is
    Shape -> Gather -> Unsqueeze -> Concat -> Reshape (issue 20)."""
    g = GraphBuilder(rng)
    shp = g.op("Shape", ["x"])
    bdim = g.op("Gather", [shp, g.init("idx0", i64(0))], axis=0)
    bdim = g.op("Unsqueeze", [bdim, g.init("axes0", i64([0]))])
    newshape = g.op("Concat", [bdim, g.init("feat", i64([64]))], axis=0)
    h = g.op("Reshape", ["x", newshape])                           # [batch, 64]
    h = g.op("Gemm", [h, g.he("fc1.weight", (32, 64), 64), g.small("fc1.bias", 32)], transB=1)
    h = g.op("Relu", [h])
    h = g.op("MatMul", [h, g.he("fc2.weight", (32, 10), 32)])
    g.op("Add", [h, g.small("fc2.bias", 10)], out="y")
    m = g.model("dynamic_mlp", [vi("x", ["batch", 8, 8])], [vi("y", ["batch", 10])], opset=17)
    return m, [f32(rng.standard_normal((5, 8, 8)))], 1e-4, \
        "dim 0 is dim_param 'batch' (reference at batch 5); the flatten is " \
        "Shape -> Gather(0) -> Unsqueeze -> Concat -> Reshape"


def case_weird_names(rng):
    g = GraphBuilder(rng)
    x = "serving_default/x:0"
    h = g.op("MatMul", [x, g.he("block/0/W:0", (16, 32), 16)], out="block/0/matmul:0")
    h = g.op("Add", [h, g.small("block/0/b:0", 32)], out="block/1:out")
    r = g.op("Relu", [h], out="block/1/relu:0")
    r = g.op("MatMul", [r, g.he("head/W:0", (32, 8), 32)], out="head/mm:0")
    g.op("Add", [r, g.small("head/b:0", 8)], out="logits:0")
    m = g.model("weird_names", [vi(x, [2, 16])], [vi("block/1:out", [2, 32]), vi("logits:0", [2, 8])],
                opset=17)
    return m, [f32(rng.standard_normal((2, 16)))], 1e-4, \
        "value names with '/' and ':'; output 'block/1:out' is also consumed inside the graph"


def case_ops_mix_a(rng):
    """opset 13: Squeeze/Unsqueeze/Split/ReduceSum take axes/split as inputs."""
    g = GraphBuilder(rng)
    # Slice with inputs, negative start, clamped end and a negative step
    sl = g.op("Slice", ["a", g.init("sl_starts", i64([-1, 1])), g.init("sl_ends", i64([-1000, 3])),
                        g.init("sl_axes", i64([3, 1])), g.init("sl_steps", i64([-2, 1]))])
    g.op("Identity", [sl], out="slice_out")                                   # [2,2,4,3]
    # Split (split input) / Squeeze / Unsqueeze (negative axis) / Transpose / Concat
    s0, s1 = g.op("Split", ["a", g.init("split_sizes", i64([1, 2]))], n_out=2, axis=1)
    sq = g.op("Squeeze", [s0, g.init("sq_axes", i64([1]))])                  # [2,4,5]
    un = g.op("Unsqueeze", [sq, g.init("unsq_axes", i64([-1]))])             # [2,4,5,1]
    un = g.op("Transpose", [un], perm=[0, 3, 1, 2])                          # [2,1,4,5]
    g.op("Concat", [s1, un], out="concat_out", axis=1)                      # [2,3,4,5]
    # Shape / Gather / ConstantOfShape / Expand / Cast / Equal / Where
    shp = g.op("Shape", ["a"])
    hw = g.op("Gather", [shp, g.init("hw_idx", i64([2, 3]))], axis=0)        # [4,5]
    cos = g.op("ConstantOfShape", [hw], value=numpy_helper.from_array(f32([0.5]), "v"))
    cexp = g.op("Expand", ["c", shp])                                        # [2,3,4,5]
    three = g.op("Constant", [], value_float=3.0)
    ai = g.op("Cast", [g.op("Mul", ["a", three])], to=I64)
    bi = g.op("Cast", [g.op("Mul", ["b", three])], to=I64)
    eq = g.op("Equal", [ai, bi])
    w = g.op("Where", [eq, g.op("Cast", [ai], to=F32), cexp])
    g.op("Add", [w, cos], out="where_out")                                  # [2,3,4,5]
    # Sum of 3 (broadcasting) / Dropout (inference) / Transpose / Constant
    sm = g.op("Sum", ["a", "b", "c"])
    dr = g.op("Dropout", [sm])
    tr = g.op("Transpose", [dr], perm=[0, 2, 3, 1])                          # [2,4,5,3]
    g.op("Mul", [tr, g.const(f32([1.0, -2.0, 0.5]))], out="sum_out")
    # reductions: ReduceSum axes input (opset 13), ReduceMean/ReduceMax axes attribute
    rs = g.op("ReduceSum", ["a", g.init("rs_axes", i64([1, 3]))], keepdims=1)   # [2,1,4,1]
    rmx = g.op("ReduceMax", ["a"], axes=[-1], keepdims=1)                       # [2,3,4,1]
    g.op("Add", [rmx, rs], out="reduce_out")                                    # [2,3,4,1]
    g.op("ReduceMean", ["b"], out="reduce_mean_out", axes=[2], keepdims=0)      # [2,3,5]
    m = g.model("ops_mix_a", [vi("a", [2, 3, 4, 5]), vi("b", [2, 3, 4, 5]), vi("c", [1, 3, 1, 5])],
                [vi("slice_out", [2, 2, 4, 3]), vi("concat_out", [2, 3, 4, 5]),
                 vi("where_out", [2, 3, 4, 5]), vi("sum_out", [2, 4, 5, 3]),
                 vi("reduce_out", [2, 3, 4, 1]), vi("reduce_mean_out", [2, 3, 5])], opset=13)
    feeds = [f32(rng.standard_normal((2, 3, 4, 5))), f32(rng.standard_normal((2, 3, 4, 5))),
             f32(rng.standard_normal((1, 3, 1, 5)))]
    return m, feeds, 1e-5, \
        "opset 13: Slice(inputs, step -2, end clamped), Split(split input), Squeeze/Unsqueeze(axes inputs, " \
        "negative axis), Shape, Gather, ConstantOfShape, Expand, Cast f32->i64->f32 (truncation), Equal, " \
        "Where, Sum(3 inputs, broadcast), Dropout(no ratio), Transpose, Constant(value and value_float), " \
        "ReduceSum(axes input), ReduceMax/ReduceMean(axes attribute)"


def case_ops_mix_b(rng):
    """opset 11: Squeeze/Unsqueeze/Split/Reduce* take axes/split as attributes."""
    g = GraphBuilder(rng)
    e1 = g.op("Sub", [g.op("Exp", ["q"]), g.op("Log", ["p"])])
    one = g.init("one", f32(1.0))
    e2 = g.op("Div", [g.op("Sqrt", ["p"]), g.op("Add", [g.op("Abs", ["q"]), one])])
    e3 = g.op("Pow", ["p", "q"])
    e4 = g.op("LeakyRelu", [g.op("Neg", ["q"])], alpha=0.1)
    e5 = g.op("Erf", ["q"])
    e = g.op("Mul", [g.op("Add", [e1, e2]), e3])
    e = g.op("Add", [g.op("Add", [e, e4]), e5], out="elem_out")              # [2,4,6,6]
    g.op("LRN", [e], out="lrn_out", size=3, alpha=0.01, beta=0.75, bias=1.0)
    gp = g.op("GlobalAveragePool", [e])                                        # [2,4,1,1]
    gp = g.op("Squeeze", [gp], axes=[2, 3])                                    # [2,4]
    g.op("Unsqueeze", [gp], out="gap_out", axes=[1])                          # [2,1,4]
    s0, s1 = g.op("Split", [e], n_out=2, axis=1, split=[1, 3])
    rmean = g.op("ReduceMean", [s1], axes=[1], keepdims=1)                     # [2,1,6,6]
    rmax = g.op("ReduceMax", [s1], axes=[2, 3], keepdims=1)                    # [2,1,1,1]
    rsum = g.op("ReduceSum", [s0], axes=[3], keepdims=1)                       # [2,1,6,1]
    g.op("Add", [g.op("Add", [rmean, rmax]), rsum], out="reduce_out")         # [2,3,6,6]
    # reverse axis 2 with an INT64_MIN end, as exporters write for flips
    g.op("Slice", [e, g.init("flip_starts", i64([-1])), g.init("flip_ends", i64([np.iinfo(np.int64).min])),
                   g.init("flip_axes", i64([2])), g.init("flip_steps", i64([-1]))], out="flip_out")
    g.op("Gather", [e, g.init("gidx", i64([[-1, 0], [2, 1]]))], out="gather_out", axis=3)  # [2,4,6,2,2]
    m = g.model("ops_mix_b", [vi("p", [2, 4, 6, 6]), vi("q", [2, 4, 6, 6])],
                [vi("elem_out", [2, 4, 6, 6]), vi("lrn_out", [2, 4, 6, 6]), vi("gap_out", [2, 1, 4]),
                 vi("reduce_out", [2, 3, 6, 6]), vi("flip_out", [2, 4, 6, 6]),
                 vi("gather_out", [2, 4, 6, 2, 2])], opset=11)
    feeds = [f32(rng.uniform(0.5, 2.0, (2, 4, 6, 6))), f32(rng.standard_normal((2, 4, 6, 6)))]
    return m, feeds, 1e-5, \
        "opset 11: p > 0. Sub, Div, Pow(p, q), Sqrt, Exp, Log, Neg, Abs, LeakyRelu(0.1), Erf, " \
        "LRN(size 3, alpha 0.01), GlobalAveragePool, Squeeze/Unsqueeze/Split/Reduce* with attributes, " \
        "Slice flip (step -1, end INT64_MIN), Gather(2-D indices with a negative one, axis 3)"


def case_ops_mix_c(rng):
    """opset 18: ReduceMean/ReduceSum/ReduceMax take axes as an input; Split num_outputs."""
    g = GraphBuilder(rng)
    ax_last = g.init("axes_last", i64([-1]))
    mean = g.op("ReduceMean", ["u", ax_last], keepdims=1)                     # [3,4,1]
    cen = g.op("Sub", ["u", mean])
    var = g.op("ReduceMean", [g.op("Pow", [cen, g.init("two", f32(2.0))]), ax_last], keepdims=1)
    std = g.op("Sqrt", [g.op("Add", [var, g.init("eps", f32(1e-5))])])
    g.op("Div", [cen, std], out="norm_out")                                  # [3,4,5]
    ax1 = g.init("axes_1", i64([1]))
    mx = g.op("ReduceMax", ["u", ax1], keepdims=1)                            # [3,1,5]
    ex = g.op("Exp", [g.op("Sub", ["u", mx])])
    g.op("Div", [ex, g.op("ReduceSum", [ex, ax1], keepdims=1)], out="softmax_out")  # [3,4,5]
    g.op("ReduceSum", ["u", g.init("axes_02", i64([0, 2]))], out="rsum_out", keepdims=0)  # [4]
    g.op("ReduceSum", ["u"], out="rsum_all", keepdims=0)                      # [] (no axes: all)
    sa, sb = g.op("Split", ["u"], n_out=2, axis=2, num_outputs=2)            # [3,4,3], [3,4,2]
    g.op("Concat", [sb, sa], out="split_out", axis=2)                       # [3,4,5]
    lg = g.op("Log", [g.op("Add", [g.op("Abs", ["u"]), g.init("one", f32(1.0))])])
    lr = g.op("LeakyRelu", [g.op("Neg", ["u"])], alpha=0.2)
    g.op("Add", [g.op("Add", [lg, lr]), g.op("Erf", ["u"])], out="act_out")  # [3,4,5]
    m = g.model("ops_mix_c", [vi("u", [3, 4, 5])],
                [vi("norm_out", [3, 4, 5]), vi("softmax_out", [3, 4, 5]), vi("rsum_out", [4]),
                 vi("rsum_all", []), vi("split_out", [3, 4, 5]), vi("act_out", [3, 4, 5])], opset=18)
    return m, [f32(rng.standard_normal((3, 4, 5)))], 1e-5, \
        "opset 18: ReduceMean/ReduceMax/ReduceSum with axes as int64 initializer inputs, ReduceSum " \
        "without axes (all, 0-d output rsum_all), Split(num_outputs=2) uneven 5 -> 3+2, manual " \
        "layer norm and softmax from Sub/Pow/Sqrt/Div/Exp, Log, Abs, Neg, LeakyRelu(0.2), Erf"


def case_gelu20(rng):
    g = GraphBuilder(rng)
    g.op("Gelu", ["x"], out="gelu")
    g.op("Gelu", ["x"], out="gelu_tanh", approximate="tanh")
    m = g.model("gelu20", [vi("x", [2, 16])], [vi("gelu", [2, 16]), vi("gelu_tanh", [2, 16])],
                opset=20, ir=9)
    return m, [f32(rng.standard_normal((2, 16)) * 2.0)], 1e-5, \
        "opset 20 Gelu, approximate='none' and 'tanh'"


def nonfinite_feed(rng, shape) -> np.ndarray:
    """Normal samples with NaN, +Inf and -Inf sprinkled over ~6% of them."""
    x = f32(rng.standard_normal(shape))
    flat = x.reshape(-1)
    idx = rng.choice(flat.size, size=max(3, flat.size // 16), replace=False)
    for k, i in enumerate(idx):
        flat[i] = (np.nan, np.inf, -np.inf)[k % 3]
    return x


def nonfinite_other() -> np.ndarray:
    """case_nonfinite's constant operand of Max and Min."""
    return nonfinite_feed(case_rng("nonfinite_other"), (1, 2, 6, 6))


def case_nonfinite(rng):
    """NaN and infinities through the max/min family (values: nonfinite_reference)."""
    g = GraphBuilder(rng)
    other = nonfinite_other()
    c = g.init("other", other)
    g.op("MaxPool", ["x"], out="maxpool", kernel_shape=[2, 2], strides=[2, 2])
    g.op("MaxPool", ["x"], out="maxpool_pad", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    g.op("GlobalMaxPool", ["x"], out="globalmaxpool")
    g.op("Max", ["x", c], out="max")
    g.op("Min", ["x", c], out="min")
    g.op("ReduceMax", ["x"], out="reducemax", axes=[2, 3], keepdims=1)
    g.op("ReduceMin", ["x"], out="reducemin", axes=[3], keepdims=0)
    outs = [vi("maxpool", [1, 2, 3, 3]), vi("maxpool_pad", [1, 2, 6, 6]),
            vi("globalmaxpool", [1, 2, 1, 1]), vi("max", [1, 2, 6, 6]), vi("min", [1, 2, 6, 6]),
            vi("reducemax", [1, 2, 1, 1]), vi("reducemin", [1, 2, 6])]
    m = g.model("nonfinite", [vi("x", [1, 2, 6, 6])], outs, opset=17)
    return m, [nonfinite_feed(rng, (1, 2, 6, 6))], 1e-6, \
        "NaN/Inf through MaxPool, GlobalMaxPool, Max, Min, ReduceMax, ReduceMin (opset 17)"


def nonfinite_reference(x: np.ndarray) -> list[np.ndarray]:
    """case_nonfinite's outputs in float64 numpy, NaN winning every max and min.

    Neither onnxruntime 1.32 nor onnx.reference is usable here: both drop a
    NaN in a MaxPool window depending on where it sits (onnxruntime even
    returns -FLT_MAX for one padded window), and onnxruntime's ReduceMax
    drops it too, while their GlobalMaxPool/Max/Min keep it."""
    x = x.astype(np.float64)
    other = nonfinite_other().astype(np.float64)

    def maxpool(a, k, s, p):
        n, c, h, w = a.shape
        a = np.pad(a, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        o = np.empty((n, c, oh, ow))
        for i in range(oh):
            for j in range(ow):
                o[:, :, i, j] = np.max(a[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
        return o

    outs = [maxpool(x, 2, 2, 0), maxpool(x, 3, 1, 1), np.max(x, axis=(2, 3), keepdims=True),
            np.maximum(x, other), np.minimum(x, other), np.max(x, axis=(2, 3), keepdims=True),
            np.min(x, axis=3)]
    return [f32(o) for o in outs]


def case_lenet_nonfinite(rng):
    """The lenet case fed NaN and infinities (issue 18: MaxPool dropped NaN)."""
    m, _, tol, _ = case_lenet(case_rng("lenet"))
    return m, [nonfinite_feed(rng, (2, 1, 28, 28))], tol, "lenet with NaN/Inf in its input"


HAND_CASES = {
    "mlp": case_mlp,
    "lenet": case_lenet,
    "resnet_block": case_resnet_block,
    "transformer_encoder": case_transformer_encoder,
    "mobilenet_block": case_mobilenet_block,
    "symbolic_batch": case_symbolic_batch,
    "dynamic_mlp": case_dynamic_mlp,
    "weird_names": case_weird_names,
    "ops_mix_a": case_ops_mix_a,
    "ops_mix_b": case_ops_mix_b,
    "ops_mix_c": case_ops_mix_c,
    "gelu20": case_gelu20,
    "nonfinite": case_nonfinite,
    "lenet_nonfinite": case_lenet_nonfinite,
    "loop_dynamic": case_loop_dynamic,
    "rnn_scan": case_rnn_scan,
}
NONFINITE_CASES = {"nonfinite", "lenet_nonfinite"}  # outputs may hold NaN/Inf
NUMPY_REFERENCE = {"nonfinite": nonfinite_reference}
OPTIONAL_CASES = {"gelu20"}   # skipped (with a message) when onnxruntime refuses them


# --------------------------------------------------------------------------
# light model zoo with random weights
# --------------------------------------------------------------------------

def light_zoo_dir() -> Path:
    return Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light"


def light_zoo_models() -> list[Path]:
    return sorted(light_zoo_dir().glob("light_*.onnx"))


def _follow(name, consumers):
    """Follow a weight through shape-only ops to the op that uses it: (node, input index)."""
    seen = 0
    while seen < 8:
        uses = consumers.get(name, [])
        if len(uses) != 1:
            return uses[0] if uses else (None, -1)
        node, idx = uses[0]
        if node.op_type in ("Reshape", "Unsqueeze", "Squeeze", "Identity", "Flatten") and idx == 0:
            name = node.output[0]
            seen += 1
            continue
        return node, idx
    return None, -1


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _draw_weight(rng, shape, node, idx, name, warn):
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape)) if shape else 1
    op = node.op_type if node is not None else None
    normal = lambda std: rng.standard_normal(shape, dtype=np.float32) * np.float32(std)  # noqa: E731
    if op == "Conv" and idx == 1:
        fan_in = n // shape[0]
        return normal(math.sqrt(2.0 / fan_in)), "conv_weight"
    if op == "Gemm" and idx == 1:
        fan_in = shape[-1] if _attr(node, "transB", 0) else n // shape[-1]
        return normal(math.sqrt(2.0 / fan_in)), "gemm_weight"
    if op in ("Conv", "Gemm") and idx == 2:
        return normal(0.05), "bias"
    if op == "BatchNormalization":
        if idx == 1:
            return f32(rng.uniform(0.8, 1.2, shape)), "bn_scale"
        if idx == 2:
            return normal(0.1), "bn_bias"
        if idx == 3:
            return normal(0.1), "bn_mean"
        if idx == 4:
            return f32(rng.uniform(0.5, 1.5, shape)), "bn_var"
    if op == "Mul":
        return f32(rng.uniform(0.8, 1.2, shape)), "scale"
    if op in ("Add", "Sum", "Sub"):
        return normal(0.1), "bias"
    warn.append(f"{name}{list(shape)} -> {op}[{idx}]: unknown role, N(0, 0.1)")
    return normal(0.1), "other"


def _randomize_zoo(model: onnx.ModelProto, rng) -> tuple[onnx.ModelProto, dict, list, list]:
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers = defaultdict(list)
    for n in g.node:
        for i, x in enumerate(n.input):
            consumers[x].append((n, i))

    weights = {}          # name -> np.ndarray
    roles = defaultdict(int)
    warn: list[str] = []
    drop_nodes = set()
    # 1. ConstantOfShape(shape initializer) producing a float tensor -> random initializer
    for n in g.node:
        if n.op_type != "ConstantOfShape" or n.input[0] not in inits:
            continue
        val = _attr(n, "value", None)
        if val is not None and val.data_type != F32:
            continue
        shape = numpy_helper.to_array(inits[n.input[0]]).astype(np.int64).tolist()
        node, idx = _follow(n.output[0], consumers)
        arr, role = _draw_weight(rng, shape, node, idx, n.output[0], warn)
        weights[n.output[0]] = arr
        roles[role] += 1
        drop_nodes.add(id(n))
    # 2. float initializers with more than one element -> re-drawn
    for t in g.initializer:
        if t.data_type != F32 or int(np.prod(t.dims)) <= 1:
            continue
        node, idx = _follow(t.name, consumers)
        if node is None:
            continue   # unused
        arr, role = _draw_weight(rng, list(t.dims), node, idx, t.name, warn)
        weights[t.name] = arr
        roles[role] += 1

    new = onnx.ModelProto()
    new.CopyFrom(model)
    ng = new.graph
    kept_nodes = [n for n in g.node if id(n) not in drop_nodes]
    del ng.node[:]
    ng.node.extend(kept_nodes)
    used = {x for n in kept_nodes for x in n.input} | {o.name for o in g.output}
    old_inits = [t for t in g.initializer if t.name not in weights and t.name in used]
    del ng.initializer[:]
    ng.initializer.extend(old_inits)
    for name, arr in weights.items():
        ng.initializer.append(numpy_helper.from_array(arr, name))
    # IR < 4: every initializer must also be a graph input; keep the real inputs first.
    init_names = {t.name for t in ng.initializer}
    real_inputs = [v for v in g.input if v.name not in inits]
    kept_init_inputs = [v for v in g.input if v.name in init_names]
    have = {v.name for v in kept_init_inputs}
    del ng.input[:]
    ng.input.extend(real_inputs + kept_init_inputs)
    if new.ir_version < 4:
        for name, arr in weights.items():
            if name not in have:
                ng.input.append(vi(name, list(arr.shape)))
    return new, weights, dict(roles), warn


def _calibrate_bn(model: onnx.ModelProto, weights: dict, feed: dict, rng) -> int:
    """Set each BN's mean/var to the statistics of its input, as in a trained net.

    One onnxruntime pass over a probe copy of the model in which every
    BatchNormalization(x, s, b, m, v) is replaced by
    InstanceNormalization(x, s / sqrt(j), b), i.e. BN with its own batch
    statistics (identical for batch 1) and the final variance jitter j already
    applied. The probe's BN inputs are therefore those of the final model, and
    setting mean = E[x], var = Var[x] * j makes the final model compute what the
    probe computed, without the drift of iterating passes.
    """
    bns = [n for n in model.graph.node if n.op_type == "BatchNormalization"
           and len(n.input) >= 5 and n.input[3] in weights and n.input[4] in weights]
    if not bns:
        return 0
    if any(a.shape[0] != 1 for a in feed.values()):
        raise RuntimeError("BN calibration needs batch 1")
    jitter = {n.name or n.output[0]: f32(rng.uniform(0.5, 1.5, weights[n.input[4]].shape)) for n in bns}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    bn_ids = {(n.name, n.output[0]) for n in bns}
    nodes = []
    for n in probe.graph.node:
        if (n.name, n.output[0]) not in bn_ids:
            nodes.append(n)
            continue
        x, s, b = n.input[0], n.input[1], n.input[2]
        j = jitter[n.name or n.output[0]]
        scale = weights[s] if s in weights else numpy_helper.to_array(
            next(t for t in model.graph.initializer if t.name == s))
        sname = n.output[0] + "__calib_scale"
        probe.graph.initializer.append(numpy_helper.from_array(f32(scale / np.sqrt(j)), sname))
        if probe.ir_version < 4:
            probe.graph.input.append(vi(sname, list(scale.shape)))
        nodes.append(helper.make_node("InstanceNormalization", [x, sname, b], [n.output[0]],
                                      name=(n.name or n.output[0]) + "__calib",
                                      epsilon=_attr(n, "epsilon", 1e-5)))
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    xs = sorted({n.input[0] for n in bns})
    for x in xs:
        probe.graph.output.append(helper.make_tensor_value_info(x, F32, None))
    sess = make_session(probe.SerializeToString(), threads=os.cpu_count() or 1)
    vals = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
    by_name = {t.name: t for t in model.graph.initializer}
    for n in bns:
        x = vals[n.input[0]].astype(np.float64)
        axes = tuple(i for i in range(x.ndim) if i != 1)
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        floor = max(1e-3, 0.05 * float(np.mean(var)))
        mname, vname = n.input[3], n.input[4]
        weights[mname] = f32(mean)
        weights[vname] = f32(np.maximum(var, floor) * jitter[n.name or n.output[0]])
        for nm in (mname, vname):
            by_name[nm].CopyFrom(numpy_helper.from_array(weights[nm], nm))
    return len(bns)


def zoo_case(path: Path):
    short = path.stem[len("light_"):]
    case = f"zoo_{short}"
    rng = case_rng(case)
    orig = onnx.load(str(path))
    new, weights, roles, warn = _randomize_zoo(orig, rng)
    ins = graph_inputs(new)
    feeds = []
    for v in ins:
        shape = declared_shape(v)
        if shape is None or not all(isinstance(s, int) and s > 0 for s in shape):
            raise RuntimeError(f"{case}: input {v.name} has no static shape: {shape}")
        feeds.append(f32(rng.standard_normal(shape)))
    nbn = _calibrate_bn(new, weights, {v.name: a for v, a in zip(ins, feeds)}, rng)
    for w in warn:
        print(f"    warning: {case}: {w}")
    orig_out = path.with_name(path.stem + "_output_0.pb")
    n_params = int(sum(a.size for a in weights.values()))
    note = (f"light zoo model {path.name} with random weights ({n_params:,} params; roles {roles}); "
            f"ConstantOfShape weights turned into initializers; IR {new.ir_version}, opset "
            f"{new.opset_import[0].version} kept (initializers also listed in graph.input)"
            + (f"; {nbn} BatchNormalization mean/var calibrated to input statistics" if nbn else ""))
    extra = {
        "original_model": str(path),
        "original_output": str(orig_out) if orig_out.exists() else None,
        "original_ops": op_summary(orig),
        "params": n_params,
    }
    return case, new, feeds, 1e-3, note, extra


# --------------------------------------------------------------------------

# --------------------------------------------------------------------------
# structurally mutated models and onnxruntime's verdict on each
# --------------------------------------------------------------------------

MUTANT_BASES = ["mlp", "lenet", "resnet_block", "transformer_encoder", "mobilenet_block",
                "ops_mix_a", "ops_mix_b", "ops_mix_c"]


def _mutations(m: onnx.ModelProto, rng) -> list[tuple[str, onnx.ModelProto]]:
    """One-change mutants of `m`: (what changed, model)."""
    out = []

    def mutant(name, fn):
        c = onnx.ModelProto()
        c.CopyFrom(m)
        if fn(c) is not False:
            out.append((name, c))

    g = m.graph
    nodes_with = lambda t: [i for i, n in enumerate(g.node) for a in n.attribute if a.type == t]
    ints = nodes_with(onnx.AttributeProto.INT)
    intss = nodes_with(onnx.AttributeProto.INTS)
    floats = nodes_with(onnx.AttributeProto.FLOAT)

    def first_attr(c, i, t):
        return next(a for a in c.graph.node[i].attribute if a.type == t)

    for i in ints[:3]:
        def f(c, i=i):
            a = first_attr(c, i, onnx.AttributeProto.INT)
            a.type, a.f = onnx.AttributeProto.FLOAT, float(a.i) + 0.5
            a.ClearField("i")
        mutant(f"attr_int_typed_float@{i}", f)

        def f(c, i=i):
            a = first_attr(c, i, onnx.AttributeProto.INT)
            a.type, a.f = onnx.AttributeProto.FLOAT, 1.0
        mutant(f"attr_int_with_stale_float@{i}", f)

        def f(c, i=i):
            first_attr(c, i, onnx.AttributeProto.INT).type = onnx.AttributeProto.UNDEFINED
        mutant(f"attr_untyped@{i}", f)

        def f(c, i=i):
            a = first_attr(c, i, onnx.AttributeProto.INT)
            c.graph.node[i].attribute.append(a)
        mutant(f"attr_twice@{i}", f)
    for i in intss[:2]:
        def f(c, i=i):
            first_attr(c, i, onnx.AttributeProto.INTS).type = onnx.AttributeProto.FLOATS
        mutant(f"attr_ints_typed_floats@{i}", f)
    for i in floats[:2]:
        def f(c, i=i):
            first_attr(c, i, onnx.AttributeProto.FLOAT).type = onnx.AttributeProto.STRING
        mutant(f"attr_float_typed_string@{i}", f)

    for v in (0, -1, 99):
        def f(c, v=v):
            c.opset_import[0].version = v
        mutant(f"opset_{v}", f)
    mutant("no_default_opset", lambda c: c.ClearField("opset_import"))
    mutant("opset_twice", lambda c: c.opset_import.append(helper.make_opsetid("", 13)))
    for v in (0, 99):
        def f(c, v=v):
            c.ir_version = v
        mutant(f"ir_version_{v}", f)
    mutant("input_twice", lambda c: c.graph.input.append(c.graph.input[0]))
    mutant("no_outputs", lambda c: c.graph.ClearField("output"))
    mutant("output_twice", lambda c: c.graph.output.append(c.graph.output[0]))
    if len(g.initializer) > 0:
        mutant("initializer_twice", lambda c: c.graph.initializer.append(c.graph.initializer[0]))
        mutant("initializer_removed", lambda c: c.graph.initializer.pop())

        def f(c):
            t = c.graph.initializer[0]
            t.dims.append(2)
        mutant("initializer_dims_grown", f)
    named = [i for i, n in enumerate(g.node) if n.name]
    if len(named) >= 2:
        def f(c, a=named[0], b=named[1]):
            c.graph.node[b].name = c.graph.node[a].name
        mutant("node_name_twice", f)
    for i in rng.choice(len(g.node), size=min(3, len(g.node)), replace=False):
        i = int(i)
        def f(c, i=i):
            c.graph.node[i].input[0] = "no_such_value"
        mutant(f"dangling_input@{i}", f)

        def f(c, i=i):
            c.graph.node[i].op_type += "x"
        mutant(f"unknown_op@{i}", f)

        def f(c, i=i):
            c.graph.node[i].domain = "com.example"
        mutant(f"foreign_domain@{i}", f)
        if i > 0:
            def f(c, i=i):
                c.graph.node[i].output[0] = c.graph.node[i - 1].output[0]
            mutant(f"output_produced_twice@{i}", f)
    if len(g.node) > 1:
        def f(c):
            last = onnx.NodeProto()
            last.CopyFrom(c.graph.node[-1])
            del c.graph.node[-1]
            c.graph.node.insert(0, last)
        mutant("last_node_first", f)

    def f(c):
        c.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    mutant("input_elem_int64", f)

    def f(c):
        c.graph.input[0].type.tensor_type.elem_type = 1234
    mutant("input_elem_unknown", f)
    return out


def write_mutants(out_dir: Path) -> None:
    """fixtures-gen/mutants/: one-change mutants of the hand-built cases and
    onnxruntime's verdict on each (load, then run on the case's inputs)."""
    d = out_dir / "mutants"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    verdicts = []
    for base in MUTANT_BASES:
        m = onnx.load(str(out_dir / base / "model.onnx"))
        man = json.loads((out_dir / base / "manifest.json").read_text())
        feeds = {e["name"]: np.load(out_dir / base / e["file"]) for e in man["inputs"]}
        for what, mm in _mutations(m, case_rng("mutants_" + base)):
            name = f"{base}.{what}.onnx"
            data = mm.SerializeToString()
            (d / name).write_bytes(data)
            try:
                opts = ort.SessionOptions()
                opts.log_severity_level = 4
                sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
                sess.run(None, feeds)
                ok, why = True, ""
            except Exception as e:  # noqa: BLE001
                ok, why = False, str(e).strip().splitlines()[0][:300]
            verdicts.append({"file": name, "base": base, "mutation": what,
                             "onnxruntime_accepts": ok, "onnxruntime_error": why})
    (d / "verdicts.json").write_text(json.dumps({
        "reference": f"onnxruntime {ort.__version__}: InferenceSession(model) then run(case inputs)",
        "mutants": verdicts}, indent=1) + "\n")
    rej = sum(not v["onnxruntime_accepts"] for v in verdicts)
    print(f"  mutants: {len(verdicts)} models, onnxruntime rejects {rej}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--only", nargs="*", default=None, help="generate only these cases")
    ap.add_argument("--no-zoo", action="store_true", help="skip the light model zoo cases")
    args = ap.parse_args()

    t0 = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"gen_fixtures: numpy {np.__version__}, onnx {onnx.__version__}, "
          f"onnxruntime {ort.__version__} -> {out}", flush=True)
    want = set(args.only) if args.only else None
    index = []
    skipped = []

    for case, fn in HAND_CASES.items():
        if want is not None and case not in want:
            continue
        m, feeds, tol, note = fn(case_rng(case))
        try:
            write_case(out, case, m, feeds, tol, note, nonfinite=case in NONFINITE_CASES,
                       numpy_ref=NUMPY_REFERENCE.get(case))
        except Exception as e:  # noqa: BLE001
            if case in OPTIONAL_CASES:
                shutil.rmtree(out / case, ignore_errors=True)
                msg = str(e).strip().splitlines()[0][:200]
                print(f"  {case:<24} SKIPPED: onnxruntime refused it: {msg}", flush=True)
                skipped.append(case)
                continue
            raise
        index.append(case)

    if not args.no_zoo:
        models = light_zoo_models()
        if len(models) == 0:
            raise SystemExit(f"no light zoo models under {light_zoo_dir()}")
        for path in models:
            case = f"zoo_{path.stem[len('light_'):]}"
            if want is not None and case not in want:
                continue
            t = time.perf_counter()
            case, m, feeds, tol, note, extra = zoo_case(path)
            man = write_case(out, case, m, feeds, tol, note, extra)
            o = np.load(out / case / man["outputs"][0]["file"])
            flat = o.reshape(o.shape[0], -1)
            print(f"    {'':<24} {time.perf_counter() - t:6.1f} s; output max {flat.max():.4g} "
                  f"min {flat.min():.4g} argmax {int(flat[0].argmax())}", flush=True)
            index.append(case)

    if want is None or "mutants" in want:
        write_mutants(out)
        if want is not None:
            index.append("mutants")

    if want is not None:
        missing = want - set(index) - set(skipped)
        if missing:
            raise SystemExit(f"unknown cases: {sorted(missing)}")
    idx_path = out / "index.json"
    prev = []
    if want is not None and idx_path.exists():
        prev = [c for c in json.loads(idx_path.read_text()).get("cases", []) if c not in index]
    idx_path.write_text(json.dumps({
        "cases": sorted(set(prev) | set(index)),
        "skipped": skipped,
        "generator": "scripts/gen_fixtures.py",
        "generator_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "numpy": np.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
    }, indent=1) + "\n")
    print(f"gen_fixtures: {len(index)} cases ({len(skipped)} skipped) in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
