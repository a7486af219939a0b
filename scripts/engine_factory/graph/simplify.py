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
    proto, control_flow = fold_control_flow(proto, model=model)
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
        if used == "none" and control_flow.get("control_flow_folded"):
            onnx.save(proto, str(tmp))
            status, reason = check_equivalent(tmp, proto, reference, input_specs) if reference else ("ok", "")
            if status != "ok":
                raise FactoryError(f"folding the model's constant If nodes changed it: {reason}", model=model)
        elif used == "none":
            shutil.copyfile(src, tmp)
        nodes_after = len(onnx.load(str(tmp), load_external_data=False).graph.node)
    return {
        "simplifier_requested": simplifier,
        "simplifier_used": used,
        "attempts": attempts,
        "nodes_before": len(proto.graph.node),
        "nodes_after": nodes_after,
        "tool_version": tool_version(used) if used != "none" else None,
        **control_flow,
    }


def _control_flow(graph) -> list:
    return [n for n in graph.node if n.op_type in ("If", "Loop", "Scan")]


def fold_control_flow(proto, *, model: str):
    """If nodes whose condition the model's static dims decide (e.g. `x.shape[1] == 3` with channels fixed by the
    config) are replaced by the branch they always take: onnx-graphsurgeon folds shapes and constants, then inlines
    such subgraphs (TensorRT-RTX refuses an If whose branches differ in rank). What stays is data-dependent: an If
    whose branches differ in rank is refused with the node's name and what to do; others are recorded as kept
    (TensorRT builds them as conditionals). Returns (proto, facts)."""
    import onnx
    import onnx_graphsurgeon as gs

    before = _control_flow(proto.graph)
    if not before:
        return proto, {}
    facts: dict = {}
    try:
        graph = gs.import_onnx(proto)
        graph.fold_constants(fold_shapes=True, flatten_subgraphs=True).cleanup().toposort()
        folded = gs.export_onnx(graph)
        folded.ir_version = proto.ir_version
        onnx.checker.check_model(folded)
    except Exception as e:  # folding is an improvement: without it the model goes on as it was
        folded, facts["control_flow_fold_error"] = proto, f"{type(e).__name__}: {e}"[:300]
    after = _control_flow(folded.graph)
    counts: dict = {}
    for n in before:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    for n in after:
        counts[n.op_type] -= 1
    if any(counts.values()):
        facts["control_flow_folded"] = {op: c for op, c in counts.items() if c}
    for n in after:
        if n.op_type != "If":
            continue
        ranks = {
            a.name: [len(o.type.tensor_type.shape.dim) for o in a.g.output if o.type.tensor_type.HasField("shape")]
            for a in n.attribute
            if a.name in ("then_branch", "else_branch")
        }
        if len({tuple(r) for r in ranks.values()}) > 1:
            raise FactoryError(
                f"the model has data-dependent control flow: If node '{n.name or n.output[0]}' decides on "
                f"'{n.input[0]}', which the configured input shapes do not fix, and its branches return tensors of "
                f"different rank ({ranks['then_branch']} vs {ranks['else_branch']}), which TensorRT cannot build; "
                "export the model with the branch taken at the configured shapes (trace it, or torch.cond with "
                "branches of equal rank), or make both branches return the same rank",
                model=model,
            )
    kept = [n.name or n.output[0] for n in after]
    if kept:
        facts["control_flow_kept"] = kept
    return folded, facts


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
