"""A Triton Inference Server model repository entry per (model, precision): `artifacts/triton/<name>/config.pbtxt`
and the version directory `1/` holding one plan per compute capability.

    config.pbtxt   platform "tensorrt_plan"; inputs/outputs with Triton data types and dims from the plans' ONNX
                   variant; max_batch_size and dynamic_batching from the optimization profile; cc_model_filenames
                   "8.6" -> "model.sm86.plan" for every compute capability whose plan passes the policy
    1/model.sm86.plan, ...

The config is Triton's own protobuf message (`tritonclient.grpc.model_config_pb2.ModelConfig`), written with
`google.protobuf.text_format`, so what Triton parses is what was built; `read_config` parses it back the same way.

Which plans go in is the config's policy (`deploy.triton`, config/README.md): plans whose validation status is in
`include` (default pass and not-run: without a GPU here, execution is not-run); never one whose validation failed
(the schema does not accept `fail`) or whose build failed (the factory hands failed targets to no job). A `not-run`
plan goes in only with numeric evidence (outcomes.Evidence: its ONNX variant's parity, or for fp16/bf16 onnxruntime
cannot run, the fp32 emulation); one nothing checked ("not verified") stays out unless `unverified: true`. A plan
that is not what its provenance record says (size, sha256) or whose header does not read is damaged and never goes in
(`left_out` says why); the bytes placed are checked against the record once more.

The plans are hard-linked into `1/`, falling back to a copy across file systems: a link costs no space for large
plans, and since every stage replaces its output by rename, a rebuilt plan is a new file and the repository keeps
the bytes it was made from until the deploy stage runs again. The whole model directory is written under a
temporary name and renamed, so Triton (or a copy of the repository) never sees half of one.

Where no plan passes, the repository is withheld: no model directory (Triton would refuse to start on one without a
plan), and the deploy record `artifacts/deploy/<name>.json` says why. A withheld repository is a result, as a published
one is (the run is not failed for it): the record is the rule's output, the model directory its published side.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import string
from pathlib import Path

from .. import atomic, paths, provenance
from ..backends.header import read_header
from ..errors import FactoryError
from ..outcomes import EVIDENCE_TEXT, Evidence, Outcome, evidence_of

POLICY_DEFAULTS = {
    "enabled": False,  # the demo zoo turns it on; a user's zoo opts in (config/README.md)
    "name": "{model}_{precision}",  # the Triton model name and directory
    "include": [Outcome.PASS, Outcome.NOT_RUN],  # validation statuses a plan may have ("fail" is never deployable)
    "unverified": False,  # deploy plans with no numeric evidence at all (evidence "none"): off, nothing unchecked ships
    "precisions": None,  # None: every precision of the model
    "dynamic_batching": True,  # where the profile has a dynamic batch axis
    "max_queue_delay_microseconds": 100,
    "instances": 1,  # instance_group count per GPU
}
NAME_FIELDS = {"model", "precision"}
PLATFORM = "tensorrt_plan"
BUILD_TYPE = "urn:engine-factory:buildtype:triton-repository:v1"
# ONNX element type (onnx.TensorProto name) -> Triton DataType (model_config.proto)
DATA_TYPES = {
    "FLOAT": "TYPE_FP32",
    "FLOAT16": "TYPE_FP16",
    "BFLOAT16": "TYPE_BF16",
    "DOUBLE": "TYPE_FP64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "BOOL": "TYPE_BOOL",
    "STRING": "TYPE_STRING",
}


# ------------------------------------------------------------------------------------------------ policy
def policy(cfg: dict) -> dict:
    return {**POLICY_DEFAULTS, **(cfg.get("deploy") or {}).get("triton", {})}


def repository_name(pol: dict, model: str, precision: str) -> str:
    return pol["name"].format(model=model, precision=precision)


def deploy_precisions(pol: dict, precisions: list[str]) -> list[str]:
    """Of a model's precisions (its config settings), those the policy deploys."""
    wanted = pol["precisions"]
    return [p for p in precisions if wanted is None or p in wanted]


