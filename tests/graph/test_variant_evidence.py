"""Issue 26: a variant's label counts every kind of layer, AutoCast gets real data, a fallback's output is checked."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine_factory.graph.precision import make_precision_variant
from engine_factory.graph.variant import describe_variant


def make_lstm(path, *, hidden=16, features=16, seq=4):
    """x [batch, seq, features] -> LSTM -> last step -> Gemm -> logits [batch, 10]."""
    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, features)).astype(np.float32) * 0.2, "W"),
        numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32) * 0.2, "R"),
        numpy_helper.from_array(rng.standard_normal((1, 8 * hidden)).astype(np.float32) * 0.1, "B"),
        numpy_helper.from_array(rng.standard_normal((hidden, 10)).astype(np.float32) * 0.2, "fc_w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
    ]
    nodes = [  # onnxruntime runs only layout 0 (sequence first): transpose to it, as exporters do
        helper.make_node("Transpose", ["x"], ["xt"], name="to_seq_first", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "W", "R", "B"], ["", "Y_h"], name="lstm", hidden_size=hidden),
        helper.make_node("Squeeze", ["Y_h", "axis0"], ["h"], name="last"),  # Y_h [1, batch, hidden]
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


def make_seq_concat(path):
    """x [batch, seq, 8] and y [batch, seq, 8] (one dynamic non-batch dim `seq`) -> [batch, seq/2, 4, 4]: the model
    needs seq even (pairs of steps); with 1 in every dynamic dim (AutoCast's random inputs) the Reshape fails."""
    init = [
        numpy_helper.from_array(np.array([0, -1, 4, 4], np.int64), "pairs"),
        numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Concat", ["x", "y"], ["xy"], name="cat", axis=2),  # [batch, seq, 16]
        helper.make_node("MatMul", ["xy", "w"], ["h"], name="proj"),  # [batch, seq, 8]
        helper.make_node("Reshape", ["h", "pairs"], ["out"], name="pair"),  # [batch, seq/2, 4, 4]
    ]
    graph = helper.make_graph(
        nodes,
        "seq",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "seq", 8]) for n in ("x", "y")],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "half", 4, 4])],
        init,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


SEQ_SPECS = {
    n: {"shape": ["batch", "seq", 8], "min": [1, 2, 8], "opt": [2, 4, 8], "max": [4, 8, 8]} for n in ("x", "y")
}


def _golden(path, specs):
    rng = np.random.default_rng(2)
    np.savez(path, **{f"in/{n}": rng.standard_normal(s["opt"]).astype(np.float32) for n, s in specs.items()})


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_autocast_gets_the_golden_inputs_for_a_dynamic_non_batch_dim(tmp_path, precision):
    """Before issue 26 AutoCast drew random inputs with seq=1, failed, and fp16 fell back (bf16 failed)."""
    make_seq_concat(tmp_path / "m.onnx")
    _golden(tmp_path / "golden.npz", SEQ_SPECS)
    facts = make_precision_variant(
        tmp_path / "m.onnx",
        tmp_path / "v.onnx",
        precision,
        model="seq",
        input_specs=SEQ_SPECS,
        golden_path=tmp_path / "golden.npz",
    )
    assert facts["tool"] == "modelopt" and facts["attempts"][0]["status"] == "ok", facts["attempts"]
    assert facts["autocast_data"] == "golden inputs (opt shape)"
    assert facts["low_precision_tensors"] > 0


def test_a_fallback_onnxruntime_cannot_load_is_a_recorded_failure(tmp_path, monkeypatch):
    """ModelOpt fails; the fallback writes a variant that passes onnx.checker and keeps the I/O but onnxruntime
    refuses (a node typed against its input): no variant, both attempts named, instead of 'valid ONNX'."""
    from engine_factory.errors import FactoryError
    from engine_factory.graph import precision as precision_mod

    make_lstm(tmp_path / "m.onnx")

    def broken_modelopt(*a, **k):
        raise RuntimeError("AutoCast: Concat dims 1 vs 2")

    def bad_fallback(src, out, *a, **k):
        m = onnx.load(str(src))
        fc = next(i for i in m.graph.initializer if i.name == "fc_w")
        fc.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(fc).astype(np.float16), "fc_w"))  # Gemm: f32 x f16
        onnx.save(m, str(out))

    monkeypatch.setattr(precision_mod, "run_modelopt", broken_modelopt)
    monkeypatch.setattr(precision_mod, "run_onnxconverter_fp16", bad_fallback)
    specs = {"x": {"shape": ["batch", 4, 16], "min": [1, 4, 16], "opt": [2, 4, 16], "max": [4, 4, 16]}}
    with pytest.raises(FactoryError, match="onnxconverter-common: onnxruntime cannot load it"):
        make_precision_variant(tmp_path / "m.onnx", tmp_path / "v.onnx", "fp16", model="lstm", input_specs=specs)
    assert not (tmp_path / "v.onnx").exists()
