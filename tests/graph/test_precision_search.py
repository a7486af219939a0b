"""Issue 16: a quantized variant is what its label says (or fails saying it is not), and a variant that misses its
tolerance is searched for the nodes to keep in higher precision. Small ONNX models made to have one sensitive layer
(tests/helpers/sensitive_models.py), run through the precision stage as the workflow runs it
(scripts/engine_factory/stages.py), in a tmp dir outside the checkout."""

import json

import numpy as np
import onnx
import pytest

from engine_factory import stages
from engine_factory.atomic import read_json
from engine_factory.config import check, model_settings
from engine_factory.errors import FactoryError
from engine_factory.precisions import DEFAULT_TOLERANCES
from engine_factory.tensors import run_onnxruntime

from helpers.sensitive_models import SENSITIVE, sensitive_inputs, sensitive_mlp

SEARCH = {"fallback": "fp32", "budget_s": 120, "max_trials": 24}


def _zoo(d, model_path, features):
    """The files the precision job reads: the simplified model, calibration data and golden outputs (seeded)."""
    np.savez(d / "calib.npz", features=np.random.default_rng(3).standard_normal((64, features)).astype(np.float32))
    x = np.random.default_rng(5).standard_normal((16, features)).astype(np.float32)
    np.savez(
        d / "golden.npz", **{"in/features": x, "out/scores": run_onnxruntime(model_path, {"features": x})["scores"]}
    )
    return {"onnx": str(model_path), "calibration": str(d / "calib.npz"), "golden": str(d / "golden.npz")}


def _precision_job(d, inputs, precision="int8", search=None, tolerance=None, features=32, tag=""):
    out = d / f"out{tag}"
    out.mkdir()
    outputs = {"onnx": str(out / f"model.{precision}.onnx"), "parity": str(out / f"{precision}.json")}
    params = {
        "model": "m",
        "precision": precision,
        "inputs": sensitive_inputs(features),
        "tolerance": tolerance or DEFAULT_TOLERANCES[precision],
        **({"search": search} if search else {}),
    }
    stages.run("precision", {"inputs": inputs, "outputs": outputs, "params": params})
    facts = read_json(outputs["onnx"] + ".provenance.json")["facts"]
    return read_json(outputs["parity"]), facts, outputs["onnx"]


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory):
    d = tmp_path_factory.mktemp("sensitive")
    return d, _zoo(d, sensitive_mlp(d / "model.onnx"), 32)


def test_int8_fails_without_search_and_passes_keeping_exactly_the_sensitive_node(sensitive):
    d, inputs = sensitive
    parity, facts, _ = _precision_job(d, inputs, tag="-plain")
    assert parity["status"] == "fail" and parity["outputs"]["scores"]["cosine"] < 0.95
    assert facts["quantized_layers"] == facts["layers"] == 3 and "search" not in facts

    parity, facts, variant = _precision_job(d, inputs, search=SEARCH, tag="-search")
    assert parity["status"] == "pass" and parity["outputs"]["scores"]["cosine"] >= 0.98
    s = facts["search"]
    assert s["status"] == "pass" and s["kept"] == {"fp32": [SENSITIVE]} and s["kept_op_types"] == {"Gemm": 1}
    assert s["sensitivity"][0]["node"] == SENSITIVE  # ranked first by its isolated damage
    assert s["sensitivity"][0]["damage"] > 10 * s["sensitivity"][1]["damage"]
    assert s["trials"] == len(s["steps"]) - 1 >= 1
    assert [st["passes"] for st in s["steps"]][0] is False and s["steps"][s["chosen_trial"]]["passes"]
    assert all("accuracy" in st and "scores" in st["accuracy"] for st in s["steps"])  # the accuracy at each step
    # the file holds what the facts say: the sensitive Gemm reads no DequantizeLinear, the other two do
    proto = onnx.load(variant)
    dq = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    reads_dq = {n.name: any(i in dq for i in n.input) for n in proto.graph.node if n.op_type == "Gemm"}
    assert reads_dq == {"blocks.0/fc": True, SENSITIVE: False, "blocks.2/fc": True}
    assert facts["not_quantized"] == [SENSITIVE] and facts["quantized_layers"] == 2
    # parity (what validation and the report read) says what was kept and how
    assert parity["precision_search"]["kept"] == {"fp32": [SENSITIVE]}
    assert SENSITIVE in parity["reason"] and "precision search: kept 1 node(s) in fp32" in parity["reason"]


