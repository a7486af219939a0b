"""ONNX files as sources (`framework: onnx`): nothing to freeze; the user's file enters the chain at export, where it
is checked, its old IR conventions normalised and an older opset upgraded with onnx's version converter (kept
when the converter cannot; recorded, and shown in the report); the reference outputs come from onnxruntime on the
source, or on the imported model where onnxruntime has no kernel for the source's old opset (recorded).
"""

from __future__ import annotations

import re

from .. import atomic
from ..errors import FactoryError

TITLE = "ONNX"
FREEZE_RULE = None
SOURCE_KEYS = ("onnx",)
SINGLE_FILE_SOURCE = True
MEM_MB = {"freeze": 2000, "export": 3000, "golden": 2000}
CONFIG_KEYS = ()
INPUT_KEYS: dict = {}


def check_config(name: str, m: dict, cfg: dict, exists, settings: dict) -> None:
    """Nothing beyond the common checks: the file must exist, which the caller checks."""


def frozen_format(m: dict) -> None:
    return None


def source_files(m: dict) -> dict[str, str]:
    """The ONNX file and the external-data files it names (weights beside it): all inputs, so a change to any of
    them, by content, rebuilds the model."""
    return {"source": m["onnx"], **{f"external_data_{i}": p for i, p in enumerate(external_data_files(m["onnx"]))}}


PROTOBUF_LIMIT = 2**31  # bytes: protobuf parses and serializes no message of 2 GiB or more (an ONNX model is one)
# Snakemake's wildcard syntax, `{name}` or `{name,regex}` (the pattern config.SNAKEMAKE_WILDCARD refuses in configured
# paths): a job input that holds one is formatted with the job's wildcards (WildcardError), and has no escape.
_WILDCARD = re.compile(r"\{\s*[.\w]+\s*(,[^{}]*)?\}")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def check_size(path: str, *, model: str | None = None) -> None:
    """Refuse, before parsing anything, an ONNX model that cannot be held as one protobuf message: a file of 2 GiB
    or more (protobuf cannot parse it: without this, "not a valid ONNX model"), or a file whose external data
    tensors (the bytes onnx.load reads: each tensor's `length`, else its file from `offset` on) bring the model to
    2 GiB or more (import loads them into the model; later stages each hold the model as one message)."""
    import os

    size = os.path.getsize(path)
    if size >= PROTOBUF_LIMIT:
        raise FactoryError(
            f"the ONNX file is {_gib(size)}, larger than 2 GB (2 GiB, the most one protobuf message holds): a model "
            "this large keeps its weights as external data, and the factory takes models whose weights and graph "
            "together are under 2 GiB",
            model=model,
            path=path,
        )
    external = sum(n for _, n in _external_sizes(path))
    if size + external >= PROTOBUF_LIMIT:
        raise FactoryError(
            f"the ONNX model with its external data is {_gib(size + external)}, larger than 2 GB (2 GiB): the "
            "factory holds a model as one protobuf message between its stages (import, simplify, precision), and "
            "protobuf holds no message of 2 GiB or more",
            model=model,
            path=path,
        )


def _external_sizes(path: str) -> list[tuple[str, int]]:
    """(location, bytes onnx.load reads) of every external tensor of a model under the protobuf limit, from the
    model file alone (no tensor data read)."""
    import os

    import onnx

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # not ONNX: the import stage says so with the model's name
        return []
    base, out = os.path.dirname(path), []
    for tensor in _tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entry = {e.key: e.value for e in tensor.external_data}
        full = os.path.join(base, entry.get("location", ""))
        if "length" in entry:
            out.append((entry.get("location", ""), int(entry["length"])))
        elif os.path.isfile(full):
            out.append((entry.get("location", ""), max(0, os.path.getsize(full) - int(entry.get("offset", 0)))))
    return out


def external_data_files(path: str) -> list[str]:
    """The files an ONNX model keeps its tensors in (`location` of external initializers), beside the model, read
    without loading them (cached while the model file is unchanged). A location that leaves the model's folder is
    refused: the ONNX file must not make the factory read other files."""
    import os

    from .. import fingerprint

    if not os.path.isfile(path):
        return []
    base = os.path.dirname(path)
    found = fingerprint.derived(path, "onnx-external-data", _external_locations)
    out = []
    for location in found:
        full = os.path.normpath(os.path.join(base, location))
        if os.path.isabs(location) or not full.startswith(os.path.normpath(base) + os.sep):
            raise FactoryError(f"external data location '{location}' is outside the model's folder", path=path)
        if _WILDCARD.search(location):
            raise FactoryError(
                f"external data location '{location}' holds '{_WILDCARD.search(location).group()}', which "
                "Snakemake reads as a wildcard in a job's input (there is no escape): rename the file",
                path=path,
            )
        out.append(full)
    return out


