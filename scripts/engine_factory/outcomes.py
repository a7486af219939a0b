"""The outcome words every result carries: one string enum on the ground floor.

A `StrEnum` member *is* its value: `json.dumps`, f-strings, `str()` and `==` against the literal all give "pass",
"fail", "not-run" or "skipped", so every JSON and every comparison stays byte-identical to the plain strings.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOT_RUN = "not-run"  # could not run here (no GPU, no backend); carries "not-run: <reason>", never a pass
    SKIPPED = "skipped"  # not asked for, or its input failed upstream


# One meaning of "stale" for status (the plans this host and config produce), verify (every file, by the inputs its
# record names: plans of keys no longer built too) and the nightly's summary.
STALE_MEANS = "made from an input, setting, tool or code that has changed since"


class Evidence(enum.StrEnum):
    """What a target's result established, beside its Outcome: a `not-run` plan whose ONNX variant passed its parity
    is checked; one where nothing ran (bf16 without a CPU kernel and no emulation) is not, and must not look alike."""

    EXECUTED = "executed"  # the plan ran on a GPU of its compute capability and matched the golden outputs
    ONNX = "onnx"  # its ONNX variant matched the golden outputs in onnxruntime; the plan did not run here
    EMULATED = "emulated"  # onnxruntime cannot run the variant: its fp32 emulation of the low-precision tensors did
    NONE = "none"  # no numeric check at all
    FAILED = "failed"  # a check failed


EVIDENCE_TEXT = {
    Evidence.EXECUTED: "verified: plan executed on its GPU",
    Evidence.ONNX: "onnx-verified, execution not run here",
    Evidence.EMULATED: "emulation-verified (onnxruntime cannot run it), execution not run here",
    Evidence.NONE: "not verified",
    Evidence.FAILED: "failed",
}


def evidence_of(checks: dict) -> Evidence:
    """The evidence of a plan's validation checks (`onnx_parity`, `plan_execution`, ...; see validation/validate.py).
    An onnx_parity judged by the emulation carries `evidence: emulated`."""
    statuses = {name: (c or {}).get("status") for name, c in checks.items()}
    if Outcome.FAIL in statuses.values():
        return Evidence.FAILED
    if statuses.get("plan_execution") == Outcome.PASS:
        return Evidence.EXECUTED
    parity = checks.get("onnx_parity") or {}
    if parity.get("status") == Outcome.PASS:
        return Evidence.EMULATED if parity.get("evidence") == Evidence.EMULATED else Evidence.ONNX
    return Evidence.NONE
