"""Frameworks a model comes from, one module each with the same verbs (as Polygraphy's backend/{pyt,onnx,tf}):

    TITLE, FREEZE_RULE (None: nothing to freeze), SOURCE_KEYS, CONFIG_KEYS, INPUT_KEYS, MEM_MB {freeze, export, golden}
    check_config(name, m, cfg, exists, settings)   what the schema cannot say (cheap: DAG time); settings: the
                                            model's, as config settles them (model_settings)
    source_files(m)                         {label: path} of the model's source
    frozen_format(m)                        "pt2" | "pt" | "pb" | None
    export_inputs(name, m), reference_inputs(name, m)
    freeze_settings(name, m), reference_settings(m)
    freeze(inputs, outputs, params), export(inputs, outputs, params) -> facts
    reference_outputs(source, feeds, outputs, *, model, device) -> {output: array} (or with facts: (outputs,
    {reference...}))

`framework_of(m)` is the one place that reads a model's `framework`: no caller tests a framework's name.
Importing a framework module imports no framework library (those load inside the verbs).
"""

from __future__ import annotations

from . import onnx, pytorch, tensorflow

FRAMEWORKS = {"pytorch": pytorch, "onnx": onnx, "tensorflow": tensorflow}  # config `framework` -> its module


def framework_of(m: dict):
    """The module of a model config's (or a golden source's) `framework`."""
    return FRAMEWORKS[m["framework"]]


def all_frameworks() -> dict:
    return dict(FRAMEWORKS)
