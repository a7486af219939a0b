"""Shared fixtures: the demo zoo's files, made once per test session from the project's own fixed seeds.
Helpers live in tests/helpers (a module, not this file)."""

import copy
from pathlib import Path

import pytest

from helpers import CNN_INPUTS


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """artifacts/demo-like folder with every demo asset (checkpoints, old-opset ONNX, calibration sets)."""
    from engine_factory.demo import make_asset

    d = tmp_path_factory.mktemp("demo")
    for asset in [
        "tiny_cnn.pth",
        "two_tower.pth",
        "tiny_mlp.opset11.onnx",
        "tiny_cnn.calib.npz",
        "two_tower.calib.npz",
        "tiny_mlp.calib.npz",
    ]:
        make_asset(str(d / asset))
    return d


@pytest.fixture(scope="session")
def cnn_onnx(demo_dir, tmp_path_factory) -> Path:
    """The demo CNN frozen and exported once: (frozen .pt2, model.onnx)."""
    from engine_factory.frameworks.pytorch import export_pt2, freeze_pytorch

    d = tmp_path_factory.mktemp("cnn")
    freeze_pytorch(
        str(demo_dir / "tiny_cnn.pth"),
        str(d / "model.pt2"),
        model="tiny_cnn",
        model_ref="engine_factory.demo.models:TinyCNN",
        model_kwargs={},
        input_specs=copy.deepcopy(CNN_INPUTS),
    )
    export_pt2(
        str(d / "model.pt2"),
        str(d / "model.onnx"),
        model="tiny_cnn",
        input_specs=copy.deepcopy(CNN_INPUTS),
        outputs=["logits"],
        opset=18,
    )
    return d / "model.onnx"


@pytest.fixture
def specs():
    return copy.deepcopy(CNN_INPUTS)
