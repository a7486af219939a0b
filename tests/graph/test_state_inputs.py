"""Stateful models (issue 26 point 8, issue 28 point 5): a recurrent cell's state input `[2, batch, 32]` has its
samples on axis 1 (`batch_axis: 1`), a scalar `sample_rate` has no batch axis (`batch_axis: null`, `value: 16000`),
and the new state comes back as an ordinary output. Calibration cuts each input on its own axis (what ModelOpt's
reader is handed is recorded), data on the wrong axis is refused naming model, input and key, golden inputs take
the value, `check` reads the batch axis off the ONNX, and the chain runs in a zoo in a temporary folder through
int8 and a TensorRT-RTX build for sm89."""

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
from engine_factory.graph import precision as precision_mod
from engine_factory.graph.calibration import calibration_facts, load_calibration
from engine_factory.graph.interface import interface_problems
from engine_factory.tensors import calibration_batches, random_inputs, run_onnxruntime

W = 32  # features: ModelOpt leaves Gemm/MatMul with K or N below 16 in fp32


def cell(path, *, batch="batch"):
    """y = relu((x * sr / 16000 + sum(state, 0)) @ A) @ B; state_out = tanh(state @ C + y): a recurrent step whose
    state `[2, batch, W]` carries the batch on axis 1 and whose sample rate is a scalar int64."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32), n)
        for n, s in (("A", [W, 2 * W]), ("B", [2 * W, W]), ("C", [W, W]))
    ]
    inits += [
        numpy_helper.from_array(np.array(16000.0, np.float32), "rate0"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
    ]
    nodes = [
        h.make_node("Cast", ["sample_rate"], ["sr"], to=T.FLOAT),
        h.make_node("Div", ["sr", "rate0"], ["scale"]),
        h.make_node("Mul", ["x", "scale"], ["xs"]),
        h.make_node("ReduceSum", ["state", "axis0"], ["s"], keepdims=0),
        h.make_node("Add", ["xs", "s"], ["u"]),
        h.make_node("MatMul", ["u", "A"], ["ua"]),
        h.make_node("Relu", ["ua"], ["r"]),
        h.make_node("MatMul", ["r", "B"], ["y"]),
        h.make_node("MatMul", ["state", "C"], ["sc"]),
        h.make_node("Add", ["sc", "y"], ["t"]),
        h.make_node("Tanh", ["t"], ["state_out"]),
    ]
    g = h.make_graph(
        nodes,
        "cell",
        [
            h.make_tensor_value_info("x", T.FLOAT, [batch, W]),
            h.make_tensor_value_info("state", T.FLOAT, [2, batch, W]),
            h.make_tensor_value_info("sample_rate", T.INT64, []),
        ],
        [
            h.make_tensor_value_info("y", T.FLOAT, [batch, W]),
            h.make_tensor_value_info("state_out", T.FLOAT, [2, batch, W]),
        ],
        initializer=inits,
    )
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 18)]), str(path))
    return str(path)


def model_entry(**state):
    return {
        "framework": "onnx",
        "onnx": "cell.onnx",
        "precisions": ["fp32", "int8"],
        "calibration": "calib.npz",
        "outputs": ["y", "state_out"],
        "inputs": {
            "x": {"shape": ["batch", W], "min": [1, W], "opt": [4, W], "max": [8, W]},
            "state": {"shape": [2, "batch", W], "min": [2, 1, W], "opt": [2, 4, W], "max": [2, 8, W], **state},
            "sample_rate": {"shape": [], "dtype": "int64", "batch_axis": None, "value": 16000},
        },
    }


def zoo(tmp_path, m: dict) -> str:
    """The zoo's config, beside the model and calibration files it names (written here unless a test did)."""
    if not (tmp_path / "cell.onnx").exists():
        cell(tmp_path / "cell.onnx")
    if not (tmp_path / "calib.npz").exists():
        np.savez(tmp_path / "calib.npz", **calib())
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump({"backend": "tensorrt_rtx", "targets": {"rtx": ["8.9"]}, "models": {"cell": m}}))
    return str(path)


def specs_of(tmp_path, **state) -> dict:
    return config_mod.load([zoo(tmp_path, model_entry(**state))], workdir=str(tmp_path))["models"]["cell"]["inputs"]


def calib(n=12, *, state_first=False):
    """x [n, W]; state [2, n, W] whose sample i holds i + 0.5 (so a feed shows which samples it got); no sample rate
    (its `value` fills it)."""
    rng = np.random.default_rng(1)
    state = np.broadcast_to((np.arange(n, dtype=np.float32) + 0.5)[None, :, None], (2, n, W)).copy()
    state += rng.uniform(-0.1, 0.1, state.shape).astype(np.float32)
    return {
        "x": rng.standard_normal((n, W)).astype(np.float32),
        "state": state.transpose(1, 0, 2) if state_first else state,
    }


