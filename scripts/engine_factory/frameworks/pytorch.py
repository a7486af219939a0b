"""PyTorch: a state_dict checkpoint with its class, or a TorchScript archive.

    freeze      state_dict `.pth` + class (import path from config) -> torch.export ExportedProgram `.pt2`, with the
                dynamic dimensions of the config's input specs; TorchScript `.pt` -> frozen TorchScript `.pt`
    export      `.pt2` -> torch.onnx.export(dynamo=True); `.pt` -> the legacy exporter (dynamo=False)
    reference   the eager model (or the TorchScript archive) in fp32, on the CPU or a GPU

Export routes (`exporter`: auto | dynamo | legacy, default auto; the route taken is the export's `facts.exporter`,
a fallback is `facts.exporter_fallback` with the first route's error):
    state_dict  dynamo: the frozen `.pt2` through torch.onnx.export(dynamo=True); legacy: the eager model (checkpoint
                and class, read again) through the legacy exporter; auto: dynamo, then legacy where dynamo fails
                (e.g. a submodule named `meta`, which clashes with torch.fx's GraphModule.meta)
    TorchScript legacy: the frozen archive through the legacy exporter; dynamo: the archive converted to an
                ExportedProgram (TS2EPConverter) with `constant_args` bound, then torch.onnx.export(dynamo=True);
                auto: legacy, then dynamo where legacy fails (e.g. a dict output: `prim::DictConstruct`); with
                `constant_args` only the dynamo route binds them
Outputs: whatever the forward returns (a tensor, tuple/list, dict, nested) is flattened depth-first in torch's pytree
order (dict entries in insertion order, sequences by position); a leaf's path joins its keys/indices with '.'
(`{"det": (a, b), "score": c}` -> `det.0`, `det.1`, `score`). `outputs` in the config either names leaf paths (the
ONNX outputs are those leaves, in the config's order; others are dropped) or gives one name per leaf, in order.
`constant_args: {arg: value}`: forward arguments bound to constants (a bool/int/float, a list -> a tensor, or
`{shape: [...], fill: 0, dtype: float32}` -> a filled tensor); the configured inputs fill the other arguments in
order, trailing arguments with defaults are left to their defaults.

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
CONFIG_KEYS = ("model", "model_kwargs", "exporter", "checkpoint_key", "strip_prefix", "constant_args")  # only ours
EXPORTERS = ("auto", "dynamo", "legacy")
DYNAMO, LEGACY = "torch.onnx.export(dynamo=True)", "torch.onnx.export(dynamo=False)"
INPUT_KEYS: dict = {}


# ------------------------------------------------------------------------------------------------- config (cheap)
def check_config(name: str, m: dict, cfg: dict, exists, settings: dict) -> None:
    """What the schema cannot say about a PyTorch model (its source and class); `exists`: a test of configured
    paths, or None when files are not checked. Runs at DAG time: the class is found, not imported."""
    from ..modelcode import check_defined, search_path

    if "checkpoint" in m and "model" not in m:
        raise FactoryError(
            "a state_dict checkpoint needs the model class as an import path ('package.module:Class')",
            model=name,
            key=f"models.{name}.model",
        )
    if "model" in m:
        check_defined(m["model"], search_path(cfg["python_path"]), model=name)
    for key in ("checkpoint_key", "strip_prefix"):
        if key in m and "checkpoint" not in m:
            raise FactoryError(
                f"'{key}' is for state_dict checkpoints (a TorchScript archive holds its module)",
                model=name,
                key=f"models.{name}.{key}",
            )


def source_kind(m: dict) -> str:
    return "checkpoint" if "checkpoint" in m else "torchscript"


def frozen_format(m: dict) -> str:
    """pt2 for state_dict checkpoints (torch.export), pt for TorchScript sources."""
    return "pt2" if source_kind(m) == "checkpoint" else "pt"


def source_files(m: dict) -> dict[str, str]:
    return {"source": m.get("checkpoint") or m.get("torchscript")}


def export_inputs(name: str, m: dict) -> dict[str, str]:
    """The frozen file; for a state_dict model that may take the legacy route, the checkpoint too (that route
    exports the eager model: torch.export's program cannot be unlifted where dynamo failed)."""
    out = {"source": paths.frozen(name, frozen_format(m))}
    if source_kind(m) == "checkpoint" and m.get("exporter", "auto") != "dynamo":
        out["checkpoint"] = m["checkpoint"]
    return out


def _loading(m: dict) -> dict:
    """How the checkpoint is read and the forward called, where the config says (absent keys: today's defaults)."""
    return {k: m[k] for k in ("checkpoint_key", "strip_prefix", "constant_args") if k in m}


def export_settings(name: str, m: dict) -> dict:
    """What the export stage adds to the common settings: the exporter route and what the legacy route (eager
    model) or the TorchScript conversion needs."""
    out = {"exporter": m.get("exporter", "auto"), **_loading(m)}
    if source_kind(m) == "checkpoint" and out["exporter"] != "dynamo":
        out["eager"] = {"model_ref": m.get("model"), "model_kwargs": m.get("model_kwargs", {})}
    return out


def reference_inputs(name: str, m: dict) -> dict[str, str]:
    return source_files(m)


def freeze_settings(name: str, m: dict) -> dict:
    return {
        "model": name,
        "source_kind": source_kind(m),
        "model_ref": m.get("model"),
        "model_kwargs": m.get("model_kwargs", {}),
        "inputs": m["inputs"],
        **_loading(m),
    }


def reference_settings(m: dict) -> dict:
    return {
        "framework": m["framework"],
        "kind": source_kind(m),
        "model_ref": m.get("model"),
        "model_kwargs": m.get("model_kwargs", {}),
        **_loading(m),
    }


# ------------------------------------------------------------------------------------------------- freeze
def load_state_dict_model(
    checkpoint: str, ref: str, kwargs: dict, *, model: str, checkpoint_key=None, strip_prefix: str | None = None
):
    """Instantiate the configured class and load the checkpoint's weights into it (strictly). checkpoint_key: the
    entry (a list: nested entries) that holds the state_dict, as training scripts save it ({"model_state": ...,
    "optimizer": ..., "step": ...}); strip_prefix: taken off every key that has it (DataParallel's `module.`)."""
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
        raise FactoryError(
            f"cannot read the checkpoint safely (torch.load weights_only=True): {type(e).__name__}: "
            f"{str(e).strip() or 'no message'}",
            model=model,
            path=checkpoint,
        )
    state = _state_dict_of(state, checkpoint_key, strip_prefix, model=model, path=checkpoint)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that differ: torch lists them, one line each
        raise FactoryError(
            f"the checkpoint does not fit {ref}: {' '.join(str(e).split())[:600]}", model=model, path=checkpoint
        )
    if result.missing_keys or result.unexpected_keys:
        raise FactoryError(
            f"the checkpoint does not fit {ref}: {_key_mismatch(result, strip_prefix)}", model=model, path=checkpoint
        )
    return net.eval()


def _listed(keys, n: int = 6) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def _key_mismatch(result, strip_prefix) -> str:
    """missing/unexpected keys in one line, with the likely fix (a DataParallel prefix, a nesting)."""
    import os.path

    parts = []
    if result.missing_keys:
        parts.append(f"missing {len(result.missing_keys)} key(s): {_listed(result.missing_keys)}")
    if result.unexpected_keys:
        parts.append(f"unexpected {len(result.unexpected_keys)} key(s): {_listed(result.unexpected_keys)}")
    hint = ""
    prefix = os.path.commonprefix(list(result.unexpected_keys))
    if result.missing_keys and result.unexpected_keys and "." in prefix:
        prefix = prefix[: prefix.rindex(".") + 1]
        if all(k[len(prefix) :] in result.missing_keys for k in result.unexpected_keys[:20]):
            hint = f" (every unexpected key starts with '{prefix}': set strip_prefix: '{prefix}')"
    return "; ".join(parts) + hint


def _state_dict_of(state, checkpoint_key, strip_prefix, *, model: str, path: str) -> dict:
    """The state_dict inside what torch.load returned: under checkpoint_key where configured, else the whole file
    (or its `state_dict` entry, the common wrapper); keys with strip_prefix lose it."""
    import torch

    if checkpoint_key is not None:
        for level in [checkpoint_key] if isinstance(checkpoint_key, str) else checkpoint_key:
            if not isinstance(state, dict) or level not in state:
                found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
                raise FactoryError(
                    f"checkpoint_key '{level}' is not in the checkpoint (its keys: {found})",
                    model=model,
                    key=f"models.{model}.checkpoint_key",
                    path=path,
                )
            state = state[level]
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # the common {"state_dict": ..., "epoch": ...} wrapper
    if not isinstance(state, dict):
        raise FactoryError(
            f"expected a state_dict (a dict of tensors), found {type(state).__name__}", model=model, path=path
        )
    others = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if others:  # a training checkpoint ({"model_state": ..., "optimizer": ..., "step": 3}) read as a state_dict
        nested = [
            f"{k} ({len(v)} entries)"
            for k, v in state.items()
            if isinstance(v, dict) and v and all(isinstance(t, torch.Tensor) for t in v.values())
        ]
        raise FactoryError(
            f"the state_dict has entries that are no tensors: {_listed(map(str, others))}"
            + (f"; the weights look nested under {', '.join(nested)}: set checkpoint_key" if nested else ""),
            model=model,
            key=f"models.{model}.checkpoint_key",
            path=path,
        )
    if strip_prefix:
        state = {k[len(strip_prefix) :] if k.startswith(strip_prefix) else k: v for k, v in state.items()}
    return state


def example_args(input_specs: dict, shape_key: str = "opt"):
    import torch

    from ..tensors import random_inputs

    return tuple(torch.from_numpy(a) for a in random_inputs(input_specs, shape_key=shape_key, seed=0).values())


# ------------------------------------------------------------------------------------------------- calls and outputs
def leaf_paths(spec) -> list[str]:
    """The path of every leaf of a torch pytree spec, in flatten order ('' for a bare tensor)."""
    if spec.is_leaf():
        return [""]
    keys = spec.context if isinstance(spec.context, (list, tuple)) else None
    out = []
    for i, child in enumerate(spec.children_specs):
        key = str(keys[i]) if keys is not None and i < len(keys) else str(i)
        out += [f"{key}.{p}" if p else key for p in leaf_paths(child)]
    return out


def flat_outputs(result) -> tuple[list, list[str]]:
    """(leaves, their paths) of whatever a forward returned."""
    from torch.utils._pytree import tree_flatten

    leaves, spec = tree_flatten(result)
    return leaves, leaf_paths(spec)


def pick_outputs(found: list[str], outputs: list[str] | None, *, model: str) -> list[int]:
    """Which leaves (by index) become the ONNX outputs, in the config's order (see the module's docstring)."""
    if outputs is None:
        return list(range(len(found)))
    if set(outputs) <= set(found) and len(set(found)) == len(found):
        return [found.index(o) for o in outputs]
    if len(outputs) == len(found):
        return list(range(len(found)))
    raise FactoryError(
        f"the model returns {len(found)} outputs ({', '.join(p or '<tensor>' for p in found)}), "
        f"the config names {len(outputs)}: {outputs} (name the leaves by path, or one name each in "
        "order)",
        model=model,
        key=f"models.{model}.outputs",
    )


def _constant(value, type_name: str | None = None):
    import torch

    if isinstance(value, dict):  # {shape, fill, dtype}: a filled tensor (a zero state, a mask)
        return torch.full(value["shape"], value.get("fill", 0), dtype=getattr(torch, value.get("dtype", "float32")))
    if isinstance(value, list) or type_name == "Tensor":
        t = torch.tensor(value)
        return t.float() if t.dtype == torch.float64 else t
    return value


def forward_params(net) -> list[tuple[str, bool, str | None]]:
    """(name, has a default, TorchScript type or None) of the forward's arguments, self excluded."""
    import inspect

    schema = getattr(getattr(net, "forward", None), "schema", None)
    if schema is not None:  # a ScriptModule
        return [(a.name, a.has_default_value(), str(a.type)) for a in schema.arguments[1:]]
    params = inspect.signature(net.forward).parameters.values()
    return [
        (p.name, p.default is not inspect.Parameter.empty, None)
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def call_plan(net, n_inputs: int, constants: dict | None, *, model: str) -> list:
    """The forward's positional arguments: ("input", i) or ("const", value); trailing defaults are left out."""
    constants = constants or {}
    if not constants:
        return [("input", i) for i in range(n_inputs)]
    params = forward_params(net)
    unknown = sorted(set(constants) - {p[0] for p in params})
    if unknown:
        raise FactoryError(
            f"constant_args {unknown} are no arguments of the forward ({[p[0] for p in params]})",
            model=model,
            key=f"models.{model}.constant_args",
        )
    plan, i = [], 0
    for name, has_default, type_name in params:
        if name in constants:
            plan.append(("const", _constant(constants[name], type_name)))
        elif i < n_inputs:
            plan.append(("input", i))
            i += 1
        elif has_default:
            break
        else:
            raise FactoryError(
                f"forward argument '{name}' gets neither a configured input nor a constant_args value",
                model=model,
                key=f"models.{model}.constant_args",
            )
    if i < n_inputs:
        raise FactoryError(
            f"the forward takes {i} tensor argument(s) beside constant_args, the config has {n_inputs} inputs",
            model=model,
            key=f"models.{model}.inputs",
        )
    return plan


def _args(plan: list, inputs) -> list:
    return [inputs[v] if kind == "input" else v for kind, v in plan]


def _wrapper(net, plan: list, picks: list[int] | None):
    """An nn.Module whose forward takes the configured inputs only, binds the constants, and returns the picked
    leaves of the output as a flat tuple (picks None: the output as the model returns it)."""
    import torch

    class Bound(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, *inputs):
            result = self.net(*_args(plan, inputs))
            if picks is None:
                return result
            leaves = flat_outputs(result)[0]
            return tuple(leaves[i] for i in picks)

    bound = Bound()
    bound.takes_varargs = True
    bound.training = False  # not .eval(): an unlifted ExportedProgram's module refuses train(); net is in eval already
    return bound


def export_example_specs(input_specs: dict) -> dict:
    """The specs whose opt shape torch.export traces with: a dynamic dim of 1 at opt is taken as 2 where the
    profile allows it (torch specialises a size-1 example dim to the constant 1)."""
    out = {}
    for name, spec in input_specs.items():
        opt = [
            2 if isinstance(d, str) and o == 1 and spec["max"][i] >= 2 else o
            for i, (d, o) in enumerate(zip(spec["shape"], spec["opt"]))
        ]
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
        fixed += [
            f"{name}[{i}] ({d})"
            for i, d in enumerate(spec["shape"])
            if isinstance(d, str) and isinstance(shape[i], int)
        ]
    return fixed


def _as_called(net, shapes: tuple) -> tuple:
    """A bound wrapper's forward takes *inputs: torch.export wants their dynamic shapes as one tuple."""
    return (shapes,) if getattr(net, "takes_varargs", False) else shapes


def export_program(net, input_specs: dict, *, model: str, model_ref: str):
    """torch.export with the config's named Dims; where the model's code derives values from a dim (h // 2) and
    torch reports the named range violated, again with Dim.AUTO. Returns (program, facts about the path)."""
    import torch

    args = example_args(export_example_specs(input_specs))
    try:
        return torch.export.export(net, args, dynamic_shapes=_as_called(net, dynamic_shapes(input_specs))), {
            "dynamic_shapes": "Dim"
        }
    except Exception as e:
        strict = " ".join(str(e).split())[:300]
        if not any(dims for dims in dynamic_shapes(input_specs) if dims) or not any(
            w in strict for w in ("Constraints violated", "specializ", "specialis")
        ):
            raise FactoryError(
                f"torch.export failed for {model_ref} with the config's input specs: {strict}",
                model=model,
                key=f"models.{model}.inputs",
            )
    try:
        ep = torch.export.export(net, args, dynamic_shapes=_as_called(net, dynamic_shapes(input_specs, auto=True)))
    except Exception as e:
        raise FactoryError(
            f"torch.export failed for {model_ref} with named dims ({strict}) and with Dim.AUTO: "
            f"{' '.join(str(e).split())[:300]}",
            model=model,
            key=f"models.{model}.inputs",
        )
    fixed = _specialised(ep, input_specs)
    if fixed:
        raise FactoryError(
            f"torch.export specialised dims the config calls dynamic: {', '.join(fixed)} (the "
            "model's code fixes them: make those dims static in the config)",
            model=model,
            key=f"models.{model}.inputs",
        )
    return ep, {"dynamic_shapes": "Dim.AUTO", "named_dims_failed": strict}


def freeze_pytorch(
    checkpoint: str,
    out: str,
    *,
    model: str,
    model_ref: str,
    model_kwargs: dict,
    input_specs: dict,
    checkpoint_key=None,
    strip_prefix: str | None = None,
    constant_args: dict | None = None,
) -> dict:
    import torch

    net = load_state_dict_model(
        checkpoint, model_ref, model_kwargs, model=model, checkpoint_key=checkpoint_key, strip_prefix=strip_prefix
    )
    if constant_args:  # the program takes the configured inputs only
        net = _wrapper(net, call_plan(net, len(input_specs), constant_args, model=model), None)
    ep, path = export_program(net, input_specs, model=model, model_ref=model_ref)
    with atomic.atomic_path(out) as tmp:
        torch.export.save(ep, str(tmp))
    return {
        "format": "torch.export",
        "model_class": model_ref,
        "parameters": sum(p.numel() for p in net.parameters()),
        **path,
    }


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
        return freeze_pytorch(
            inputs["source"],
            outputs["frozen"],
            model=p["model"],
            model_ref=p["model_ref"],
            model_kwargs=p["model_kwargs"],
            input_specs=p["inputs"],
            checkpoint_key=p.get("checkpoint_key"),
            strip_prefix=p.get("strip_prefix"),
            constant_args=p.get("constant_args"),
        )
    return freeze_torchscript(inputs["source"], outputs["frozen"], model=p["model"])


# ------------------------------------------------------------------------------------------------- export
def _export_with(
    exporter: str,
    call,
    frozen: str,
    out: str,
    *,
    model: str,
    input_specs: dict,
    outputs: list[str],
    opset: int,
    cast_float64: bool = False,
) -> dict:
    """Run `call(tmp_path)` (one torch.onnx.export), then bring the file to the config's opset and I/O."""
    from ..graph.onnx_io import finish_onnx

    with atomic.atomic_path(out) as tmp:
        try:
            call(str(tmp))
        except Exception as e:
            raise _route_failed(exporter, e, model=model, path=frozen)
        facts = finish_onnx(
            tmp, model=model, input_specs=input_specs, outputs=outputs, opset=opset, cast_float64=cast_float64
        )
    return {"exporter": exporter, **facts}


class ExportFailed(FactoryError):
    """An exporter's own failure (not the config's): the next route may still work."""


def cause(e: BaseException) -> str:
    """The cause of an exporter's error in one line: torch.onnx wraps the real error (`__cause__`) in a page of
    advice ending "Refer to the full stack trace above"; the log has that trace (printed by _route_failed)."""
    root = e.__cause__ if e.__cause__ is not None and "stack trace above" in str(e) else e
    text = " ".join(ln.strip() for ln in str(root).strip().splitlines()[:2] if ln.strip()) or "no message"
    return f"{type(root).__name__}: {text}"[:500]


def _route_failed(exporter: str, e: BaseException, *, model: str, path: str) -> ExportFailed:
    import sys
    import traceback

    print(f"{exporter} failed for model '{model}'; the full traceback:", file=sys.stderr)
    traceback.print_exception(e, file=sys.stderr)  # the job's log keeps it; the record keeps the cause
    return ExportFailed(f"{exporter} failed: {cause(e)}", model=model, path=path)


def _leaf_names(found: list[str], picks: list[int], outputs: list[str] | None) -> list[str]:
    """A name for every leaf the exporter writes: the config's for the picked ones, the path for the others."""
    names = [f"unused.{p or i}" for i, p in enumerate(found)]
    for j, i in enumerate(picks):
        names[i] = outputs[j] if outputs else (found[i] or "output")
    return names


def _keep_outputs(path: str, keep: list[str]) -> None:
    """The ONNX graph's outputs become `keep`, in that order (the leaves the config names); no change: no write."""
    import onnx

    proto = onnx.load(path)
    current = [o.name for o in proto.graph.output]
    if current == keep:
        return
    by_name = {o.name: o for o in proto.graph.output}
    kept = [by_name[n] for n in keep]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    onnx.save(proto, path)


def reuse_onnx_registry() -> bool:
    """Let torch.onnx.export (dynamo) reuse its registry of ONNX translations instead of building it in every call:
    building it parses the source of ~500 onnxscript torchlib functions, ~1.0 s of each export (measured: torch
    2.13, onnxscript 0.7, a small CNN's whole export ~1.5 s). Built once per opset and per state of the torchlib
    registries (a model package that registers its own torchlib function changes that state, and gets a registry
    built anew), each export gets its own copy (the exporter adds a call's custom translations to it). The
    forkserver calls this before its warm-up export (engine_factory/warmup.py), so every job forked from it starts with
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
        return (
            key,
            len(_torchlib_registry._registry),
            tuple((name, len(f.overloads), len(f.complex)) for name, f in onnxscript_torchlib.default_registry.items()),
        )

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


def export_pt2(
    frozen: str, out: str, *, model: str, input_specs: dict, outputs: list[str], opset: int, cast_float64: bool = False
) -> dict:
    """The dynamo route: the frozen ExportedProgram; its output leaves picked and ordered as the config says."""
    import torch

    ep = torch.export.load(frozen)
    found = leaf_paths(ep.call_spec.out_spec)
    picks = pick_outputs(found, outputs, model=model)
    names = _leaf_names(found, picks, outputs)

    def call(tmp):
        torch.onnx.export(
            ep,
            (),
            tmp,
            dynamo=True,
            external_data=False,
            opset_version=max(opset, 18),
            input_names=list(input_specs),
            output_names=names,
            verbose=False,
        )
        _keep_outputs(tmp, [names[i] for i in picks])

    return _export_with(
        DYNAMO,
        call,
        frozen,
        out,
        model=model,
        input_specs=input_specs,
        outputs=outputs,
        opset=opset,
        cast_float64=cast_float64,
    )


def _dynamic_axes(input_specs: dict) -> dict:
    return {
        name: {i: d for i, d in enumerate(spec["shape"]) if isinstance(d, str)} for name, spec in input_specs.items()
    }


def _bound(net, input_specs: dict, outputs, constant_args, *, model: str, plan: list | None = None):
    """(wrapper taking the configured inputs and returning the picked leaves, example args, ONNX output names)."""
    import torch

    plan = plan or call_plan(net, len(input_specs), constant_args, model=model)
    args = example_args(export_example_specs(input_specs))
    with torch.no_grad():
        found = flat_outputs(net(*_args(plan, args)))[1]
    picks = pick_outputs(found, outputs, model=model)
    return _wrapper(net, plan, picks), args, [_leaf_names(found, picks, outputs)[i] for i in picks]


def export_eager(
    checkpoint: str,
    out: str,
    *,
    model: str,
    model_ref: str,
    model_kwargs: dict,
    input_specs: dict,
    outputs: list[str],
    opset: int,
    cast_float64: bool = False,
    checkpoint_key=None,
    strip_prefix: str | None = None,
    constant_args: dict | None = None,
) -> dict:
    """The legacy route of a state_dict model: the eager model (read again from the checkpoint) through
    torch.onnx.export(dynamo=False), its outputs flattened into a tuple first."""
    import torch

    net = load_state_dict_model(
        checkpoint, model_ref, model_kwargs, model=model, checkpoint_key=checkpoint_key, strip_prefix=strip_prefix
    )
    wrapper, args, names = _bound(net, input_specs, outputs, constant_args, model=model)
    return _export_with(
        LEGACY,
        lambda tmp: torch.onnx.export(
            wrapper,
            args,
            tmp,
            dynamo=False,
            opset_version=opset,
            input_names=list(input_specs),
            output_names=names,
            dynamic_axes=_dynamic_axes(input_specs),
        ),
        checkpoint,
        out,
        model=model,
        input_specs=input_specs,
        outputs=outputs,
        opset=opset,
        cast_float64=cast_float64,
    )


def export_torchscript(
    frozen: str, out: str, *, model: str, input_specs: dict, outputs: list[str], opset: int, cast_float64: bool = False
) -> dict:
    import torch

    scripted = load_torchscript(frozen, model=model)
    return _export_with(
        LEGACY,
        lambda tmp: torch.onnx.export(
            scripted,
            example_args(input_specs),
            tmp,
            dynamo=False,
            opset_version=opset,
            input_names=list(input_specs),
            output_names=list(outputs),
            dynamic_axes=_dynamic_axes(input_specs),
        ),
        frozen,
        out,
        model=model,
        input_specs=input_specs,
        outputs=outputs,
        opset=opset,
        cast_float64=cast_float64,
    )


TS_DYNAMO = "torch.onnx.export(dynamo=True) of the TorchScript converted by TS2EPConverter"


def export_torchscript_dynamo(
    frozen: str,
    out: str,
    *,
    model: str,
    input_specs: dict,
    outputs: list[str],
    opset: int,
    cast_float64: bool = False,
    constant_args: dict | None = None,
) -> dict:
    """The dynamo route of a TorchScript archive: converted to an ExportedProgram at the example (opt) inputs with
    constant_args bound, re-exported with the config's dynamic dims (its outputs flattened), then to ONNX."""
    import torch

    scripted = load_torchscript(frozen, model=model)
    try:
        from torch._export.converter import TS2EPConverter

        plan = call_plan(scripted, len(input_specs), constant_args, model=model)
        args = example_args(export_example_specs(input_specs))
        module = TS2EPConverter(scripted, tuple(_args(plan, args))).convert().module()
        wrapper, _, names = _bound(module, input_specs, outputs, constant_args, model=model, plan=plan)
        ep, _ = export_program(wrapper, input_specs, model=model, model_ref=frozen)
    except ExportFailed:
        raise
    except FactoryError as e:
        if e.key and e.key.endswith((".constant_args", ".outputs")):
            raise
        raise ExportFailed(f"{TS_DYNAMO} failed: {e}", model=model, path=frozen)
    except Exception as e:
        raise _route_failed(TS_DYNAMO, e, model=model, path=frozen)
    return _export_with(
        TS_DYNAMO,
        lambda tmp: torch.onnx.export(
            ep,
            (),
            tmp,
            dynamo=True,
            external_data=False,
            opset_version=max(opset, 18),
            input_names=list(input_specs),
            output_names=names,
            verbose=False,
        ),
        frozen,
        out,
        model=model,
        input_specs=input_specs,
        outputs=outputs,
        opset=opset,
        cast_float64=cast_float64,
    )


def routes(p: dict, inputs: dict, outputs: dict) -> list[tuple[str, object]]:
    """(route, call) in the order `exporter` tries them (see the module's docstring)."""
    exporter = p.get("exporter", "auto")
    kw = dict(
        model=p["model"],
        input_specs=p["inputs"],
        outputs=p["outputs"],
        opset=p["opset"],
        cast_float64=p.get("cast_float64", False),
    )
    constants = p.get("constant_args")
    if p["source_format"] == "pt2":
        dynamo = ("dynamo", lambda: export_pt2(inputs["source"], outputs["onnx"], **kw))
        eager = p.get("eager")
        legacy = (
            (
                "legacy",
                lambda: export_eager(
                    inputs["checkpoint"],
                    outputs["onnx"],
                    model_ref=eager["model_ref"],
                    model_kwargs=eager["model_kwargs"],
                    checkpoint_key=p.get("checkpoint_key"),
                    strip_prefix=p.get("strip_prefix"),
                    constant_args=constants,
                    **kw,
                ),
            )
            if eager and inputs.get("checkpoint")
            else None
        )
        order = {"dynamo": [dynamo], "legacy": [legacy], "auto": [dynamo, legacy]}[exporter]
    else:
        legacy = ("legacy", lambda: export_torchscript(inputs["source"], outputs["onnx"], **kw))
        dynamo = (
            "dynamo",
            lambda: export_torchscript_dynamo(inputs["source"], outputs["onnx"], constant_args=constants, **kw),
        )
        if constants and exporter == "legacy":
            raise FactoryError(
                "constant_args are bound on the dynamo route only (the legacy exporter cannot call a "
                "TorchScript forward with constants): set exporter to auto or dynamo",
                model=p["model"],
                key=f"models.{p['model']}.exporter",
            )
        order = {"dynamo": [dynamo], "legacy": [legacy], "auto": [dynamo] if constants else [legacy, dynamo]}[exporter]
    return [r for r in order if r is not None]


def export(inputs: dict, outputs: dict, p: dict) -> dict:
    """The first route of `exporter` that works; a fallback and the error that caused it are recorded."""
    failed = []
    for route, call in routes(p, inputs, outputs):
        try:
            facts = call()
        except ExportFailed as e:
            failed.append((route, e))
            continue
        if failed:
            facts["exporter_fallback"] = [{"route": r, "error": _reason(e)} for r, e in failed]
        return {**facts, "exporter_requested": p.get("exporter", "auto")}
    if len(failed) == 1:
        raise failed[0][1]
    name = p["model"]
    raise FactoryError(
        "no export route worked: "
        + "; ".join(f"{r}: {_reason(e)}" for r, e in failed)
        + " (the log has each traceback; next: fix the model code the error names, or export the "
        "ONNX yourself and configure it as framework: onnx)",
        model=name,
        key=f"models.{name}.exporter",
    )


def _reason(e: FactoryError) -> str:
    return str(e).split(": ", 1)[-1] if str(e).startswith("model ") else str(e)


# ------------------------------------------------------------------------------------------------- reference
def reference_outputs(source: dict, feeds: dict, outputs: list[str] | None, *, model: str, device: str = "cpu"):
    """The model as PyTorch defines it, on `device` ("cpu" or "cuda"), always in fp32 (TF32 off, so a GPU golden
    stays fp32)."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise FactoryError("golden_device is cuda but torch sees no CUDA GPU here", model=model, key="golden_device")
    if source["kind"] == "checkpoint":
        net = load_state_dict_model(
            source["path"],
            source["model_ref"],
            source.get("model_kwargs", {}),
            model=model,
            checkpoint_key=source.get("checkpoint_key"),
            strip_prefix=source.get("strip_prefix"),
        )
    else:
        net = load_torchscript(source["path"], model=model)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    net = net.to(device)
    plan = [
        (k, v.to(device) if isinstance(v, torch.Tensor) else v)
        for k, v in call_plan(net, len(feeds), source.get("constant_args"), model=model)
    ]
    with torch.no_grad():
        result = net(*_args(plan, [torch.from_numpy(a).to(device) for a in feeds.values()]))
    leaves, found = flat_outputs(result)  # the export's order and picks (see the module's docstring)
    picks = pick_outputs(found, outputs, model=model)
    names = list(outputs) if outputs else [found[i] or "output" for i in picks]
    return {name: leaves[i].detach().float().cpu().numpy() for name, i in zip(names, picks)}