def check_policy(cfg: dict, precisions: dict[str, list[str]]) -> None:
    """The name template uses only {model} and {precision}; every name it makes is a safe directory name and
    names one (model, precision) only. `precisions`: {model: its precisions}, as config settles them."""
    pol = policy(cfg)
    key = "deploy.triton.name"
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(pol["name"]) if f is not None}
    except ValueError as e:
        raise FactoryError(f"'{pol['name']}' is not a name template ({e})", key=key)
    if not fields <= NAME_FIELDS:
        raise FactoryError(
            f"'{pol['name']}' uses {sorted(fields - NAME_FIELDS)}; a name may use {{model}} and {{precision}} only",
            key=key,
        )
    seen: dict[str, tuple] = {}
    for model in cfg["models"]:
        for precision in deploy_precisions(pol, precisions[model]):
            name = repository_name(pol, model, precision)
            if not paths.SAFE_NAME.fullmatch(name) or ".." in name:
                raise FactoryError(
                    f"'{name}' is no directory name (letters, digits, '_', '-', '.')", key=key, model=model
                )
            if name in seen:
                raise FactoryError(
                    f"'{pol['name']}' names both {seen[name]} and {(model, precision)} '{name}': "
                    "add {precision} (or {model})",
                    key=key,
                )
            seen[name] = (model, precision)


# ------------------------------------------------------------------------------------------------ config.pbtxt
def _pb():
    from tritonclient.grpc import model_config_pb2  # Triton's own schema (tritonclient, requirements.txt)

    return model_config_pb2


def data_type(onnx_elem_type: int, *, model: str, tensor: str) -> int:
    import onnx

    name = onnx.TensorProto.DataType.Name(onnx_elem_type)
    if name not in DATA_TYPES:
        raise FactoryError(f"tensor '{tensor}' has ONNX type {name}, which Triton has no data type for", model=model)
    return _pb().DataType.Value(DATA_TYPES[name])


def batch_axis(input_specs: dict, outputs: dict) -> int | None:
    """The profile's max batch when axis 0 is one dynamic dim shared by every input and output, whose profile starts
    at 1 (Triton sends any batch from 1 to max_batch_size); else None (Triton then passes full shapes)."""
    first = {spec["shape"][0] for spec in input_specs.values()}
    if len(first) != 1 or not isinstance(next(iter(first)), str):
        return None
    symbol = next(iter(first))
    if any(spec["min"][0] != 1 for spec in input_specs.values()):
        return None
    if len({spec["max"][0] for spec in input_specs.values()}) != 1:
        return None
    if not outputs or any(not dims or dims[0] != symbol for dims in outputs.values()):
        return None
    return next(iter(input_specs.values()))["max"][0]


