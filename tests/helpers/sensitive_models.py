"""Small ONNX models (onnx.helper, no framework) made to have exactly one layer that int8 breaks: the input of that
Gemm has one outlier channel (values ~1000x the others) that still matters to the output, so one per-tensor int8
scale for that input either zeroes the ordinary channels (scale set by the outlier) or clips the outlier."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SENSITIVE = "blocks.1/fc"  # the node int8 breaks (a name with the characters real exports use)


def sensitive_mlp(
    path,
    *,
    features: int = 32,
    width: int = 64,
    out: int = 16,
    depth: int = 3,
    seed: int = 0,
    sensitive: int = 1,
    outlier: float = 1000.0,
) -> Path:
    """features -> depth Gemm layers (Relu between) -> `scores` [batch, out]. Layer `sensitive` is named
    SENSITIVE; the others `blocks.<i>/fc`. Every K and N is >= 16 (ModelOpt's small-GEMM rule quantizes them)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    dims = [features] + [width] * (depth - 1) + [out]
    nodes, inits, x = [], [], "features"
    for i, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
        w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        b = (0.1 * rng.standard_normal(n)).astype(np.float32)
        if i == sensitive - 1:  # the layer before: its channel 0 carries an outlier-sized copy of a signal
            w[0] = 0.0
            w[0, 0] = outlier
            b[0] = 0.0
        if i == sensitive:  # the sensitive layer reads that channel back at 1/outlier scale: it matters
            w[:, 0] = (3.0 * rng.standard_normal(n) / outlier).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        y = f"h{i}"
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [y], name=f"blocks.{i}/fc", transB=1))
        x = y
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"{x}_relu"], name=f"blocks.{i}/act"))
            x = f"{x}_relu"
    nodes.append(helper.make_node("Identity", [x], ["scores"], name="head"))
    graph = helper.make_graph(
        nodes,
        "sensitive_mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", out])],
        inits,
    )
    return _save(graph, path)


def sensitive_inputs(features: int = 32) -> dict:
    return {
        "features": {
            "dtype": "float32",
            "shape": ["batch", features],
            "min": [1, features],
            "opt": [8, features],
            "max": [64, features],
        }
    }


OVERFLOW = "scale"  # the node that must read its input in fp32 (raw values up to 4e5; fp16 ends at 65504)


def overflow_model(path, *, features: int = 16, out: int = 16, seed: int = 0) -> Path:
    """`x` (raw sensor values in [1e5, 4e5]) -> scale = x * 1e-4 -> fc (Gemm) -> `y`. In fp32 fine; in fp16 the
    Cast of `x` into `scale` overflows to inf: AutoCast, judging ranges on its own random data, converts every node.
    Keeping `scale` in fp32 (it reads `x` uncast, its output is small) fixes it. onnxruntime's CPU provider runs
    fp16 ops without an fp16 kernel in fp32 (so an fp16 Mul of large values does not overflow there), but it runs
    Cast faithfully: this overflow is one its parity sees."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((out, features)) / np.sqrt(features)).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(1e-4, np.float32), "k"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.zeros(out, np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["scaled"], name=OVERFLOW),
        helper.make_node("Gemm", ["scaled", "w", "b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out])],
        inits,
    )
    return _save(graph, path)


def overflow_inputs(features: int = 16) -> dict:
    return {
        "x": {
            "dtype": "float32",
            "shape": ["batch", features],
            "min": [1, features],
            "opt": [8, features],
            "max": [64, features],
            "range": [1e5, 4e5],
        }
    }


def _save(graph, path) -> Path:
    """The graph as a checked opset-18, IR-9 model file."""
    import onnx
    from onnx import helper

    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return Path(path)
