"""ONNX files from outside (issue 14): each class of real-model failure, shown on a small model written here with
onnx.helper, in a zoo in a temporary folder: old opsets onnxruntime cannot run, samples without a common batch
axis, IR-3 files, shape-tensor inputs, float64 and rank-0 inputs, NaN and constant references, named build errors.
"""

import copy
import json

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

from engine_factory import config as config_mod
from engine_factory import paths, stages
from engine_factory.errors import FactoryError
from engine_factory.frameworks.onnx import import_onnx
from engine_factory.tensors import compare_outputs, load_golden, random_inputs, run_onnxruntime
from engine_factory.validation.golden import make_golden
from engine_factory.validation.validate import onnx_parity

from helpers import leftovers


def save(path, nodes, inputs, outputs, *, opset, ir=None, inits=()):
    g = h.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    if ir is not None:
        m.ir_version = ir
    onnx.save(m, str(path))
    return str(path)


def vi(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


def spec(shape, dtype="float32", **kw):
    return {
        "shape": shape,
        "dtype": dtype,
        "min": [d if isinstance(d, int) else 2 for d in shape],
        "opt": [d if isinstance(d, int) else 3 for d in shape],
        "max": [d if isinstance(d, int) else 6 for d in shape],
        **kw,
    }


def old_mul(tmp_path, name="old.onnx"):
    """x * 2 at opset 6 (IR 3): onnxruntime has no Mul-6 kernel any more."""
    two = numpy_helper.from_array(np.full([1], 2.0, np.float32), "two")
    return save(
        tmp_path / name,
        [h.make_node("Mul", ["x", "two"], ["y"], broadcast=1)],
        [vi("x", T.FLOAT, [2, 3]), vi("two", T.FLOAT, [1])],
        [vi("y", T.FLOAT, [2, 3])],
        opset=6,
        ir=3,
        inits=[two],
    )


# ------------------------------------------------------------------------------------------ 1. golden reference
def test_golden_of_an_old_opset_comes_from_the_imported_model(tmp_path):
    src = old_mul(tmp_path)
    specs = {"x": spec([2, 3])}
    with pytest.raises(Exception, match="Mul"):
        run_onnxruntime(src, random_inputs(specs))  # the class: the source itself cannot run
    facts = import_onnx(
        src, str(tmp_path / "model.onnx"), model="m", input_specs=copy.deepcopy(specs), outputs=["y"], opset=18
    )
    assert facts["opset_converted"] == {"from": 6, "to": 18}
    assert (
        facts["ir_normalised"]["ir_version"]["from"] == 3 and facts["ir_normalised"]["initializer_inputs_dropped"] == 1
    )
    source = {"framework": "onnx", "kind": "onnx", "path": src, "imported": str(tmp_path / "model.onnx")}
    g = make_golden(str(tmp_path / "golden.npz"), model="m", source=source, input_specs=specs, outputs=["y"], seed=0)
    assert g["reference"] == "imported model" and "Mul" in g["source_not_run"]
    ins, outs = load_golden(str(tmp_path / "golden.npz"))
    np.testing.assert_allclose(outs["y"], ins["x"] * 2)
    # without the imported model the error says what to do, names the model, and leaves no golden
    with pytest.raises(FactoryError, match=r"model 'm'.*onnxruntime cannot run the source ONNX"):
        make_golden(
            str(tmp_path / "g2.npz"),
            model="m",
            source={**source, "imported": None},
            input_specs=specs,
            outputs=["y"],
            seed=0,
        )
    assert not (tmp_path / "g2.npz").exists()


def test_samples_may_carry_the_reference_outputs(tmp_path):
    src = old_mul(tmp_path)
    specs = {"x": spec([2, 3])}
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.savez(tmp_path / "samples.npz", x=x, y=x * 2)
    g = make_golden(
        str(tmp_path / "golden.npz"),
        model="m",
        source={"framework": "onnx", "path": src},
        input_specs=specs,
        outputs=["y"],
        seed=0,
        samples=str(tmp_path / "samples.npz"),
    )
    assert g["reference"].startswith("samples")
    assert (
        onnx_parity(src, str(tmp_path / "golden.npz"), {"atol": 1e-4, "rtol": 1e-3})["status"] == "not-run"
    )  # source: no Mul-6 kernel, not a fail
    np.savez(tmp_path / "bad.npz", x=x, z=x)
    with pytest.raises(FactoryError, match=r"config key 'models.m.samples'.*\['z'\].*\['y'\]"):
        make_golden(
            str(tmp_path / "g.npz"),
            model="m",
            source={"framework": "onnx", "path": src},
            input_specs=specs,
            outputs=["y"],
            seed=0,
            samples=str(tmp_path / "bad.npz"),
        )


# ------------------------------------------------------------------------------------------ 2. no common batch axis
def test_samples_without_a_common_batch_axis(tmp_path):
    src = save(
        tmp_path / "mm.onnx",
        [h.make_node("MatMul", ["a", "b"], ["c"])],
        [vi("a", T.FLOAT, ["n", 4]), vi("b", T.FLOAT, [4, 5])],
        [vi("c", T.FLOAT, ["n", 5])],
        opset=18,
    )
    specs = {"a": spec(["n", 4]), "b": spec([4, 5])}
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    np.savez(tmp_path / "s.npz", a=a, b=b)  # 3 rows of a, 4 of b: no shared first axis
    make_golden(
        str(tmp_path / "g.npz"),
        model="mm",
        source={"framework": "onnx", "path": src},
        input_specs=specs,
        outputs=["c"],
        seed=0,
        samples=str(tmp_path / "s.npz"),
    )
    np.testing.assert_allclose(load_golden(str(tmp_path / "g.npz"))[1]["c"], a @ b, rtol=1e-5)
    np.savez(tmp_path / "wide.npz", a=np.zeros((9, 4), np.float32), b=b)  # n = 9 is beyond the profile's max 6
    with pytest.raises(FactoryError, match=r"config key 'models.mm.samples'.*'a'.*dim 0 must be in \[2, 6\]"):
        make_golden(
            str(tmp_path / "g2.npz"),
            model="mm",
            source={"framework": "onnx", "path": src},
            input_specs=specs,
            outputs=["c"],
            seed=0,
            samples=str(tmp_path / "wide.npz"),
        )


# ------------------------------------------------------------------------------------------ 3. old IR, kept opset
def test_ir3_pad_upgrades_to_a_valid_model(tmp_path):
    """Pad-2 keeps its pads in an attribute; the converter moves them into an initializer, which IR 3 forbids
    without a graph input ("initializer but not in graph input")."""
    src = save(
        tmp_path / "pad.onnx",
        [h.make_node("Pad", ["x"], ["y"], pads=[0, 0, 1, 1, 0, 0, 1, 1])],
        [vi("x", T.FLOAT, [1, 1, 2, 2])],
        [vi("y", T.FLOAT, [1, 1, 4, 4])],
        opset=2,
        ir=3,
    )
    specs = {"x": spec([1, 1, 2, 2])}
    facts = import_onnx(src, str(tmp_path / "model.onnx"), model="pad", input_specs=specs, outputs=["y"], opset=18)
    assert facts["opset"] == 18 and facts["ir_version"] >= 8
    y = run_onnxruntime(tmp_path / "model.onnx", {"x": np.ones((1, 1, 2, 2), np.float32)})["y"]
    assert y.shape == (1, 1, 4, 4) and y.sum() == 4


def test_source_opset_kept_when_the_converter_cannot(tmp_path, monkeypatch):
    """The converter's own failure (as for ops it has no adapter for) stands in: the file keeps its opset."""
    from onnx import version_converter

    def no_adapter(proto, target):
        raise RuntimeError("adapter_lookup: Assertion `false` failed: No Adapter From Version $9 for Scatter")

    monkeypatch.setattr(version_converter, "convert_version", no_adapter)
    src = save(
        tmp_path / "relu.onnx",
        [h.make_node("Relu", ["x"], ["y"])],
        [vi("x", T.FLOAT, [3, 3])],
        [vi("y", T.FLOAT, [3, 3])],
        opset=9,
    )
    facts = import_onnx(
        src, str(tmp_path / "model.onnx"), model="r", input_specs={"x": spec([3, 3])}, outputs=["y"], opset=18
    )
    assert facts["opset"] == 9 and facts["opset_kept"]["target"] == 18 and "Scatter" in facts["opset_kept"]["reason"]
    assert "opset_converted" not in facts and onnx.load(str(tmp_path / "model.onnx")).opset_import[0].version == 9


def test_downgrade_advice_agrees_with_the_schema(cnn_onnx, tmp_path, monkeypatch):
    """An exporter's model the converter cannot take down to the configured opset: the advice is an opset the
    schema allows (13-23), never the file's own old opset."""
    import shutil

    from onnx import version_converter

    from engine_factory.graph.onnx_io import finish_onnx

    from helpers import CNN_INPUTS

    monkeypatch.setattr(
        version_converter,
        "convert_version",
        lambda proto, target: (_ for _ in ()).throw(RuntimeError("No Adapter To Version $17 for ReduceMean")),
    )
    shutil.copyfile(cnn_onnx, tmp_path / "m.onnx")
    with pytest.raises(
        FactoryError,
        match=r"config key 'models.c.opset'.*set models.c.opset to 18 or newer "
        r"\(the schema allows 13-23\)",
    ):
        finish_onnx(tmp_path / "m.onnx", model="c", input_specs=copy.deepcopy(CNN_INPUTS), outputs=["logits"], opset=17)


# ------------------------------------------------------------------------------------------ 4. shape tensors
def expand_model(tmp_path):
    return save(
        tmp_path / "expand.onnx",
        [h.make_node("Expand", ["x", "shape"], ["y"])],
        [vi("x", T.FLOAT, [1, 3]), vi("shape", T.INT64, [2])],
        [vi("y", T.FLOAT, ["r", 3])],
        opset=18,
    )


def test_shape_tensor_needs_values_and_builds_with_them(tmp_path):
    import tensorrt_rtx as trt

    from engine_factory.backends.core import build_plan

    src = expand_model(tmp_path)
    profile = {"x": {"min": [1, 3], "opt": [1, 3], "max": [1, 3]}, "shape": {"min": [2], "opt": [2], "max": [2]}}
    with pytest.raises(
        FactoryError,
        match=r"model 'ex'.*config key 'models.ex.inputs.shape.values'.*shape tensor"
        r".*read by Expand",
    ):
        build_plan(
            trt,
            src,
            str(tmp_path / "p" / "m.plan"),
            model="ex",
            input_profiles=profile,
            compute_capability="8.6",
            log=lambda *a: None,
        )
    assert not (tmp_path / "p").exists() or leftovers(tmp_path / "p") == []
    profile["shape"]["values"] = {"min": [1, 3], "opt": [4, 3], "max": [8, 3]}
    facts = build_plan(
        trt,
        src,
        str(tmp_path / "m.plan"),
        model="ex",
        input_profiles=profile,
        compute_capability="8.6",
        log=lambda *a: None,
    )
    assert facts["plan_bytes"] > 0
    feeds = random_inputs({"x": spec([1, 3]), "shape": {**spec([2], "int64"), "values": profile["shape"]["values"]}})
    assert feeds["shape"].tolist() == [4, 3]  # golden inputs take the configured values, not random ints
    assert run_onnxruntime(src, feeds)["y"].shape == (4, 3)


def test_values_are_checked_by_the_config(tmp_path):
    cfg = zoo(
        tmp_path,
        {
            "framework": "onnx",
            "onnx": "m.onnx",
            "precisions": ["fp32"],
            "inputs": {"shape": {"shape": [2], "dtype": "int64", "values": {"min": [1], "opt": [1], "max": [1]}}},
        },
    )
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(FactoryError, match=r"models.m.inputs.shape.values.min.*1 value.*holds 2"):
        config_mod.load([str(cfg)])


# ------------------------------------------------------------------------------------------ 5. float64, rank 0
def test_float64_model_needs_the_opt_in_and_is_cast_at_import(tmp_path):
    src = save(
        tmp_path / "d.onnx",
        [h.make_node("Cast", ["x"], ["xd"], to=T.DOUBLE), h.make_node("Add", ["xd", "xd"], ["y"])],
        [vi("x", T.DOUBLE, [2, 2])],
        [vi("y", T.DOUBLE, [2, 2])],
        opset=18,
    )
    m = {
        "framework": "onnx",
        "onnx": "d.onnx",
        "precisions": ["fp32"],
        "inputs": {"x": {"shape": [2, 2], "dtype": "float64"}},
    }
    with pytest.raises(FactoryError, match=r"models.d.inputs.x.dtype.*cast_float64: true"):
        config_mod.load([str(zoo(tmp_path, m, name="d"))])
    specs = {"x": spec([2, 2], "float64")}
    facts = import_onnx(
        src, str(tmp_path / "model.onnx"), model="d", input_specs=specs, outputs=["y"], opset=18, cast_float64=True
    )
    assert facts["float64_cast"]["values"] >= 2 and facts["float64_cast"]["dtype_attributes"] == 1
    proto = onnx.load(str(tmp_path / "model.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == T.FLOAT
    make_golden(
        str(tmp_path / "g.npz"),
        model="d",
        source={"framework": "onnx", "path": src},
        input_specs=specs,
        outputs=["y"],
        seed=0,
    )
    assert (
        onnx_parity(str(tmp_path / "model.onnx"), str(tmp_path / "g.npz"), {"atol": 1e-4, "rtol": 1e-3})["status"]
        == "pass"
    )


def test_rank0_input_imports_and_builds(tmp_path):
    import tensorrt_rtx as trt

    from engine_factory.backends.core import build_plan

    src = save(
        tmp_path / "s.onnx",
        [h.make_node("Mul", ["x", "s"], ["y"])],
        [vi("x", T.FLOAT, [4]), vi("s", T.FLOAT, [])],
        [vi("y", T.FLOAT, [4])],
        opset=18,
    )
    m = {
        "framework": "onnx",
        "onnx": "s.onnx",
        "precisions": ["fp32"],
        "inputs": {"x": {"shape": [4]}, "s": {"shape": []}},
    }
    cfg = config_mod.load([str(zoo(tmp_path, m, name="s"))])
    specs = cfg["models"]["s"]["inputs"]
    import_onnx(src, str(tmp_path / "model.onnx"), model="s", input_specs=specs, outputs=["y"], opset=18)
    assert random_inputs(specs)["s"].shape == ()
    facts = build_plan(
        trt,
        str(tmp_path / "model.onnx"),
        str(tmp_path / "m.plan"),
        model="s",
        input_profiles={k: {q: v[q] for q in ("min", "opt", "max")} for k, v in specs.items()},
        compute_capability="8.9",
        log=lambda *a: None,
    )
    assert facts["input_shapes"]["s"] == []


# ------------------------------------------------------------------------------------------ 7. proving nothing
def test_nan_at_the_same_positions_is_equal_and_range_avoids_it(tmp_path):
    src = save(
        tmp_path / "sqrt.onnx",
        [h.make_node("Sqrt", ["x"], ["y"])],
        [vi("x", T.FLOAT, [4, 8])],
        [vi("y", T.FLOAT, [4, 8])],
        opset=18,
    )
    specs = {"x": spec([4, 8])}
    g = make_golden(
        str(tmp_path / "g.npz"),
        model="sq",
        source={"framework": "onnx", "path": src},
        input_specs=specs,
        outputs=["y"],
        seed=0,
    )
    assert g["nonfinite_outputs"]["y"] > 0  # standard normal inputs: sqrt of negatives
    assert (
        onnx_parity(src, str(tmp_path / "g.npz"), {"atol": 1e-4, "rtol": 1e-3, "min_cosine": 0.9999})["status"]
        == "pass"
    )
    expected = {"y": np.array([np.nan, 1.0])}
    assert compare_outputs({"y": np.array([1.0, 1.0])}, expected, {"atol": 0, "rtol": 0})["status"] == "fail"
    g = make_golden(
        str(tmp_path / "g2.npz"),
        model="sq",
        source={"framework": "onnx", "path": src},
        input_specs={"x": {**specs["x"], "range": [0.5, 4.0]}},
        outputs=["y"],
        seed=0,
    )
    assert "nonfinite_outputs" not in g
    x = load_golden(str(tmp_path / "g2.npz"))[0]["x"]
    assert x.min() >= 0.5 and x.max() <= 4.0


def test_a_constant_golden_is_marked(tmp_path):
    zero = numpy_helper.from_array(np.zeros([1], np.float32), "zero")
    bias = numpy_helper.from_array(np.full([1], 1e-3, np.float32), "bias")
    src = save(
        tmp_path / "c.onnx",
        [h.make_node("Mul", ["x", "zero"], ["t"]), h.make_node("Add", ["t", "bias"], ["y"])],
        [vi("x", T.FLOAT, [2, 10])],
        [vi("y", T.FLOAT, [2, 10])],
        opset=18,
        inits=[zero, bias],
    )
    g = make_golden(
        str(tmp_path / "g.npz"),
        model="c",
        source={"framework": "onnx", "path": src},
        input_specs={"x": spec([2, 10])},
        outputs=["y"],
        seed=0,
    )
    assert "constant" in g["degenerate_outputs"]["y"]
    r = onnx_parity(src, str(tmp_path / "g.npz"), {"atol": 1e-4, "rtol": 1e-3})
    assert r["status"] == "pass" and "y" in r["degenerate_golden"] and "degenerate golden" in r["reason"]


# ------------------------------------------------------------------------------------------ 8. named build errors
def test_parse_error_names_model_node_and_op_on_one_line(tmp_path):
    import tensorrt_rtx as trt

    from engine_factory.backends.core import build_plan

    src = save(
        tmp_path / "pool.onnx",
        [h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], dilations=[2], name="pool1")],
        [vi("x", T.FLOAT, [1, 1, 8])],
        [vi("y", T.FLOAT, [1, 1, 6])],
        opset=18,
    )
    with pytest.raises(FactoryError) as e:
        build_plan(
            trt,
            src,
            str(tmp_path / "m.plan"),
            model="mp",
            input_profiles={"x": {"min": [1, 1, 8], "opt": [1, 1, 8], "max": [1, 1, 8]}},
            compute_capability="8.9",
            log=lambda *a: None,
        )
    first = str(e.value).splitlines()[0]
    assert "model 'mp'" in first and "node 'pool1' (MaxPool)" in first and "dilation" in first


# ------------------------------------------------------------------------------------------ the chain, as a job
def zoo(tmp_path, m: dict, name: str = "m"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"backend": "tensorrt_rtx", "targets": {"rtx": ["8.9"]}, "models": {name: m}}))
    return path


