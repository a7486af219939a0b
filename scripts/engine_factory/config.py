"""Load and check the workflow config: the JSON schema first (unknown or mistyped keys), then what a schema
cannot say (safe model names, consistent shapes, files that must exist, model classes that exist). Every error
names the model and key.

The config is the user's zoo alone: `load(files)` reads the files given (`--configfile`, several are overlays),
or the demo zoo `config/config.yaml` when none is given; it is never merged with the demo. Relative file paths in a
file are relative to *that file*; absolute ones are kept. Paths inside the workflow directory are stored relative to
it (so moving the directory, checkout or zoo together, changes no job), others absolute.

Cheap to import: the Snakefile calls this at DAG time.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import yaml

from . import cluster, signing
from .deploy import triton
from .errors import FactoryError
from .frameworks import all_frameworks, framework_of
from .graph.precision_search import SEARCH_DEFAULTS
from .modelcode import check_defined, search_path
from .paths import MAX_NAME, OUTSIDE_CHAIN, SAFE_NAME, made_by_workflow
from .precisions import DEFAULT_TOLERANCES, PRECISIONS, QUANTIZED
from .tensors import batch_axis

# libyaml's safe loader where PyYAML has it: the same documents, ~10x faster (0.72 s of a 100-model zoo's DAG time)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEMO_CONFIG = REPO / "config" / "config.yaml"  # the embedded demo zoo: used only when no config file is given
MODEL_FILE_KEYS = ("checkpoint", "torchscript", "onnx", "calibration", "samples")  # paths, resolved per file
# Snakemake's wildcard syntax, `{name}` or `{name,regex}`: Snakemake formats every job input with the job's wildcards,
# so a configured path holding one fails with a WildcardError naming neither model nor key, or (`{model}`) silently
# names another file. No escape exists (`{{x}}` is formatted too), so such a path is refused; a bare `{}` is no
# wildcard and works.
SNAKEMAKE_WILDCARD = re.compile(r"\{\s*[.\w]+\s*(,[^{}]*)?\}")

DEFAULTS = {
    "backend": "auto",
    "targets": {"rtx": ["8.0", "8.6", "8.9", "12.0"]},
    "tensorrt": {"hardware_compatibility_level": "none", "version_compatible": False},
    "precisions": PRECISIONS,
    "simplifier": "onnxslim",
    "opset": 18,
    "build": {"workspace_mb": 1024, "optimization_level": 3, "tf32": False},
    "golden_seed": 0,
    "golden_device": "cpu",
    "tolerances": {},
    "precision_search": {},  # per precision: {fallback, budget_s, max_trials} (graph/precision_search.py)
    "python_path": [],
    "deploy": {},  # scripts/engine_factory/deploy/triton.py fills the Triton policy's defaults
}


def load(configfiles=(), *, overrides: dict | None = None, workdir: str = ".") -> dict:
    """The checked config of `configfiles` (the demo zoo when empty), later files overlaying earlier ones
    (nested mappings merge, as Snakemake merges --configfile files), then `overrides` (Snakemake's --config).
    A model is defined in one file only: the same name in two files is an error naming both."""
    files = [str(f) for f in configfiles] or [str(DEMO_CONFIG)]
    merged: dict = {}
    defined_in: dict[str, str] = {}
    for f in files:
        raw = read_file(f)
        resolve_paths(raw, base=os.path.dirname(os.path.abspath(f)), workdir=workdir)
        for name in raw.get("models") or {}:
            if name in defined_in:
                raise FactoryError(
                    f"defined in both {defined_in[name]} and {f}: an overlay may add models and "
                    "change top-level settings, not merge into another file's model",
                    model=name,
                    key=f"models.{name}",
                )
            defined_in[name] = f
        deep_merge(merged, raw)
    if overrides:
        overrides = copy.deepcopy(dict(overrides))
        resolve_paths(overrides, base=os.path.abspath(workdir), workdir=workdir)
        deep_merge(merged, overrides)
    return check(merged, source=" + ".join(files), workdir=workdir)


def load_file(path, workdir: str = ".") -> dict:
    return load([path], workdir=workdir)


def read_file(path: str) -> dict:
    """One YAML mapping; a missing or malformed file is a one-line error naming it."""
    try:
        with open(path) as f:
            raw = yaml.load(f, Loader=SAFE_LOADER)
    except FileNotFoundError:
        raise FactoryError("config file not found", path=str(path))
    except OSError as e:
        raise FactoryError(f"cannot read the config file: {e.strerror}", path=str(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FactoryError(f"not valid YAML{where}: {getattr(e, 'problem', None) or e}", path=str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FactoryError(f"a config file holds a mapping of keys, this one a {type(raw).__name__}", path=str(path))
    if "__use_yte__" in raw:
        # Snakemake renders a config file that sets __use_yte__ as a YTE template (its Python expressions run while
        # Snakemake loads it, before the Snakefile does); the factory's commands read the file first and refuse it.
        raise FactoryError(
            "a YTE template (__use_yte__): Snakemake runs the Python expressions of such a config file while "
            "loading it; the factory takes plain YAML (or JSON) only: render it yourself (yte < in > out) and pass "
            "the result",
            path=str(path),
            key="__use_yte__",
        )
    return raw


def resolve_path(value: str, *, base: str, workdir: str) -> str:
    """`value` relative to `base` (absolute and ~ kept); relative to `workdir` when inside it, else absolute."""
    p = os.path.expanduser(value)
    if not os.path.isabs(p):
        p = os.path.normpath(os.path.join(base, p))
    rel = os.path.relpath(p, os.path.abspath(workdir))
    return rel if rel != ".." and not rel.startswith(".." + os.sep) else p


def resolve_paths(raw: dict, *, base: str, workdir: str) -> None:
    """Resolve, in place, the file paths one config file names (models' sources, calibration, samples, python_path).
    Values of the wrong type are left for the schema to name."""
    if isinstance(raw.get("python_path"), str):
        raw["python_path"] = [raw["python_path"]]
    if isinstance(raw.get("python_path"), list):  # directories for PYTHONPATH: absolute
        raw["python_path"] = [
            os.path.abspath(os.path.join(base, os.path.expanduser(p))) if isinstance(p, str) else p
            for p in raw["python_path"]
        ]
    sign = raw.get("signing")
    if isinstance(sign, dict):  # key files (not signer URIs, not key ids): relative to the file too
        raw["signing"] = signing.resolve_paths(sign, lambda v: resolve_path(v, base=base, workdir=workdir))
    models = raw.get("models")
    for name, m in list(models.items()) if isinstance(models, dict) else ():
        if isinstance(m, dict):
            models[name] = m = dict(m)  # a YAML alias may share one mapping between models: resolve each once
            for key in MODEL_FILE_KEYS:
                if isinstance(m.get(key), str):
                    m[key] = resolve_path(m[key], base=base, workdir=workdir)


def deep_merge(into: dict, new: dict) -> dict:
    """Snakemake's --configfile semantics: nested mappings merge, anything else is replaced."""
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            deep_merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)
    return into


def check(raw: dict, *, source: str = "config", check_files: bool = True, workdir: str = ".") -> dict:
    """Validate `raw` and return it with defaults filled in. Raises FactoryError naming the offending key."""
    import jsonschema

    schema = yaml.load(SCHEMA.read_text(), Loader=SAFE_LOADER)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'.'.join(str(p) for p in e.absolute_path) or '<top level>'}: {e.message}" for e in errors]
        raise FactoryError(f"{source} does not match {SCHEMA.name}:\n  " + "\n  ".join(lines))
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        cfg[key] = {**cfg[key], **value} if isinstance(cfg.get(key), dict) and key != "models" else value
    for name, model in cfg["models"].items():
        _check_model(name, model, cfg, check_files, workdir)
    cluster.check(cfg)  # Slurm pools: one per compute capability, GPUs asked for one way
    # the repository names: fields, unique, usable as directory names; triton is handed each model's precisions
    triton.check_policy(cfg, {name: model_settings(cfg, name)["precisions"] for name in cfg["models"]})
    signing.check(cfg)  # the signing key and the trusted/revoked public keys are there (issue 29)
    return cfg


