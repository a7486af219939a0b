import copy
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from engine_factory import provenance
from engine_factory.errors import FactoryError
from engine_factory.precisions import DEFAULT_TOLERANCES
from engine_factory.tensors import compare_outputs, load_golden
from engine_factory.validation.golden import make_golden
from engine_factory.validation.validate import onnx_parity, overall_status, write_parity

from helpers import CNN_INPUTS, TWO_TOWER_INPUTS


@pytest.fixture(scope="module")
def cnn_golden(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "golden.npz"
    source = {
        "framework": "pytorch",
        "kind": "checkpoint",
        "path": str(demo_dir / "tiny_cnn.pth"),
        "model_ref": "engine_factory.demo.models:TinyCNN",
    }
    facts = make_golden(
        str(out), model="tiny_cnn", source=source, input_specs=copy.deepcopy(CNN_INPUTS), outputs=["logits"], seed=0
    )
    assert facts["inputs"] == {"x": [4, 3, 32, 32]} and facts["outputs"] == {"logits": [4, 10]}
    return out


def test_golden_is_seeded_and_reproducible(cnn_golden, demo_dir, tmp_path):
    source = {
        "framework": "pytorch",
        "kind": "checkpoint",
        "path": str(demo_dir / "tiny_cnn.pth"),
        "model_ref": "engine_factory.demo.models:TinyCNN",
    }
    make_golden(
        str(tmp_path / "g.npz"),
        model="tiny_cnn",
        source=source,
        input_specs=copy.deepcopy(CNN_INPUTS),
        outputs=["logits"],
        seed=0,
    )
    a, b = load_golden(str(cnn_golden)), load_golden(str(tmp_path / "g.npz"))
    np.testing.assert_array_equal(a[0]["x"], b[0]["x"])
    np.testing.assert_array_equal(a[1]["logits"], b[1]["logits"])


def test_golden_from_user_samples(demo_dir, tmp_path):
    rng = np.random.default_rng(7)
    np.savez(
        tmp_path / "samples.npz",
        image=rng.standard_normal((3, 3, 16, 16)).astype(np.float32),
        features=rng.standard_normal((3, 8)).astype(np.float32),
    )
    source = {
        "framework": "pytorch",
        "kind": "checkpoint",
        "path": str(demo_dir / "two_tower.pth"),
        "model_ref": "engine_factory.demo.models:TwoTower",
    }
    make_golden(
        str(tmp_path / "g.npz"),
        model="two_tower",
        source=source,
        input_specs=copy.deepcopy(TWO_TOWER_INPUTS),
        outputs=["logits", "embedding"],
        seed=0,
        samples=str(tmp_path / "samples.npz"),
    )
    ins, outs = load_golden(str(tmp_path / "g.npz"))
    assert ins["image"].shape == (3, 3, 16, 16) and outs["embedding"].shape == (3, 16)
    np.savez(
        tmp_path / "too_many.npz", image=np.zeros((40, 3, 16, 16), np.float32), features=np.zeros((40, 8), np.float32)
    )
    with pytest.raises(FactoryError, match=r"model 'two_tower'.*too_many.npz.*dim 0 must be in \[1, 16\]"):
        make_golden(
            str(tmp_path / "g2.npz"),
            model="two_tower",
            source=source,
            input_specs=copy.deepcopy(TWO_TOWER_INPUTS),
            outputs=["logits", "embedding"],
            seed=0,
            samples=str(tmp_path / "too_many.npz"),
        )
    assert not (tmp_path / "g2.npz").exists()


def test_wrong_output_count_named(demo_dir, tmp_path):
    source = {
        "framework": "pytorch",
        "kind": "checkpoint",
        "path": str(demo_dir / "two_tower.pth"),
        "model_ref": "engine_factory.demo.models:TwoTower",
    }
    with pytest.raises(FactoryError, match="models.two_tower.outputs.*returns 2 outputs"):
        make_golden(
            str(tmp_path / "g.npz"),
            model="two_tower",
            source=source,
            input_specs=copy.deepcopy(TWO_TOWER_INPUTS),
            outputs=["logits"],
            seed=0,
        )


def test_parity_passes_for_export_and_fails_for_a_changed_model(cnn_onnx, cnn_golden, tmp_path):
    tol = DEFAULT_TOLERANCES["fp32"]
    assert onnx_parity(str(cnn_onnx), str(cnn_golden), tol)["status"] == "pass"
    proto = onnx.load(str(cnn_onnx))  # perturb the classifier bias: the model computes something else now
    bias = next(i for i in proto.graph.initializer if numpy_helper.to_array(i).shape == (10,))
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.05, bias.name))
    onnx.save(proto, str(tmp_path / "changed.onnx"))
    result = onnx_parity(str(tmp_path / "changed.onnx"), str(cnn_golden), tol)
    assert result["status"] == "fail" and "logits" in result["reason"]
    assert result["outputs"]["logits"]["max_abs"] == pytest.approx(0.05, rel=1e-3)
    write_parity(
        str(tmp_path / "p.json"), onnx_path=str(cnn_onnx), golden_path=str(cnn_golden), tolerance=tol, variant="export"
    )
    assert json.loads((tmp_path / "p.json").read_text())["status"] == "pass"


