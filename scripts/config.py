"""Load and check the workflow config: the JSON schema first (unknown or mistyped keys), then what a schema
cannot say (safe model names, consistent shapes, files that must exist). Every error names the model and key.

Cheap to import: the Snakefile calls this at DAG time.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import yaml

from . import cluster
from .errors import FactoryError
from .tensors import DEFAULT_TOLERANCES

SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"
PRECISIONS = ["fp32", "fp16", "bf16", "int8", "fp8"]
QUANTIZED = {"int8", "fp8"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
GENERATED_PREFIX = "artifacts/demo/"  # files under here are made by the workflow's own demo rule

DEFAULTS = {
    "backend": "auto",
    "targets": {"rtx": ["8.0", "8.6", "8.9", "12.0"]},
    "tensorrt": {"hardware_compatibility_level": "none", "version_compatible": False},
    "precisions": PRECISIONS,
    "simplifier": "onnxslim",
    "opset": 18,
    "build": {"workspace_mb": 1024, "optimization_level": 3},
    "golden_seed": 0,
    "golden_device": "cpu",
    "tolerances": {},
}


def load_file(path) -> dict:
    with open(path) as f:
        return check(yaml.safe_load(f) or {}, source=str(path))


def check(raw: dict, *, source: str = "config", check_files: bool = True) -> dict:
    """Validate `raw` and return it with defaults filled in. Raises FactoryError naming the offending key."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'.'.join(str(p) for p in e.absolute_path) or '<top level>'}: {e.message}" for e in errors]
        raise FactoryError(f"{source} does not match {SCHEMA.name}:\n  " + "\n  ".join(lines))
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        cfg[key] = {**cfg[key], **value} if isinstance(cfg.get(key), dict) and key != "models" else value
    for name, model in cfg["models"].items():
        _check_model(name, model, cfg, check_files)
    cluster.check(cfg)  # Slurm pools: one per compute capability, GPUs asked for one way
    return cfg


def _check_model(name: str, m: dict, cfg: dict, check_files: bool) -> None:
    if not SAFE_NAME.match(name) or ".." in name:
        raise FactoryError("the name is used as a path component: use letters, digits, '_', '-', '.', no '..'",
                           model=name, key=f"models.{name}")
    sources = {"pytorch": ("checkpoint", "torchscript"), "onnx": ("onnx",),
               "tensorflow": ("checkpoint",)}[m["framework"]]
    given = [k for k in sources if k in m]
    if len(given) != 1:
        raise FactoryError(f"framework '{m['framework']}' needs exactly one of {', '.join(sources)}",
                           model=name, key=f"models.{name}")
    if m["framework"] == "pytorch" and "checkpoint" in given and "model" not in m:
        raise FactoryError("a state_dict checkpoint needs the model class as an import path ('package.module:Class')",
                           model=name, key=f"models.{name}.model")
    for input_name, spec in m["inputs"].items():
        _complete_profile(name, input_name, spec)
    if m["framework"] == "tensorflow":  # format, opset <= 18, names, layouts, the checkpoint's files
        from .tf_stages import check_model_config

        check_model_config(name, m, model_settings(cfg, name, m)["opset"], check_files, GENERATED_PREFIX)
    else:
        for k in ("format", "signature"):
            if k in m:
                raise FactoryError(f"'{k}' is for TensorFlow models", model=name, key=f"models.{name}.{k}")
        for input_name, spec in m["inputs"].items():
            if "layout" in spec:
                raise FactoryError("'layout' is for TensorFlow models (tf2onnx can present NHWC inputs as NCHW); "
                                   f"{m['framework']} inputs are taken as the model takes them",
                                   model=name, key=f"models.{name}.inputs.{input_name}.layout")
    precisions = model_settings(cfg, name, m)["precisions"]
    if QUANTIZED & set(precisions) and "calibration" not in m:
        raise FactoryError(f"precisions {sorted(QUANTIZED & set(precisions))} need calibration data "
                           "(an .npz/.npy file or a directory of them)", model=name, key=f"models.{name}.calibration")
    if check_files:
        for key in (*(given if m["framework"] != "tensorflow" else ()), "calibration", "samples"):
            path = m.get(key)
            if path and not path.startswith(GENERATED_PREFIX) and not os.path.exists(path):
                raise FactoryError("file not found", model=name, key=f"models.{name}.{key}", path=path)


def _complete_profile(model: str, input_name: str, spec: dict) -> None:
    """Fill min/opt/max for static shapes; check dynamic dims have all three and min <= opt <= max."""
    key = f"models.{model}.inputs.{input_name}"
    shape = spec["shape"]
    dynamic = [i for i, d in enumerate(shape) if isinstance(d, str)]
    for k in ("min", "opt", "max"):
        if k not in spec:
            if dynamic:
                raise FactoryError(f"dimension(s) {[shape[i] for i in dynamic]} are dynamic: give min, opt and max",
                                   model=model, key=key)
            spec[k] = list(shape)
        if len(spec[k]) != len(shape):
            raise FactoryError(f"{k} {spec[k]} has rank {len(spec[k])}, shape {shape} has rank {len(shape)}",
                               model=model, key=f"{key}.{k}")
    for i, d in enumerate(shape):
        lo, opt, hi = spec["min"][i], spec["opt"][i], spec["max"][i]
        if isinstance(d, int) and not lo == opt == hi == d:
            raise FactoryError(f"dimension {i} is fixed at {d} but min/opt/max give {lo}/{opt}/{hi}",
                               model=model, key=key)
        if not lo <= opt <= hi:
            raise FactoryError(f"dimension {i} needs min <= opt <= max, got {lo}/{opt}/{hi}", model=model, key=key)
    spec.setdefault("dtype", "float32")


def model_settings(cfg: dict, name: str, m: dict | None = None) -> dict:
    """The settings that apply to one model: its own keys over the global ones over the defaults."""
    m = cfg["models"][name] if m is None else m
    tolerances = {}
    for p in PRECISIONS:
        tolerances[p] = {**DEFAULT_TOLERANCES[p], **cfg["tolerances"].get(p, {}), **m.get("tolerances", {}).get(p, {})}
    return {
        "precisions": [p for p in PRECISIONS if p in m.get("precisions", cfg["precisions"])],
        "simplifier": m.get("simplifier", cfg["simplifier"]),
        "opset": m.get("opset", cfg["opset"]),
        "build": {**cfg["build"], **m.get("build", {})},
        "tolerances": tolerances,
        "golden_seed": cfg["golden_seed"],
    }
