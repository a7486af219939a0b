"""ONNX files as every framework's export leaves them and every later stage reads them: the configured opset
(onnx's version converter), the config's input/output names and dynamic dims, onnx.checker; and the I/O signature
that simplify and precision must keep.
"""

from __future__ import annotations

from ..errors import FactoryError

MIN_OPSET = 13  # TensorRT's ONNX parser supports opset 9+, but older ops (e.g. Upsample, Slice-1) parse badly


def model_opset(proto) -> int | None:
    """The default-domain opset of an ONNX model; None for a model of other domains only (ai.onnx.ml)."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def finish_onnx(
    path,
    *,
    model: str,
    input_specs: dict,
    outputs: list[str] | None,
    opset: int,
    upgrade_only: bool = False,
    cast_float64: bool = False,
) -> dict:
    """Bring the file at `path` to the configured opset, check its I/O names and dynamic dims, save in place.

    upgrade_only (a user's ONNX file): an older opset is upgraded, a newer one kept; when onnx's version converter
    cannot upgrade the file, its own opset is kept (recorded: TensorRT's parser takes opsets 9 and up, and the build
    says so if it does not). cast_float64: float64 tensors become float32 (TensorRT has none), recorded."""
    import onnx
    from onnx import version_converter

    proto = onnx.load(str(path))
    facts = {"opset_exported": model_opset(proto), "ir_version_source": proto.ir_version}
    normalised = normalise_ir(proto)
    if normalised:
        facts["ir_normalised"] = normalised
    target = max(opset, MIN_OPSET) if upgrade_only else opset
    legacy = normalise_legacy_ops(proto)
    if legacy:
        facts["legacy_ops_normalised"] = legacy
    if facts["opset_exported"] is None:  # no default domain (ai.onnx.ml only): nothing to convert; the parser judges
        pass
    elif facts["opset_exported"] != target and not (upgrade_only and facts["opset_exported"] > target):
        problem = None
        try:
            converted = version_converter.convert_version(proto, target)
            _raise_ir_to_opset(converted)
            onnx.checker.check_model(converted, full_check=True)
        except Exception as e:
            problem = first_line(e)
        if problem is None:
            proto = converted
            facts["opset_converted"] = {"from": facts["opset_exported"], "to": target}
        elif upgrade_only:  # the source as it is (its IR conventions normalised) is still a valid model
            facts["opset_kept"] = {
                "opset": facts["opset_exported"],
                "target": target,
                "reason": f"onnx's version converter cannot take it to {target}: {problem}"[:400],
            }
        else:  # measured: 18 -> 17 "succeeds" but leaves ReduceMean-18 attributes
            raise FactoryError(
                f"onnx's version converter cannot take opset {facts['opset_exported']} to {target} "
                f"({problem}); set models.{model}.opset to {max(facts['opset_exported'], MIN_OPSET)} "
                f"or newer (the schema allows {MIN_OPSET}-23)",
                model=model,
                key=f"models.{model}.opset",
            )
    if cast_float64:
        facts["float64_cast"] = cast_float64_to_float32(proto)
    facts["opset"] = model_opset(proto)
    facts["ir_version"] = proto.ir_version
    named = _check_io(proto, model=model, input_specs=input_specs, outputs=outputs)
    resolved = resolve_constant_dims(proto)
    for key in resolved.get("dims", {}):
        named.pop(key, None)
    if named:
        facts["dims_named"] = named
    if resolved:
        facts["dims_resolved"] = resolved
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise FactoryError(f"the ONNX fails onnx.checker: {first_line(e)}", model=model)
    onnx.save(proto, str(path))
    facts["inputs"] = [i.name for i in proto.graph.input]
    facts["outputs"] = [o.name for o in proto.graph.output]
    facts["nodes"] = len(proto.graph.node)
    return facts


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def normalise_ir(proto) -> dict:
    """Old IR conventions, brought to today's before anything converts or simplifies the model (onnx's version
    converter adds initializers without graph inputs, which IR 3 forbids; onnxslim fails on IR-3 files): IR < 4
    lists every initializer as a graph input, so those inputs are dropped and the IR version raised to what the
    opsets need (at least 4). Returns what changed ({} when nothing)."""
    if proto.ir_version >= 4:
        return {}
    inits = {i.name for i in proto.graph.initializer}
    kept = [i for i in proto.graph.input if i.name not in inits]
    dropped = len(proto.graph.input) - len(kept)
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    before = proto.ir_version
    proto.ir_version = 4
    _raise_ir_to_opset(proto)
    return {"ir_version": {"from": before, "to": proto.ir_version}, "initializer_inputs_dropped": dropped}


def normalise_legacy_ops(proto) -> dict:
    """Semantics of opsets before 7 that onnx's version converter does not carry over, rewritten in place so the
    upgraded model computes what the old one did. PRelu < 7 applies a 1-D slope [C] along the channel axis (1);
    from 7 on a slope broadcasts numpy-style from the last axis, so a [C] slope becomes [C, 1, ..., 1]. Returns
    {op: count} of what changed."""
    from onnx import numpy_helper

    opset = model_opset(proto)
    if opset is None or opset >= 7:
        return {}
    inits = {i.name: i for i in proto.graph.initializer}
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in [*proto.graph.input, *proto.graph.value_info]
        if v.type.tensor_type.HasField("shape")
    }
    changed: dict = {}
    for node in proto.graph.node:
        if node.op_type != "PRelu" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        slope, rank = inits[node.input[1]], ranks.get(node.input[0])
        if rank is None or rank <= 2 or len(slope.dims) != 1 or slope.dims[0] == 1:
            continue
        value = numpy_helper.to_array(slope)
        slope.CopyFrom(numpy_helper.from_array(value.reshape(value.shape[0], *([1] * (rank - 2))), slope.name))
        changed["PRelu"] = changed.get("PRelu", 0) + 1
    return changed


def _raise_ir_to_opset(proto) -> None:
    """The converter keeps the IR version; the new opset may need a newer one (opset 18 needs IR 8)."""
    from onnx import helper

    try:
        need = helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    except Exception:
        return
    proto.ir_version = max(proto.ir_version, need)


def cast_float64_to_float32(proto) -> dict:
    """Every float64 tensor of the model becomes float32, in place: graph inputs, outputs and value infos,
    initializers and constant attributes, and the ops that name a dtype (Cast `to`, RandomNormal `dtype`, ...);
    subgraphs included. Returns counts of what was changed (recorded in provenance)."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    DOUBLE, FLOAT = TensorProto.DOUBLE, TensorProto.FLOAT
    counts = {"values": 0, "tensors": 0, "dtype_attributes": 0}

    def tensor(t):
        if t.data_type == DOUBLE:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
            counts["tensors"] += 1

    def graph(g):
        for v in [*g.input, *g.output, *g.value_info]:
            if v.type.tensor_type.elem_type == DOUBLE:
                v.type.tensor_type.elem_type = FLOAT
                counts["values"] += 1
        for t in g.initializer:
            tensor(t)
        for node in g.node:
            for a in node.attribute:
                if a.HasField("t"):
                    tensor(a.t)
                for t in a.tensors:
                    tensor(t)
                if a.type == a.INT and a.name in ("to", "dtype", "output_dtype") and a.i == DOUBLE:
                    a.i = FLOAT
                    counts["dtype_attributes"] += 1
                if a.HasField("g"):
                    graph(a.g)
                for sub in a.graphs:
                    graph(sub)

    graph(proto.graph)
    return counts


