import copy

import numpy as np
import onnx
import pytest
import torch

from engine_factory.errors import FactoryError
from engine_factory.frameworks.pytorch import (
    export_pt2,
    export_torchscript,
    freeze_pytorch,
    freeze_torchscript,
    load_state_dict_model,
)
from engine_factory.tensors import random_inputs, run_onnxruntime

from helpers import CNN_INPUTS, TWO_TOWER_INPUTS, leftovers


def eager(demo_dir, name, cls, feeds):
    net = load_state_dict_model(str(demo_dir / f"{name}.pth"), f"engine_factory.demo.models:{cls}", {}, model=name)
    with torch.no_grad():
        out = net(*(torch.from_numpy(v) for v in feeds.values()))
    return out if isinstance(out, tuple) else (out,)


def test_cnn_export_names_dynamic_batch_opset_and_parity(cnn_onnx, demo_dir):
    proto = onnx.load(str(cnn_onnx))
    assert [i.name for i in proto.graph.input] == ["x"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert next(o.version for o in proto.opset_import if o.domain == "") == 18
    for key in ("min", "max"):  # the dynamic batch really works at both ends of the profile
        feeds = random_inputs(CNN_INPUTS, shape_key=key, seed=3)
        got = run_onnxruntime(cnn_onnx, feeds)["logits"]
        np.testing.assert_allclose(got, eager(demo_dir, "tiny_cnn", "TinyCNN", feeds)[0].numpy(), rtol=1e-4, atol=1e-5)


def test_two_inputs_two_outputs(demo_dir, tmp_path):
    specs = copy.deepcopy(TWO_TOWER_INPUTS)
    freeze_pytorch(
        str(demo_dir / "two_tower.pth"),
        str(tmp_path / "m.pt2"),
        model="two_tower",
        model_ref="engine_factory.demo.models:TwoTower",
        model_kwargs={},
        input_specs=specs,
    )
    facts = export_pt2(
        str(tmp_path / "m.pt2"),
        str(tmp_path / "m.onnx"),
        model="two_tower",
        input_specs=specs,
        outputs=["logits", "embedding"],
        opset=18,
    )
    assert facts["inputs"] == ["image", "features"] and facts["outputs"] == ["logits", "embedding"]
    assert facts["opset"] == 18
    # The dynamo exporter writes opset 18 whatever is asked; onnx's converter cannot take this graph down to 17:
    # a clear error naming the key, not a silently different opset.
    with pytest.raises(FactoryError, match=r"models.two_tower.opset.*opset 18 to 17"):
        export_pt2(
            str(tmp_path / "m.pt2"),
            str(tmp_path / "m17.onnx"),
            model="two_tower",
            input_specs=specs,
            outputs=["logits", "embedding"],
            opset=17,
        )
    assert not (tmp_path / "m17.onnx").exists()
    feeds = random_inputs(specs, seed=5)
    got = run_onnxruntime(tmp_path / "m.onnx", feeds)
    want = eager(demo_dir, "two_tower", "TwoTower", feeds)
    np.testing.assert_allclose(got["logits"], want[0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["embedding"], want[1].numpy(), rtol=1e-4, atol=1e-5)


def test_torchscript_source(demo_dir, tmp_path):
    net = load_state_dict_model(str(demo_dir / "tiny_cnn.pth"), "engine_factory.demo.models:TinyCNN", {}, model="ts")
    torch.jit.save(torch.jit.trace(net, torch.zeros(2, 3, 32, 32)), str(tmp_path / "user.pt"))
    freeze_torchscript(str(tmp_path / "user.pt"), str(tmp_path / "frozen.pt"), model="ts")
    specs = copy.deepcopy(CNN_INPUTS)
    export_torchscript(
        str(tmp_path / "frozen.pt"),
        str(tmp_path / "m.onnx"),
        model="ts",
        input_specs=specs,
        outputs=["logits"],
        opset=18,
    )
    feeds = random_inputs(specs, shape_key="max", seed=2)
    np.testing.assert_allclose(
        run_onnxruntime(tmp_path / "m.onnx", feeds)["logits"],
        eager(demo_dir, "tiny_cnn", "TinyCNN", feeds)[0].numpy(),
        rtol=1e-4,
        atol=1e-5,
    )


def test_checkpoint_that_does_not_fit(demo_dir, tmp_path):
    with pytest.raises(FactoryError) as e:
        freeze_pytorch(
            str(demo_dir / "two_tower.pth"),
            str(tmp_path / "m.pt2"),
            model="wrong",
            model_ref="engine_factory.demo.models:TinyCNN",
            model_kwargs={},
            input_specs=copy.deepcopy(CNN_INPUTS),
        )
    assert "model 'wrong'" in str(e.value) and "two_tower.pth" in str(e.value) and "does not fit" in str(e.value)
    assert leftovers(tmp_path) == []


def test_missing_checkpoint_and_bad_class(tmp_path):
    with pytest.raises(FactoryError, match="model 'm'.*checkpoint not found"):
        load_state_dict_model(str(tmp_path / "nope.pth"), "engine_factory.demo.models:TinyCNN", {}, model="m")
    with pytest.raises(FactoryError, match="models.m.model.*defines no .NoSuchClass."):
        load_state_dict_model(str(tmp_path / "nope.pth"), "engine_factory.demo.models:NoSuchClass", {}, model="m")


class Payload:  # a pickled object: torch.load(weights_only=True) must refuse to build it
    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def test_pickled_code_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(1), "payload": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(FactoryError, match="weights_only=True"):
        load_state_dict_model(str(tmp_path / "evil.pth"), "engine_factory.demo.models:TinyCNN", {}, model="m")
