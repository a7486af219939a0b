"""PyTorch: a state_dict checkpoint with its class, or a TorchScript archive.

    freeze      state_dict `.pth` + class (import path from config) -> torch.export ExportedProgram `.pt2`, with the
                dynamic dimensions of the config's input specs; TorchScript `.pt` -> frozen TorchScript `.pt`
    export      `.pt2` -> torch.onnx.export(dynamo=True); `.pt` -> the legacy exporter (dynamo=False)
    reference   the eager model (or the TorchScript archive) in fp32, on the CPU or a GPU

The checkpoint is read with `weights_only=True`: the class comes from config, never from the pickle. The dynamo
exporter is asked for opset 18 or newer: below 18 it writes invalid models (measured: asked for 17, it declares 17
but emits ReduceMean with opset 18's attributes); lower opsets are reached with onnx's version converter afterwards
(scripts/engine_factory/graph/onnx_io.py), or refused with a clear error.
"""
from __future__ import annotations

import os

from .. import atomic, paths
from ..errors import FactoryError
from ..modelcode import import_class

TITLE = "PyTorch"
FREEZE_RULE = "freeze"
SOURCE_KEYS = ("checkpoint", "torchscript")
SINGLE_FILE_SOURCE = True  # the config checks it exists
MEM_MB = {"freeze": 2000, "export": 3000, "golden": 2000}  # measured peaks are well below for the demo models
CONFIG_KEYS = ("model", "model_kwargs")  # keys only this framework reads
INPUT_KEYS: dict = {}


# ------------------------------------------------------------------------------------------------- config (cheap)
def check_config(name: str, m: dict, cfg: dict, exists, settings: dict) -> None:
    """What the schema cannot say about a PyTorch model (its source and class); `exists`: a test of configured
    paths, or None when files are not checked. Runs at DAG time: the class is found, not imported."""
    from ..modelcode import check_defined, search_path

    if "checkpoint" in m and "model" not in m:
        raise FactoryError("a state_dict checkpoint needs the model class as an import path ('package.module:Class')",
                           model=name, key=f"models.{name}.model")
    if "model" in m:
        check_defined(m["model"], search_path(cfg["python_path"]), model=name)


def source_kind(m: dict) -> str:
    return "checkpoint" if "checkpoint" in m else "torchscript"


def frozen_format(m: dict) -> str:
    """pt2 for state_dict checkpoints (torch.export), pt for TorchScript sources."""
    return "pt2" if source_kind(m) == "checkpoint" else "pt"


def source_files(m: dict) -> dict[str, str]:
    return {"source": m.get("checkpoint") or m.get("torchscript")}


def export_inputs(name: str, m: dict) -> dict[str, str]:
    return {"source": paths.frozen(name, frozen_format(m))}


def reference_inputs(name: str, m: dict) -> dict[str, str]:
    return source_files(m)


def freeze_settings(name: str, m: dict) -> dict:
    return {"model": name, "source_kind": source_kind(m), "model_ref": m.get("model"),
            "model_kwargs": m.get("model_kwargs", {}), "inputs": m["inputs"]}


def reference_settings(m: dict) -> dict:
    return {"framework": m["framework"], "kind": source_kind(m), "model_ref": m.get("model"), "model_kwargs": m.get("model_kwargs", {})}


# ------------------------------------------------------------------------------------------------- freeze
def load_state_dict_model(checkpoint: str, ref: str, kwargs: dict, *, model: str):
    """Instantiate the configured class and load the checkpoint's weights into it (strictly)."""
    import torch

    cls = import_class(ref, model=model)
    try:
        net = cls(**kwargs)
    except TypeError as e:
        raise FactoryError(f"cannot build {ref}(**model_kwargs): {e}", model=model, key=f"models.{model}.model_kwargs")
    try:
        if os.path.getsize(checkpoint) == 0:
            raise FactoryError("the checkpoint is empty (0 bytes)", model=model, path=checkpoint)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FactoryError("checkpoint not found", model=model, path=checkpoint)
    except FactoryError:
        raise
    except Exception as e:  # weights_only refuses pickled objects; corrupt files land here too
        raise FactoryError(f"cannot read the checkpoint safely (torch.load weights_only=True): {type(e).__name__}: "
                           f"{str(e).strip() or 'no message'}", model=model, path=checkpoint)
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

    from ..tensors import random_inputs

    return tuple(torch.from_numpy(a) for a in random_inputs(input_specs, shape_key=shape_key, seed=0).values())


