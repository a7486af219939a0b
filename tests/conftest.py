"""Shared fixtures: the demo zoo's files, made once per test session from the project's own fixed seeds."""
import copy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CNN_INPUTS = {"x": {"dtype": "float32", "shape": ["batch", 3, 32, 32], "min": [1, 3, 32, 32],
                    "opt": [4, 3, 32, 32], "max": [8, 3, 32, 32]}}
TWO_TOWER_INPUTS = {
    "image": {"dtype": "float32", "shape": ["batch", 3, 16, 16], "min": [1, 3, 16, 16], "opt": [4, 3, 16, 16],
              "max": [16, 3, 16, 16]},
    "features": {"dtype": "float32", "shape": ["batch", 8], "min": [1, 8], "opt": [4, 8], "max": [16, 8]},
}
MLP_INPUTS = {"features": {"dtype": "float32", "shape": ["batch", 16], "min": [1, 16], "opt": [4, 16],
                           "max": [64, 16]}}


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """artifacts/demo-like folder with every demo asset (checkpoints, old-opset ONNX, calibration sets)."""
    from scripts.demo import make_asset

    d = tmp_path_factory.mktemp("demo")
    for asset in ["tiny_cnn.pth", "two_tower.pth", "tiny_mlp.opset11.onnx", "tiny_cnn.calib.npz",
                  "two_tower.calib.npz", "tiny_mlp.calib.npz"]:
        make_asset(str(d / asset))
    return d


@pytest.fixture(scope="session")
def cnn_onnx(demo_dir, tmp_path_factory) -> Path:
    """The demo CNN frozen and exported once: (frozen .pt2, model.onnx)."""
    from scripts.export import export_pt2
    from scripts.freeze import freeze_pytorch

    d = tmp_path_factory.mktemp("cnn")
    freeze_pytorch(str(demo_dir / "tiny_cnn.pth"), str(d / "model.pt2"), model="tiny_cnn",
                   model_ref="scripts.demo.models:TinyCNN", model_kwargs={}, input_specs=copy.deepcopy(CNN_INPUTS))
    export_pt2(str(d / "model.pt2"), str(d / "model.onnx"), model="tiny_cnn", input_specs=copy.deepcopy(CNN_INPUTS),
               outputs=["logits"], opset=18)
    return d / "model.onnx"


@pytest.fixture
def specs():
    return copy.deepcopy(CNN_INPUTS)


def leftovers(directory: Path) -> list[str]:
    """Files a failed stage may have left behind (temporary or partial)."""
    return sorted(p.name for p in Path(directory).rglob("*") if p.is_file())
