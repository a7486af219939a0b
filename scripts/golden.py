"""golden: reference outputs, once per model, from the framework in fp32 on a fixed input set.

Inputs are the user's samples (config `samples`, an npz named like the inputs) when given — random inputs say
little about int8 accuracy — else seeded random inputs at the profile's opt shape. Stored together in one npz:
`in/<input name>` and `out/<output name>`, so every later comparison uses exactly these inputs.
"""
from __future__ import annotations

import numpy as np

from . import atomic
from .errors import FactoryError
from .tensors import random_inputs, run_onnxruntime


def golden_inputs(input_specs: dict, *, model: str, seed: int, samples: str | None) -> dict[str, np.ndarray]:
    if not samples:
        return random_inputs(input_specs, shape_key="opt", seed=seed)
    from .precision import load_calibration  # same checks as calibration data: names, ranks, dims, dtypes

    arrays = load_calibration(samples, input_specs, model=model)
    for name, spec in input_specs.items():
        batch = arrays[name].shape[0]
        if not spec["min"][0] <= batch <= spec["max"][0]:
            raise FactoryError(f"input '{name}' has {batch} samples; the profile allows a batch of "
                               f"{spec['min'][0]}..{spec['max'][0]}", model=model, path=samples)
    return arrays


def framework_outputs(source: dict, feeds: dict[str, np.ndarray], outputs: list[str] | None, *, model: str,
                      device: str = "cpu"):
    """Run the model as its framework defines it: eager PyTorch, TorchScript, or onnxruntime for ONNX sources.
    PyTorch models run on `device` ("cpu" or "cuda"), always in fp32 (TF32 off, so a GPU golden stays fp32)."""
    kind = source["kind"]
    if device != "cpu" and kind in ("onnx", "tensorflow"):  # tensorflow-cpu: no GPU build
        raise FactoryError(f"golden outputs of {kind} sources are computed on the CPU only", model=model,
                           key="golden_device")
    if kind == "onnx":
        try:
            result = run_onnxruntime(source["path"], feeds)
        except Exception as e:  # e.g. custom ops (TensorRT plugins) that onnxruntime does not know
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FactoryError(f"onnxruntime cannot run the source ONNX, so there are no golden outputs: {first}; "
                               "give the framework's outputs another way or use a model onnxruntime can run",
                               model=model, path=source["path"])
        return result if outputs is None else {k: result[k] for k in outputs}
    if kind == "tensorflow":
        from .tf_stages import golden_outputs

        return golden_outputs(source, feeds, outputs, model=model)
    import torch

    from .freeze import load_state_dict_model, load_torchscript

    if device == "cuda" and not torch.cuda.is_available():
        raise FactoryError("golden_device is cuda but torch sees no CUDA GPU here", model=model, key="golden_device")
    if kind == "checkpoint":
        net = load_state_dict_model(source["path"], source["model_ref"], source.get("model_kwargs", {}), model=model)
    else:
        net = load_torchscript(source["path"], model=model)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    net = net.to(device)
    with torch.no_grad():
        result = net(*(torch.from_numpy(a).to(device) for a in feeds.values()))
    if isinstance(result, dict):
        result = [result[k] for k in outputs]
    elif isinstance(result, torch.Tensor):
        result = [result]
    if len(result) != len(outputs):
        raise FactoryError(f"the model returns {len(result)} outputs, the config names {len(outputs)}: {outputs}",
                           model=model, key=f"models.{model}.outputs")
    return {name: t.detach().float().cpu().numpy() for name, t in zip(outputs, result)}


def make_golden(out: str, *, model: str, source: dict, input_specs: dict, outputs: list[str] | None, seed: int,
                samples: str | None = None, device: str = "cpu") -> dict:
    feeds = golden_inputs(input_specs, model=model, seed=seed, samples=samples)
    result = framework_outputs(source, feeds, outputs, model=model, device=device)
    with atomic.atomic_path(out) as tmp:
        np.savez(tmp, **{f"in/{k}": v for k, v in feeds.items()}, **{f"out/{k}": v for k, v in result.items()})
    return {"inputs": {k: list(v.shape) for k, v in feeds.items()}, "outputs": {k: list(v.shape) for k, v in result.items()},
            "source": "samples" if samples else f"seeded random (seed {seed}, opt shape)", "framework": source["kind"],
            "device": device}


def load_golden(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    with np.load(path) as z:
        ins = {k[3:]: z[k] for k in z.files if k.startswith("in/")}
        outs = {k[4:]: z[k] for k in z.files if k.startswith("out/")}
    return ins, outs