def export_example_specs(input_specs: dict) -> dict:
    """The specs whose opt shape torch.export traces with: a dynamic dim of 1 at opt is taken as 2 where the
    profile allows it (torch specialises a size-1 example dim to the constant 1)."""
    out = {}
    for name, spec in input_specs.items():
        opt = [2 if isinstance(d, str) and o == 1 and spec["max"][i] >= 2 else o
               for i, (d, o) in enumerate(zip(spec["shape"], spec["opt"]))]
        out[name] = {**spec, "opt": opt}
    return out


def dynamic_shapes(input_specs: dict, auto: bool = False):
    """One torch.export Dim per named dimension, shared by every input that names it (e.g. 'batch'). auto: let
    torch.export derive each dim's constraints itself (Dim.AUTO within min..max), for models that compute with
    the dims (h // 2) so a plain Dim's range is "violated"; dims named alike are then not tied together."""
    from torch.export import Dim

    dims, specs = {}, []
    for spec in input_specs.values():
        entry = {}
        for i, d in enumerate(spec["shape"]):
            if isinstance(d, str):
                lo, hi = spec["min"][i], spec["max"][i]
                if auto:
                    entry[i] = Dim.AUTO(min=lo, max=hi)
                    continue
                if d in dims and (dims[d].min, dims[d].max) != (lo, hi):
                    raise ValueError(f"dimension '{d}' has different min/max across inputs")
                dims.setdefault(d, Dim(d, min=lo, max=hi))
                entry[i] = dims[d]
        specs.append(entry or None)
    return tuple(specs)