def test_old_onnx_file_validated_through_the_factory_chain(tmp_path, monkeypatch):
    """The factory gives an ONNX source's golden the imported model as an input; the chain's stages run as the
    workflow's jobs run them, and the plan's parity passes against a reference computed on the imported model."""
    from engine_factory.factory import resolve

    old_mul(tmp_path, "old.onnx")
    cfg_path = zoo(
        tmp_path,
        {
            "framework": "onnx",
            "onnx": "old.onnx",
            "precisions": ["fp32"],
            "inputs": {"x": {"shape": [2, 3]}},
            "outputs": ["y"],
        },
        name="old",
    )
    monkeypatch.chdir(tmp_path)
    f = resolve(config_mod.load([str(cfg_path)]), host={"gpus": []})
    w = {"model": "old"}
    assert f.inputs("golden", w)["imported"] == paths.onnx("old")
    outputs = {
        "export": {"onnx": paths.onnx("old")},
        "simplify": {"onnx": paths.sim_onnx("old")},
        "golden": {"golden": paths.golden("old")},
        "precision": {"onnx": paths.precision_onnx("old", "fp32"), "parity": paths.parity("old", "fp32")},
    }
    ws = {"precision": {**w, "precision": "fp32"}}
    for stage in outputs:
        stages.run(
            stage,
            {
                "inputs": f.inputs(stage, ws.get(stage, w)),
                "outputs": outputs[stage],
                "params": f.settings(stage, ws.get(stage, w)),
            },
        )
    golden_facts = json.loads((tmp_path / paths.provenance(paths.golden("old"))).read_text())["facts"]
    assert golden_facts["reference"] == "imported model"
    assert json.loads((tmp_path / paths.parity("old", "fp32")).read_text())["status"] == "pass"