def _check_model(name: str, m: dict, cfg: dict, check_files: bool, workdir: str) -> None:
    """The checks every model gets; its framework module adds its own (scripts/engine_factory/frameworks)."""
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise FactoryError(
            "the name is used as a path component: use letters, digits, '_', '-', '.', no '..'",
            model=name.encode("unicode_escape").decode(),
            key=f"models.{name}",
        )
    if name in OUTSIDE_CHAIN:
        raise FactoryError(
            f"the name is reserved: artifacts/{name}/ holds the workflow's own files (reserved: "
            f"{', '.join(sorted(OUTSIDE_CHAIN))})",
            model=name,
            key=f"models.{name}",
        )
    if len(name) > MAX_NAME:
        raise FactoryError(
            f"the name is {len(name)} characters; at most {MAX_NAME} (it is part of file names)",
            model=name[:40] + "…",
            key="models",
        )
    fw = framework_of(m)
    given = [k for k in fw.SOURCE_KEYS if k in m]
    if len(given) != 1:
        raise FactoryError(
            f"framework '{m['framework']}' needs exactly one of {', '.join(fw.SOURCE_KEYS)}",
            model=name,
            key=f"models.{name}",
        )
    for other in all_frameworks().values():
        for k in (*other.CONFIG_KEYS, *other.SOURCE_KEYS):
            if k in m and k not in (*fw.CONFIG_KEYS, *fw.SOURCE_KEYS):
                raise FactoryError(
                    f"'{k}' is not used by {fw.TITLE} models (it is for {other.TITLE} models)",
                    model=name,
                    key=f"models.{name}.{k}",
                )
        for input_name, spec in m["inputs"].items():
            for k in other.INPUT_KEYS:
                if k in spec and k not in fw.INPUT_KEYS:
                    raise FactoryError(
                        f"'{k}' is for {other.TITLE} models ({other.INPUT_KEYS[k]}); {fw.TITLE} "
                        "inputs are taken as the model takes them",
                        model=name,
                        key=f"models.{name}.inputs.{input_name}.{k}",
                    )
    for input_name, spec in m["inputs"].items():
        _complete_profile(name, input_name, spec)
    if "calibration" in m or QUANTIZED & set(m.get("precisions", cfg["precisions"])):
        _check_batch_axes(name, m["inputs"])
    _check_float64(name, m)
    exists = (lambda p: _exists(p, workdir)) if check_files else None
    settings = model_settings(cfg, name, m)
    fw.check_config(name, m, cfg, exists, settings=settings)  # the framework gets the model's settings handed
    precisions = settings["precisions"]
    for p, setting in settings["precision_search"].items():
        if p not in QUANTIZED and setting["fallback"] != "fp32":  # fp16/bf16 keep their nodes in fp32
            where = f"models.{name}.precision_search" if p in m.get("precision_search", {}) else "precision_search"
            raise FactoryError(
                f"{p} keeps its searched nodes in fp32; fallback '{setting['fallback']}' is for int8/fp8",
                model=name,
                key=f"{where}.{p}.fallback",
            )
    if QUANTIZED & set(precisions) and "calibration" not in m:
        raise FactoryError(
            f"precisions {sorted(QUANTIZED & set(precisions))} need calibration data "
            "(an .npz/.npy file, a directory of them or of images, or a callable)",
            model=name,
            key=f"models.{name}.calibration",
        )
    if isinstance(m.get("calibration"), dict):  # a callable: it must exist (checked without running it)
        check_defined(
            m["calibration"]["callable"],
            search_path(cfg["python_path"]),
            model=name,
            key=f"models.{name}.calibration.callable",
            what="the calibration callable",
        )
    for key in MODEL_FILE_KEYS:
        if isinstance(m.get(key), str) and (w := SNAKEMAKE_WILDCARD.search(m[key])):
            raise FactoryError(
                f"the path holds '{w.group()}', which Snakemake reads as a wildcard in a job's input (no escape "
                "exists): rename the file or folder",
                model=name,
                key=f"models.{name}.{key}",
                path=m[key],
            )
    for key in (*(given if fw.SINGLE_FILE_SOURCE else ()), "calibration", "samples"):
        path = m.get(key)
        if isinstance(path, dict):
            continue
        if exists and path and not exists(path):
            raise FactoryError("file not found", model=name, key=f"models.{name}.{key}", path=path)


