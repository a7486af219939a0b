"""The deploy tests' zoo, written where a user keeps theirs (a temporary folder outside the checkout): three ONNX
files made with onnx.helper, one per shape of Triton config, and the config that deploys them.

    dyn      x [batch, seq, 8] -> y [batch, seq, 4]                 dynamic batch + a dynamic non-batch dim
    two_io   a [batch, 4], b [batch, 4] -> sum, prod [batch, 4]     two inputs, two outputs
    fixed    x [2, 8] -> y [2, 4]                                    no dynamic axis: max_batch_size 0, full dims
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

TARGETS = ["8.6", "8.9"]


def _save(path: Path, nodes, inputs, outputs, initializers=()):
    import onnx
    from onnx import TensorProto, helper

    def vi(name, dims):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    graph = helper.make_graph(
        nodes,
        path.stem,
        [vi(*i) for i in inputs],
        [vi(*o) for o in outputs],
        initializer=[helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.ravel().tolist()) for n, a in initializers],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def write_models(root: Path) -> None:
    from onnx import helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    _save(
        root / "dyn.onnx",
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        [("x", ["batch", "seq", 8])],
        [("y", ["batch", "seq", 4])],
        [("w", w)],
    )
    _save(
        root / "two_io.onnx",
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["prod"])],
        [("a", ["batch", 4]), ("b", ["batch", 4])],
        [("sum", ["batch", 4]), ("prod", ["batch", 4])],
    )
    _save(
        root / "fixed.onnx",
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [("x", [2, 8])],
        [("y", [2, 4])],
        [("w", w)],
    )


def zoo_config(**deploy) -> dict:
    return {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": TARGETS},
        "precisions": ["fp32"],
        "deploy": {"triton": {"enabled": True, **deploy}},
        "models": {
            "dyn": {
                "framework": "onnx",
                "onnx": "dyn.onnx",
                "precisions": ["fp32", "fp16"],
                "inputs": {"x": {"shape": ["batch", "seq", 8], "min": [1, 1, 8], "opt": [4, 8, 8], "max": [16, 32, 8]}},
                "outputs": ["y"],
            },
            "two_io": {
                "framework": "onnx",
                "onnx": "two_io.onnx",
                "inputs": {
                    "a": {"shape": ["batch", 4], "min": [1, 4], "opt": [2, 4], "max": [8, 4]},
                    "b": {"shape": ["batch", 4], "min": [1, 4], "opt": [2, 4], "max": [8, 4]},
                },
                "outputs": ["sum", "prod"],
            },
            "fixed": {"framework": "onnx", "onnx": "fixed.onnx", "inputs": {"x": {"shape": [2, 8]}}, "outputs": ["y"]},
        },
    }


def write_zoo(root: Path, **deploy) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_models(root)
    path = root / "zoo.yaml"
    path.write_text(yaml.safe_dump(zoo_config(**deploy), sort_keys=False))
    return path