def _check_io(proto, *, model: str, input_specs: dict, outputs: list[str] | None) -> dict:
    """Names must match the config; dims the config calls dynamic get its name (dim_param), others must match.
    Returns {"input[i]": name} of the unnamed or `?` dims given distinct names (TensorRT-RTX takes dims named
    alike as one dim: "Input dimensions with this name...")."""
    for kind, values in (("input", proto.graph.input), ("output", proto.graph.output)):
        for v in values:
            value_kind = v.type.WhichOneof("value") or "untyped_type"  # tensor_type, sequence_type (ZipMap's), ...
            if value_kind != "tensor_type":
                raise FactoryError(
                    f"{kind} '{v.name}' is a {value_kind.replace('_type', '')}, not a tensor: TensorRT "
                    "plans take and give tensors only (export the model without it, e.g. skl2onnx's "
                    "options={'zipmap': False})",
                    model=model,
                    key=f"models.{model}.{kind}s",
                )
    initializers = {i.name for i in proto.graph.initializer}
    graph_inputs = {i.name: i for i in proto.graph.input if i.name not in initializers}
    if set(graph_inputs) != set(input_specs):
        raise FactoryError(
            f"the ONNX inputs are {sorted(graph_inputs)}, the config names {sorted(input_specs)}",
            model=model,
            key=f"models.{model}.inputs",
        )
    named, inner = {}, 0
    for infos, listed in ((proto.graph.input, True), (proto.graph.output, True), (proto.graph.value_info, False)):
        for info in infos:
            for i, d in enumerate(info.type.tensor_type.shape.dim):
                if d.HasField("dim_value") and d.dim_value <= 0:  # Paddle2ONNX's -1: dynamic, not a size
                    d.dim_param = f"{info.name}_dim{i}"  # (setting it clears dim_value)
                    if listed:
                        named[f"{info.name}[{i}]"] = d.dim_param
                    else:  # counted, not listed: PP-OCR's cls has ~200 (the record is read by people)
                        inner += 1
    if inner:
        named["value_info dims"] = inner
    renames = {}  # exporter's symbol (s77, batch_size) -> the config's name, applied graph-wide below
    for name, spec in input_specs.items():
        dims = graph_inputs[name].type.tensor_type.shape.dim
        if len(dims) != len(spec["shape"]):
            raise FactoryError(
                f"input '{name}' has rank {len(dims)} in the ONNX, {len(spec['shape'])} in the config",
                model=model,
                key=f"models.{model}.inputs.{name}.shape",
            )
        for d, want in zip(dims, spec["shape"]):
            if isinstance(want, str):
                if d.dim_param:
                    renames[d.dim_param] = want
                d.dim_param = want  # dynamic: name it as the config does
            elif d.HasField("dim_value") and d.dim_value != want:
                raise FactoryError(
                    f"input '{name}' is {[x.dim_value or x.dim_param for x in dims]} in the ONNX, "
                    f"config says {spec['shape']}",
                    model=model,
                    key=f"models.{model}.inputs.{name}.shape",
                )
            elif d.HasField(
                "dim_param"
            ):  # dynamic in the file, fixed in the config: keep the file's (TRT profile pins it)
                pass
    for info in [*proto.graph.output, *proto.graph.value_info]:
        for d in info.type.tensor_type.shape.dim:
            if d.dim_param in renames:
                d.dim_param = renames[d.dim_param]
    for info in [*(graph_inputs[n] for n in input_specs), *proto.graph.output]:
        for i, d in enumerate(info.type.tensor_type.shape.dim):
            if d.HasField("dim_param") and d.dim_param.strip() in ("", "?"):
                d.dim_param = named[f"{info.name}[{i}]"] = f"{info.name}_dim{i}"
            elif not d.HasField("dim_param") and not d.HasField("dim_value") and info.name not in input_specs:
                d.dim_param = named[f"{info.name}[{i}]"] = f"{info.name}_dim{i}"  # an unknown output dim
    graph_outputs = [o.name for o in proto.graph.output]
    if outputs is not None and graph_outputs != list(outputs):
        raise FactoryError(
            f"the ONNX outputs are {graph_outputs}, the config names {list(outputs)}",
            model=model,
            key=f"models.{model}.outputs",
        )
    return named


