"""What `check` reads of a user's ONNX file before any job runs: its graph inputs and outputs against the config's
names, ranks, fixed dims and profile shapes, and element types. Every disagreement at once, each with its config key
and, for a misspelt name, the name the file has (without this they surface only in the import or build job)."""

from __future__ import annotations

import difflib

from ..tensors import batch_axis

ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
              11: "float64", 16: "bfloat16"}  # fmt: skip


def _spelt(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def interface_problems(proto, *, model: str, input_specs: dict, outputs: list[str] | None) -> list[tuple[str, str]]:
    """[(config key, problem)] of the file's graph against the config; [] when they agree. `proto` is loaded without
    its external data (names, types and shapes only)."""
    problems = []
    initializers = {i.name for i in proto.graph.initializer}
    graph_inputs = {i.name: i for i in proto.graph.input if i.name not in initializers}
    graph_outputs = [o.name for o in proto.graph.output]
    key = f"models.{model}"
    for name in input_specs:
        if name not in graph_inputs:
            problems.append(
                (
                    f"{key}.inputs",
                    f"input '{name}' is not in the ONNX file{_spelt(name, graph_inputs)}; "
                    f"its inputs are {sorted(graph_inputs)}",
                )
            )
    for name in graph_inputs:
        if name not in input_specs and not _spelt(name, [n for n in input_specs if n not in graph_inputs]):
            problems.append((f"{key}.inputs", f"the ONNX input '{name}' is not in the config (every input needs one)"))
    for name, spec in input_specs.items():
        if name not in graph_inputs:
            continue
        t = graph_inputs[name].type.tensor_type
        want = spec.get("dtype", "float32")
        have = ELEM_TYPES.get(t.elem_type)
        if have and have != want and not (have == "float64" and want == "float32"):  # cast_float64 handles that
            problems.append((f"{key}.inputs.{name}.dtype", f"input '{name}' is {have} in the ONNX, config says {want}"))
        if not t.HasField("shape"):
            continue
        # a dim of -1 (Paddle2ONNX's way to say dynamic) is no size
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
        shown = [v if v is not None else (d.dim_param or "?") for v, d in zip(dims, t.shape.dim, strict=True)]
        if len(dims) != len(spec["shape"]):
            problems.append(
                (
                    f"{key}.inputs.{name}.shape",
                    f"input '{name}' has rank {len(dims)} in the ONNX ({shown}), {len(spec['shape'])} in the config "
                    f"({spec['shape']})",
                )
            )
            continue
        for axis, (have_dim, want_dim) in enumerate(zip(dims, spec["shape"])):
            if have_dim is None:
                continue  # dynamic in the file: the config's value or profile decides
            if isinstance(want_dim, int) and want_dim != have_dim:
                problems.append(
                    (
                        f"{key}.inputs.{name}.shape",
                        f"input '{name}' axis {axis} is {have_dim} in the ONNX ({shown}), config says {want_dim}",
                    )
                )
            elif isinstance(want_dim, str):
                off = {s: spec[s][axis] for s in ("min", "opt", "max") if s in spec and spec[s][axis] != have_dim}
                if off:
                    problems.append(
                        (
                            f"{key}.inputs.{name}",
                            f"input '{name}' axis {axis} ('{want_dim}' in the config) is fixed at {have_dim} in the "
                            f"ONNX ({shown}), but the profile asks " + ", ".join(f"{s} {v}" for s, v in off.items()),
                        )
                    )
    problems += _batch_axis_problems(graph_inputs, input_specs, key)
    if outputs is not None:
        for name in outputs:
            if name not in graph_outputs:
                problems.append(
                    (
                        f"{key}.outputs",
                        f"output '{name}' is not in the ONNX file{_spelt(name, graph_outputs)}; "
                        f"its outputs are {graph_outputs}",
                    )
                )
        if set(outputs) <= set(graph_outputs) and list(outputs) != graph_outputs:
            problems.append(
                (f"{key}.outputs", f"the ONNX outputs are {graph_outputs} in this order, the config names {outputs}")
            )
    return problems


def _batch_axis_problems(graph_inputs: dict, input_specs: dict, key: str) -> list[tuple[str, str]]:
    """Each input's declared batch axis (`batch_axis`, default 0; none for a scalar) against the file: the batch
    dims are the ONNX dim names at the declared batch axes; an input that has one of them on another axis (a state
    `[2, batch, 16]` declared with its samples on axis 0) would be calibrated sliced on the wrong axis."""

    def names(name):
        t = graph_inputs[name].type.tensor_type
        if not t.HasField("shape"):
            return None
        return [d.dim_param if d.HasField("dim_param") and not d.HasField("dim_value") else None for d in t.shape.dim]

    dims = {n: names(n) for n in input_specs if n in graph_inputs}
    dims = {n: d for n, d in dims.items() if d is not None and len(d) == len(input_specs[n]["shape"])}
    batch_dims = {}
    for name, d in dims.items():
        axis = batch_axis(input_specs[name])
        if axis is not None and axis < len(d) and d[axis]:
            batch_dims.setdefault(d[axis], name)
    problems = []
    for name, d in dims.items():
        axis = batch_axis(input_specs[name])
        for j, dim in enumerate(d):
            owner = batch_dims.get(dim) if dim and j != axis else None
            if owner and owner != name and (axis is None or d[axis] != dim):
                said = "no batch axis (batch_axis: null)" if axis is None else f"its samples on axis {axis}"
                problems.append(
                    (
                        f"{key}.inputs.{name}.batch_axis",
                        f"input '{name}' has the batch dim '{dim}' (input '{owner}''s batch axis) on axis {j} in the "
                        f"ONNX ({_shown(graph_inputs[name])}), but the config gives it {said}: set `batch_axis: {j}`",
                    )
                )
                break
    return problems


def _shown(value_info) -> list:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def read_interface(path):
    """The file's graph without its weights' external data: enough for `interface_problems`, fast on large models."""
    import onnx

    return onnx.load(str(path), load_external_data=False)
