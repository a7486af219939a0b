"""A generated zoo's results for the report's scale test and benchmark: the files the stages write (parity and
validation JSON, provenance sidecars, in-toto statements, plans, logs, failure records) with the same shapes, for
any number of models, without building anything. The report only reads files, so this is what it sees at scale.

Call with the working directory set to the zoo's (paths are relative, as in a workflow run).
"""

from __future__ import annotations

import hashlib
import json
import os

from engine_factory import paths

KEY = "rtx-1.7.1.116"
CCS = ["80", "86", "89", "120"]
PRECISIONS = ["fp32", "fp16", "bf16", "int8", "fp8"]
TOLERANCES = {
    "fp32": {"atol": 1e-4, "rtol": 1e-3, "min_cosine": 0.9999},
    "fp16": {"atol": 1e-2, "rtol": 1e-2, "min_cosine": 0.999},
    "bf16": {"atol": 5e-2, "rtol": 5e-2, "min_cosine": 0.995},
    "int8": {"min_cosine": 0.98, "min_top1_agreement": 0.9},
    "fp8": {"min_cosine": 0.97, "min_top1_agreement": 0.85},
}
NO_GPU = "no CUDA GPU visible: NVML: driver not loaded; cuda-python: no CUDA driver"
SKIP_FP8 = "fp8 needs compute capability 8.9 or newer (TensorRT-RTX)"
BUILD_ERROR = (
    "tensorrt_rtx 1.7.1.116 failed to build a plan for sm{cc}:\n  [convTranspose] Could not infer output "
    "types for operation: ConvTranspose\n  second line of the builder's error\n  third line"
)
WARNING = (
    "Detected layernorm nodes in FP16. Running layernorm after self-attention with FP16 Reduce or Pow may "
    "cause overflow."
)


def _write(path: str, data) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        if isinstance(data, (dict, list)):
            json.dump(data, f)
        else:
            f.write(data)


def _parity(model: str, variant: str, i: int) -> dict:
    precision = variant if variant in TOLERANCES else "fp32"
    loss = {"fp32": 1e-8, "fp16": 2e-5, "bf16": 4e-4, "int8": 3e-3, "fp8": 1e-2}[precision] * (1 + i % 7)
    failing = precision == "int8" and i % 17 == 5  # a few int8 variants out of tolerance
    cosine = 1 - (0.05 if failing else loss)
    return {
        "variant": variant,
        "onnx": paths.variant_onnx(model, variant),
        "status": "fail" if failing else "pass",
        "reason": f"logits: cosine {cosine:.6f} < 0.98" if failing else "all outputs within tolerance",
        "tolerance": TOLERANCES[precision],
        "outputs": {
            "logits": {
                "max_abs": loss * 30,
                "max_rel": loss * 90,
                "cosine": cosine,
                "finite": True,
                **({"top1_agreement": 0.8 if failing else 1.0} if precision in ("int8", "fp8") else {}),
            }
        },
    }


def generate(n_models: int = 120, ccs=CCS, precisions=PRECISIONS, fail_every: int = 10) -> dict:
    """Write every model's results; returns the report's settings (as the factory's `report_settings`) and what the
    report must count: {"settings": {...}, "expected": {outcome: n}}."""
    jobs, skipped, failed, models = [], [], [], {}
    expected = {"pass": 0, "fail": 0, "not-run": 0, "skipped": 0, "failed": 0, "missing": 0}
    for i in range(n_models):
        model = f"net{i:03d}"
        models[model] = {
            "framework": ["pytorch", "onnx", "tensorflow"][i % 3],
            "precisions": list(precisions),
            "failed": [],
        }
        _write(
            paths.provenance(paths.onnx(model)),
            {"facts": {"opset": 18, **({"layout": {"x": "NCHW"}, "inputs_as_nchw": ["x"]} if i % 3 == 2 else {})}},
        )
        _write(
            paths.provenance(paths.sim_onnx(model)),
            {
                "facts": {
                    "simplifier_used": "onnxslim",
                    "attempts": [{"tool": "onnxslim", "status": "ok", "reason": "outputs unchanged"}],
                }
            },
        )
        for variant in ["export", "sim", *precisions]:
            _write(paths.parity(model, variant), _parity(model, variant, i))
        for p in precisions:
            if p != "fp32":
                _write(
                    paths.provenance(paths.precision_onnx(model, p)),
                    {"facts": {"tool": "modelopt", "attempts": [{"tool": "modelopt", "status": "ok"}], "warnings": []}},
                )
        for cc in ccs:
            for p in precisions:
                job = {"model": model, "key": KEY, "cc": cc, "precision": p}
                if p == "fp8" and int(cc) < 89:
                    skipped.append({**job, "reason": SKIP_FP8})
                    expected["skipped"] += 1
                    continue
                if p == "bf16" and i % fail_every == 3:  # a build the backend refuses: recorded as a failure
                    log = paths.job_log("build", {**job, "targets": f"sm{cc}"})
                    record = paths.failure("build", {**job, "targets": f"sm{cc}"})
                    error = BUILD_ERROR.format(cc=cc)
                    _write(log, f"[build {model}] ...\nerror: {error}\n")
                    _write(record, {"rule": "build", "wildcards": job, "error": error, "log": log})
                    failed.append(
                        {
                            **job,
                            "stage": "build",
                            "error": error,
                            "reason": error.splitlines()[0],
                            "log": log,
                            "record": record,
                        }
                    )
                    expected["failed"] += 1
                    continue
                jobs.append(
                    {
                        **job,
                        "logs": {
                            stage: paths.job_log(stage, {**job, "targets": f"sm{cc}"})
                            for stage in ("build", "validate")
                        },
                    }
                )
                expected[_plan(job, i)] += 1
    settings = {"jobs": jobs, "skipped": skipped, "failed": failed, "backend": KEY, "models": models}
    return {"settings": settings, "expected": expected}