def _exists(path: str, workdir: str) -> bool:
    """Whether a configured file exists, or is one the workflow makes itself (the demo zoo's assets)."""
    return made_by_workflow(path) or os.path.exists(os.path.join(workdir, path))


def _complete_profile(model: str, input_name: str, spec: dict) -> None:
    """Fill min/opt/max for static shapes; check dynamic dims have all three and min <= opt <= max."""
    key = f"models.{model}.inputs.{input_name}"
    shape = spec["shape"]
    dynamic = [i for i, d in enumerate(shape) if isinstance(d, str)]
    for k in ("min", "opt", "max"):
        if k not in spec:
            if dynamic:
                raise FactoryError(
                    f"dimension(s) {[shape[i] for i in dynamic]} are dynamic: give min, opt and max",
                    model=model,
                    key=key,
                )
            spec[k] = list(shape)
        if len(spec[k]) != len(shape):
            raise FactoryError(
                f"{k} {spec[k]} has rank {len(spec[k])}, shape {shape} has rank {len(shape)}",
                model=model,
                key=f"{key}.{k}",
            )
    for i, d in enumerate(shape):
        lo, opt, hi = spec["min"][i], spec["opt"][i], spec["max"][i]
        if isinstance(d, int) and not lo == opt == hi == d:
            raise FactoryError(
                f"dimension {i} is fixed at {d} but min/opt/max give {lo}/{opt}/{hi}", model=model, key=key
            )
        if not lo <= opt <= hi:
            raise FactoryError(f"dimension {i} needs min <= opt <= max, got {lo}/{opt}/{hi}", model=model, key=key)
    spec.setdefault("dtype", "float32")
    axis = batch_axis(spec)
    if axis is not None and not axis < len(shape):
        raise FactoryError(
            f"batch_axis {axis} is outside the input's shape {shape} (rank {len(shape)}): "
            + ("a scalar has no batch axis (batch_axis: null)" if not shape else f"0..{len(shape) - 1}, or null"),
            model=model,
            key=f"{key}.batch_axis",
        )
    if spec.get("value") is not None:
        if batch_axis(spec) is not None:
            raise FactoryError(
                f"value is the one value of an input without a batch axis (a sample rate, a fixed state); this "
                f"input's samples lie on axis {batch_axis(spec)}: add `batch_axis: null`, or drop value",
                model=model,
                key=f"{key}.value",
            )
        if spec["dtype"] in ("int32", "int64", "bool") and float(spec["value"]) != int(spec["value"]):
            raise FactoryError(f"value {spec['value']} is no {spec['dtype']}", model=model, key=f"{key}.value")
        if "range" in spec and not spec["range"][0] <= spec["value"] <= spec["range"][1]:
            raise FactoryError(
                f"value {spec['value']} is outside the input's range {spec['range']}", model=model, key=f"{key}.value"
            )
    if "range" in spec and not spec["range"][0] <= spec["range"][1]:
        raise FactoryError(f"range {spec['range']} needs low <= high", model=model, key=f"{key}.range")
    values = spec.get("values")
    if values:  # a shape tensor: a static 1-D (or scalar) int input whose values the profile bounds
        if dynamic or len(shape) > 1 or spec["dtype"] not in ("int32", "int64"):
            raise FactoryError(
                f"values are for shape-tensor inputs (a static int32/int64 shape of rank 0 or 1), "
                f"this input is {spec['dtype']} {shape}",
                model=model,
                key=f"{key}.values",
            )
        count = shape[0] if shape else 1
        for k in ("min", "opt", "max"):
            if len(values[k]) != count:
                raise FactoryError(
                    f"{k} {values[k]} has {len(values[k])} value(s); the input holds {count}",
                    model=model,
                    key=f"{key}.values.{k}",
                )
        if not all(lo <= opt <= hi for lo, opt, hi in zip(values["min"], values["opt"], values["max"])):
            raise FactoryError(
                f"values need min <= opt <= max elementwise, got {values['min']}/{values['opt']}/{values['max']}",
                model=model,
                key=f"{key}.values",
            )


