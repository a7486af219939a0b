"""TensorFlow sources: Keras (.keras, .h5), SavedModel, TF1 checkpoint -> frozen GraphDef -> tf2onnx -> shared chain.

Unit tests call the stage functions in-process on tiny models; the end-to-end tests run the real workflow in a
temporary directory on every source format, and a tf2onnx failure."""

import copy
import json
import re
import shutil

import numpy as np
import onnx
import pytest

from engine_factory import paths
from engine_factory.config import check
from engine_factory.errors import FactoryError
from engine_factory.frameworks.tensorflow import export_tf, freeze_tf
from engine_factory.frameworks.tensorflow import reference_outputs as golden_outputs
from engine_factory.precisions import DEFAULT_TOLERANCES
from engine_factory.provenance import sha256
from engine_factory.tensors import compare_outputs, load_golden, random_inputs, run_onnxruntime
from engine_factory.validation.golden import make_golden

from helpers import leftovers, write_config
from helpers import snakemake as run_snakemake


def snakemake(workdir, *args, config=None, check=True):
    if config is not None:
        write_config(workdir, config)
    return run_snakemake(workdir, *args, check=check)


def spec(shape, lo, opt, hi, **extra):
    return {"dtype": "float32", "shape": shape, "min": lo, "opt": opt, "max": hi, **extra}


CNN_NCHW = {"x": spec(["batch", 3, 32, 32], [1, 3, 32, 32], [4, 3, 32, 32], [8, 3, 32, 32], layout="NCHW")}
CNN_NHWC = {"x": spec(["batch", 32, 32, 3], [1, 32, 32, 3], [4, 32, 32, 3], [8, 32, 32, 3])}
TWO_HEAD = {"image": spec(["batch", 16, 16, 3], [1, 16, 16, 3], [2, 16, 16, 3], [8, 16, 16, 3])}
MLP = {"features": spec(["batch", 16], [1, 16], [4, 16], [16, 16])}
# The SavedModel's signature takes `zz` and `aa` (flattened sorted: aa, zz) and returns {aux, score}: the config
# names them in another order, so the mapping by name is exercised.
SAVED = {"zz": spec(["batch", 4], [1, 4], [2, 4], [8, 4]), "aa": spec(["batch", 4], [1, 4], [2, 4], [8, 4])}


def _tf():
    from engine_factory.frameworks.tensorflow import import_tensorflow as quiet

    return quiet()


def make_saved_model(path, *, unsupported=False):
    """A SavedModel with two inputs and two outputs; `unsupported` adds an op tf2onnx cannot convert (Lgamma)."""
    tf = _tf()

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(np.linspace(0.5, 2.0, 4, dtype=np.float32))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 4], tf.float32, name="zz"),
                tf.TensorSpec([None, 4], tf.float32, name="aa"),
            ]
        )
        def serve(self, zz, aa):
            score = tf.reduce_sum(zz * self.w, axis=1, keepdims=True) + aa
            aux = tf.math.lgamma(tf.abs(aa) + 1.0) if unsupported else tf.nn.relu(aa - zz)
            return {"score": score, "aux": aux}

    m = Module()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve})
    return path


@pytest.fixture(scope="module")
def tf_assets(tmp_path_factory):
    from engine_factory.demo import make_asset

    d = tmp_path_factory.mktemp("tf_demo")
    for asset in ["tf_cnn.keras", "tf_two_head.h5", "tf1_mlp.ckpt", "tf_cnn.calib.npz"]:
        make_asset(str(d / asset))
    make_saved_model(d / "saved")
    make_saved_model(d / "unsupported", unsupported=True)
    return d


