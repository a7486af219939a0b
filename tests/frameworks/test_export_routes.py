"""Issue 28: export has a way out (exporter routes with a recorded fallback, outputs flattened by path, TorchScript
forwards with constant arguments) and checkpoints as people save them (checkpoint_key, strip_prefix). Every model
is written here: no downloads."""

import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch

from engine_factory.errors import FactoryError
from engine_factory.frameworks import pytorch
from engine_factory.frameworks.pytorch import freeze_pytorch, freeze_torchscript, load_state_dict_model
from engine_factory.tensors import random_inputs, run_onnxruntime

from helpers import leftovers

MODELS = '''
import torch
from torch import nn


class MetaNet(nn.Module):
    """A submodule named `meta` (clashes with torch.fx GraphModule.meta: the dynamo exporter fails) and a dict
    output whose entries the config names in another order."""
    def __init__(self):
        super().__init__()
        self.meta = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.meta(x))
        return {"logits": self.head(h), "embedding": h}


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        return {"score": self.a(x), "aux": (self.b(x), x.sum(dim=1, keepdim=True))}


class Stateful(nn.Module):
    """forward(x, state, flag): a state tensor and a control flag beside the real input; a dict output."""
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)

    def forward(self, x, state, flag: bool = False):
        y = self.a(x) + state.sum()
        if flag:
            y = y * 2
        return {"y": y, "state": state + 1}
'''
SPECS = {"x": {"shape": ["batch", 4], "min": [1, 4], "opt": [2, 4], "max": [8, 4], "dtype": "float32"}}


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    pkg = tmp_path / "code"
    pkg.mkdir()
    (pkg / "routes_models.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.syspath_prepend(str(pkg))
    sys.modules.pop("routes_models", None)
    import routes_models

    return tmp_path, routes_models


def params(exporter="auto", fmt="pt2", outputs=("logits", "embedding"), ref="routes_models:MetaNet", **extra):
    p = {
        "model": "m",
        "framework": "pytorch",
        "source_format": fmt,
        "inputs": SPECS,
        "outputs": list(outputs),
        "opset": 18,
        "exporter": exporter,
        **extra,
    }
    if fmt == "pt2" and exporter != "dynamo":
        p["eager"] = {"model_ref": ref, "model_kwargs": {}}
    return p


def check_parity(onnx_path, fn, names):
    for key in ("min", "max"):  # the dynamic batch works at both ends of the profile
        feeds = random_inputs(SPECS, shape_key=key, seed=1)
        got = run_onnxruntime(onnx_path, feeds)
        assert list(got) == list(names)
        with torch.no_grad():
            want = fn(torch.from_numpy(feeds["x"]))
        for name, w in zip(names, want):
            np.testing.assert_allclose(got[name], w.numpy(), rtol=1e-4, atol=1e-5)


def test_meta_submodule_falls_back_to_legacy_recorded(zoo):
    d, models = zoo
    net = models.MetaNet().eval()
    torch.save(net.state_dict(), d / "m.pth")
    freeze_pytorch(
        str(d / "m.pth"),
        str(d / "m.pt2"),
        model="m",
        model_ref="routes_models:MetaNet",
        model_kwargs={},
        input_specs=SPECS,
    )
    inputs = {"source": str(d / "m.pt2"), "checkpoint": str(d / "m.pth")}
    # dynamo alone: a one-line error naming the model, the route and the cause (not torch's page of advice)
    with pytest.raises(FactoryError) as e:
        pytorch.export(inputs, {"onnx": str(d / "dyn.onnx")}, params("dynamo"))
    msg = str(e.value)
    assert "model 'm'" in msg and "dynamo=True) failed" in msg and "meta" in msg and "\n" not in msg
    assert "stack trace above" not in msg and not (d / "dyn.onnx").exists()
    # auto: dynamo, then legacy; the route and the fallback's cause recorded
    facts = pytorch.export(inputs, {"onnx": str(d / "auto.onnx")}, params("auto"))
    assert facts["exporter"] == pytorch.LEGACY and facts["exporter_requested"] == "auto"
    assert facts["exporter_fallback"][0]["route"] == "dynamo" and "meta" in facts["exporter_fallback"][0]["error"]
    # the dict output flattened and named by the config, in the config's order (not the dict's)
    check_parity(d / "auto.onnx", lambda x: (net(x)["logits"], net(x)["embedding"]), ["logits", "embedding"])
    assert onnx.load(str(d / "auto.onnx")).graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # legacy asked for: no dynamo attempt
    facts = pytorch.export(inputs, {"onnx": str(d / "leg.onnx")}, params("legacy", outputs=("embedding", "logits")))
    assert facts["exporter"] == pytorch.LEGACY and "exporter_fallback" not in facts
    check_parity(d / "leg.onnx", lambda x: (net(x)["embedding"], net(x)["logits"]), ["embedding", "logits"])
    assert [f for f in leftovers(d) if f.endswith(".onnx")] == ["auto.onnx", "leg.onnx"]  # no partial file


def test_nested_outputs_by_path_dynamo(zoo):
    d, models = zoo
    net = models.Nested().eval()
    torch.save(net.state_dict(), d / "n.pth")
    freeze_pytorch(
        str(d / "n.pth"),
        str(d / "n.pt2"),
        model="m",
        model_ref="routes_models:Nested",
        model_kwargs={},
        input_specs=SPECS,
    )
    inputs = {"source": str(d / "n.pt2"), "checkpoint": str(d / "n.pth")}
    facts = pytorch.export(
        inputs, {"onnx": str(d / "n.onnx")}, params(outputs=("aux.1", "score"), ref="routes_models:Nested")
    )
    assert facts["exporter"] == pytorch.DYNAMO and "exporter_fallback" not in facts
    check_parity(d / "n.onnx", lambda x: (net(x)["aux"][1], net(x)["score"]), ["aux.1", "score"])
    # one name per leaf, in the documented order (dict insertion order, depth first)
    facts = pytorch.export(
        inputs, {"onnx": str(d / "p.onnx")}, params(outputs=("s", "b", "t"), ref="routes_models:Nested")
    )
    check_parity(d / "p.onnx", lambda x: (net(x)["score"], *net(x)["aux"]), ["s", "b", "t"])
    # the legacy route flattens the same way
    facts = pytorch.export(
        inputs, {"onnx": str(d / "l.onnx")}, params("legacy", outputs=("aux.0", "score"), ref="routes_models:Nested")
    )
    check_parity(d / "l.onnx", lambda x: (net(x)["aux"][0], net(x)["score"]), ["aux.0", "score"])
    # neither paths nor one name per leaf: an error naming the key and the leaves
    with pytest.raises(FactoryError, match=r"models.m.outputs.*returns 3 outputs \(score, aux.0, aux.1\)"):
        pytorch.export(inputs, {"onnx": str(d / "x.onnx")}, params(outputs=("a", "b"), ref="routes_models:Nested"))
    # the golden reference picks the same leaves
    feeds = random_inputs(SPECS, seed=2)
    ref = pytorch.reference_outputs(
        {"kind": "checkpoint", "path": str(d / "n.pth"), "model_ref": "routes_models:Nested"},
        feeds,
        ["aux.1", "score"],
        model="m",
    )
    np.testing.assert_allclose(ref["aux.1"], run_onnxruntime(d / "n.onnx", feeds)["aux.1"], rtol=1e-5, atol=1e-6)


def test_torchscript_dict_output_and_constant_args(zoo):
    d, models = zoo
    net = models.Stateful().eval()
    torch.jit.save(torch.jit.script(net), str(d / "s.pt"))
    freeze_torchscript(str(d / "s.pt"), str(d / "frozen.pt"), model="m")
    constants = {"state": {"shape": [3], "fill": 0.5}, "flag": True}
    p = params("auto", fmt="pt", outputs=("y",), constant_args=constants)
    facts = pytorch.export({"source": str(d / "frozen.pt")}, {"onnx": str(d / "s.onnx")}, p)
    assert facts["exporter"] == pytorch.TS_DYNAMO
    state = torch.full([3], 0.5)
    check_parity(d / "s.onnx", lambda x: (net(x, state, True)["y"],), ["y"])
    # the golden reference binds the same constants
    feeds = random_inputs(SPECS, seed=4)
    ref = pytorch.reference_outputs(
        {"kind": "torchscript", "path": str(d / "s.pt"), "constant_args": constants}, feeds, ["y"], model="m"
    )
    np.testing.assert_allclose(ref["y"], run_onnxruntime(d / "s.onnx", feeds)["y"], rtol=1e-5, atol=1e-6)
    # constants on the legacy route: refused with the key to change
    with pytest.raises(FactoryError, match="models.m.exporter.*dynamo route only"):
        pytorch.export({"source": str(d / "frozen.pt")}, {"onnx": str(d / "x.onnx")}, {**p, "exporter": "legacy"})
    # an unknown argument name: the forward's arguments listed
    with pytest.raises(FactoryError, match=r"models.m.constant_args.*\['nope'\].*\['x', 'state', 'flag'\]"):
        pytorch.export(
            {"source": str(d / "frozen.pt")}, {"onnx": str(d / "x.onnx")}, {**p, "constant_args": {"nope": 1}}
        )


def test_torchscript_dict_output_legacy_fails_auto_falls_back(zoo):
    d, models = zoo
    net = models.Nested().eval()
    torch.jit.save(torch.jit.script(net), str(d / "n.pt"))
    freeze_torchscript(str(d / "n.pt"), str(d / "frozen.pt"), model="m")
    p = params("legacy", fmt="pt", outputs=("score", "aux.0", "aux.1"))
    with pytest.raises(FactoryError, match=r"dynamo=False\) failed: RuntimeError"):
        pytorch.export({"source": str(d / "frozen.pt")}, {"onnx": str(d / "x.onnx")}, p)
    facts = pytorch.export({"source": str(d / "frozen.pt")}, {"onnx": str(d / "n.onnx")}, {**p, "exporter": "auto"})
    assert facts["exporter"] == pytorch.TS_DYNAMO
    assert (
        facts["exporter_fallback"][0]["route"] == "legacy" and "RuntimeError" in facts["exporter_fallback"][0]["error"]
    )
    check_parity(d / "n.onnx", lambda x: (net(x)["score"], *net(x)["aux"]), ["score", "aux.0", "aux.1"])


def test_checkpoint_nesting_and_prefix(zoo):
    d, models = zoo
    net = models.MetaNet().eval()
    saved = {
        "model_state": {f"module.{k}": v for k, v in net.state_dict().items()},
        "optimizer": {"lr": 0.1},
        "step": 3,
    }
    torch.save(saved, d / "train.pth")
    ref = "routes_models:MetaNet"
    with pytest.raises(FactoryError) as e:
        load_state_dict_model(str(d / "train.pth"), ref, {}, model="m")
    msg = str(e.value)
    assert "models.m.checkpoint_key" in msg and "train.pth" in msg and "model_state (4 entries)" in msg
    with pytest.raises(FactoryError) as e:
        load_state_dict_model(str(d / "train.pth"), ref, {}, model="m", checkpoint_key="model_state")
    msg = str(e.value)
    assert "missing 4 key(s): meta.weight" in msg and "unexpected 4 key(s): module.meta.weight" in msg
    assert "strip_prefix: 'module.'" in msg and "\n" not in msg and "model 'm'" in msg
    with pytest.raises(FactoryError, match=r"checkpoint_key 'weights' is not in the checkpoint.*'model_state'"):
        load_state_dict_model(str(d / "train.pth"), ref, {}, model="m", checkpoint_key="weights")
    loaded = load_state_dict_model(
        str(d / "train.pth"), ref, {}, model="m", checkpoint_key=["model_state"], strip_prefix="module."
    )
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    # the whole chain with the keys: freeze, the legacy fallback and the golden read the checkpoint the same way
    keys = {"checkpoint_key": "model_state", "strip_prefix": "module."}
    freeze_pytorch(
        str(d / "train.pth"), str(d / "t.pt2"), model="m", model_ref=ref, model_kwargs={}, input_specs=SPECS, **keys
    )
    facts = pytorch.export(
        {"source": str(d / "t.pt2"), "checkpoint": str(d / "train.pth")},
        {"onnx": str(d / "t.onnx")},
        params("auto", **keys),
    )
    assert facts["exporter"] == pytorch.LEGACY
    check_parity(d / "t.onnx", lambda x: (net(x)["logits"], net(x)["embedding"]), ["logits", "embedding"])


def test_settings_carry_the_keys_and_config_checks():
    m = {
        "framework": "pytorch",
        "checkpoint": "a.pth",
        "model": "p:C",
        "inputs": SPECS,
        "exporter": "legacy",
        "checkpoint_key": "net",
        "strip_prefix": "module.",
    }
    s = pytorch.export_settings("m", m)
    assert s["exporter"] == "legacy" and s["checkpoint_key"] == "net" and s["eager"]["model_ref"] == "p:C"
    assert pytorch.export_inputs("m", m)["checkpoint"] == "a.pth"
    assert "checkpoint" not in pytorch.export_inputs("m", {**m, "exporter": "dynamo"})
    assert pytorch.freeze_settings("m", m)["strip_prefix"] == "module."
    assert pytorch.reference_settings(m)["checkpoint_key"] == "net"
    # a TorchScript archive holds its module: no checkpoint keys
    ts = {"framework": "pytorch", "torchscript": "a.pt", "inputs": SPECS, "strip_prefix": "module."}
    with pytest.raises(FactoryError, match="models.m.strip_prefix"):
        pytorch.check_config("m", ts, {"python_path": []}, None, settings={})


def test_question_mark_dims_get_distinct_names(tmp_path):
    """An ONNX file naming height and width both `?` (TensorRT-RTX would take them as one dim): distinct names at
    import, recorded; the config's dynamic dims keep the config's names."""
    from onnx import TensorProto, helper

    from engine_factory.frameworks.onnx import import_onnx

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "?", "?"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "?", "?"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "src.onnx"))
    specs = {
        "x": {
            "shape": ["batch", 3, 8, 8],
            "min": [1, 3, 8, 8],
            "opt": [1, 3, 8, 8],
            "max": [4, 3, 8, 8],
            "dtype": "float32",
        }
    }
    facts = import_onnx(
        str(tmp_path / "src.onnx"), str(tmp_path / "m.onnx"), model="m", input_specs=specs, outputs=["y"], opset=17
    )
    assert facts["dims_named"] == {"x[2]": "x_dim2", "x[3]": "x_dim3", "y[2]": "y_dim2", "y[3]": "y_dim3"}
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "x_dim2", "x_dim3"]
    assert [d.dim_param for d in proto.graph.output[0].type.tensor_type.shape.dim][0] == "batch"