def resolve_constant_dims(proto) -> dict:
    """Output dims the exporter left symbolic that are really constants (e.g. a Reshape to [batch, -1] of a
    [batch, 4, 8] input is [batch, 32]) get their value, in place: a later stage that fixes them (ModelOpt's int8/fp8
    export does) would otherwise "lose a dynamic dim". onnxruntime's symbolic shape inference (sympy) is used because
    onnx's own data propagation cannot divide symbols. Returns {"dims": {"out[i]": value}} or {"error": why} when
    inference fails (the dims stay symbolic), {} when nothing is symbolic or nothing resolves."""
    import onnx

    symbolic = {
        (o.name, i)
        for o in proto.graph.output
        for i, d in enumerate(o.type.tensor_type.shape.dim)
        if not d.HasField("dim_value")
    }
    if not symbolic:
        return {}
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for o in copy.graph.output:  # the exporter's symbols would be kept as they are: infer the outputs afresh
        for d in o.type.tensor_type.shape.dim:
            d.Clear()
    del copy.graph.value_info[:]
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        # auto_merge off: merging symbols could equate a dynamic dim with a constant the model never fixes
        inferred = SymbolicShapeInference.infer_shapes(copy, auto_merge=False)
    except Exception as e:
        return {"error": f"symbolic shape inference failed: {type(e).__name__}: {first_line(e)}"[:300]}
    if inferred is None:
        return {}
    values = {o.name: o.type.tensor_type.shape.dim for o in inferred.graph.output}
    dims = {}
    for o in proto.graph.output:
        for i, d in enumerate(o.type.tensor_type.shape.dim):
            got = values.get(o.name)
            if (o.name, i) in symbolic and got is not None and i < len(got) and got[i].HasField("dim_value"):
                d.dim_value = dims[f"{o.name}[{i}]"] = got[i].dim_value
    return {"dims": dims} if dims else {}


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
        return {
            v.name: (
                v.type.tensor_type.elem_type,
                [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim],
            )
            for v in values
            if v.name not in inits
        }

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