def _onnx_io(onnx_path: str) -> tuple[dict, dict]:
    """({input: elem_type}, {output: (elem_type, dims)}) of the plans' ONNX variant; dims: int, or the dim's
    name (str) when dynamic, or None when unknown."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}

    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in v.type.tensor_type.shape.dim]

    inputs = {v.name: v.type.tensor_type.elem_type for v in proto.graph.input if v.name not in inits}
    outputs = {v.name: (v.type.tensor_type.elem_type, dims(v)) for v in proto.graph.output}
    return inputs, outputs


def model_config(
    name: str,
    *,
    model: str,
    onnx_path: str,
    input_specs: dict,
    plan_files: dict[str, str],
    pol: dict,
    default_file: str | None,
):
    """The ModelConfig message of one repository entry. `plan_files`: {"8.6": "model.sm86.plan"}."""
    pb = _pb()
    in_types, outputs = _onnx_io(onnx_path)
    missing = sorted(set(input_specs) - set(in_types))
    if missing:
        raise FactoryError(f"the ONNX variant lacks the configured input(s) {missing}", model=model, path=onnx_path)
    max_batch = batch_axis(input_specs, {o: d for o, (_, d) in outputs.items()})
    skip = 1 if max_batch else 0  # with max_batch_size > 0 Triton's dims leave the batch axis out
    cfg = pb.ModelConfig(name=name, platform=PLATFORM, max_batch_size=max_batch or 0)
    for tensor, spec in input_specs.items():
        cfg.input.add(
            name=tensor,
            data_type=data_type(in_types[tensor], model=model, tensor=tensor),
            dims=[d if isinstance(d, int) else -1 for d in spec["shape"][skip:]],
        )
    for tensor, (elem, dims) in outputs.items():
        cfg.output.add(
            name=tensor,
            data_type=data_type(elem, model=model, tensor=tensor),
            dims=[d if isinstance(d, int) else -1 for d in dims[skip:]],
        )
    if max_batch and pol["dynamic_batching"]:
        opt = next(iter(input_specs.values()))["opt"][0]
        cfg.dynamic_batching.preferred_batch_size.extend(sorted({opt, max_batch}))
        cfg.dynamic_batching.max_queue_delay_microseconds = pol["max_queue_delay_microseconds"]
    cfg.instance_group.add(kind=pb.ModelInstanceGroup.KIND_GPU, count=pol["instances"])
    for cc, file in sorted(plan_files.items()):
        cfg.cc_model_filenames[cc] = file
    # A GPU without its own plan: a portable plan (hardware compatibility) where there is one; otherwise a name
    # that is never written, so Triton refuses to load naming the file instead of loading a plan built for
    # another GPU (which fails deep inside TensorRT).
    cfg.default_model_filename = default_file or "model.plan"
    return cfg


def write_config(path, cfg) -> None:
    from google.protobuf import text_format

    atomic.write_bytes(path, text_format.MessageToString(cfg).encode())


def read_config(path):
    """The ModelConfig in a config.pbtxt, parsed with Triton's schema; a file that does not parse is an error naming
    it and the line."""
    from google.protobuf import text_format

    try:
        text = Path(path).read_text()
    except OSError as e:
        raise FactoryError(f"cannot read the Triton model config: {e.strerror}", path=str(path))
    try:
        return text_format.Parse(text, _pb().ModelConfig())
    except text_format.ParseError as e:
        raise FactoryError(f"not a Triton ModelConfig: {e}", path=str(path))


# ------------------------------------------------------------------------------------------------ the stage
def select_plans(
    plans: dict[str, dict], include: list[str], *, model: str, unverified: bool = False
) -> tuple[dict, dict]:
    """({cc: plan entry} the policy accepts, {cc: why not}) from each plan's validation.json. The evidence is read
    from its checks (an older validation.json has no `evidence` field)."""
    chosen, refused = {}, {}
    for cc, entry in sorted(plans.items()):
        result = atomic.read_json(entry["validation"])
        if not isinstance(result, dict) or "status" not in result:
            raise FactoryError("validation result is missing or unreadable", model=model, path=entry["validation"])
        status = result["status"]
        evidence = evidence_of(result.get("checks") or {})
        if status in include and status != Outcome.FAIL and evidence == Evidence.NONE and not unverified:
            refused[cc] = f"validation {status}, {EVIDENCE_TEXT[evidence]}: no numeric check (deploy.triton.unverified)"
        elif status in include and status != Outcome.FAIL:
            chosen[cc] = {**entry, "status": status, "evidence": evidence}
        else:
            refused[cc] = f"validation {status}" + (f" ({_first_reason(result)})" if status == Outcome.FAIL else "")
    return chosen, refused


def _first_reason(result: dict) -> str:
    for name, check in (result.get("checks") or {}).items():
        if check.get("status") == Outcome.FAIL:
            return f"{name}: {str(check.get('reason', ''))[:200]}"
    return "no reason recorded"


def damage(plan: str) -> str | None:
    """Why a plan must not be published (None: it may): it fails its own provenance record (size, sha256:
    provenance.intact, cached by stat) or its header does not read (backends/header.py). A power loss leaves plans
    emptied, halved or zeroed that Snakemake, judging by dates, hands to this stage as built."""
    if why := provenance.intact(plan):
        return f"damaged: {why}"
    if problem := read_header(plan)["problem"]:
        return f"damaged: its header: {problem}"
    return None


def _link_or_copy(src: str, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(src, dst)
        return "copy"


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


PUBLISHED, WITHHELD = "published", "withheld"


def write_repository(record: str, *, inputs: dict[str, str], settings: dict) -> dict:
    """The deploy stage: write the repository's model directory (artifacts/triton/<name>) from the plans in `inputs`
    (labels plan_sm<cc>, validation_sm<cc>, onnx) that pass the policy, with its provenance and in-toto statement;
    or, where none passes, withhold it: no model directory (an earlier one of these plans must not stay servable).
    Either is a result, not a failure: `record` (artifacts/deploy/<name>.json, with its provenance) says which and why,
    and the workflow signs only a published one (Snakefile: a checkpoint)."""
    model_dir = Path(paths.triton_model(settings["repository"]))
    try:
        facts = _publish(model_dir, inputs=inputs, settings=settings)
    except BaseException:  # a half-decided repository is not served either
        shutil.rmtree(model_dir, ignore_errors=True)
        raise
    result = {
        "status": PUBLISHED if facts["plans"] else WITHHELD,
        "repository": settings["repository"],
        "model": settings["model"],
        "precision": settings["precision"],
        **facts,
    }
    if not facts["plans"]:
        result["reason"] = (
            f"no plan of {settings['precision']} passes the deploy policy (include: "
            f"{', '.join(settings['policy']['include'])}): "
            + "; ".join(f"{cc} {why}" for cc, why in facts["left_out"].items())
        )
        print(f"withheld: {result['reason']}", flush=True)  # the job's log says it
    atomic.write_json(record, result)
    provenance.write(record, stage="deploy", inputs=inputs, params=settings, facts={"status": result["status"]})
    return result


def _publish(model_dir: Path, *, inputs: dict[str, str], settings: dict) -> dict:
    model, pol = settings["model"], settings["policy"]
    plans = {
        cc: {"plan": inputs[f"plan_sm{paths.cc_tag(cc)}"], "validation": inputs[f"validation_sm{paths.cc_tag(cc)}"]}
        for cc in settings["compute_capabilities"]
    }
    chosen, refused = select_plans(plans, pol["include"], model=model, unverified=pol.get("unverified", False))
    for cc in list(chosen):  # what is published is what was built and checked: never a damaged plan
        if why := damage(chosen[cc]["plan"]):
            refused[cc] = why
            del chosen[cc]
    config_path = str(model_dir / "config.pbtxt")
    if not chosen:
        shutil.rmtree(model_dir, ignore_errors=True)
        return {"plans": {}, "left_out": refused}
    files = {cc: paths.triton_plan_file(cc) for cc in chosen}
    default = files[min(chosen, key=lambda c: tuple(map(int, c.split("."))))] if settings["portable"] else None
    cfg = model_config(
        settings["repository"],
        model=model,
        onnx_path=inputs["onnx"],
        input_specs=settings["inputs"],
        plan_files=files,
        pol=pol,
        default_file=default,
    )
    entries = []
    with atomic.atomic_path(model_dir) as tmp:
        (tmp / paths.TRITON_VERSION).mkdir(parents=True)
        write_config(tmp / "config.pbtxt", cfg)
        for cc, entry in chosen.items():
            how = _link_or_copy(entry["plan"], tmp / paths.TRITON_VERSION / files[cc])
            placed = _sha256(tmp / paths.TRITON_VERSION / files[cc])
            recorded = (atomic.read_json(paths.provenance(entry["plan"])) or {}).get("artifact", {}).get("sha256")
            if placed != recorded:  # changed between the check and the link: nothing of this directory is published
                raise FactoryError(
                    f"the plan placed for {cc} has sha256 {placed[:12]}…, its record {str(recorded)[:12]}…: "
                    "not published",
                    model=model,
                    path=entry["plan"],
                )
            entries.append(
                {
                    "compute_capability": cc,
                    "file": paths.triton_plan(str(model_dir), cc),
                    "source": entry["plan"],
                    "sha256": placed,
                    "validation": entry["status"],
                    "evidence": entry["evidence"],
                    "placed_by": how,
                }
            )
    facts = {
        "repository": settings["repository"],
        "platform": PLATFORM,
        "max_batch_size": cfg.max_batch_size,
        "plans": entries,
        "left_out": refused,
        "policy": pol,
        "key": settings["key"],
        "triton_unloadable": settings.get("triton_unloadable"),
    }
    if settings.get("triton_unloadable"):
        print(f"note: {settings['triton_unloadable']}", flush=True)  # the job's log says it, as the README does
    provenance.write(config_path, stage="deploy", inputs=inputs, params=settings, facts=facts)
    write_statement(config_path, entries)
    return {
        "directory": model_dir.as_posix(),
        "plans": {e["compute_capability"]: e["file"] for e in entries},
        "left_out": refused,
        "max_batch_size": cfg.max_batch_size,
    }


def write_statement(config_path: str, entries: list[dict]) -> str:
    """The repository's in-toto statement: subjects config.pbtxt and every plan in it, the chain of each plan back
    to its checkpoint as resolved dependencies (scripts/engine_factory/intoto.py)."""
    from .. import intoto

    record = atomic.read_json(paths.provenance(config_path))
    st = intoto.statement(record)
    st["subject"] += [{"name": e["file"], "digest": {"sha256": e["sha256"]}} for e in entries]
    st["predicate"]["buildDefinition"]["buildType"] = BUILD_TYPE
    out = paths.intoto(config_path)
    atomic.write_json(out, st)
    return out