def _tensors(graph):
    """Every TensorProto of a graph: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            yield from ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def _external_locations(path: str) -> list[str]:
    import os

    import onnx

    if os.path.getsize(path) >= PROTOBUF_LIMIT:  # unparsable: not read at DAG time (the import stage says why)
        return []
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # not ONNX: the import stage says so with the model's name
        return []
    locations = []
    for tensor in _tensors(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if location and location not in locations:
                locations.append(location)
    return locations


def export_inputs(name: str, m: dict) -> dict[str, str]:
    return source_files(m)


def reference_inputs(name: str, m: dict) -> dict[str, str]:
    """The source, and the imported model: the reference when onnxruntime cannot run the source (an old opset
    whose kernels onnxruntime no longer has: AveragePool-1, BatchNormalization-6, ...)."""
    from .. import paths

    return {**source_files(m), "imported": paths.onnx(name)}


def export_settings(name: str, m: dict) -> dict:
    """Nothing beyond the common export settings."""
    return {}


def reference_settings(m: dict) -> dict:
    return {"framework": m["framework"], "kind": "onnx"}


def import_onnx(
    src: str,
    out: str,
    *,
    model: str,
    input_specs: dict,
    outputs: list[str] | None,
    opset: int,
    cast_float64: bool = False,
) -> dict:
    """The user's ONNX file, checked; upgraded to the configured opset when it is older (see finish_onnx)."""
    import onnx

    from ..graph.onnx_io import finish_onnx, first_line, normalise_ir

    check_size(src, model=model)  # before parsing: protobuf's 2 GiB limit is not "not a valid ONNX model"
    try:
        proto = onnx.load(src)
        ir_source = proto.ir_version
        normalised = normalise_ir(proto)  # IR 3 files (initializers listed as inputs, or not) checked as today's IR
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise FactoryError(f"not a valid ONNX model: {first_line(e)}", model=model, path=src)
    with atomic.atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        facts = finish_onnx(
            tmp,
            model=model,
            input_specs=input_specs,
            outputs=outputs,
            opset=opset,
            upgrade_only=True,
            cast_float64=cast_float64,
        )
    facts["ir_version_source"] = ir_source
    return {"exporter": "import", **facts, **({"ir_normalised": normalised} if normalised else {})}


def export(inputs: dict, outputs: dict, p: dict) -> dict:
    return import_onnx(
        inputs["source"],
        outputs["onnx"],
        model=p["model"],
        input_specs=p["inputs"],
        outputs=p["outputs"],
        opset=p["opset"],
        cast_float64=p.get("cast_float64", False),
    )


def reference_outputs(source: dict, feeds: dict, outputs: list[str] | None, *, model: str, device: str = "cpu"):
    """onnxruntime on the source file; where it cannot run it (no kernel for an old opset), on the imported model
    (the source upgraded by onnx's version converter), recorded as `reference`."""
    from ..graph.onnx_io import first_line
    from ..tensors import run_onnxruntime

    if device != "cpu":
        raise FactoryError(
            "golden outputs of ONNX sources are computed on the CPU only", model=model, key="golden_device"
        )
    try:
        result, facts = run_onnxruntime(source["path"], feeds), {"reference": "source"}
    except Exception as e:  # e.g. an old opset's kernel, or custom ops (TensorRT plugins) onnxruntime does not know
        problem = first_line(e)
        imported = source.get("imported")
        if not imported:
            raise FactoryError(
                f"onnxruntime cannot run the source ONNX, so there are no golden outputs: {problem}",
                model=model,
                path=source["path"],
            )
        try:
            result = run_onnxruntime(imported, feeds)
        except Exception as e2:
            raise FactoryError(
                f"onnxruntime cannot run the source ONNX ({problem}) nor the imported model "
                f"({first_line(e2)}), so there are no golden outputs: give reference outputs with "
                f"the inputs in `samples`",
                model=model,
                key=f"models.{model}.samples",
                path=source["path"],
            )
        facts = {
            "reference": "imported model",
            "reference_file": imported,
            "source_not_run": f"onnxruntime cannot run the source: {problem}"[:400],
        }
    missing = [k for k in outputs or () if k not in result]
    if missing:
        raise FactoryError(
            f"the model has no output(s) {missing} (its outputs: {list(result)})",
            model=model,
            key=f"models.{model}.outputs",
        )
    return (result if outputs is None else {k: result[k] for k in outputs}), facts