# ------------------------------------------------------------------------------------------ 6. derived dynamic dims
DETECTOR = '''
import torch


class Detector(torch.nn.Module):
    """Fully convolutional with dynamic H and W; the head computes with h // 2 (as detectors do)."""
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        y = self.conv(x)[:, :, : h // 2 * 2, : w // 2 * 2]
        return torch.nn.functional.avg_pool2d(y, 2).reshape(x.shape[0], 4, (h // 2) * (w // 2))
'''


def test_detector_with_derived_dims_freezes_with_dim_auto(tmp_path, monkeypatch):
    import torch

    from engine_factory.frameworks.pytorch import export_pt2, freeze_pytorch

    pkg = tmp_path / "zoo_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "det.py").write_text(DETECTOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    torch.manual_seed(0)
    net = importlib.import_module("zoo_pkg.det").Detector()
    torch.save(net.state_dict(), tmp_path / "det.pth")
    # batch 1 at opt (torch would specialise it to the constant 1), H and W dynamic
    specs = {
        "x": {
            "shape": ["batch", 3, "h", "w"],
            "dtype": "float32",
            "min": [1, 3, 16, 16],
            "opt": [1, 3, 32, 32],
            "max": [4, 3, 64, 64],
        }
    }
    facts = freeze_pytorch(
        str(tmp_path / "det.pth"),
        str(tmp_path / "model.pt2"),
        model="det",
        model_ref="zoo_pkg.det:Detector",
        model_kwargs={},
        input_specs=copy.deepcopy(specs),
    )
    assert facts["dynamic_shapes"] == "Dim.AUTO" and "Constraints violated" in facts["named_dims_failed"]
    export_pt2(
        str(tmp_path / "model.pt2"),
        str(tmp_path / "model.onnx"),
        model="det",
        input_specs=copy.deepcopy(specs),
        outputs=["boxes"],
        opset=18,
    )
    for shape in ([1, 3, 16, 24], [3, 3, 40, 64]):  # the plan's whole profile, not one traced shape
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(
            run_onnxruntime(tmp_path / "model.onnx", {"x": x})["boxes"], want, rtol=1e-4, atol=1e-5
        )


