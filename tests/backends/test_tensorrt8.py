"""TensorRT 8.x (backends/tensorrt8.py) without TensorRT 8: the spec picked by the module's version, skip reasons,
key naming, opset down-conversion for its parser, builder flags and tactic sources on a stand-in module, the 8.x
header's serialization tag. The real 8.5 run is on the GPU machine (docs/hardware-runs.md)."""

import enum
import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from engine_factory.backends import registry, tensorrt8
from engine_factory.backends.header import check_plan_header, read_header
from engine_factory.errors import FactoryError
from engine_factory.tensors import run_onnxruntime


def fake_module(version):
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    return mod


def test_the_version_picks_the_spec(monkeypatch):
    assert registry.spec_of("tensorrt", "8.5.3.1") is tensorrt8
    assert registry.spec_of("tensorrt", "10.13.3.9") is not tensorrt8
    assert registry.spec_of("tensorrt") is not tensorrt8
    monkeypatch.setattr(registry.tensorrt, "import_module", lambda: fake_module("8.5.3.1"))
    b = registry.load_backend("tensorrt")
    assert (b.name, b.key, b.spec) == ("tensorrt", "trt-8.5.3.1", tensorrt8)
    assert (
        b.key_for({"tensorrt": {"hardware_compatibility_level": "none", "version_compatible": False}}) == "trt-8.5.3.1"
    )
    assert b.builds_on_gpu and b.target_ccs({}, [{"compute_capability": "9.0"}]) == ["9.0"]
    assert "no bf16" in b.precision_support("9.0", "bf16") and "no fp8" in b.precision_support("9.0", "fp8")
    assert b.precision_support("9.0", "fp16") is None and b.precision_support("9.0", "int8") is None


def model(path, opset):
    g = h.make_graph(
        [h.make_node("Relu", ["x"], ["r"]), h.make_node("ReduceSum", ["r", "axes"], ["y"], keepdims=1)],
        "g",
        [h.make_tensor_value_info("x", T.FLOAT, [2, 3])],
        [h.make_tensor_value_info("y", T.FLOAT, [2, 1])],
        initializer=[h.make_tensor("axes", T.INT64, [1], [1])],
    )
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", opset)]), str(path))
    return path


def test_onnx_brought_to_opset_17(tmp_path):
    src = model(tmp_path / "m.onnx", 18)
    path, facts = tensorrt8.onnx_for_parser(src, tmp_path, "m")
    assert facts == {"onnx_opset": 18, "parser_max_opset": 17, "converted_to": 17}
    assert onnx.load(path).opset_import[0].version == 17
    x = np.arange(-3, 3, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(run_onnxruntime(path, {"x": x})["y"], run_onnxruntime(str(src), {"x": x})["y"])
    same, facts = tensorrt8.onnx_for_parser(model(tmp_path / "old.onnx", 13), tmp_path, "m")
    assert same == str(tmp_path / "old.onnx") and facts["converted_to"] is None


STAND_IN = types.SimpleNamespace(
    BuilderFlag=enum.IntEnum("BuilderFlag", {"FP16": 0, "INT8": 1}),
    TacticSource=enum.IntEnum(
        "TacticSource", {"CUBLAS": 0, "CUBLAS_LT": 1, "CUDNN": 2, "EDGE_MASK_CONVOLUTIONS": 3, "JIT_CONVOLUTIONS": 4}
    ),
    __name__="tensorrt",
)


class _Config:
    def __init__(self):
        self.flags, self.tactics = [], None

    def set_flag(self, f):
        self.flags.append(f)

    def set_tactic_sources(self, mask):
        self.tactics = mask


def test_builder_flags_and_tactic_sources_on_a_stand_in(monkeypatch):
    trt = STAND_IN  # RTX has no FP16/INT8 flags (strongly typed): 8.5's enum values, from its OSS bindings
    config = _Config()
    assert tensorrt8.set_precision(trt, config, "fp16", "m") == ["FP16"] and config.flags == [trt.BuilderFlag.FP16]
    assert tensorrt8.set_precision(trt, _Config(), "fp32", "m") == []
    with pytest.raises(FactoryError, match="no bf16"):
        tensorrt8.set_precision(trt, _Config(), "bf16", "m")
    monkeypatch.delenv(tensorrt8.TACTICS_ENV, raising=False)
    assert tensorrt8.set_tactic_sources(trt, config, "m", stand_ins={})["tactic_sources"] == "default"
    assert config.tactics is None
    got = tensorrt8.set_tactic_sources(trt, config, "m", stand_ins={"libcublas.so.11": 15000})
    assert got["tactic_sources"] == ["EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"] and "stand-in" in got["reason"]
    assert config.tactics == (1 << int(trt.TacticSource.EDGE_MASK_CONVOLUTIONS)) | (
        1 << int(trt.TacticSource.JIT_CONVOLUTIONS)
    )
    monkeypatch.setenv(tensorrt8.TACTICS_ENV, "nonsense")
    with pytest.raises(FactoryError, match="unknown tactic source 'NONSENSE'"):
        tensorrt8.set_tactic_sources(trt, config, "m", stand_ins={})


def test_stand_ins_found_by_size(tmp_path):
    tiny, big = tmp_path / "libcublas.so.11", tmp_path / "libcudnn.so.8"
    tiny.write_bytes(b"\0" * 100)
    with open(big, "wb") as f:
        f.truncate(tensorrt8.STAND_IN_MAX_BYTES + 1)
    maps = tmp_path / "maps"
    maps.write_text(f"7f00-7f01 r-xp 0 00:00 1 {tiny}\n7f02-7f03 r-xp 0 00:00 2 {big}\n7f04-7f05 rw-p 0 0 0\n")
    assert tensorrt8.loaded_stand_ins(str(maps)) == {"libcublas.so.11": 100}


def test_header_of_an_8x_plan(tmp_path):
    plan = tmp_path / "model.plan"
    head = bytearray(64)
    head[:4], head[8] = tensorrt8.MAGIC, 232
    plan.write_bytes(bytes(head))
    ok = check_plan_header(plan, backend="tensorrt", version="8.5.3.1", compute_capability="9.0")
    assert ok["status"] == "pass", ok
    assert ok["details"]["header_version"] == "8.5.3" and ok["details"]["serialization_tag"] == 232
    assert read_header(plan)["version"] == "8.5.3" and read_header(plan)["module"] == "tensorrt"
    bad = check_plan_header(plan, backend="tensorrt", version="8.4.3.1", compute_capability="9.0")
    assert bad["status"] == "fail" and "serialization tag 232" in bad["reason"]
    ten = check_plan_header(plan, backend="tensorrt", version="10.13.3.9", compute_capability="9.0")
    assert ten["status"] == "fail" and "tensorrt8" in ten["reason"]  # a 10.x key given an 8.x plan
