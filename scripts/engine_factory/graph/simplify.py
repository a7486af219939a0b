"""Graph simplification with a safety net: onnxslim or onnxsim, checked against the source in onnxruntime.

Both simplifiers have a history of silently changing models, so every result must pass onnx.checker, keep the
I/O names and dynamic dims, and reproduce the source's outputs at the min and opt shapes; otherwise the other
simplifier is tried, then the unsimplified model is copied. The facts record which path was taken and why.
"""

from __future__ import annotations

import shutil

from ..atomic import atomic_path
from ..errors import FactoryError
from ..outcomes import Outcome
from .onnx_io import io_problem, load_checked, tool_version

SIMPLIFIERS = ("onnxslim", "onnxsim")
# Simplification should be exact up to float reassociation (e.g. BatchNorm folded into Conv).
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4, "min_cosine": 0.99999}
CHECK_SHAPES = ("min", "opt")


def simplify_onnx(src, dst, *, model: str, input_specs: dict, simplifier: str = "onnxslim", seed: int = 0) -> dict:
    """Write a simplified copy of `src` to `dst` (atomically); returns facts about the path taken."""
    import onnx

    if simplifier not in (*SIMPLIFIERS, "none"):
        raise FactoryError(
            f"unknown simplifier '{simplifier}' (choose {', '.join(SIMPLIFIERS)} or none)",
            model=model,
            key=f"models.{model}.simplifier",
        )
    proto = load_checked(src, model=model)
    order = [] if simplifier == "none" else [simplifier, *(s for s in SIMPLIFIERS if s != simplifier)]
    attempts, used = [], "none"
    try:
        reference = reference_outputs(src, input_specs, model=model, seed=seed)
    except FactoryError as e:
        # e.g. TensorRT plugin ops onnxruntime does not know: no simplification can be checked, so none is done
        attempts.append({"tool": "onnxruntime", "status": "failed", "reason": f"no reference outputs: {e}"[:500]})
        order = []
    with atomic_path(dst) as tmp:
        for tool in order:
            try:
                onnx.save(_run_simplifier(tool, proto), str(tmp))
            except Exception as e:  # a simplifier crash is never fatal: fall back
                attempts.append({"tool": tool, "status": "failed", "reason": f"{type(e).__name__}: {e}"[:500]})
                continue
            status, reason = check_equivalent(tmp, proto, reference, input_specs)
            attempts.append({"tool": tool, "status": status, "reason": reason})
            if status == "ok":
                used = tool
                break
        if used == "none":
            shutil.copyfile(src, tmp)
        nodes_after = len(onnx.load(str(tmp), load_external_data=False).graph.node)
    return {
        "simplifier_requested": simplifier,
        "simplifier_used": used,
        "attempts": attempts,
        "nodes_before": len(proto.graph.node),
        "nodes_after": nodes_after,
        "tool_version": tool_version(used) if used != "none" else None,
    }


def reference_outputs(path, input_specs: dict, *, model: str, seed: int) -> dict:
    """{shape_key: (feeds, outputs)} of the source model at the min and opt shapes."""
    from ..tensors import random_inputs, run_onnxruntime

    ref = {}
    for key in CHECK_SHAPES:
        feeds = random_inputs(input_specs, shape_key=key, seed=seed)
        try:
            ref[key] = (feeds, run_onnxruntime(path, feeds))
        except Exception as e:
            raise FactoryError(
                f"onnxruntime cannot run the model at the {key} shapes: {e}", model=model, path=str(path)
            )
    return ref


def check_equivalent(path, source_proto, reference: dict, input_specs: dict) -> tuple[str, str]:
    """("ok", ...), ("failed", why) for an invalid file or lost I/O, or ("mismatch", why) for other outputs."""
    import onnx

    from ..tensors import compare_outputs, run_onnxruntime

    try:
        onnx.checker.check_model(str(path))
        problem = io_problem(source_proto, onnx.load(str(path), load_external_data=False))
    except Exception as e:
        return "failed", f"onnx.checker: {e}"[:500]
    if problem:
        return "failed", problem
    for key, (feeds, expected) in reference.items():
        try:
            actual = run_onnxruntime(path, feeds)
        except Exception as e:
            return "failed", f"onnxruntime at the {key} shapes: {e}"[:500]
        cmp = compare_outputs(actual, expected, TOLERANCE)
        if cmp["status"] != Outcome.PASS:
            return "mismatch", f"at the {key} shapes: {cmp['reason']}"
    return "ok", f"outputs match the source at the {' and '.join(reference)} shapes"


def _run_simplifier(tool: str, proto):
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)  # both tools may mutate their input
    if tool == "onnxslim":
        import onnxslim

        return onnxslim.slim(copy)
    import onnxsim

    simplified, ok = onnxsim.simplify(copy)  # its own check (check_n) is off: we compare at min and opt instead
    if not ok:
        raise RuntimeError("onnxsim reported that its result could not be validated")
    return simplified