def test_calibration_cuts_each_input_on_its_own_axis(tmp_path):
    specs = specs_of(tmp_path, batch_axis=1)
    np.savez(tmp_path / "calib.npz", **calib())
    data = load_calibration(tmp_path / "calib.npz", specs, model="cell")
    assert data["sample_rate"].shape == () and data["sample_rate"] == 16000  # filled from `value`
    feeds = calibration_batches(data, specs, 4)
    assert len(feeds) == 3
    for k, feed in enumerate(feeds):
        assert feed["x"].shape == (4, W) and feed["state"].shape == (2, 4, W)
        assert np.array_equal(np.round(feed["state"][:, :, 0].mean(0) - 0.5), np.arange(4 * k, 4 * k + 4))
        assert feed["sample_rate"] == 16000  # the same in every feed
    facts = calibration_facts(tmp_path / "calib.npz", data, input_specs=specs)
    assert facts["samples"] == 12 and facts["batch_axes"] == {"x": 0, "state": 1, "sample_rate": None}
    assert not any("sample_rate" in w for w in facts["warnings"])  # one value by declaration: nothing to warn


def test_modelopt_reads_the_feeds_cut_on_the_declared_axis(tmp_path, monkeypatch):
    """The real ModelOpt int8 run: every feed its calibration reader yields has the state's samples on axis 1, and
    the variant it writes runs on the golden-like inputs and quantizes the MatMuls."""
    specs = specs_of(tmp_path, batch_axis=1)
    src = cell(tmp_path / "cell.onnx")
    np.savez(tmp_path / "calib.npz", **calib())
    seen = []
    get_next = precision_mod._Feeds.get_next

    def spy(self):
        feed = get_next(self)
        if feed is not None:
            seen.append({k: v.shape for k, v in feed.items()})
        return feed

    monkeypatch.setattr(precision_mod._Feeds, "get_next", spy)
    facts = precision_mod.make_precision_variant(
        src,
        tmp_path / "int8.onnx",
        "int8",
        model="cell",
        input_specs=specs,
        calibration_path=tmp_path / "calib.npz",
    )
    assert facts["tool"] == "modelopt", facts["attempts"]
    assert seen and all(s == {"x": (4, W), "state": (2, 4, W), "sample_rate": ()} for s in seen), seen
    assert facts["quantized_layers"] >= 2, facts
    feeds = random_inputs(specs)
    assert feeds["sample_rate"] == 16000 and feeds["state"].shape == (2, 4, W)
    out = run_onnxruntime(tmp_path / "int8.onnx", feeds)
    assert out["state_out"].shape == (2, 4, W)


def test_data_on_the_wrong_axis_is_refused(tmp_path):
    specs = specs_of(tmp_path, batch_axis=1)
    np.savez(tmp_path / "calib.npz", **calib(state_first=True))  # [12, 2, W]: what passed the check before
    with pytest.raises(FactoryError) as e:
        load_calibration(tmp_path / "calib.npz", specs, model="cell")
    message = str(e.value)
    assert "\n" not in message and "model 'cell'" in message and "models.cell.calibration" in message
    assert "input 'state' has shape [12, 2, 32]" in message and "samples on axis 1" in message
    # a sample rate given per sample where it has none
    np.savez(tmp_path / "calib.npz", **calib(), sample_rate=np.full(12, 16000))
    with pytest.raises(FactoryError, match=r"input 'sample_rate' has shape \[12\].*batch_axis: null"):
        load_calibration(tmp_path / "calib.npz", specs, model="cell")


def test_an_undeclared_state_axis_is_a_config_error(tmp_path):
    """Without `batch_axis` the state would be calibrated cut on axis 0: the config says which key to set."""
    with pytest.raises(FactoryError) as e:
        specs_of(tmp_path)
    message = str(e.value)
    assert "models.cell.inputs.state.batch_axis" in message and "batch_axis: 1" in message
    for wrong in (0, None):  # said, and wrong: the batch dim is on axis 1
        with pytest.raises(FactoryError, match=r"inputs.state.batch_axis.*on axis 1, but its batch_axis is"):
            specs_of(tmp_path, batch_axis=wrong)
    bad = model_entry(batch_axis=3)
    with pytest.raises(FactoryError, match=r"models.cell.inputs.state.batch_axis.*batch_axis 3 is outside"):
        config_mod.load([zoo(tmp_path, bad)], workdir=str(tmp_path))
    bad = model_entry(batch_axis=1)
    bad["inputs"]["x"]["value"] = 1.0
    with pytest.raises(FactoryError, match=r"models.cell.inputs.x.value"):
        config_mod.load([zoo(tmp_path, bad)], workdir=str(tmp_path))


