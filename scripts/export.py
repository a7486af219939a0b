"""export: a frozen artifact becomes `model.onnx` with the config's input/output names, dynamic axes and opset.

- `.pt2` (torch.export) -> torch.onnx.export(dynamo=True), asked for opset 18 or newer: below 18 it writes
  invalid models (measured: asked for 17, it declares 17 but emits ReduceMean with opset 18's attributes). Lower
  opsets are reached with onnx's version converter afterwards, or refused with a clear error.
- `.pt` (TorchScript) -> the legacy exporter (dynamo=False), which still accepts ScriptModules.
- `framework: onnx` enters here: the user's ONNX is checked, and an older opset is upgraded with onnx's
  version converter (recorded, and shown in the report).
"""
from __future__ import annotations

from . import atomic
from .errors import FactoryError

MIN_OPSET = 13  # TensorRT's ONNX parser supports opset 9+, but older ops (e.g. Upsample, Slice-1) parse badly


def export_pt2(frozen: str, out: str, *, model: str, input_specs: dict, outputs: list[str], opset: int) -> dict:
    import torch

    ep = torch.export.load(frozen)
    with atomic.atomic_path(out) as tmp:
        try:
            torch.onnx.export(ep, (), str(tmp), dynamo=True, external_data=False, opset_version=max(opset, 18),
                              input_names=list(input_specs), output_names=list(outputs), verbose=False)
        except Exception as e:
            raise FactoryError(f"torch.onnx.export (dynamo) failed: {e}", model=model, path=frozen)
        facts = finish_onnx(tmp, model=model, input_specs=input_specs, outputs=outputs, opset=opset)
    return {"exporter": "torch.onnx.export(dynamo=True)", **facts}


def export_torchscript(frozen: str, out: str, *, model: str, input_specs: dict, outputs: list[str],
                       opset: int) -> dict:
    import torch

    from .freeze import example_args, load_torchscript

    scripted = load_torchscript(frozen, model=model)
    axes = {name: {i: d for i, d in enumerate(spec["shape"]) if isinstance(d, str)} for name, spec in input_specs.items()}
    with atomic.atomic_path(out) as tmp:
        try:
            torch.onnx.export(scripted, example_args(input_specs), str(tmp), dynamo=False, opset_version=opset,
                              input_names=list(input_specs), output_names=list(outputs), dynamic_axes=axes)
        except Exception as e:
            raise FactoryError(f"torch.onnx.export (TorchScript) failed: {e}", model=model, path=frozen)
        facts = finish_onnx(tmp, model=model, input_specs=input_specs, outputs=outputs, opset=opset)
    return {"exporter": "torch.onnx.export(dynamo=False)", **facts}


def import_onnx(src: str, out: str, *, model: str, input_specs: dict, outputs: list[str] | None,
                opset: int) -> dict:
    """The user's ONNX file, checked; upgraded to the configured opset when it is older."""
    import onnx

    try:
        proto = onnx.load(src)
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise FactoryError(f"not a valid ONNX model: {e}", model=model, path=src)
    with atomic.atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        facts = finish_onnx(tmp, model=model, input_specs=input_specs, outputs=outputs, opset=opset,
                            upgrade_only=True)
    return {"exporter": "import", **facts}


def model_opset(proto) -> int:
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
