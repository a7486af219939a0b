"""validate: compare every ONNX variant and every plan with the golden outputs.

Each check has a status in {pass, fail, not-run} and a reason. "not-run" is never turned into "pass".
"""

from __future__ import annotations

import json

from .. import atomic
from ..outcomes import EVIDENCE_TEXT, Evidence, Outcome, evidence_of
from ..tensors import load_golden, onnx_parity, random_inputs

CHECKS = ("onnx_parity", "plan_header", "plan_execution")


def write_parity(
    out: str,
    *,
    onnx_path: str,
    golden_path: str,
    tolerance: dict,
    variant: str,
    recorded: dict | None = None,
    problem: str | None = None,
    notes: dict | None = None,
    emulate=None,
) -> dict:
    """The parity file of one variant. `problem`: why the variant is not what its label says (no layer in its
    precision): the result fails with it first in the reason, whatever the numbers. `notes` (the precision search's
    summary) are kept beside, their `summary` line appended to the reason. `emulate` (fp16/bf16: the variant's fp32
    emulation against the golden outputs, a parity result): where onnxruntime cannot run the variant, its verdict is
    the parity's, recorded as `evidence: emulated` with onnxruntime's reason kept (`onnxruntime`)."""
    result = {
        "variant": variant,
        "onnx": onnx_path,
        **onnx_parity(onnx_path, golden_path, tolerance),
        **({"recorded": recorded} if recorded else {}),
    }
    if result["status"] == Outcome.NOT_RUN and emulate is not None:
        try:
            emulated = emulate()
        except Exception as e:  # a model the emulation cannot rebuild: nothing was checked, and the reason says so
            result["reason"] += f"; the fp32 emulation could not run either: {type(e).__name__}: {str(e)[:200]}"
        else:
            ort = {"status": result["status"], "reason": result["reason"]}
            result.update(emulated)
            result.update(
                evidence=Evidence.EMULATED,
                onnxruntime=ort,
                reason=f"judged by the fp32 emulation of its {variant} tensors ({ort['reason']})"
                + (f": {emulated['reason']}" if emulated.get("reason") else ""),
            )
    if problem:
        result.update(
            status=Outcome.FAIL,
            label_problem=problem,
            reason="; ".join(r for r in (problem, result.get("reason", "")) if r),
        )
    for key, note in (notes or {}).items():
        result[key] = note
        if note.get("summary"):
            result["reason"] = "; ".join(r for r in (result.get("reason", ""), note["summary"]) if r)
    atomic.write_json(out, result)
    return {"status": result["status"]}


def validate_plan(
    out: str,
    *,
    plan: str,
    parity: str,
    golden_path: str,
    tolerance: dict,
    backend: str,
    key: str,
    version: str,
    cc: str,
    precision: str,
    opt_shapes: dict,
    host: dict,
    onnx_path: str | None = None,
    recorded: dict | None = None,
    trust=None,
) -> dict:
    """validation.json for one plan: the ONNX parity of its precision variant, its header, its execution; when the
    plan ran, its latency beside onnxruntime's on the same ONNX variant (speed-up). `trust` (signing.Trust): the plan
    is executed only if its envelope is signed by a trusted key (checked before deserializing)."""
    from ..backends.header import check_plan_header
    from ..backends.runtime import execute_plan

    with open(parity) as f:
        parity_result = json.load(f)
    inputs, expected = load_golden(golden_path)
    opt_inputs = random_inputs(opt_shapes, shape_key="opt", seed=1)
    checks = {
        "onnx_parity": parity_result,
        "plan_header": check_plan_header(plan, backend=backend, version=version, compute_capability=cc),
        "plan_execution": execute_plan(
            plan,
            backend=backend,
            compute_capability=cc,
            inputs=inputs,
            expected=expected,
            tolerance=tolerance,
            opt_inputs=opt_inputs,
            host=host,
            trust=trust,
        ),
    }
    result = {
        "plan": plan,
        "key": key,
        "compute_capability": cc,
        "precision": precision,
        "status": overall_status(checks),
        "evidence": evidence_of(checks),
        "evidence_text": EVIDENCE_TEXT[evidence_of(checks)],
        "checks": checks,
        **({"recorded": recorded} if recorded else {}),
    }
    performance = checks["plan_execution"].get("performance")
    if performance and onnx_path:
        from .baseline import onnxruntime_latency

        base = onnxruntime_latency(onnx_path, opt_inputs)
        result["baseline"] = base
        if base["status"] == "ran":
            result["speedup_p50"] = base["latency_ms"]["p50"] / performance["latency_ms"]["p50"]
    atomic.write_json(out, result)
    return {"status": result["status"]}


def overall_status(checks: dict) -> str:
    """fail if any check failed; pass only if every check passed; otherwise not-run (something could not run)."""
    statuses = [c["status"] for c in checks.values()]
    if Outcome.FAIL in statuses:
        return Outcome.FAIL
    return Outcome.PASS if all(s == Outcome.PASS for s in statuses) else Outcome.NOT_RUN