def rtx_plan_bytes(cc: str) -> bytes:
    """The smallest file whose header reads as an RTX 1.7.1.116 plan for `cc` (backends/rtx.py's fields)."""
    from engine_factory.backends import rtx

    data = bytearray(b"vtrt" + bytes(60))
    data[rtx.SIZE_OFFSET : rtx.SIZE_OFFSET + 8] = len(data).to_bytes(8, "little")
    data[24:28] = bytes([1, 7, 1, 116])
    data[rtx.TARGETS_OFFSET] = rtx.TARGETS.get(cc, (None, 0))[1]
    return bytes(data)


def _plan(job: dict, i: int) -> None:
    plan, cc, p = paths.plan(**job), job["cc"], job["precision"]
    size = (200_000 + 10_000 * i) // (2 if p in ("fp16", "bf16") else 4 if p in ("int8", "fp8") else 1)
    data = rtx_plan_bytes(cc)
    os.makedirs(os.path.dirname(plan), exist_ok=True)
    with open(plan, "wb") as f:
        f.write(data)
    warnings = [WARNING] if p == "fp16" and i % 4 == 1 else []
    _write(
        paths.provenance(plan),
        {
            # what the report checks a plan against (a plan not what its record says is damaged)
            "artifact": {"path": plan, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
            "stage": "build",
            "facts": {"plan_bytes": size, "build_seconds": 0.5 + i % 5, "warnings": warnings, "targets": [cc]},
        },
    )
    _write(paths.intoto(plan), {"_type": "https://in-toto.io/Statement/v1"})
    for stage in ("build", "validate"):  # the job of one target, as a full-TensorRT zoo names it
        _write(paths.job_log(stage, {**job, "targets": f"sm{cc}"}), f"{stage} done\n")
    parity = _parity(job["model"], p, i)
    checks = {
        "onnx_parity": parity,
        "plan_header": {"status": "pass", "reason": "magic, version and targets match the key"},
        "plan_execution": {"status": "not-run", "reason": NO_GPU},
    }
    extra = {}
    if i == 0 and cc == "89":  # as if a GPU of 8.9 had run this model's plans: numbers, latency, onnxruntime's
        latency = {"fp32": 0.4, "fp16": 0.25, "bf16": 0.26, "int8": 0.18, "fp8": 0.17}[p]
        checks["plan_execution"] = {
            "status": "pass",
            "reason": "all outputs within tolerance",
            "comparison": {"status": "pass", "outputs": {"logits": {"max_abs": 1e-3, "cosine": 0.99999}}},
            "performance": {
                "latency_ms": {"p50": latency, "p90": latency * 1.1, "mean": latency},
                "throughput_per_s": 4 * 1000.0 / latency,
                "batch": 4,
                "iterations": 100,
            },
        }
        extra = {
            "baseline": {
                "status": "ran",
                "runtime": "onnxruntime 1.32.0",
                "provider": "CPUExecutionProvider",
                "latency_ms": {"p50": 2.0, "p90": 2.2, "mean": 2.0},
            },
            "speedup_p50": 2.0 / latency,
        }
    statuses = [c["status"] for c in checks.values()]
    status = "fail" if "fail" in statuses else "pass" if set(statuses) == {"pass"} else "not-run"
    _write(
        paths.validation(**job),
        {
            "plan": plan,
            "key": job["key"],
            "compute_capability": cc,
            "precision": p,
            "status": status,
            "checks": checks,
            **extra,
        },
    )
    return status