def chain(tmp, src, fmt, specs, outputs, *, opset=17, model="m"):
    """freeze -> export -> golden; returns (freeze facts, export facts, parity vs golden at fp32 tolerances)."""
    specs = copy.deepcopy(specs)
    pb, io, onnx_path = tmp / "model.pb", tmp / "model.pb.io.json", tmp / "model.onnx"
    ff = freeze_tf(str(src), str(pb), str(io), model=model, fmt=fmt, input_specs=specs, outputs=outputs)
    ef = export_tf(str(pb), str(io), str(onnx_path), model=model, input_specs=specs, outputs=outputs, opset=opset)
    make_golden(
        str(tmp / "golden.npz"),
        model=model,
        input_specs=specs,
        outputs=outputs,
        seed=0,
        source={"framework": "tensorflow", "kind": "tensorflow", "format": fmt, "path": str(src), "io": str(io)},
    )
    ins, want = load_golden(str(tmp / "golden.npz"))
    return ff, ef, compare_outputs(run_onnxruntime(onnx_path, ins), want, DEFAULT_TOLERANCES["fp32"])


def test_keras_presented_as_nchw_with_dynamic_batch(tf_assets, tmp_path):
    ff, ef, parity = chain(tmp_path, tf_assets / "tf_cnn.keras", "keras", CNN_NCHW, ["logits"])
    assert parity["status"] == "pass", parity
    io = json.loads((tmp_path / "model.pb.io.json").read_text())
    assert io["inputs"] == [
        {
            "name": "x",
            "tensor": "x:0",
            "shape": [None, 32, 32, 3],
            "dtype": "float32",
            "layout": "NHWC",
            "presented_layout": "NCHW",
            "transpose_to_nchw": True,
        }
    ]
    assert [o["name"] for o in io["outputs"]] == ["logits"] and io["graph_data_format"] == "NHWC"
    assert ff["variable_ops_left"] == 0
    assert ef["inputs_as_nchw"] == ["x"] and ef["layout"] == {"x": "NCHW"} and ef["opset"] == 17
    proto = onnx.load(str(tmp_path / "model.onnx"))
    assert [i.name for i in proto.graph.input] == ["x"] and [o.name for o in proto.graph.output] == ["logits"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 32, 32]
    # the dynamic batch works at both ends of the profile, against TensorFlow on the same (transposed) inputs
    from engine_factory.frameworks.tensorflow import reference_outputs as golden_outputs

    for key in ("min", "max"):
        feeds = random_inputs(CNN_NCHW, shape_key=key, seed=3)
        want = golden_outputs(
            {"format": "keras", "path": str(tf_assets / "tf_cnn.keras"), "io": str(tmp_path / "model.pb.io.json")},
            feeds,
            ["logits"],
            model="m",
        )
        got = run_onnxruntime(tmp_path / "model.onnx", feeds)
        np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-4, atol=1e-5)


