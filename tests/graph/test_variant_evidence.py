"""Issue 26: a variant's label counts every kind of layer, AutoCast gets real data, a fallback's output is checked."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine_factory.graph.precision import make_precision_variant
from engine_factory.graph.variant import describe_variant


def make_lstm(path, *, hidden=16, features=16, seq=4):
    """x [batch, seq, features] -> LSTM (batch first) -> last step -> Gemm -> logits [batch, 10]."""
    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, features)).astype(np.float32) * 0.2, "W"),
        numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32) * 0.2, "R"),
        numpy_helper.from_array(rng.standard_normal((1, 8 * hidden)).astype(np.float32) * 0.1, "B"),
        numpy_helper.from_array(rng.standard_normal((hidden, 10)).astype(np.float32) * 0.2, "fc_w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["", "Y_h"], name="lstm", hidden_size=hidden, layout=1),
        helper.make_node("Reshape", ["Y_h", "flat"], ["h"], name="flatten"),  # Y_h [batch, 1, hidden] (layout 1)
        helper.make_node("Gemm", ["h", "fc_w", "fc_b"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", seq, features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_an_unquantized_lstm_counts_in_the_label(tmp_path):
    """Hand-made Q/DQ variant: the Gemm reads a DequantizeLinear, the LSTM does not. Before issue 26 the label said
    '1 of 1 layers quantized' (LSTM not counted)."""
    make_lstm(tmp_path / "m.onnx")
    m = onnx.load(str(tmp_path / "m.onnx"))
    g = m.graph
    g.initializer.extend(
        [numpy_helper.from_array(np.array(0.01, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    )
    g.node.insert(0, helper.make_node("QuantizeLinear", ["fc_w", "s", "z"], ["fc_w_q"], name="q"))
    g.node.insert(1, helper.make_node("DequantizeLinear", ["fc_w_q", "s", "z"], ["fc_w_dq"], name="dq"))
    g.node[-1].input[1] = "fc_w_dq"
    onnx.save(m, str(tmp_path / "v.onnx"))
    facts = describe_variant(tmp_path / "v.onnx", "int8")
    assert (facts["layers"], facts["quantized_layers"]) == (2, 1)
    assert facts["not_quantized"] == ["lstm"]
    assert any(w.startswith("1 of 2 layers quantized; in fp32: lstm") for w in facts["warnings"])


@pytest.mark.parametrize("precision", ["int8"])
def test_modelopt_int8_of_an_lstm_says_the_lstm_stayed_fp32(tmp_path, precision):
    make_lstm(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((32, 4, 16)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    specs = {"x": {"shape": ["batch", 4, 16], "min": [1, 4, 16], "opt": [8, 4, 16], "max": [32, 4, 16]}}
    facts = make_precision_variant(
        tmp_path / "m.onnx",
        tmp_path / "v.onnx",
        precision,
        model="lstm",
        input_specs=specs,
        calibration_path=tmp_path / "calib.npz",
    )
    assert facts["layers"] == 2, facts
    assert "lstm" in facts["not_quantized"] or facts["quantized_layers"] == 2
