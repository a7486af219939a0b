"""ONNX files as every framework's export leaves them and every later stage reads them: the configured opset
(onnx's version converter), the config's input/output names and dynamic dims, onnx.checker; and the I/O signature
that simplify and precision must keep.
"""
from __future__ import annotations

from ..errors import FactoryError

MIN_OPSET = 13  # TensorRT's ONNX parser supports opset 9+, but older ops (e.g. Upsample, Slice-1) parse badly


def model_opset(proto) -> int:
    """The default-domain opset of an ONNX model."""
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def finish_onnx(path, *, model: str, input_specs: dict, outputs: list[str] | None, opset: int,
                upgrade_only: bool = False) -> dict:
    """Bring the file at `path` to the configured opset, check its I/O names and dynamic dims, save in place."""
    import onnx
    from onnx import version_converter

    proto = onnx.load(str(path))
    facts = {"opset_exported": model_opset(proto)}
    target = max(opset, MIN_OPSET) if upgrade_only else opset
    if facts["opset_exported"] != target and not (upgrade_only and facts["opset_exported"] > target):
        try:
            proto = version_converter.convert_version(proto, target)
        except Exception as e:
            raise FactoryError(f"onnx's version converter cannot take opset {facts['opset_exported']} to {target}: {e}",
                               model=model, key=f"models.{model}.opset")
        facts["opset_converted"] = {"from": facts["opset_exported"], "to": target}
    facts["opset"] = model_opset(proto)
    _check_io(proto, model=model, input_specs=input_specs, outputs=outputs)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        if "opset_converted" in facts:  # measured: 18 -> 17 "succeeds" but leaves ReduceMean-18 attributes
            raise FactoryError(f"onnx's version converter took opset {facts['opset_exported']} to {target} but the "
                               f"result is invalid ({e}); use opset {facts['opset_exported']} or newer",
                               model=model, key=f"models.{model}.opset")
        raise FactoryError(f"the exported ONNX fails onnx.checker: {e}", model=model)
    onnx.save(proto, str(path))
    facts["inputs"] = [i.name for i in proto.graph.input]
    facts["outputs"] = [o.name for o in proto.graph.output]
    facts["nodes"] = len(proto.graph.node)
    return facts


def _check_io(proto, *, model: str, input_specs: dict, outputs: list[str] | None) -> None:
    """Names must match the config; dims the config calls dynamic get its name (dim_param), others must match."""
    initializers = {i.name for i in proto.graph.initializer}
    graph_inputs = {i.name: i for i in proto.graph.input if i.name not in initializers}
    if set(graph_inputs) != set(input_specs):
        raise FactoryError(f"the ONNX inputs are {sorted(graph_inputs)}, the config names {sorted(input_specs)}",
                           model=model, key=f"models.{model}.inputs")
    renames = {}  # exporter's symbol (s77, batch_size) -> the config's name, applied graph-wide below
    for name, spec in input_specs.items():
        dims = graph_inputs[name].type.tensor_type.shape.dim
        if len(dims) != len(spec["shape"]):
            raise FactoryError(f"input '{name}' has rank {len(dims)} in the ONNX, {len(spec['shape'])} in the config",
                               model=model, key=f"models.{model}.inputs.{name}.shape")
        for d, want in zip(dims, spec["shape"]):
            if isinstance(want, str):
                if d.dim_param:
                    renames[d.dim_param] = want
                d.dim_param = want  # dynamic: name it as the config does
            elif d.HasField("dim_value") and d.dim_value != want:
                raise FactoryError(f"input '{name}' is {[x.dim_value or x.dim_param for x in dims]} in the ONNX, "
                                   f"config says {spec['shape']}", model=model, key=f"models.{model}.inputs.{name}.shape")
            elif d.HasField("dim_param"):  # dynamic in the file, fixed in the config: keep the file's (TRT profile pins it)
                pass
    for info in [*proto.graph.output, *proto.graph.value_info]:
        for d in info.type.tensor_type.shape.dim:
            if d.dim_param in renames:
                d.dim_param = renames[d.dim_param]
    graph_outputs = [o.name for o in proto.graph.output]
    if outputs is not None and graph_outputs != list(outputs):
        raise FactoryError(f"the ONNX outputs are {graph_outputs}, the config names {list(outputs)}",
                           model=model, key=f"models.{model}.outputs")


def load_checked(path, *, model: str):
    """Load an ONNX file and run onnx.checker on it; a broken file is the user's error, naming model and file."""
    import onnx

    try:
        onnx.checker.check_model(str(path))  # by path: works past the 2 GB protobuf limit
        return onnx.load(str(path))
    except Exception as e:
        raise FactoryError(f"not a valid ONNX model ({type(e).__name__}: {e})", model=model, path=str(path))


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


def check_against(path, source) -> str | None:
    """Why the ONNX file at `path` cannot replace `source` (checker, I/O names/types/dims), or None."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:
        return f"onnx.checker: {e}"
    return io_problem(source, onnx.load(str(path), load_external_data=False))


def tool_version(dist: str | None) -> str | None:
    """The installed version of a tool's distribution (recorded in facts), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist) if dist else None
    except PackageNotFoundError:
        return None
