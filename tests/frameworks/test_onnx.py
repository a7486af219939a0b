"""ONNX files as sources (scripts/engine_factory/frameworks/onnx.py): an old opset upgraded with parity kept, a file
that is not ONNX and inputs named otherwise refused in one line, with nothing left behind."""

import copy

import numpy as np
import pytest

from engine_factory.errors import FactoryError
from engine_factory.frameworks.onnx import import_onnx
from engine_factory.tensors import random_inputs, run_onnxruntime

from helpers import MLP_INPUTS, leftovers


def test_onnx_source_upgraded_from_old_opset(demo_dir, tmp_path):
    facts = import_onnx(
        str(demo_dir / "tiny_mlp.opset11.onnx"),
        str(tmp_path / "m.onnx"),
        model="mlp",
        input_specs=copy.deepcopy(MLP_INPUTS),
        outputs=["scores"],
        opset=18,
    )
    assert facts["opset_converted"] == {"from": 11, "to": 18} and facts["opset"] == 18
    feeds = random_inputs(MLP_INPUTS, seed=1)
    np.testing.assert_allclose(
        run_onnxruntime(tmp_path / "m.onnx", feeds)["scores"],
        run_onnxruntime(demo_dir / "tiny_mlp.opset11.onnx", feeds)["scores"],
        rtol=1e-5,
    )


def test_onnx_source_rejected_and_mismatched_names(demo_dir, tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"this is not a protobuf")
    out = tmp_path / "out"
    with pytest.raises(FactoryError, match=r"model 'bad', file '.*broken.onnx': not a valid ONNX model"):
        import_onnx(
            str(tmp_path / "broken.onnx"),
            str(out / "m.onnx"),
            model="bad",
            input_specs=copy.deepcopy(MLP_INPUTS),
            outputs=["scores"],
            opset=18,
        )
    wrong = {"other": MLP_INPUTS["features"]}
    with pytest.raises(FactoryError, match=r"models.mlp.inputs.*\['features'\].*\['other'\]"):
        import_onnx(
            str(demo_dir / "tiny_mlp.opset11.onnx"),
            str(out / "m.onnx"),
            model="mlp",
            input_specs=copy.deepcopy(wrong),
            outputs=["scores"],
            opset=18,
        )
    assert not out.exists() or leftovers(out) == []