def test_a_static_state_on_the_wrong_axis_is_refused(tmp_path):
    """A static model (silero-vad's [1, 576] and [2, 1, 128]): no dim names say where the batch is; one calibration
    step holds the opt batch (1) of `x`, so a state fixed at 2 on its declared axis 0 is refused, naming the key."""
    specs = {
        "x": {"shape": [1, W], "min": [1, W], "opt": [1, W], "max": [1, W], "dtype": "float32"},
        "state": {"shape": [2, 1, W], "min": [2, 1, W], "opt": [2, 1, W], "max": [2, 1, W], "dtype": "float32"},
    }
    data = calib(6)
    np.savez(tmp_path / "calib.npz", x=data["x"], state=data["state"][0][:, None, :])
    with pytest.raises(FactoryError, match=r"inputs.state.batch_axis.*input 'state' .*fixed at 2 on its batch axis 0"):
        load_calibration(tmp_path / "calib.npz", specs, model="vad")  # [6, 1, W]: passed, then cut in 1-row pieces
    np.savez(tmp_path / "calib.npz", **data)
    specs["state"]["batch_axis"] = 1
    feeds = calibration_batches(load_calibration(tmp_path / "calib.npz", specs, model="vad"), specs, 1)
    assert len(feeds) == 6 and all(f["state"].shape == (2, 1, W) for f in feeds)


def test_check_reads_the_batch_axis_off_the_onnx(tmp_path):
    proto = onnx.load(cell(tmp_path / "cell.onnx"))
    m = model_entry(batch_axis=1)
    specs = m["inputs"]
    assert interface_problems(proto, model="cell", input_specs=specs, outputs=m["outputs"]) == []
    del specs["state"]["batch_axis"]
    problems = interface_problems(proto, model="cell", input_specs=specs, outputs=m["outputs"])
    assert [k for k, _ in problems] == ["models.cell.inputs.state.batch_axis"]
    assert "axis 1" in problems[0][1] and "[2, 'batch', 32]" in problems[0][1] and "batch_axis: 1" in problems[0][1]
    specs["state"]["batch_axis"] = None
    problems = interface_problems(proto, model="cell", input_specs=specs, outputs=m["outputs"])
    assert [k for k, _ in problems] == ["models.cell.inputs.state.batch_axis"]


def test_the_chain_runs_a_stateful_model_to_an_int8_rtx_plan(tmp_path, monkeypatch):
    """A user's zoo in a temporary folder: import, simplify, golden, int8 (calibrated), a TensorRT-RTX build for
    sm89, as the workflow's jobs run them."""
    from engine_factory.factory import resolve

    cell(tmp_path / "cell.onnx")
    np.savez(tmp_path / "calib.npz", **calib(16))
    m = model_entry(batch_axis=1)
    m["precisions"] = ["int8"]
    m["output_kinds"] = {"y": "generic"}  # [batch, 32] of a random cell: no classifier, judged by cosine
    cfg_path = zoo(tmp_path, m)
    monkeypatch.chdir(tmp_path)
    f = resolve(config_mod.load([cfg_path]), host={"gpus": []})
    w, pw = {"model": "cell"}, {"model": "cell", "precision": "int8"}
    steps = [
        ("export", w, {"onnx": paths.onnx("cell")}),
        ("simplify", w, {"onnx": paths.sim_onnx("cell")}),
        ("golden", w, {"golden": paths.golden("cell")}),
        ("precision", pw, {"onnx": paths.precision_onnx("cell", "int8"), "parity": paths.parity("cell", "int8")}),
    ]
    for stage, wildcards, outputs in steps:
        stages.run(
            stage, {"inputs": f.inputs(stage, wildcards), "outputs": outputs, "params": f.settings(stage, wildcards)}
        )
    golden = np.load(tmp_path / paths.golden("cell"))
    assert golden["in/sample_rate"] == 16000 and golden["in/state"].shape == (2, 4, W)
    assert golden["out/state_out"].shape == (2, 4, W)
    variant = json.loads((tmp_path / paths.provenance(paths.precision_onnx("cell", "int8"))).read_text())["facts"]
    assert variant["calibration"]["batch_axes"]["state"] == 1 and variant["quantized_layers"] >= 2
    parity = json.loads((tmp_path / paths.parity("cell", "int8")).read_text())
    assert parity["status"] == "pass", parity["reason"]  # int8 of the source, calibrated on the right axis
    (ts,) = [t for t in f.target_sets("build") if "int8" in t.precisions]
    jw = {"model": "cell", "key": f.key, "precision": "int8", "targets": ts.tag}
    outs = {k: p.format(**jw) for k, p in paths.set_outputs("build", list(ts.ccs)).items()}
    if f.validates_in_build:
        outs.update({k: p.format(**jw) for k, p in paths.set_outputs("validate", list(ts.ccs)).items()})
    stages.run("build", {"inputs": f.inputs("build", jw), "outputs": outs, "params": f.settings("build", jw)})
    plans = [p for k, p in outs.items() if k.startswith("plan")]
    assert plans and all((tmp_path / p).stat().st_size > 0 for p in plans)
    built = json.loads((tmp_path / paths.provenance(plans[0])).read_text())["facts"]
    assert built["input_shapes"]["sample_rate"] == [] and built["input_shapes"]["state"] == [2, -1, W]
    assert built["input_profiles"]["state"] == {"min": [2, 1, W], "opt": [2, 4, W], "max": [2, 8, W]}
    assert built["input_profiles"]["sample_rate"] == {"min": [], "opt": [], "max": []}