def test_a_search_that_cannot_meet_the_tolerance_is_a_clear_fail(sensitive):
    d, inputs = sensitive
    unreachable = {"min_cosine": 0.9999999, "min_top1_agreement": 0.9}
    parity, facts, _ = _precision_job(
        d, inputs, search={**SEARCH, "max_trials": 2}, tolerance=unreachable, tag="-budget"
    )
    s = facts["search"]
    assert parity["status"] == "fail" and s["status"] == "fail" and s["trials"] == 2
    assert s["reason"] == "the budget ran out"
    assert s["would_need"]["fp32"][0] == SENSITIVE and len(s["would_need"]["fp32"]) == 3  # what it would try next
    best = max(st["accuracy"]["scores"]["cosine"] for st in s["steps"])
    assert s["accuracy"]["scores"]["cosine"] == best > 0.99  # the best trial is the variant written
    assert "precision search failed after 2 trial(s)" in parity["reason"] and "best: scores cosine" in parity["reason"]


def test_search_not_needed_when_the_variant_passes(tmp_path):
    inputs = _zoo(tmp_path, sensitive_mlp(tmp_path / "m.onnx", outlier=1.0), 32)  # no outlier: int8 is fine
    parity, facts, _ = _precision_job(tmp_path, inputs, search=SEARCH)
    assert parity["status"] == "pass" and facts["search"]["status"] == "not-needed" and facts["search"]["trials"] == 0
    assert facts["search"]["kept"] == {"fp32": []}


def test_gemm_models_get_qdq_and_one_without_a_quantized_layer_says_so(tmp_path):
    """The demo tiny_mlp's shape (16 -> 32 -> 4, dynamic batch): its Gemms are quantized where ModelOpt's rules
    allow (N=4 is below its small-GEMM limit); a model whose every Gemm is that small gets none and fails its
    parity saying so, instead of passing as int8."""
    mlp = sensitive_mlp(tmp_path / "mlp.onnx", features=16, width=32, out=4, depth=2, outlier=1.0)
    parity, facts, _ = _precision_job(tmp_path, _zoo(tmp_path, mlp, 16), features=16, tag="-mlp")
    assert facts["quantized"] == ["blocks.0/fc"] and facts["not_quantized"] == ["blocks.1/fc"]
    assert parity["status"] == "pass"
    assert "1 of 2 layers quantized; in fp32: blocks.1/fc" in facts["warnings"]

    small = tmp_path / "small"
    small.mkdir()
    tiny = sensitive_mlp(small / "tiny.onnx", features=8, width=8, out=4, depth=2, outlier=1.0)
    for precision in ("int8", "fp8"):
        parity, facts, _ = _precision_job(
            small, _zoo(small, tiny, 8), precision=precision, features=8, tag=f"-{precision}"
        )
        assert facts["quantized_layers"] == 0 and facts["layers"] == 2
        message = f"{precision} requested, 0 of 2 layers quantized: the variant computes in fp32"
        assert parity["status"] == "fail" and parity["reason"].startswith(message)
        assert parity["label_problem"] == message and facts["warnings"][0] == message


def _cfg(**extra):
    m = {
        "framework": "onnx",
        "onnx": "m.onnx",
        "inputs": sensitive_inputs(),
        "calibration": "c.npz",
        "precisions": ["fp32", "int8"],
        **extra,
    }
    return {"models": {"m": m}}


def test_precision_search_settings_merge_and_bad_keys_are_named():
    cfg = check(
        {
            **_cfg(precision_search={"int8": {"budget_s": 30}}),
            "precision_search": {"int8": {"fallback": "fp16"}, "fp8": {}},
        },
        check_files=False,
    )
    s = model_settings(cfg, "m")["precision_search"]
    assert s == {
        "int8": {"fallback": "fp16", "budget_s": 30, "max_trials": 24},
        "fp8": {"fallback": "fp32", "budget_s": 300, "max_trials": 24},
    }
    assert model_settings(check(_cfg(), check_files=False), "m")["precision_search"] == {}
    for bad, key in [
        ({"int8": {"fallback": "bf16"}}, "models.m.precision_search.int8.fallback"),
        ({"int8": {"budget_s": 0}}, "models.m.precision_search.int8.budget_s"),
        ({"int8": {"budgte_s": 3}}, "models.m.precision_search.int8"),
        ({"fp32": {}}, "models.m.precision_search"),
        ({"fp16": {"fallback": "fp16"}}, "models.m.precision_search.fp16.fallback"),
    ]:
        with pytest.raises(FactoryError, match=key.replace(".", r"\.")):
            check(_cfg(precision_search=bad), check_files=False)


