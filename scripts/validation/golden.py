"""golden: reference outputs, once per model, from the framework in fp32 on a fixed input set.

Inputs are the user's samples (config `samples`, an npz named like the inputs) when given — random inputs say
little about int8 accuracy — else seeded random inputs at the profile's opt shape. Stored together in one npz:
`in/<input name>` and `out/<output name>`, so every later comparison uses exactly these inputs.
"""
from __future__ import annotations

import numpy as np

from .. import atomic
from ..errors import FactoryError
from ..frameworks import framework_of
from ..tensors import random_inputs


def golden_inputs(input_specs: dict, *, model: str, seed: int, samples: str | None) -> dict[str, np.ndarray]:
    if not samples:
        return random_inputs(input_specs, shape_key="opt", seed=seed)
    from ..graph.calibration import load_calibration  # same checks as calibration data: names, ranks, dims, dtypes

    arrays = load_calibration(samples, input_specs, model=model, what="samples")
    for name, spec in input_specs.items():
        batch = arrays[name].shape[0]
        if not spec["min"][0] <= batch <= spec["max"][0]:
            raise FactoryError(f"input '{name}' has {batch} samples; the profile allows a batch of "
                               f"{spec['min'][0]}..{spec['max'][0]}", model=model, path=samples)
    return arrays


def framework_outputs(source: dict, feeds: dict[str, np.ndarray], outputs: list[str] | None, *, model: str,
                      device: str = "cpu"):
    """Run the model as its framework defines it (scripts/frameworks: eager PyTorch, TorchScript, TensorFlow,
    onnxruntime for ONNX sources)."""
    return framework_of(source).reference_outputs(source, feeds, outputs, model=model, device=device)


def make_golden(out: str, *, model: str, source: dict, input_specs: dict, outputs: list[str] | None, seed: int,
                samples: str | None = None, device: str = "cpu") -> dict:
    feeds = golden_inputs(input_specs, model=model, seed=seed, samples=samples)
    result = framework_outputs(source, feeds, outputs, model=model, device=device)
    with atomic.atomic_path(out) as tmp:
        np.savez(tmp, **{f"in/{k}": v for k, v in feeds.items()}, **{f"out/{k}": v for k, v in result.items()})
    return {"inputs": {k: list(v.shape) for k, v in feeds.items()}, "outputs": {k: list(v.shape) for k, v in result.items()},
            "source": "samples" if samples else f"seeded random (seed {seed}, opt shape)", "framework": source["framework"],
            "source_kind": source.get("kind"),
            "device": device}


def load_golden(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    with np.load(path) as z:
        ins = {k[3:]: z[k] for k in z.files if k.startswith("in/")}
        outs = {k[4:]: z[k] for k in z.files if k.startswith("out/")}
    return ins, outs
