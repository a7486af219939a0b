"""freeze: a PyTorch checkpoint becomes a self-contained frozen artifact.

- state_dict `.pth` + model class (import path from config) -> `torch.export` ExportedProgram `.pt2`, with the
  dynamic dimensions of the config's input specs. The checkpoint is read with `weights_only=True`: the class
  comes from config, never from the pickle.
- TorchScript `.pt` -> frozen TorchScript `.pt` (`torch.jit.freeze`), for users who only hold such files.
"""
from __future__ import annotations

import importlib

from . import atomic
from .errors import FactoryError


def import_class(ref: str, *, model: str):
    module_name, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise FactoryError(f"cannot import the model class '{ref}': {e}", model=model, key=f"models.{model}.model")


def load_state_dict_model(checkpoint: str, ref: str, kwargs: dict, *, model: str):
    """Instantiate the configured class and load the checkpoint's weights into it (strictly)."""
    import torch

    cls = import_class(ref, model=model)
    try:
        net = cls(**kwargs)
    except TypeError as e:
        raise FactoryError(f"cannot build {ref}(**model_kwargs): {e}", model=model, key=f"models.{model}.model_kwargs")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FactoryError("checkpoint not found", model=model, path=checkpoint)
    except Exception as e:  # weights_only refuses pickled objects; corrupt files land here too
        raise FactoryError(f"cannot read the checkpoint safely (torch.load weights_only=True): {e}",
                           model=model, path=checkpoint)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # the common {"state_dict": ..., "epoch": ...} wrapper
    if not isinstance(state, dict):
        raise FactoryError(f"expected a state_dict (a dict of tensors), found {type(state).__name__}",
                           model=model, path=checkpoint)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise FactoryError(f"the checkpoint does not fit {ref}: {e}", model=model, path=checkpoint)
    return net.eval()


def example_args(input_specs: dict, shape_key: str = "opt"):
    import torch

    from .tensors import random_inputs

    return tuple(torch.from_numpy(a) for a in random_inputs(input_specs, shape_key=shape_key, seed=0).values())


def dynamic_shapes(input_specs: dict):
    """One torch.export Dim per named dimension, shared by every input that names it (e.g. 'batch')."""
    from torch.export import Dim

    dims, specs = {}, []
    for spec in input_specs.values():
        entry = {}
        for i, d in enumerate(spec["shape"]):
            if isinstance(d, str):
                lo, hi = spec["min"][i], spec["max"][i]
                if d in dims and (dims[d].min, dims[d].max) != (lo, hi):
                    raise ValueError(f"dimension '{d}' has different min/max across inputs")
                dims.setdefault(d, Dim(d, min=lo, max=hi))
                entry[i] = dims[d]
        specs.append(entry or None)
    return tuple(specs)


def freeze_pytorch(checkpoint: str, out: str, *, model: str, model_ref: str, model_kwargs: dict,
                   input_specs: dict) -> dict:
    import torch

    net = load_state_dict_model(checkpoint, model_ref, model_kwargs, model=model)
    try:
        ep = torch.export.export(net, example_args(input_specs), dynamic_shapes=dynamic_shapes(input_specs))
    except Exception as e:
        raise FactoryError(f"torch.export failed for {model_ref} with the config's input specs: {e}",
                           model=model, key=f"models.{model}.inputs")
    with atomic.atomic_path(out) as tmp:
        torch.export.save(ep, str(tmp))
    return {"format": "torch.export", "model_class": model_ref,
            "parameters": sum(p.numel() for p in net.parameters())}


def load_torchscript(path: str, *, model: str):
    import torch

    try:
        return torch.jit.load(path, map_location="cpu").eval()
    except Exception as e:
        raise FactoryError(f"not a loadable TorchScript archive: {e}", model=model, path=path)


def freeze_torchscript(src: str, out: str, *, model: str) -> dict:
    import torch

    scripted = load_torchscript(src, model=model)
    try:
        frozen = torch.jit.freeze(scripted)
    except Exception as e:  # freezing needs a ScriptModule in eval mode; traced modules qualify
        raise FactoryError(f"torch.jit.freeze failed: {e}", model=model, path=src)
    with atomic.atomic_path(out) as tmp:
        torch.jit.save(frozen, str(tmp))
    return {"format": "torchscript", "frozen": True}