def test_fp16_overflow_keeps_the_node_reading_the_overflowing_input_in_fp32(tmp_path):
    """Item 4: the same search for AutoCast (fp16): nodes kept in fp32 through its nodes_to_exclude; ranked by the
    damage of rounding each tensor to fp16 alone (its producer and readers kept together)."""
    from helpers.sensitive_models import OVERFLOW, overflow_inputs, overflow_model

    model = overflow_model(tmp_path / "m.onnx")
    x = np.random.default_rng(5).uniform(1e5, 4e5, (16, 16)).astype(np.float32)
    np.savez(tmp_path / "golden.npz", **{"in/x": x, "out/y": run_onnxruntime(model, {"x": x})["y"]})
    # Calibration data that never reaches the overflow range: AutoCast's own range check (it runs on the data since
    # issue 26; on the golden inputs it keeps the node in fp32 itself) does not see the overflow; the emulation must.
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(6).uniform(0, 1, (16, 16)).astype(np.float32))
    inputs = {"onnx": str(model), "golden": str(tmp_path / "golden.npz"), "calibration": str(tmp_path / "calib.npz")}
    tolerance = {"atol": 0.5, "rtol": 1e-2, "min_cosine": 0.999}

    def job(search, tag):
        out = tmp_path / tag
        out.mkdir()
        outputs = {"onnx": str(out / "model.fp16.onnx"), "parity": str(out / "fp16.json")}
        params = {
            "model": "m",
            "precision": "fp16",
            "inputs": overflow_inputs(),
            "tolerance": tolerance,
            **({"search": search} if search else {}),
        }
        stages.run("precision", {"inputs": inputs, "outputs": outputs, "params": params})
        return read_json(outputs["parity"]), read_json(outputs["onnx"] + ".provenance.json")["facts"]

    parity, facts = job(None, "plain")  # onnxruntime's own run passes; the emulated fp16 overflows: a fail
    assert parity["outputs"]["y"]["nonfinite_mismatch"] == 0
    assert parity["status"] == "fail" and parity["reason"].startswith("emulated fp16 overflows: y: 256 non-finite")
    assert parity["emulated"]["outputs"]["y"]["nonfinite_mismatch"] == 256
    parity, facts = job(SEARCH, "search")
    s = facts["search"]
    assert parity["status"] == "pass", parity["reason"]
    assert s["status"] == "pass" and s["kept"] == {"fp32": [OVERFLOW]}
    top = s["sensitivity"][0]  # the tensor whose fp16 rounding breaks the output: the input, read by `scale`
    assert top["node"] == "input x" and top["keeps"] == [OVERFLOW] and top["nonfinite"] is True
    assert facts["low_precision_tensors"] > 0  # still an fp16 variant: fc computes in fp16
    types = {i.name: i.data_type for i in onnx.load(str(tmp_path / "search" / "model.fp16.onnx")).graph.initializer}
    assert types["w"] == onnx.TensorProto.FLOAT16


def test_status_lists_variants_that_are_not_what_their_label_says(tmp_path):
    from engine_factory import paths
    from engine_factory.ops.status import mislabelled, render

    small = sensitive_mlp(tmp_path / "tiny.onnx", features=8, width=8, out=4, depth=2, outlier=1.0)
    parity, _, _ = _precision_job(tmp_path, _zoo(tmp_path, small, 8), features=8)
    target = tmp_path / paths.parity("tiny", "int8")
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(parity))
    found = mislabelled(
        tmp_path,
        [{"model": "tiny", "precision": "int8", "cc": "89"}, {"model": "tiny", "precision": "int8", "cc": "120"}],
    )
    assert found == [
        {
            "model": "tiny",
            "precision": "int8",
            "problem": "int8 requested, 0 of 2 layers quantized: the variant computes in fp32",
        }
    ]
    text = render(
        {
            "counts": {"current": 2, "stale": 0, "missing": 0, "failed": 0},
            "keys": ["k"],
            "snakemake_seconds": 0.1,
            "targets": [],
            "not_produced": [],
            "failed": 0,
            "needs_work": False,
            "mislabelled": found,
        }
    )
    assert (
        "1 variant(s) not what their label says (their validation fails):\n  tiny int8: int8 requested, 0 of 2" in text
    )
