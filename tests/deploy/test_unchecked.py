"""Issue 26: nothing unchecked is deployed — a not-run plan with no numeric evidence stays out of the Triton
repository by default; one whose ONNX parity (or its fp32 emulation) passed goes in, and says which."""

import json
from pathlib import Path

import pytest

from engine_factory.deploy.triton import POLICY_DEFAULTS, select_plans
from engine_factory.outcomes import Evidence

NO_GPU = {"status": "not-run", "reason": "no CUDA GPU"}
HEADER = {"status": "pass"}
PARITY = {
    "onnx": {"status": "pass", "reason": "all outputs within tolerance"},
    "emulated": {"status": "pass", "evidence": "emulated", "reason": "judged by the fp32 emulation"},
    "none": {"status": "not-run", "reason": "onnxruntime CPU cannot run this model: bf16 Conv"},
}


def _plans(tmp_path, parity_by_cc):
    plans = {}
    for cc, parity in parity_by_cc.items():
        v = tmp_path / f"validation.{cc}.json"
        checks = {"onnx_parity": PARITY[parity], "plan_header": HEADER, "plan_execution": NO_GPU}
        v.write_text(json.dumps({"status": "not-run", "checks": checks}))  # no `evidence` field: read from checks
        plans[cc] = {"plan": f"plan.{cc}", "validation": str(v)}
    return plans


def test_a_plan_nothing_checked_is_not_deployed_by_default(tmp_path):
    """Before issue 26 the bf16 plan (8.6 here) went in: the policy accepted any not-run."""
    plans = _plans(tmp_path, {"8.0": "onnx", "8.6": "none", "8.9": "emulated"})
    chosen, refused = select_plans(plans, POLICY_DEFAULTS["include"], model="m")
    assert sorted(chosen) == ["8.0", "8.9"]
    assert chosen["8.0"]["evidence"] == Evidence.ONNX and chosen["8.9"]["evidence"] == Evidence.EMULATED
    assert refused == {"8.6": "validation not-run, not verified: no numeric check (deploy.triton.unverified)"}


def test_unverified_opts_in(tmp_path):
    chosen, refused = select_plans(_plans(tmp_path, {"8.6": "none"}), ["pass", "not-run"], model="m", unverified=True)
    assert chosen["8.6"]["evidence"] == Evidence.NONE and refused == {}


@pytest.mark.parametrize("value, ok", [(True, True), (False, True), ("yes", False)])
def test_the_schema_knows_unverified(value, ok):
    import jsonschema
    import yaml

    schema = yaml.safe_load((Path(__file__).parents[2] / "workflow/schemas/config.schema.yaml").read_text())
    triton = schema["properties"]["deploy"]["properties"]["triton"]
    errors = list(jsonschema.Draft202012Validator(triton).iter_errors({"unverified": value}))
    assert (not errors) == ok


def test_summary_cells_say_what_was_established(tmp_path, monkeypatch):
    """Two not-run plans: one whose ONNX parity passed, one nothing checked. summary.json told them apart by
    nothing before issue 26."""
    from engine_factory import paths
    from engine_factory.report.summary import _validated_cell

    monkeypatch.chdir(tmp_path)
    cells = {}
    for precision, parity in (("fp32", "onnx"), ("bf16", "none")):
        job = {"model": "m", "key": "rtx-1", "cc": "8.6", "precision": precision}
        v = tmp_path / paths.validation(**job)
        v.parent.mkdir(parents=True, exist_ok=True)
        checks = {"onnx_parity": PARITY[parity], "plan_header": HEADER, "plan_execution": NO_GPU}
        v.write_text(json.dumps({"status": "not-run", "checks": checks}))
        cells[precision] = _validated_cell(job)
    assert cells["fp32"]["status"] == cells["bf16"]["status"] == "not-run"  # the outcome words are unchanged
    assert cells["fp32"]["evidence_text"] == "onnx-verified, execution not run here"
    assert cells["bf16"]["evidence_text"] == "not verified"
