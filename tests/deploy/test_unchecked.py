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
