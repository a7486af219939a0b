"""Issue 28 (3b, 4): symbolic dims that are really constants are resolved at import/export, and an `If` whose
condition the configured shapes fix is folded at simplification; data-dependent control flow is refused with the
reason. Every graph is built here with onnx.helper."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine_factory.errors import FactoryError
from engine_factory.frameworks.onnx import import_onnx
from engine_factory.graph.onnx_io import io_problem
from engine_factory.graph.simplify import simplify_onnx
from engine_factory.tensors import random_inputs, run_onnxruntime


def _spec(shape, lo, opt, hi):
    return {"shape": shape, "min": lo, "opt": opt, "max": hi, "dtype": "float32"}


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _i64(name, value):
    return numpy_helper.from_array(np.array(value, np.int64), name)


def test_symbolic_output_dim_that_is_constant_is_fixed(tmp_path):
    """Reshape of [batch, 4, 8] to [batch, -1]: the exporter's output is [batch, s9], really [batch, 32]. Fixed to
    32 at import, recorded; a quantizer that writes 32 no longer 'loses a dynamic dim'; batch stays dynamic."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "s9"])
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax"], ["b1"]),
        helper.make_node("Concat", ["b1", "m1"], ["ns"], axis=0),
        helper.make_node("Reshape", ["x", "ns"], ["y"]),
    ]
    src = _model(nodes, [x], [y], [_i64("zero", 0), _i64("ax", [0]), _i64("m1", [-1])])
    onnx.save(src, str(tmp_path / "src.onnx"))
    specs = {"x": _spec(["batch", 4, 8], [1, 4, 8], [2, 4, 8], [8, 4, 8])}
    facts = import_onnx(
        str(tmp_path / "src.onnx"), str(tmp_path / "m.onnx"), model="m", input_specs=specs, outputs=["y"], opset=17
    )
    assert facts["dims_resolved"] == {"dims": {"y[1]": 32}}
    out = onnx.load(str(tmp_path / "m.onnx")).graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param == "batch" and out[1].dim_value == 32
    # what int8/fp8 leave: the same output with dim 1 fixed to 32 — a problem against the source, none against ours
    fixed = onnx.load(str(tmp_path / "m.onnx"))
    assert io_problem(src, fixed) == "output 'y' lost its dynamic dim 1 (now fixed to 32)"
    assert io_problem(onnx.load(str(tmp_path / "m.onnx")), fixed) is None


def _branch(name, out_name, shape, nodes, inits=()):
    out = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, shape)
    return helper.make_graph(nodes, name, [], [out], list(inits))


def _if_model(cond_nodes, inits=()):
    """y = If(cond, then: x flattened to [batch, 48] (rank 2), else: x (rank 4)) — branches of unequal rank."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "y1"])  # as an exporter traced it
    then = _branch("then", "t", ["batch", 48], [helper.make_node("Flatten", ["x"], ["t"], axis=1)])
    other = _branch("else", "e", ["batch", 3, 4, 4], [helper.make_node("Relu", ["x"], ["e"])])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)
    return _model([*cond_nodes, node], [x], [y], inits)


SPECS = {"x": _spec(["batch", 3, 4, 4], [1, 3, 4, 4], [2, 3, 4, 4], [4, 3, 4, 4])}


@pytest.mark.parametrize("simplifier", ["onnxslim", "none"])
def test_if_fixed_by_the_configured_shapes_is_folded(tmp_path, simplifier):
    """cond = (x.shape[1] == 3): channels are static in the config, so the If always takes its then-branch."""
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "one"], ["c"], axis=0),
        helper.make_node("Equal", ["c", "three"], ["cond"]),
    ]
    src = _if_model(nodes, [_i64("one", 1), _i64("three", 3)])
    onnx.save(src, str(tmp_path / "src.onnx"))
    facts = simplify_onnx(
        str(tmp_path / "src.onnx"), str(tmp_path / "s.onnx"), model="m", input_specs=SPECS, simplifier=simplifier
    )
    assert facts["control_flow_folded"] == {"If": 1}
    out = onnx.load(str(tmp_path / "s.onnx"))
    assert not [n for n in out.graph.node if n.op_type == "If"]
    feeds = random_inputs(SPECS, shape_key="max", seed=1)
    np.testing.assert_allclose(run_onnxruntime(str(tmp_path / "s.onnx"), feeds)["y"], feeds["x"].reshape(4, 48))


def test_data_dependent_if_is_refused_with_the_reason(tmp_path):
    """cond = (sum(x) > 0): only the data decide; branches of unequal rank cannot be built by TensorRT-RTX."""
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
    ]
    src = _if_model(nodes, [numpy_helper.from_array(np.array(0, np.float32), "zero")])
    onnx.save(src, str(tmp_path / "src.onnx"))
    with pytest.raises(FactoryError, match=r"data-dependent control flow.*If node '.*'.*export") as e:
        simplify_onnx(str(tmp_path / "src.onnx"), str(tmp_path / "s.onnx"), model="m", input_specs=SPECS)
    assert "model 'm'" in str(e.value) and "'cond'" in str(e.value)
    assert not (tmp_path / "s.onnx").exists()