def _check_batch_axes(model: str, inputs: dict) -> None:
    """Calibration data holds samples on each input's batch axis (default 0). An input whose shape carries the
    batch dim of the other inputs (the dim name at their batch axis) on another axis (a recurrent state
    `[2, batch, 16]`) would be sliced on the wrong axis, silently: it must say where its samples lie."""
    batch_dims = {}
    for input_name, spec in inputs.items():
        axis = batch_axis(spec)
        if axis is not None and isinstance(spec["shape"][axis], str):
            batch_dims.setdefault(spec["shape"][axis], input_name)
    for input_name, spec in inputs.items():
        axis, shape = batch_axis(spec), spec["shape"]
        for j, d in enumerate(shape):
            owner = batch_dims.get(d) if isinstance(d, str) and j != axis else None
            if owner and owner != input_name and (axis is None or shape[axis] != d):
                said = f", but its batch_axis is {'null' if axis is None else axis}" if "batch_axis" in spec else ""
                raise FactoryError(
                    f"input '{input_name}' {shape} has the batch dim '{d}' (the batch axis of input '{owner}') on "
                    f"axis {j}{said}: its calibration samples would be cut on the wrong axis; set `batch_axis: {j}`"
                    + ("" if said else " (or `batch_axis: null` for an input with no batch axis)"),
                    model=model,
                    key=f"models.{model}.inputs.{input_name}.batch_axis",
                )


