"""Issue 16 item 3: calibration from real data: a directory of images, a Python callable named by import path that
yields batches (its code digest and the data's hash in provenance), a documented size limit, and warnings for data
that is obviously unrepresentative."""

import sys

import numpy as np
import pytest

from engine_factory import stages
from engine_factory.atomic import read_json
from engine_factory.config import check
from engine_factory.errors import FactoryError
from engine_factory.graph import calibration
from engine_factory.graph.calibration import calibration_facts, calibration_warnings, load_calibration
from engine_factory.precisions import DEFAULT_TOLERANCES
from engine_factory.tensors import run_onnxruntime

from helpers import CNN_INPUTS
from helpers.sensitive_models import sensitive_inputs, sensitive_mlp

CALIB_CODE = """
import numpy as np


def batches(n=3, size=4, features=32):
    rng = np.random.default_rng(7)
    for _ in range(n):
        yield {"features": rng.standard_normal((size, features)).astype(np.float32)}


def wrong_shape():
    yield np.zeros((2, 5), np.float32)
"""


@pytest.fixture
def calibpkg(tmp_path):
    (tmp_path / "calibpkg").mkdir()
    (tmp_path / "calibpkg" / "__init__.py").write_text("")
    (tmp_path / "calibpkg" / "data.py").write_text(CALIB_CODE)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in ("calibpkg", "calibpkg.data"):
        sys.modules.pop(name, None)


def test_a_directory_of_images(tmp_path):
    from PIL import Image

    d = tmp_path / "images"
    d.mkdir()
    for i, (w, h) in enumerate([(40, 30), (32, 32), (64, 48)]):
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 40 * i)], -1).astype(np.uint8)
        Image.fromarray(rgb).save(d / f"img{i}.png")
    data = load_calibration(d, CNN_INPUTS, model="cnn")
    x = data["x"]
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert abs(x[2, 2].mean() - 80 / 255) < 1e-6  # channel order kept: R, G, B -> NCHW
    facts = calibration_facts(d, data)
    assert facts["samples"] == 3 and facts["warnings"] == []  # smooth images: no noise warning
    (d / "img0.png").write_bytes(b"not a png")
    with pytest.raises(FactoryError, match=r"models\.cnn\.calibration.*img0\.png|img0\.png.*models\.cnn\.calibration"):
        load_calibration(d, CNN_INPUTS, model="cnn")


def test_a_callable_that_yields_batches_and_its_hash(calibpkg):
    setting = {"callable": "calibpkg.data:batches", "kwargs": {"n": 3, "size": 4}}
    data = load_calibration(setting, sensitive_inputs(), model="m")
    assert data["features"].shape == (12, 32)
    again = calibration_facts(setting, load_calibration(setting, sensitive_inputs(), model="m"), code={"sha256": "c"})
    assert again["data_sha256"] == calibration_facts(setting, data)["data_sha256"]  # deterministic: same key
    assert again["callable"] == "calibpkg.data:batches" and again["code"] == {"sha256": "c"}
    with pytest.raises(FactoryError, match=r"models\.m\.calibration\.callable.*|.*models\.m\.calibration\.callable"):
        load_calibration({"callable": "calibpkg.data:wrong_shape"}, sensitive_inputs(), model="m")
    with pytest.raises(FactoryError, match="defines no 'nope'"):
        load_calibration({"callable": "calibpkg.data:nope"}, sensitive_inputs(), model="m")


def test_the_size_limit_is_an_error_naming_the_key(tmp_path, calibpkg, monkeypatch):
    monkeypatch.setattr(calibration, "MAX_SAMPLES", 8)
    np.savez(tmp_path / "big.npz", features=np.ones((9, 32), np.float32))
    with pytest.raises(FactoryError, match=r"9 samples.*at most 8 samples") as e:
        load_calibration(tmp_path / "big.npz", sensitive_inputs(), model="m")
    assert "models.m.calibration" in str(e.value) and "big.npz" in str(e.value)
    # a callable is asked for no more than the limit
    data = load_calibration({"callable": "calibpkg.data:batches", "kwargs": {"n": 100}}, sensitive_inputs(), model="m")
    assert data["features"].shape[0] == 8


def test_unrepresentative_data_is_warned_about():
    rng = np.random.default_rng(0)
    zipf = np.minimum(rng.zipf(1.3, size=(64, 32)), 30000).astype(np.int64)
    warnings = {
        "constant": calibration_warnings({"x": np.zeros((8, 3, 16, 16), np.float32)}),
        "same": calibration_warnings({"x": np.repeat(rng.standard_normal((1, 16)), 8, 0)}),
        "ids": calibration_warnings({"ids": rng.integers(0, 1000, size=(64, 32))}),
        "zipf": calibration_warnings({"ids": zipf}),
        "noise": calibration_warnings({"x": rng.standard_normal((8, 3, 16, 16)).astype(np.float32)}),
    }
    assert "is constant" in warnings["constant"][0] and len(warnings["constant"]) == 1
    assert "every calibration sample of 'x' is the same" in warnings["same"][0]
    assert "uniformly random ids" in warnings["ids"][0]
    assert warnings["zipf"] == []
    assert "looks like random noise" in warnings["noise"][0]


def test_the_precision_stage_calibrates_from_a_callable(tmp_path, calibpkg):
    model = sensitive_mlp(tmp_path / "m.onnx", outlier=1.0)
    x = np.random.default_rng(5).standard_normal((16, 32)).astype(np.float32)
    np.savez(
        tmp_path / "golden.npz", **{"in/features": x, "out/scores": run_onnxruntime(model, {"features": x})["scores"]}
    )
    setting = {"callable": "calibpkg.data:batches", "kwargs": {"n": 8, "size": 8}}
    out = {"onnx": str(tmp_path / "m.int8.onnx"), "parity": str(tmp_path / "int8.json")}
    stages.run(
        "precision",
        {
            "inputs": {"onnx": str(model), "calibration": None, "golden": str(tmp_path / "golden.npz")},
            "outputs": out,
            "params": {
                "model": "m",
                "precision": "int8",
                "inputs": sensitive_inputs(),
                "tolerance": DEFAULT_TOLERANCES["int8"],
                "calibration": setting,
                "calibration_code": {"sha256": "abc"},
            },
        },
    )
    facts = read_json(out["onnx"] + ".provenance.json")["facts"]
    assert facts["calibration"]["callable"] == "calibpkg.data:batches" and facts["calibration"]["samples"] == 64
    assert facts["calibration"]["code"] == {"sha256": "abc"} and facts["quantized_layers"] == 3
    parity = read_json(out["parity"])
    assert parity["status"] in ("pass", "fail") and parity["outputs"]["scores"]["cosine"] > 0.9  # calibrated, measured


def test_config_takes_a_callable_and_names_a_missing_one(calibpkg):
    m = {
        "framework": "onnx",
        "onnx": "m.onnx",
        "inputs": sensitive_inputs(),
        "precisions": ["int8"],
        "calibration": {"callable": "calibpkg.data:batches", "kwargs": {"n": 2}},
    }
    cfg = check({"python_path": [str(calibpkg)], "models": {"m": m}}, check_files=False)
    assert cfg["models"]["m"]["calibration"]["callable"] == "calibpkg.data:batches"
    with pytest.raises(FactoryError, match=r"models\.m\.calibration\.callable.*defines no 'missing'"):
        check(
            {
                "python_path": [str(calibpkg)],
                "models": {"m": {**m, "calibration": {"callable": "calibpkg.data:missing"}}},
            },
            check_files=False,
        )