def test_golden_inputs_take_the_value_where_samples_leave_it_out(tmp_path):
    """Samples (one feed of the model) need not repeat a sample rate the config fixes; seeded inputs take it too."""
    from engine_factory.validation.golden import golden_inputs

    specs = specs_of(tmp_path, batch_axis=1)
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "samples.npz", x=rng.standard_normal((3, W)), state=np.zeros((2, 3, W)))
    feeds = golden_inputs(specs, model="cell", seed=0, samples=str(tmp_path / "samples.npz"))
    assert feeds["sample_rate"].dtype == np.int64 and feeds["sample_rate"].shape == () and feeds["sample_rate"] == 16000
    assert feeds["state"].shape == (2, 3, W)
    seeded = golden_inputs(specs, model="cell", seed=0, samples=None)
    assert seeded["sample_rate"] == 16000 and seeded["state"].shape == (2, 4, W)
    assert run_onnxruntime(tmp_path / "cell.onnx", feeds)["state_out"].shape == (2, 3, W)


def test_check_command_names_the_batch_axis_key(tmp_path):
    """`python -m engine_factory check` on a zoo whose state's axis is unsaid (fp32 only: the config alone allows
    it) fails naming the key; with `batch_axis: 1` it passes."""
    from helpers import cli

    m = model_entry()
    m["precisions"] = ["fp32"]
    del m["calibration"]
    r = cli("check", "--configfile", zoo(tmp_path, m), "-d", tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "models.cell.inputs.state.batch_axis" in out and "Traceback" not in out, out
    m["inputs"]["state"]["batch_axis"] = 1
    r = cli("check", "--configfile", zoo(tmp_path, m), "-d", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_autocast_and_the_onnxruntime_fallback_get_the_same_feeds(tmp_path):
    """fp16 (ModelOpt AutoCast's range check runs the model on the calibration feeds: cut on axis 0, x [8, W] beside
    state [2, 12, W] stops it and the fallback tool was used) and onnxruntime's int8 fallback, on the cell."""
    specs = specs_of(tmp_path, batch_axis=1)
    src = tmp_path / "cell.onnx"
    facts = precision_mod.make_precision_variant(
        src, tmp_path / "fp16.onnx", "fp16", model="cell", input_specs=specs, calibration_path=tmp_path / "calib.npz"
    )
    assert facts["tool"] == "modelopt" and facts["autocast_data"] == "calibration data", facts["attempts"]
    data = load_calibration(tmp_path / "calib.npz", specs, model="cell")
    precision_mod.run_ort_int8(src, tmp_path / "ort.onnx", "int8", data, specs)
    assert precision_mod.parity(tmp_path / "ort.onnx", src, specs)["outputs"]["state_out"]["cosine"] > 0.98


def test_a_fixed_batch_takes_feeds_of_its_size():
    """basic-pitch's SavedModel is [1, 43844, 1] in its config: AutoCast's 8-sample feeds did not fit it."""
    data = {"x": np.arange(8 * 3, dtype=np.float32).reshape(8, 3)}
    one = {"x": {"dtype": "float32", "shape": [1, 3], "min": [1, 3], "opt": [1, 3], "max": [1, 3]}}
    feeds = calibration_batches(data, one, 8)
    assert len(feeds) == 8 and all(f["x"].shape == (1, 3) for f in feeds)
    four = {"x": {**one["x"], "shape": [4, 3]}}
    assert [f["x"].shape for f in calibration_batches(data, four, 8)] == [(4, 3), (4, 3)]
    sixteen = {"x": {**one["x"], "shape": [16, 3]}}
    assert calibration_batches(data, sixteen, 8) == []  # fewer samples than one feed holds
    dynamic = {"x": {**one["x"], "shape": ["batch", 3]}}
    assert [f["x"].shape for f in calibration_batches(data, dynamic, 4)] == [(4, 3), (4, 3)]