def test_keras_nhwc_kept(tf_assets, tmp_path):
    _, ef, parity = chain(tmp_path, tf_assets / "tf_cnn.keras", "keras", CNN_NHWC, ["logits"], opset=18)
    assert parity["status"] == "pass" and ef["inputs_as_nchw"] == [] and ef["layout"] == {"x": "NHWC"}
    dims = onnx.load(str(tmp_path / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 32, 32, 3]


def test_h5_two_outputs_in_order(tf_assets, tmp_path):
    _, ef, parity = chain(tmp_path, tf_assets / "tf_two_head.h5", "h5", TWO_HEAD, ["logits", "embedding"])
    assert parity["status"] == "pass", parity
    assert ef["outputs"] == ["logits", "embedding"]
    ins, want = load_golden(str(tmp_path / "golden.npz"))
    assert want["logits"].shape == (2, 5) and want["embedding"].shape == (2, 16)


def test_saved_model_maps_signature_names(tf_assets, tmp_path):
    _, ef, parity = chain(tmp_path, tf_assets / "saved", "saved_model", SAVED, ["score", "aux"])
    assert parity["status"] == "pass", parity
    assert ef["inputs"] == ["zz", "aa"] and ef["outputs"] == ["score", "aux"]
    ins, want = load_golden(str(tmp_path / "golden.npz"))
    w = np.linspace(0.5, 2.0, 4, dtype=np.float32)
    np.testing.assert_allclose(want["score"], (ins["zz"] * w).sum(1, keepdims=True) + ins["aa"], rtol=1e-5)
    with pytest.raises(FactoryError, match=r"model 'm'.*models.m.inputs.*signature's inputs are \['aa', 'zz'\]"):
        freeze_tf(
            str(tf_assets / "saved"),
            str(tmp_path / "x.pb"),
            str(tmp_path / "x.io.json"),
            model="m",
            fmt="saved_model",
            input_specs={"x": SAVED["zz"]},
            outputs=["score"],
        )
    with pytest.raises(FactoryError, match=r"no signature 'predict' \(it has \['serving_default'\]\)"):
        freeze_tf(
            str(tf_assets / "saved"),
            str(tmp_path / "x.pb"),
            str(tmp_path / "x.io.json"),
            model="m",
            fmt="saved_model",
            input_specs=copy.deepcopy(SAVED),
            outputs=["score"],
            signature="predict",
        )


def test_tf1_checkpoint_by_directory_and_by_meta(tf_assets, tmp_path):
    for form, src in [("dir", tf_assets / "tf1_mlp.ckpt"), ("meta", tf_assets / "tf1_mlp.ckpt" / "model.ckpt.meta")]:
        (tmp_path / form).mkdir()
        ff, ef, parity = chain(tmp_path / form, src, "tf1_checkpoint", MLP, ["scores"])
        assert parity["status"] == "pass", parity
        assert ef["inputs"] == ["features"] and ef["outputs"] == ["scores"] and ff["variable_ops_left"] == 0
    # the training ops of the meta graph are not in the frozen graph
    assert not any(n.op.startswith("Apply") for n in _graph_def(tmp_path / "dir" / "model.pb").node)
    with pytest.raises(FactoryError, match=r"models.m.inputs.*no node 'input'.*placeholders: \['features', 'labels'\]"):
        freeze_tf(
            str(tf_assets / "tf1_mlp.ckpt"),
            str(tmp_path / "x.pb"),
            str(tmp_path / "x.io.json"),
            model="m",
            fmt="tf1_checkpoint",
            input_specs={"input": MLP["features"]},
            outputs=["scores"],
        )


def _graph_def(path):
    tf = _tf()
    g = tf.compat.v1.GraphDef()
    g.ParseFromString(path.read_bytes())
    return g


def test_shape_mismatch_says_which_layout(tf_assets, tmp_path):
    nchw_without_layout = copy.deepcopy(CNN_NCHW)
    del nchw_without_layout["x"]["layout"]
    with pytest.raises(FactoryError, match=r"models.m.inputs.x.shape.*\[None, 32, 32, 3\].*set layout: NCHW"):
        freeze_tf(
            str(tf_assets / "tf_cnn.keras"),
            str(tmp_path / "m.pb"),
            str(tmp_path / "m.io.json"),
            model="m",
            fmt="keras",
            input_specs=nchw_without_layout,
            outputs=["logits"],
        )
    with pytest.raises(FactoryError, match=r"models.m.outputs.*returns 1 output") as raised:
        freeze_tf(
            str(tf_assets / "tf_cnn.keras"),
            str(tmp_path / "m.pb"),
            str(tmp_path / "m.io.json"),
            model="m",
            fmt="keras",
            input_specs=copy.deepcopy(CNN_NCHW),
            outputs=["logits", "extra"],
        )
    # the factory's own error, not autograph's StagingError around it: that one quoted the traceback's file paths
    # first and, in a checkout at a longer path, was cut before the cause
    assert "StagingError" not in str(raised.value) and str(raised.value).startswith("model 'm', config key"), raised
    assert leftovers(tmp_path) == []


def test_keras_lambda_code_is_refused(tmp_path):
    _tf()
    import keras

    inp = keras.Input((4,), name="f")
    keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp)).save(tmp_path / "lam.keras")
    with pytest.raises(FactoryError, match=r"model 'm', file '.*lam.keras': cannot load the Keras model.*Lambda"):
        freeze_tf(
            str(tmp_path / "lam.keras"),
            str(tmp_path / "out" / "m.pb"),
            str(tmp_path / "out" / "m.io.json"),
            model="m",
            fmt="keras",
            input_specs={"f": spec(["batch", 4], [1, 4], [2, 4], [4, 4])},
            outputs=["y"],
        )
    assert not (tmp_path / "out").exists() or leftovers(tmp_path / "out") == []


