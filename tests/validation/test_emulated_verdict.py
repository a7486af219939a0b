"""Issue 26: a bf16 variant onnxruntime cannot run (bf16 Conv has no CPU kernel) is judged by the project's fp32
emulation of its bf16 tensors, recorded as such; checked and unchecked results carry different evidence words."""

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from engine_factory import stages
from engine_factory.outcomes import Evidence, Outcome, evidence_of
from engine_factory.tensors import run_onnxruntime

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
from test_simplify import make_cnn  # noqa: E402

from helpers import CNN_INPUTS  # noqa: E402

BF16_TOL = {"atol": 5e-2, "rtol": 5e-2, "min_cosine": 0.995}


@pytest.fixture(scope="module")
def bf16_parity(tmp_path_factory):
    d = tmp_path_factory.mktemp("bf16")
    make_cnn(d / "model.sim.onnx")
    x = np.random.default_rng(3).standard_normal(CNN_INPUTS["x"]["opt"]).astype(np.float32)
    ref = run_onnxruntime(str(d / "model.sim.onnx"), {"x": x})
    np.savez(d / "golden.npz", **{"in/x": x}, **{f"out/{k}": v for k, v in ref.items()})
    stages.precision(
        {"onnx": str(d / "model.sim.onnx"), "golden": str(d / "golden.npz")},
        {"onnx": str(d / "model.bf16.onnx"), "parity": str(d / "parity.bf16.json")},
        {"model": "tiny", "precision": "bf16", "inputs": copy.deepcopy(CNN_INPUTS), "tolerance": BF16_TOL},
    )
    return json.loads((d / "parity.bf16.json").read_text())


def test_bf16_conv_is_judged_by_the_emulation_not_left_not_run(bf16_parity):
    """Before issue 26 this parity was 'not-run' (onnxruntime: no bf16 Conv kernel) and the plans deployed unchecked."""
    assert bf16_parity["status"] == Outcome.PASS, bf16_parity["reason"]
    assert bf16_parity["evidence"] == Evidence.EMULATED
    assert bf16_parity["onnxruntime"]["status"] == Outcome.NOT_RUN and "Conv" in bf16_parity["onnxruntime"]["reason"]
    assert bf16_parity["reason"].startswith("judged by the fp32 emulation of its bf16 tensors")
    assert bf16_parity["outputs"]["logits"]["cosine"] > 0.995


def test_checked_and_unchecked_not_run_are_different_words(bf16_parity):
    no_gpu = {"status": Outcome.NOT_RUN, "reason": "no GPU"}
    header = {"status": Outcome.PASS}
    onnx_ok = {"status": Outcome.PASS}
    nothing = {"status": Outcome.NOT_RUN, "reason": "onnxruntime CPU cannot run this model"}
    as_plan = {"onnx_parity": bf16_parity, "plan_header": header, "plan_execution": no_gpu}
    assert evidence_of(as_plan) == Evidence.EMULATED
    assert evidence_of({"onnx_parity": onnx_ok, "plan_header": header, "plan_execution": no_gpu}) == Evidence.ONNX
    assert evidence_of({"onnx_parity": nothing, "plan_header": header, "plan_execution": no_gpu}) == Evidence.NONE
    assert evidence_of({"onnx_parity": onnx_ok, "plan_execution": {"status": Outcome.PASS}}) == Evidence.EXECUTED
    assert evidence_of({"onnx_parity": onnx_ok, "plan_execution": {"status": Outcome.FAIL}}) == Evidence.FAILED
