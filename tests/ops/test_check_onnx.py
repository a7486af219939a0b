"""`check` reads each ONNX-source model's graph (issue 26, point 7): misspelt inputs/outputs, ranks, fixed dims and
profiles that disagree with the config fail `python -m engine_factory check` in seconds, naming model, key and file."""

import time

import onnx
import yaml
from onnx import TensorProto, helper

from engine_factory.graph.interface import interface_problems
from tests.helpers import cli


def _ocr_like(path):
    """An OCR-like model: image [batch, 3, 32, W] (W dynamic) -> 'maps' [batch, 1, 32, W] and 'boxes'."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["maps"], axes=[1], keepdims=1),
        helper.make_node("ReduceMean", ["image"], ["boxes"], axes=[2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "ocr",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, "width"])],
        [
            helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["batch", 1, 32, "width"]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 3]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _zoo(tmp_path, **model):
    _ocr_like(tmp_path / "ocr.onnx")
    m = {
        "framework": "onnx",
        "onnx": "ocr.onnx",
        "inputs": {
            "image": {
                "shape": ["batch", 3, 32, "width"],
                "min": [1, 3, 32, 32],
                "opt": [2, 3, 32, 64],
                "max": [4, 3, 32, 128],
            }
        },
        "outputs": ["maps", "boxes"],
        "precisions": ["fp32"],
        **model,
    }
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump({"models": {"ocr": m}}))
    return tmp_path / "zoo.yaml"


def _check(tmp_path, configfile):
    t0 = time.monotonic()
    r = cli("check", "--configfile", configfile, "-d", tmp_path)
    return r, time.monotonic() - t0


def test_check_passes_a_matching_onnx(tmp_path):
    r, _ = _check(tmp_path, _zoo(tmp_path))
    assert r.returncode == 0, r.stderr


def test_check_finds_misspelt_output_and_input(tmp_path):
    spec = {"shape": ["batch", 3, 32, "width"], "min": [1, 3, 32, 32], "opt": [2, 3, 32, 64], "max": [4, 3, 32, 128]}
    r, seconds = _check(tmp_path, _zoo(tmp_path, inputs={"imgae": spec}, outputs=["maps", "bxoes"]))
    assert r.returncode == 1
    err = r.stderr + r.stdout
    assert "models.ocr.outputs: output 'bxoes' is not in the ONNX file (did you mean 'boxes'?)" in err
    assert "models.ocr.inputs: input 'imgae' is not in the ONNX file (did you mean 'image'?)" in err
    assert "ocr.onnx" in err and "Traceback" not in err
    assert seconds < 60  # no export, no build: the config and one graph read


def test_check_finds_dims_that_disagree(tmp_path):
    bad = {"shape": ["batch", 3, 64, "width"], "min": [1, 3, 64, 32], "opt": [2, 3, 64, 64], "max": [4, 3, 64, 128]}
    r, _ = _check(tmp_path, _zoo(tmp_path, inputs={"image": bad}))
    assert r.returncode == 1
    assert "input 'image' axis 2 is 32 in the ONNX" in r.stderr + r.stdout and "config says 64" in r.stderr + r.stdout


def test_interface_problems_rank_profile_dtype_and_order():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Identity", ["x"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT16, [1, 8]) for n in ("y", "z")],
    )
    proto = helper.make_model(graph)
    problems = dict(
        interface_problems(
            proto,
            model="m",
            input_specs={"x": {"shape": [1, 8, 1], "dtype": "float32"}},
            outputs=["y", "z"],
        )
    )
    assert "rank 2 in the ONNX" in problems["models.m.inputs.x.shape"]
    assert "float16 in the ONNX, config says float32" in problems["models.m.inputs.x.dtype"]
    spec = {"shape": ["b", 8], "min": [1, 8], "opt": [4, 8], "max": [8, 8], "dtype": "float16"}
    problems = interface_problems(proto, model="m", input_specs={"x": spec}, outputs=["z", "y"])
    assert any("fixed at 1" in p and "opt 4" in p for _, p in problems)
    assert any("in this order" in p for _, p in problems)