def _specialised(ep, input_specs: dict) -> list[str]:
    """'input[dim]' of each dim the config calls dynamic that the exported program fixed to a constant."""
    from torch.export.graph_signature import InputKind

    users = [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    fixed = []
    for node_name, (name, spec) in zip(users, input_specs.items()):
        shape = nodes[node_name].meta["val"].shape
        fixed += [f"{name}[{i}] ({d})" for i, d in enumerate(spec["shape"]) if isinstance(d, str)
                  and isinstance(shape[i], int)]
    return fixed


def export_program(net, input_specs: dict, *, model: str, model_ref: str):
    """torch.export with the config's named Dims; where the model's code derives values from a dim (h // 2) and
    torch reports the named range violated, again with Dim.AUTO. Returns (program, facts about the path)."""
    import torch

    args = example_args(export_example_specs(input_specs))
    try:
        return torch.export.export(net, args, dynamic_shapes=dynamic_shapes(input_specs)), {"dynamic_shapes": "Dim"}
    except Exception as e:
        strict = " ".join(str(e).split())[:300]
        if not any(dims for dims in dynamic_shapes(input_specs) if dims) or \
                not any(w in strict for w in ("Constraints violated", "specializ", "specialis")):
            raise FactoryError(f"torch.export failed for {model_ref} with the config's input specs: {strict}",
                               model=model, key=f"models.{model}.inputs")
    try:
        ep = torch.export.export(net, args, dynamic_shapes=dynamic_shapes(input_specs, auto=True))
    except Exception as e:
        raise FactoryError(f"torch.export failed for {model_ref} with named dims ({strict}) and with Dim.AUTO: "
                           f"{' '.join(str(e).split())[:300]}", model=model, key=f"models.{model}.inputs")
    fixed = _specialised(ep, input_specs)
    if fixed:
        raise FactoryError(f"torch.export specialised dims the config calls dynamic: {', '.join(fixed)} (the "
                           "model's code fixes them: make those dims static in the config)", model=model,
                           key=f"models.{model}.inputs")
    return ep, {"dynamic_shapes": "Dim.AUTO", "named_dims_failed": strict}


def freeze_pytorch(checkpoint: str, out: str, *, model: str, model_ref: str, model_kwargs: dict,
                   input_specs: dict) -> dict:
    import torch

    net = load_state_dict_model(checkpoint, model_ref, model_kwargs, model=model)
    ep, path = export_program(net, input_specs, model=model, model_ref=model_ref)
    with atomic.atomic_path(out) as tmp:
        torch.export.save(ep, str(tmp))
    return {"format": "torch.export", "model_class": model_ref,
            "parameters": sum(p.numel() for p in net.parameters()), **path}


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


def freeze(inputs: dict, outputs: dict, p: dict) -> dict:
    """The freeze stage: the configured source -> outputs["frozen"]; returns facts for provenance."""
    if p["source_kind"] == "checkpoint":
        return freeze_pytorch(inputs["source"], outputs["frozen"], model=p["model"], model_ref=p["model_ref"],
                              model_kwargs=p["model_kwargs"], input_specs=p["inputs"])
    return freeze_torchscript(inputs["source"], outputs["frozen"], model=p["model"])


# ------------------------------------------------------------------------------------------------- export
def _export_with(exporter: str, call, frozen: str, out: str, *, model: str, input_specs: dict, outputs: list[str],
                 opset: int, cast_float64: bool = False) -> dict:
    """Run `call(tmp_path)` (one torch.onnx.export), then bring the file to the config's opset and I/O."""
    from ..graph.onnx_io import finish_onnx

    with atomic.atomic_path(out) as tmp:
        try:
            call(str(tmp))
        except Exception as e:
            raise FactoryError(f"{exporter} failed: {e}", model=model, path=frozen)
        facts = finish_onnx(tmp, model=model, input_specs=input_specs, outputs=outputs, opset=opset,
                            cast_float64=cast_float64)
    return {"exporter": exporter, **facts}


def reuse_onnx_registry() -> bool:
    """Let torch.onnx.export (dynamo) reuse its registry of ONNX translations instead of building it in every call:
    building it parses the source of ~500 onnxscript torchlib functions, ~1.0 s of each export (measured: torch
    2.13, onnxscript 0.7, a small CNN's whole export ~1.5 s). Built once per opset and per state of the torchlib
    registries (a model package that registers its own torchlib function changes that state, and gets a registry
    built anew), each export gets its own copy (the exporter adds a call's custom translations to it). The
    forkserver calls this before its warm-up export (scripts/engine_factory/warmup.py), so every job forked from it starts with
    the registry built. False (nothing changed) where this torch has no such classmethod."""
    try:
        from onnxscript.function_libs.torch_lib import registration as onnxscript_torchlib
        from torch.onnx._internal.exporter import _registration
        from torch.onnx._internal.exporter._torchlib import _torchlib_registry
    except ImportError:
        return False
    cls = _registration.ONNXRegistry
    build = cls.__dict__.get("from_torchlib")
    if not isinstance(build, classmethod) or getattr(build.__func__, "reused", False):
        return False
    built = {}

    def state(key):
        return (key, len(_torchlib_registry._registry),
                tuple((name, len(f.overloads), len(f.complex))
                      for name, f in onnxscript_torchlib.default_registry.items()))

    def from_torchlib(klass, *args, **kwargs):
        key = (klass, args, tuple(sorted(kwargs.items())))
        if built.get(key, (None,))[0] != state(key):
            registry = build.__func__(klass, *args, **kwargs)
            built[key] = (state(key), registry)  # after the build: its first call imports (registers) torchlib
        registry = built[key][1]
        copy = klass.__new__(klass)
        copy.__dict__.update(registry.__dict__)
        copy.functions = {target: list(decomps) for target, decomps in registry.functions.items()}
        return copy

    from_torchlib.reused = True
    cls.from_torchlib = classmethod(from_torchlib)
    return True


def export_pt2(frozen: str, out: str, *, model: str, input_specs: dict, outputs: list[str], opset: int,
               cast_float64: bool = False) -> dict:
    import torch

    ep = torch.export.load(frozen)
    return _export_with(
        "torch.onnx.export(dynamo=True)",
        lambda tmp: torch.onnx.export(ep, (), tmp, dynamo=True, external_data=False, opset_version=max(opset, 18),
                                      input_names=list(input_specs), output_names=list(outputs), verbose=False),
        frozen, out, model=model, input_specs=input_specs, outputs=outputs, opset=opset, cast_float64=cast_float64)


def export_torchscript(frozen: str, out: str, *, model: str, input_specs: dict, outputs: list[str],
                       opset: int, cast_float64: bool = False) -> dict:
    import torch

    scripted = load_torchscript(frozen, model=model)
    axes = {name: {i: d for i, d in enumerate(spec["shape"]) if isinstance(d, str)} for name, spec in input_specs.items()}
    return _export_with(
        "torch.onnx.export(dynamo=False)",
        lambda tmp: torch.onnx.export(scripted, example_args(input_specs), tmp, dynamo=False, opset_version=opset,
                                      input_names=list(input_specs), output_names=list(outputs), dynamic_axes=axes),
        frozen, out, model=model, input_specs=input_specs, outputs=outputs, opset=opset, cast_float64=cast_float64)


def export(inputs: dict, outputs: dict, p: dict) -> dict:
    fn = export_pt2 if p["source_format"] == "pt2" else export_torchscript
    return fn(inputs["source"], outputs["onnx"], model=p["model"], input_specs=p["inputs"], outputs=p["outputs"],
              opset=p["opset"], cast_float64=p.get("cast_float64", False))


# ------------------------------------------------------------------------------------------------- reference
def reference_outputs(source: dict, feeds: dict, outputs: list[str] | None, *, model: str, device: str = "cpu"):
    """The model as PyTorch defines it, on `device` ("cpu" or "cuda"), always in fp32 (TF32 off, so a GPU golden
    stays fp32)."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise FactoryError("golden_device is cuda but torch sees no CUDA GPU here", model=model, key="golden_device")
    if source["kind"] == "checkpoint":
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