def test_a_non_tensor_output_is_refused_by_name(tmp_path):
    """onnxruntime's own logreg_iris.onnx (scikit-learn, ZipMap): its probabilities are a sequence of maps, which no
    plan can give; the import says so, naming the model, the output and the config key, and writes nothing."""
    from pathlib import Path

    import onnxruntime

    src = str(Path(onnxruntime.__file__).parent / "datasets" / "logreg_iris.onnx")
    out = tmp_path / "model.onnx"
    with pytest.raises(
        FactoryError,
        match=r"model 'iris', config key 'models.iris.outputs': output "
        r"'probabilities' is a sequence, not a tensor.*zipmap",
    ):
        import_onnx(
            src, str(out), model="iris", input_specs={"float_input": spec(["batch", 4])}, outputs=None, opset=18
        )
    assert not out.exists() and not leftovers(tmp_path)


def test_a_minus_one_dim_is_dynamic_not_a_size(tmp_path):
    """Paddle2ONNX writes a dynamic dim as -1 (PP-OCRv4's cls: [-1, 3, ?, ?], benchmarks/real_models.md): the import
    read it as a fixed size and refused a config giving 1 there; it is dynamic, named and recorded."""
    from engine_factory.graph.interface import interface_problems
    from engine_factory.graph.onnx_io import finish_onnx

    path = save(
        tmp_path / "m.onnx",
        [h.make_node("Relu", ["x"], ["t"]), h.make_node("Relu", ["t"], ["y"])],
        [vi("x", T.FLOAT, [-1, 3, 8, 8])],
        [vi("y", T.FLOAT, [-1, 3, 8, 8])],
        opset=13,
    )
    m = onnx.load(path)
    m.graph.value_info.append(vi("t", T.FLOAT, [-1, 3, 8, 8]))  # an intermediate's -1, as Paddle2ONNX writes them
    onnx.save(m, path)
    fixed = [1, 3, 8, 8]
    spec = {"x": {"dtype": "float32", "shape": fixed, "min": fixed, "opt": fixed, "max": fixed}}
    before = onnx.load(path)
    assert interface_problems(before, model="m", input_specs=spec, outputs=["y"]) == []  # `check` agrees
    facts = finish_onnx(path, model="m", input_specs=copy.deepcopy(spec), outputs=["y"], opset=13, upgrade_only=True)
    assert facts["dims_named"] == {"x[0]": "x_dim0", "y[0]": "y_dim0", "value_info dims": 1}, facts
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "x_dim0" and not dims[0].HasField("dim_value")
