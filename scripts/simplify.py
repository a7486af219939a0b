"""Graph simplification with a safety net: onnxslim or onnxsim, checked against the source in onnxruntime.

Both simplifiers have a history of silently changing models, so every result must pass onnx.checker, keep the
I/O names and dynamic dims, and reproduce the source's outputs at the min and opt shapes; otherwise the other
simplifier is tried, then the unsimplified model is copied. The facts record which path was taken and why.
"""
from __future__ import annotations

import shutil

from .atomic import atomic_path
from .errors import FactoryError

SIMPLIFIERS = ("onnxslim", "onnxsim")
# Simplification should be exact up to float reassociation (e.g. BatchNorm folded into Conv).
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4, "min_cosine": 0.99999}
CHECK_SHAPES = ("min", "opt")


def simplify_onnx(src, dst, *, model: str, input_specs: dict, simplifier: str = "onnxslim", seed: int = 0) -> dict:
    """Write a simplified copy of `src` to `dst` (atomically); returns facts about the path taken."""
    import onnx

    if simplifier not in (*SIMPLIFIERS, "none"):
        raise FactoryError(f"unknown simplifier '{simplifier}' (choose {', '.join(SIMPLIFIERS)} or none)",
                           model=model, key=f"models.{model}.simplifier")
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
    return {"simplifier_requested": simplifier, "simplifier_used": used, "attempts": attempts,
            "nodes_before": len(proto.graph.node), "nodes_after": nodes_after,
            "tool_version": _version(used) if used != "none" else None}


def load_checked(path, *, model: str):
    """Load an ONNX file and run onnx.checker on it; a broken file is the user's error, naming model and file."""
    import onnx

    try:
        onnx.checker.check_model(str(path))  # by path: works past the 2 GB protobuf limit
        return onnx.load(str(path))
    except Exception as e:
        raise FactoryError(f"not a valid ONNX model ({type(e).__name__}: {e})", model=model, path=str(path))


def reference_outputs(path, input_specs: dict, *, model: str, seed: int) -> dict:
    """{shape_key: (feeds, outputs)} of the source model at the min and opt shapes."""
    from .tensors import random_inputs, run_onnxruntime

    ref = {}
    for key in CHECK_SHAPES:
        feeds = random_inputs(input_specs, shape_key=key, seed=seed)
        try:
            ref[key] = (feeds, run_onnxruntime(path, feeds))
        except Exception as e:
            raise FactoryError(f"onnxruntime cannot run the model at the {key} shapes: {e}", model=model,
                               path=str(path))
    return ref


def check_equivalent(path, source_proto, reference: dict, input_specs: dict) -> tuple[str, str]:
    """("ok", ...), ("failed", why) for an invalid file or lost I/O, or ("mismatch", why) for other outputs."""
    import onnx

    from .tensors import compare_outputs, run_onnxruntime

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
        if cmp["status"] != "pass":
            return "mismatch", f"at the {key} shapes: {cmp['reason']}"
    return "ok", f"outputs match the source at the {' and '.join(reference)} shapes"


def io_signature(proto) -> dict:
    """{"inputs"|"outputs": {name: (elem_type, dims)}}, dims as int or None (dynamic); initializers are no inputs."""
    inits = {i.name for i in proto.graph.initializer}

    def sig(values):
        return {v.name: (v.type.tensor_type.elem_type,
                         [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim])
                for v in values if v.name not in inits}

    return {"inputs": sig(proto.graph.input), "outputs": sig(proto.graph.output)}


def io_problem(before, after, *, check_types: bool = True) -> str | None:
    """Why `after` does not keep the I/O of `before` (names, element types, rank, static and dynamic dims), or None."""
    a, b = io_signature(before), io_signature(after)
    for kind in ("inputs", "outputs"):
        if list(a[kind]) != list(b[kind]):
            return f"{kind} changed from {list(a[kind])} to {list(b[kind])}"
        for name, (etype, dims) in a[kind].items():
            etype2, dims2 = b[kind][name]
            if check_types and etype != etype2:
                return f"{kind[:-1]} '{name}' changed element type {etype} -> {etype2}"
            if dims and dims2 and len(dims) != len(dims2):
                return f"{kind[:-1]} '{name}' changed rank {len(dims)} -> {len(dims2)}"
            for i, (d, d2) in enumerate(zip(dims, dims2)):
                if d is None and d2 is not None:
                    return f"{kind[:-1]} '{name}' lost its dynamic dim {i} (now fixed to {d2})"
                if d is not None and d2 is not None and d != d2:
                    return f"{kind[:-1]} '{name}' dim {i} changed {d} -> {d2}"
    return None


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


def _version(tool: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(tool)
    except PackageNotFoundError:
        return None