def test_unsupported_op_names_model_and_tf2onnx_message_and_leaves_nothing(tf_assets, tmp_path):
    specs = copy.deepcopy(SAVED)
    pb, io = tmp_path / "frozen" / "model.pb", tmp_path / "frozen" / "model.pb.io.json"
    freeze_tf(
        str(tf_assets / "unsupported"),
        str(pb),
        str(io),
        model="odd",
        fmt="saved_model",
        input_specs=specs,
        outputs=["score", "aux"],
    )
    out = tmp_path / "onnx"
    with pytest.raises(FactoryError) as e:
        export_tf(
            str(pb),
            str(io),
            str(out / "model.onnx"),
            model="odd",
            input_specs=specs,
            outputs=["score", "aux"],
            opset=17,
        )
    msg = str(e.value)
    assert msg.startswith("model 'odd'") and "model.pb" in msg
    assert "tf2onnx: Tensorflow op [" in msg and "Lgamma] is not supported" in msg, msg
    assert not out.exists() or leftovers(out) == []


TF_MODEL = {
    "framework": "tensorflow",
    "format": "keras",
    "checkpoint": "artifacts/demo/tf_cnn.keras",
    "inputs": CNN_NCHW,
    "outputs": ["logits"],
    "precisions": ["fp32"],
}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(opset=19), r"models.m.opset.*tf2onnx 1.17 converts to opsets up to 18"),
        (lambda m: m.pop("format"), r"models.m.format.*needs 'format'"),
        (lambda m: m.update(format="h5"), r"models.m.checkpoint.*format 'h5' needs a file ending in .h5 or .hdf5"),
        (lambda m: m.pop("outputs"), r"models.m.outputs"),
        (lambda m: m.update(outputs=["logits:0"]), r"models.m.outputs.*without the ':0' suffix"),
        (lambda m: m.update(model="engine_factory.demo.models:TinyCNN"), r"models.m.model.*not used by TensorFlow"),
        (lambda m: m.update(signature="serving_default"), r"models.m.signature.*SavedModels only"),
        (
            lambda m: m.update(inputs={"f": spec(["batch", 16], [1, 16], [4, 16], [16, 16], layout="NCHW")}),
            r"models.m.inputs.f.layout.*rank-4",
        ),
        (
            lambda m: m.update(checkpoint="nowhere/model.ckpt.meta", format="tf1_checkpoint"),
            r"models.m.checkpoint.*'nowhere/model.ckpt.meta': file not found",
        ),
    ],
)
def test_config_errors(edit, message):
    m = copy.deepcopy(TF_MODEL)
    edit(m)
    with pytest.raises(FactoryError, match=message):
        check({"models": {"m": m}})


def test_config_checks_tf1_parts_and_layout_only_for_tensorflow(tf_assets, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tf_assets / "tf1_mlp.ckpt", ckpt)
    cfg = {
        "precisions": ["fp32"],
        "models": {
            "m": {
                "framework": "tensorflow",
                "format": "tf1_checkpoint",
                "inputs": MLP,
                "checkpoint": str(ckpt / "model.ckpt"),
                "outputs": ["scores"],
            }
        },
    }
    check(copy.deepcopy(cfg))  # the prefix form, its .meta present
    next(ckpt.glob("*.data-*")).unlink()
    with pytest.raises(FactoryError, match=r"file '.*model.ckpt.data-00000-of-00001': file not found \(part of"):
        check(copy.deepcopy(cfg))
    torch_model = {
        "framework": "pytorch",
        "checkpoint": "artifacts/demo/tiny_cnn.pth",
        "model": "engine_factory.demo.models:TinyCNN",
        "inputs": CNN_NCHW,
        "outputs": ["logits"],
    }
    with pytest.raises(FactoryError, match=r"models.t.inputs.x.layout.*for TensorFlow models"):
        check({"precisions": ["fp32"], "models": {"t": torch_model}})