def test_unrunnable_onnx_is_not_run_not_pass(cnn_golden, tmp_path):
    """A bf16 Conv has no onnxruntime CPU kernel: the parity check reports not-run with the reason."""
    from onnx import TensorProto, helper

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Cast", ["x"], ["xb"], to=TensorProto.BFLOAT16),
        helper.make_node("Cast", ["w"], ["wb"], to=TensorProto.BFLOAT16),
        helper.make_node("Conv", ["xb", "wb"], ["yb"]),
        helper.make_node("Cast", ["yb"], ["logits"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        [w],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)]), str(tmp_path / "bf16.onnx")
    )  # Conv-22 allows bf16
    result = onnx_parity(str(tmp_path / "bf16.onnx"), str(cnn_golden), DEFAULT_TOLERANCES["bf16"])
    assert result["status"] == "not-run" and "onnxruntime CPU cannot run" in result["reason"]


def test_compare_outputs_rules():
    g = {"y": np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])}
    assert compare_outputs({"y": g["y"] + 1e-6}, g, {"atol": 1e-4, "rtol": 0})["status"] == "pass"
    flipped = {"y": g["y"][:, ::-1].copy()}
    r = compare_outputs(flipped, g, {"min_top1_agreement": 0.9})
    assert r["status"] == "fail" and r["outputs"]["y"]["top1_agreement"] == 0.0
    assert compare_outputs({"y": g["y"] * np.nan}, g, {})["status"] == "fail"  # NaN never passes
    assert compare_outputs({}, g, {})["status"] == "fail"
    per_output = {"min_top1_agreement": 0.9, "outputs": {"y": {"min_top1_agreement": 0}}}
    assert compare_outputs(flipped, g, per_output)["status"] == "pass"


def test_overall_status_never_turns_not_run_into_pass():
    assert overall_status({"a": {"status": "pass"}, "b": {"status": "not-run"}}) == "not-run"
    assert overall_status({"a": {"status": "fail"}, "b": {"status": "not-run"}}) == "fail"
    assert overall_status({"a": {"status": "pass"}, "b": {"status": "pass"}}) == "pass"


def test_provenance_chain_and_hashes(cnn_onnx, demo_dir, tmp_path):
    art = tmp_path / "a.bin"
    art.write_bytes(b"plan bytes")
    provenance.write(
        str(cnn_onnx), stage="export", inputs={"source": str(demo_dir / "tiny_cnn.pth")}, params={}, host={"gpus": []}
    )
    side = provenance.write(str(art), stage="build", inputs={"onnx": str(cnn_onnx)}, params={"x": 1}, host={"gpus": []})
    rec = json.loads(open(side).read())
    import hashlib

    assert rec["artifact"]["sha256"] == hashlib.sha256(b"plan bytes").hexdigest()
    assert rec["inputs"][0]["sha256"] == hashlib.sha256(cnn_onnx.read_bytes()).hexdigest()
    parent = json.loads(open(rec["inputs"][0]["provenance"]).read())  # the chain goes on to the checkpoint
    assert parent["inputs"][0]["path"].endswith("tiny_cnn.pth")
    assert rec["tools"]["onnx"] == "1.23.2" and "commit" in rec["workflow"]


def test_input_hash_reused_only_while_size_and_mtime_match(tmp_path):
    import hashlib
    import os

    from engine_factory.provenance import describe_input

    src = tmp_path / "model.onnx"
    src.write_bytes(b"first version")
    provenance.write(str(src), stage="export", inputs={}, params={}, host={"gpus": []})
    assert describe_input("onnx", str(src))["sha256"] == hashlib.sha256(b"first version").hexdigest()
    # rewritten with the same size but a new mtime: hashed again, not taken from the (now stale) sidecar
    src.write_bytes(b"other version")
    st = os.stat(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert describe_input("onnx", str(src))["sha256"] == hashlib.sha256(b"other version").hexdigest()
