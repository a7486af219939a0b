import copy

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine_factory.errors import FactoryError
from engine_factory.graph import simplify
from engine_factory.graph.simplify import simplify_onnx
from engine_factory.tensors import random_inputs, run_onnxruntime

from helpers import CNN_INPUTS, leftovers


def make_cnn(path, *, width: int = 32, classes: int = 10, opset: int = 18, seed: int = 0):
    """A tiny classifier written with onnx.helper (no torch): Identity, conv-bn-relu x2, global pooling, Gemm,
    dynamic batch. width > 16 so that ModelOpt's fp8 mode quantizes the second conv."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def conv_bn_relu(i, x, cin, cout, stride):
        w = init(f"w{i}", rng.standard_normal((cout, cin, 3, 3)) * (2 / (9 * cin)) ** 0.5)
        nodes.append(
            helper.make_node(
                "Conv",
                [x, w, init(f"b{i}", rng.uniform(-0.1, 0.1, cout))],
                [f"c{i}"],
                pads=[1, 1, 1, 1],
                strides=[stride, stride],
            )
        )
        bn = [
            init(f"bn{i}_{k}", rng.uniform(lo, hi, cout))
            for k, lo, hi in (("s", 0.5, 1.5), ("b", -0.2, 0.2), ("m", -0.5, 0.5), ("v", 0.5, 2))
        ]
        nodes.append(helper.make_node("BatchNormalization", [f"c{i}", *bn], [f"n{i}"]))
        nodes.append(helper.make_node("Relu", [f"n{i}"], [f"r{i}"]))
        return f"r{i}"

    nodes.append(helper.make_node("Identity", ["x"], ["x_id"]))
    h = conv_bn_relu(2, conv_bn_relu(1, "x_id", 3, width, 1), width, width, 2)
    nodes += [
        helper.make_node("GlobalAveragePool", [h], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node(
            "Gemm",
            [
                "flat",
                init("fc_w", rng.standard_normal((classes, width)) * width**-0.5),
                init("fc_b", rng.uniform(-0.1, 0.1, classes)),
            ],
            ["logits"],
            transB=1,
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 10
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return make_cnn(tmp_path_factory.mktemp("src") / "model.onnx")


def batch_dims(path):
    proto = onnx.load(str(path))
    return [v.type.tensor_type.shape.dim[0].dim_param for v in [*proto.graph.input, *proto.graph.output]]


@pytest.mark.parametrize("tool", ["onnxslim", "onnxsim"])
def test_each_simplifier_folds_and_keeps_dynamic_batch(cnn, tmp_path, tool):
    dst = tmp_path / "model.sim.onnx"
    facts = simplify_onnx(cnn, dst, model="tiny", input_specs=copy.deepcopy(CNN_INPUTS), simplifier=tool)
    assert facts["simplifier_used"] == tool
    assert facts["attempts"] == [{"tool": tool, "status": "ok", "reason": facts["attempts"][0]["reason"]}]
    assert facts["nodes_before"] == 10 and facts["nodes_after"] == 7  # BatchNorm folded, Identity gone
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert batch_dims(dst) == ["batch", "batch"]
    feeds = random_inputs({"x": {**CNN_INPUTS["x"], "opt": [3, 3, 32, 32]}}, seed=5)  # a batch not checked inside
    np.testing.assert_allclose(
        run_onnxruntime(dst, feeds)["logits"], run_onnxruntime(cnn, feeds)["logits"], rtol=1e-4, atol=1e-5
    )
    assert leftovers(tmp_path) == ["model.sim.onnx"]


def _patched(monkeypatch, broken: dict):
    """Make the simplifiers named in `broken` misbehave: "raise", "wrong" (other outputs), "static" (batch fixed)."""
    real = simplify._run_simplifier

    def fake(tool, proto):
        out = real(tool, proto)
        how = broken.get(tool)
        if how == "raise":
            raise RuntimeError(f"{tool} exploded")
        if how == "wrong":
            bias = next(i for i in out.graph.initializer if i.name == "fc_b")
            bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.5, "fc_b"))
        if how == "static":
            for v in [*out.graph.input, *out.graph.output]:
                v.type.tensor_type.shape.dim[0].dim_value = 4
        return out

    monkeypatch.setattr(simplify, "_run_simplifier", fake)


def test_crash_falls_back_to_the_other_simplifier(cnn, tmp_path, monkeypatch):
    _patched(monkeypatch, {"onnxslim": "raise"})
    facts = simplify_onnx(cnn, tmp_path / "s.onnx", model="tiny", input_specs=copy.deepcopy(CNN_INPUTS))
    assert facts["simplifier_used"] == "onnxsim"
    assert [(a["tool"], a["status"]) for a in facts["attempts"]] == [("onnxslim", "failed"), ("onnxsim", "ok")]
    assert "onnxslim exploded" in facts["attempts"][0]["reason"]


def test_changed_outputs_are_a_mismatch_and_fall_back(cnn, tmp_path, monkeypatch):
    _patched(monkeypatch, {"onnxsim": "wrong"})
    facts = simplify_onnx(
        cnn, tmp_path / "s.onnx", model="tiny", input_specs=copy.deepcopy(CNN_INPUTS), simplifier="onnxsim"
    )
    assert [(a["tool"], a["status"]) for a in facts["attempts"]] == [("onnxsim", "mismatch"), ("onnxslim", "ok")]
    assert "logits" in facts["attempts"][0]["reason"] and facts["simplifier_used"] == "onnxslim"


def test_both_bad_keeps_the_unsimplified_model(cnn, tmp_path, monkeypatch):
    _patched(monkeypatch, {"onnxslim": "static", "onnxsim": "wrong"})
    dst = tmp_path / "s.onnx"
    facts = simplify_onnx(cnn, dst, model="tiny", input_specs=copy.deepcopy(CNN_INPUTS))
    assert facts["simplifier_used"] == "none" and facts["nodes_after"] == facts["nodes_before"]
    assert [a["status"] for a in facts["attempts"]] == ["failed", "mismatch"]
    assert "dynamic dim 0" in facts["attempts"][0]["reason"]
    assert dst.read_bytes() == cnn.read_bytes()
    assert leftovers(tmp_path) == ["s.onnx"]


def test_simplifier_none_copies(cnn, tmp_path):
    facts = simplify_onnx(
        cnn, tmp_path / "s.onnx", model="tiny", input_specs=copy.deepcopy(CNN_INPUTS), simplifier="none"
    )
    assert facts["simplifier_used"] == "none" and facts["attempts"] == []


def test_broken_source_names_model_and_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["nowhere"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(bad))
    specs = {"x": {"dtype": "float32", "shape": ["batch", 4], "min": [1, 4], "opt": [2, 4], "max": [4, 4]}}
    for src in [bad, tmp_path / "missing.onnx"]:
        with pytest.raises(FactoryError) as e:
            simplify_onnx(src, tmp_path / "out" / "s.onnx", model="broken_model", input_specs=specs)
        assert "broken_model" in str(e.value) and src.name in str(e.value)
    assert leftovers(tmp_path) == ["bad.onnx"]


def test_unknown_simplifier_is_a_config_error(cnn, tmp_path):
    with pytest.raises(FactoryError, match="models.tiny.simplifier"):
        simplify_onnx(cnn, tmp_path / "s.onnx", model="tiny", input_specs=CNN_INPUTS, simplifier="magic")