# ------------------------------------------------------------------------------------------ the workflow, end to end


@pytest.fixture(scope="module")
def tf_zoo(tf_assets, tmp_path_factory):
    """Every source format through the whole chain: demo Keras (.keras, NCHW, int8), demo .h5, demo TF1 directory,
    a user SavedModel and a user TF1 checkpoint named by its .meta."""
    workdir = tmp_path_factory.mktemp("tf_zoo")
    user = workdir / "user"
    shutil.copytree(tf_assets / "saved", user / "saved")
    shutil.copytree(tf_assets / "tf1_mlp.ckpt", user / "ckpt")
    demo = lambda name: f"../artifacts/demo/{name}"  # noqa: E731 - made by the workflow's own demo rules
    config = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.9"]},
        "precisions": ["fp32"],
        "opset": 17,
        "models": {
            "tf_cnn": {
                "framework": "tensorflow",
                "format": "keras",
                "checkpoint": demo("tf_cnn.keras"),
                "inputs": CNN_NCHW,
                "outputs": ["logits"],
                "precisions": ["fp32", "int8"],
                "calibration": demo("tf_cnn.calib.npz"),
            },
            "tf_two_head": {
                "framework": "tensorflow",
                "format": "h5",
                "checkpoint": demo("tf_two_head.h5"),
                "inputs": TWO_HEAD,
                "outputs": ["logits", "embedding"],
            },
            "tf1_mlp": {
                "framework": "tensorflow",
                "format": "tf1_checkpoint",
                "checkpoint": demo("tf1_mlp.ckpt"),
                "inputs": MLP,
                "outputs": ["scores"],
            },
            "tf1_meta": {
                "framework": "tensorflow",
                "format": "tf1_checkpoint",
                "checkpoint": str(user / "ckpt" / "model.ckpt.meta"),
                "inputs": MLP,
                "outputs": ["scores"],
            },
            "tf_saved": {
                "framework": "tensorflow",
                "format": "saved_model",
                "checkpoint": str(user / "saved"),
                "inputs": SAVED,
                "outputs": ["score", "aux"],
                "mem_mb": 1000,
            },
        },
    }
    snakemake(workdir, config=config)
    return workdir


def test_every_format_end_to_end(tf_zoo):
    summary = json.loads((tf_zoo / paths.REPORT_JSON).read_text())
    assert summary["counts"] == {"not-run": 6}, summary["counts"]  # no GPU here: execution not-run, nothing fails
    for model, info in summary["models"].items():
        assert {v: p["status"] for v, p in info["onnx_parity"].items()} == {
            v: "pass" for v in ["export", "sim", *info["precisions"]]
        }, (model, info["onnx_parity"])
        assert info["framework"] == "tensorflow" and info["opset"] == 17
    for p in summary["plans"]:
        v = json.loads((tf_zoo / paths.validation(p["model"], p["key"], p["cc"], p["precision"])).read_text())
        assert v["checks"]["plan_header"]["status"] == "pass"
    assert summary["models"]["tf_cnn"]["layout"] == {"x": "NCHW"}
    assert summary["models"]["tf_two_head"]["layout"] == {"image": "NHWC"}
    assert "layout" not in summary["models"]["tf1_mlp"]
    html = (tf_zoo / paths.report_page("tf_cnn")).read_text()  # the model's own page says it
    assert "plan input layout: x NCHW (tf2onnx transposes it to the model&#39;s NHWC)" in html


