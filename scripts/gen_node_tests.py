#!/usr/bin/env python3
"""Writes the ONNX backend node tests of the installed `onnx` package as
model.onnx + test_data_set_N/{input,output}_K.pb directories.

    .venv/bin/python scripts/gen_node_tests.py [OUT]   (default: conformance-data/node)

The onnx wheel ships the test-case code (onnx.backend.test.case.node) but not
the generated data; this runs the same collection the onnx repository uses to
produce its data and writes it in the standard layout. Idempotent: a stamp
file records the onnx version, and a rerun with the same version does
nothing.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, numpy_helper
import onnx.backend.test.case.node as node_cases

ROOT = Path(__file__).resolve().parent.parent


def write_value(f, value, vi) -> None:
    t = vi.type
    if isinstance(value, TensorProto):
        f.write(value.SerializeToString())
    elif t.HasField("sequence_type"):
        f.write(numpy_helper.from_list(value, vi.name).SerializeToString())
    elif t.HasField("optional_type"):
        f.write(numpy_helper.from_optional(value, vi.name).SerializeToString())
    elif t.HasField("map_type"):
        f.write(numpy_helper.from_dict(value, vi.name).SerializeToString())
    else:
        f.write(numpy_helper.from_array(value, vi.name).SerializeToString())


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "conformance-data" / "node"
    stamp = out / ".stamp"
    if stamp.exists() and stamp.read_text().strip() == onnx.__version__:
        print(f"gen_node_tests: {out} is up to date (onnx {onnx.__version__})")
        return 0
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cases = node_cases.collect_testcases()
    written = 0
    for case in cases:
        d = out / case.name
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.onnx").write_bytes(case.model.SerializeToString())
        g = case.model.graph
        for i, (inputs, outputs) in enumerate(case.data_sets):
            ds = d / f"test_data_set_{i}"
            ds.mkdir(exist_ok=True)
            for j, v in enumerate(inputs):
                with open(ds / f"input_{j}.pb", "wb") as f:
                    write_value(f, v, g.input[j])
            for j, v in enumerate(outputs):
                with open(ds / f"output_{j}.pb", "wb") as f:
                    write_value(f, v, g.output[j])
        written += 1
    stamp.write_text(onnx.__version__)
    print(f"gen_node_tests: {written} node tests from onnx {onnx.__version__} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
