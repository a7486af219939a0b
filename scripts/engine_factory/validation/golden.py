"""golden: reference outputs, once per model, from the framework in fp32 on a fixed input set.

Inputs are the user's samples (config `samples`, an npz named like the inputs) when given — random inputs say
little about int8 accuracy — else seeded random inputs at the profile's opt shape (within each input's `range`).
A samples file that also holds arrays named like the model's outputs gives the reference outputs themselves (the
model's own test data, outputs of the original framework); otherwise the framework computes them. Stored together
in one npz: `in/<input name>` and `out/<output name>`, so every later comparison uses exactly these inputs. The
facts say which reference was used and which outputs are degenerate (a constant output matches anything built from
the same weights: its parity proves little).
"""

from __future__ import annotations

import numpy as np

from .. import atomic
from ..errors import FactoryError
from ..frameworks import framework_of
from ..tensors import degenerate_outputs, random_inputs, save_golden


def golden_inputs(input_specs: dict, *, model: str, seed: int, samples: str | None) -> dict[str, np.ndarray]:
    if not samples:
        return random_inputs(input_specs, shape_key="opt", seed=seed)
    from ..graph.calibration import load_calibration  # names, ranks, every dim within the profile, dtypes

    return load_calibration(samples, input_specs, model=model, what="samples")


def sample_outputs(
    samples: str | None, input_specs: dict, outputs: list[str] | None, *, model: str
) -> dict[str, np.ndarray] | None:
    """The reference outputs a samples .npz holds beside the inputs (arrays not named like an input), or None."""
    if not samples or not str(samples).endswith(".npz"):
        return None
    with np.load(samples, allow_pickle=False) as z:
        extra = {k: z[k] for k in z.files if k not in input_specs}
    if not extra:
        return None
    if outputs is not None and set(extra) != set(outputs):
        raise FactoryError(
            f"the samples hold arrays {sorted(extra)} beside the inputs; as reference outputs they "
            f"must be exactly the model's outputs {list(outputs)}",
            model=model,
            key=f"models.{model}.samples",
            path=str(samples),
        )
    return extra if outputs is None else {k: extra[k] for k in outputs}


def framework_outputs(
    source: dict, feeds: dict[str, np.ndarray], outputs: list[str] | None, *, model: str, device: str = "cpu"
):
    """Run the model as its framework defines it (scripts/engine_factory/frameworks: eager PyTorch, TorchScript,
    TensorFlow, onnxruntime for ONNX sources). Returns (outputs, facts about the reference used)."""
    result = framework_of(source).reference_outputs(source, feeds, outputs, model=model, device=device)
    return result if isinstance(result, tuple) else (result, {"reference": "source"})


def make_golden(
    out: str,
    *,
    model: str,
    source: dict,
    input_specs: dict,
    outputs: list[str] | None,
    seed: int,
    samples: str | None = None,
    device: str = "cpu",
) -> dict:
    feeds = golden_inputs(input_specs, model=model, seed=seed, samples=samples)
    given = sample_outputs(samples, input_specs, outputs, model=model)
    if given is not None:
        result, reference = given, {"reference": "samples (reference outputs given with the inputs)"}
    else:
        result, reference = framework_outputs(source, feeds, outputs, model=model, device=device)
    with atomic.atomic_path(out) as tmp:
        save_golden(tmp, feeds, result)
    facts = {
        "inputs": {k: list(v.shape) for k, v in feeds.items()},
        "outputs": {k: list(v.shape) for k, v in result.items()},
        "source": "samples" if samples else f"seeded random (seed {seed}, opt shape)",
        "framework": source["framework"],
        "source_kind": source.get("kind"),
        "device": device,
        **reference,
    }
    weak = degenerate_outputs(result)
    if weak:
        facts["degenerate_outputs"] = weak
    nonfinite = {
        k: int((~np.isfinite(v)).sum()) for k, v in result.items() if v.dtype.kind == "f" and not np.isfinite(v).all()
    }
    if nonfinite:  # e.g. sqrt of a negative random input: give the input a `range`
        facts["nonfinite_outputs"] = nonfinite
    return facts