def test_tf_provenance_chains_back_to_the_checkpoint(tf_zoo):
    plan = paths.plan("tf_cnn", "rtx-1.7.1.116", "89", "int8")
    record, chain_ = json.loads((tf_zoo / paths.provenance(plan)).read_text()), []
    while True:
        chain_.append(record["stage"])
        for entry in record["inputs"]:
            assert entry["sha256"] == sha256(tf_zoo / entry["path"]), entry["path"]
        parents = [e for e in record["inputs"] if "provenance" in e and e["label"] in ("onnx", "source")]
        if not parents:
            break
        if record["stage"] == "export":  # the plan's input layout, recorded where the ONNX was made
            assert record["facts"]["layout"] == {"x": "NCHW"} and record["facts"]["inputs_as_nchw"] == ["x"]
            assert "tf2onnx 1.17.0" in record["facts"]["exporter"]
            assert {e["label"] for e in record["inputs"]} == {"source", "io"}
        record = json.loads((tf_zoo / parents[0]["provenance"]).read_text())
    assert chain_ == ["build", "precision", "simplify", "export", "freeze"]
    assert record["inputs"][0]["path"] == "artifacts/demo/tf_cnn.keras"
    assert record["tools"]["tensorflow-cpu"] == "2.21.0" and record["tools"]["tf2onnx"] == "1.17.0"
    meta = json.loads((tf_zoo / paths.provenance(paths.frozen("tf1_meta", "pb"))).read_text())
    assert {e["label"] for e in meta["inputs"]} == {"source", "ckpt_index", "ckpt_data_0"}  # every checkpoint part


def test_tf_rerun_is_a_no_op(tf_zoo):
    proc = snakemake(tf_zoo)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_tf2onnx_failure_in_the_workflow(tf_assets, tmp_path):
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.9"]},
        "precisions": ["fp32"],
        "opset": 17,
        "models": {
            "odd": {
                "framework": "tensorflow",
                "format": "saved_model",
                "checkpoint": str(tf_assets / "unsupported"),
                "inputs": SAVED,
                "outputs": ["score", "aux"],
            }
        },
    }
    proc = snakemake(tmp_path, paths.onnx("odd"), config=cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(r"error: model 'odd', file '.*model.pb': tf2onnx 1.17.0 cannot convert the graph", out), out
    assert "Lgamma] is not supported" in out
    assert (tmp_path / paths.frozen("odd", "pb")).exists()  # freeze succeeded; export left nothing behind
    assert not list((tmp_path / "artifacts" / "odd").glob("onnx/*"))


def make_writing_saved_model(path, target):
    """A SavedModel whose signature writes a file (tf.io.write_file) when it runs: a graph is code."""
    tf = _tf()

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            tf.io.write_file(str(target), "written by the model's graph")
            return {"y": x * 2.0}

    m = Module()
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve})
    return path


def test_a_graph_that_writes_files_is_refused_unless_allowed(tmp_path):
    target = tmp_path / "pwned.txt"
    saved = make_writing_saved_model(tmp_path / "writer", target)
    specs = {"x": spec(["batch", 4], [1, 4], [2, 4], [8, 4])}
    with pytest.raises(FactoryError, match=r"models.w.allow_ops.*touch the file system.*WriteFile"):
        freeze_tf(
            str(saved),
            str(tmp_path / "m.pb"),
            str(tmp_path / "m.pb.io.json"),
            model="w",
            fmt="saved_model",
            input_specs=copy.deepcopy(specs),
            outputs=["y"],
        )
    feeds = {"x": np.ones((2, 4), np.float32)}
    source = {"framework": "tensorflow", "kind": "tensorflow", "format": "saved_model", "path": str(saved)}
    io = tmp_path / "io.json"
    io.write_text(json.dumps({"inputs": [{"name": "x", "transpose_to_nchw": False}]}))
    with pytest.raises(FactoryError, match="WriteFile"):
        golden_outputs({**source, "io": str(io)}, feeds, ["y"], model="w")
    assert not target.exists() and not (tmp_path / "m.pb").exists()
    out = golden_outputs({**source, "io": str(io), "allow_ops": ["WriteFile"]}, feeds, ["y"], model="w")
    assert target.exists() and np.allclose(out["y"], 2.0)  # the explicit opt-in runs it