def _check_float64(name: str, m: dict) -> None:
    """TensorRT takes no float64 tensors: a float64 input needs the documented opt-in cast at import."""
    for input_name, spec in m["inputs"].items():
        if spec["dtype"] == "float64" and not m.get("cast_float64"):
            raise FactoryError(
                "TensorRT takes no float64 inputs: set `cast_float64: true` on the model to cast it "
                "to float32 at import (recorded in provenance), or export the model in float32",
                model=name,
                key=f"models.{name}.inputs.{input_name}.dtype",
            )


def model_settings(cfg: dict, name: str, m: dict | None = None) -> dict:
    """The settings that apply to one model: its own keys over the global ones over the defaults."""
    m = cfg["models"][name] if m is None else m
    tolerances = {}
    for p in PRECISIONS:
        tolerances[p] = {**DEFAULT_TOLERANCES[p], **cfg["tolerances"].get(p, {}), **m.get("tolerances", {}).get(p, {})}
        for output, kind in m.get("output_kinds", {}).items():  # the task of an output, in every precision
            per_output = tolerances[p]["outputs"] = dict(tolerances[p].get("outputs", {}))  # not the config's own
            per_output[output] = {"kind": kind, **per_output.get(output, {})}
    return {
        "precisions": [p for p in PRECISIONS if p in m.get("precisions", cfg["precisions"])],
        "simplifier": m.get("simplifier", cfg["simplifier"]),
        "opset": m.get("opset", cfg["opset"]),
        "build": {**cfg["build"], **m.get("build", {})},
        "tolerances": tolerances,
        "golden_seed": cfg["golden_seed"],
        "precision_search": precision_search(cfg, m),
    }


def precision_search(cfg: dict, m: dict) -> dict:
    """{precision: search setting} for one model: its own `precision_search.<precision>` over the global one over
    the defaults (scripts/engine_factory/graph/precision_search.py). A precision without a setting is not searched."""
    own, glob = m.get("precision_search", {}), cfg.get("precision_search", {})
    return {p: {**SEARCH_DEFAULTS, **glob.get(p, {}), **own.get(p, {})} for p in PRECISIONS if p in own or p in glob}
