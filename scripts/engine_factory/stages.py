"""The stage runners the rules call: `python -m engine_factory run <stage> '<spec>'`.

A spec is {"inputs": {label: path}, "outputs": {label: path}, "params": {...}}, built by the workflow from the
config (so Snakemake's params trigger re-runs exactly the jobs whose settings changed). Each runner calls one
plain function and writes the provenance sidecar of its main output.
"""

from __future__ import annotations

from . import atomic, cutoff, intoto, paths, provenance, signing
from .errors import UnknownStage

RUNNERS = {}


def runner(name):
    def register(fn):
        RUNNERS[name] = fn
        return fn

    return register


def run(stage: str, spec: dict) -> dict:
    """Run one stage. A deterministic failure is recorded (scripts/engine_factory/failures.py) and re-raised; success
    clears the job's earlier record. `spec["wildcards"]` names the job (the workflow passes it; plain calls may omit
    it)."""
    from . import failures

    if stage not in RUNNERS:
        raise UnknownStage(f"unknown stage '{stage}' (stages: {', '.join(sorted(RUNNERS))})")
    wildcards = spec.get("wildcards") or {}
    try:
        facts = RUNNERS[stage](spec["inputs"], spec["outputs"], spec["params"])
    except BaseException as e:
        if wildcards:
            failures.record(stage, wildcards, spec["inputs"], spec["params"], e)
        raise
    if wildcards:
        failures.clear(stage, wildcards)
    return facts


def _record(artifact, stage, inputs, params, facts):
    provenance.write(artifact, stage=stage, inputs=inputs, params=params, facts=facts)
    return facts


def _result(out: str, stage: str, inputs: dict, params: dict) -> dict:
    """A result (parity, validation) gets its own provenance record, as an artifact does: `verify` then re-hashes what
    the report and deploy read (a damaged or edited verdict is tampered, one made from an earlier plan is stale)."""
    provenance.write(out, stage=stage, inputs=inputs, params=params)


def _recorded(stage: str, params: dict) -> dict:
    """What a result without a sidecar (parity, validation) records of how it was made, for `status`."""
    return {"params": params, "tools": provenance.stage_tools(stage)}


@runner("demo")
def demo(inputs, outputs, params):
    from .demo import make_asset

    make_asset(outputs["asset"])
    return {}


@runner("freeze")
@runner("freeze_tf")
def freeze(inputs, outputs, p):
    from .frameworks import framework_of

    return _record(outputs["frozen"], "freeze", inputs, p, framework_of(p).freeze(inputs, outputs, p))


@runner("export")
def export(inputs, outputs, p):
    from .frameworks import framework_of

    return _record(outputs["onnx"], "export", inputs, p, framework_of(p).export(inputs, outputs, p))


@runner("simplify")
def simplify(inputs, outputs, p):
    from .graph.simplify import simplify_onnx

    facts = simplify_onnx(
        inputs["onnx"], outputs["onnx"], model=p["model"], input_specs=p["inputs"], simplifier=p["simplifier"]
    )
    return _record(outputs["onnx"], "simplify", inputs, p, facts)


@runner("precision")
def precision(inputs, outputs, p):
    """The variant (searched for the nodes to keep in higher precision where the model's `precision_search` says
    so), then its parity against the golden outputs; a variant that is not what its label says fails its parity."""
    from .graph.precision import make_precision_variant
    from .graph.precision_search import emulated_parity, low_precision_overflow, summary
    from .graph.variant import LOW_TYPES, label_problem
    from .validation.validate import write_parity

    facts = make_precision_variant(
        inputs["onnx"],
        outputs["onnx"],
        p["precision"],
        model=p["model"],
        input_specs=p["inputs"],
        calibration_path=inputs.get("calibration") or p.get("calibration"),
        calibration_code=p.get("calibration_code"),
        search=p.get("search"),
        golden_path=inputs["golden"],
        tolerance=p["tolerance"],
    )
    _record(outputs["onnx"], "precision", inputs, p, facts)
    search = facts.get("search")
    notes = {}
    if search:
        notes["precision_search"] = {
            **{k: search[k] for k in ("status", "trials", "seconds", "kept")},
            **({"would_need": search["would_need"]} if "would_need" in search else {}),
            "summary": summary(search),
        }
    problem = label_problem(facts)
    overflow = low_precision_overflow(outputs["onnx"], inputs["onnx"], inputs["golden"], p["tolerance"], p["precision"])
    if overflow:  # what onnxruntime's CPU provider hides (it runs fp16 ops without a kernel in fp32)
        notes["emulated"] = overflow
        problem = problem or overflow["reason"]
    facts["parity"] = write_parity(
        outputs["parity"],
        onnx_path=outputs["onnx"],
        golden_path=inputs["golden"],
        tolerance=p["tolerance"],
        variant=p["precision"],
        recorded=_recorded("precision", p),
        problem=problem,
        notes=notes or None,
        emulate=(  # the verdict where onnxruntime cannot run the variant (bf16 Conv): checked, never "not-run" alone
            (lambda: emulated_parity(outputs["onnx"], inputs["onnx"], inputs["golden"], p["tolerance"], p["precision"]))
            if p["precision"] in LOW_TYPES
            else None
        ),
    )
    _result(outputs["parity"], "precision", {"onnx": outputs["onnx"], "golden": inputs["golden"]}, p)
    return facts


@runner("golden")
def golden(inputs, outputs, p):
    from .validation.golden import make_golden

    # io: TensorFlow's tensor sidecar; imported: an ONNX source's model.onnx (the reference where the source cannot run)
    source = {**p["source"], "path": inputs["source"], "io": inputs.get("io"), "imported": inputs.get("imported")}
    facts = make_golden(
        outputs["golden"],
        model=p["model"],
        source=source,
        input_specs=p["inputs"],
        outputs=p["outputs"],
        seed=p["seed"],
        samples=inputs.get("samples"),
        device=p.get("device", "cpu"),
    )
    return _record(outputs["golden"], "golden", inputs, p, facts)


@runner("parity")
def parity(inputs, outputs, p):
    """The exported and the simplified ONNX of one model against its golden outputs."""
    from .validation.validate import write_parity

    facts = {}
    for variant in ("export", "sim"):
        facts[variant] = write_parity(
            outputs[variant],
            onnx_path=inputs[variant],
            golden_path=inputs["golden"],
            tolerance=p["tolerance"],
            variant=variant,
            recorded=_recorded("parity", p),
        )
        _result(outputs[variant], "parity", {"onnx": inputs[variant], "golden": inputs["golden"]}, p)
    return facts


@runner("build")
def build(inputs, outputs, p):
    """Every target of the job's set, one after another in this process (one import, one ONNX parse each); and,
    where the job's outputs name validations (no GPU can run the plans), each plan's validation right after it."""
    from .backends import load_backend
    from .paths import cc_tag

    # early cutoff (cutoff.py): the same ONNX by content and the same build settings as an earlier run -> its plans
    # back. The validation's settings and inputs (tolerance, parity, golden) are not part of it: a tolerance change
    # re-validates the kept plans and builds nothing.
    built = {k: v for k, v in outputs.items() if not k.startswith("json_")}
    action = cutoff.action(
        "build",
        {"onnx": provenance.describe_input("onnx", inputs["onnx"])["sha256"]},
        {k: v for k, v in p.items() if k != "validation"},
    )
    kept = cutoff.restore(built, action)
    backend = None if kept else load_backend(p["backend"])
    facts = {}
    for cc in p["compute_capabilities"]:
        tag = cc_tag(cc)
        plan = outputs[f"plan_sm{tag}"]
        if kept:
            facts[cc] = _kept(plan, inputs, p, action)
        else:
            facts[cc] = _build_one(
                backend,
                inputs,
                {k: outputs[f"{k}_sm{tag}"] for k in ("plan", "intoto")},
                p,
                cc,
                (p["timing_caches"] or {}).get(tag),
            )
        if f"json_sm{tag}" in outputs:
            _validate_one(inputs, outputs[f"json_sm{tag}"], plan, {**p, **p["validation"]}, cc)
    if kept:
        print(f"early cutoff: the ONNX and build settings equal an earlier build's ({action[:12]}): its plans kept")
    else:
        cutoff.remember(built, action)
    return facts


def _kept(plan: str, inputs: dict, p: dict, action: str) -> dict:
    """A plan the early cutoff gave back: its record rewritten for this job's inputs and settings (the bytes and the
    build's facts are the earlier run's; the in-toto statement names the same digest)."""
    old = atomic.read_json(paths.provenance(plan)) or {}
    facts = {**old.get("facts", {}), "early_cutoff": action}
    provenance.write(
        plan,
        stage="build",
        inputs=inputs,
        params=p,
        facts=facts,
        host=old.get("host"),
        artifact_sha256=old.get("artifact", {}).get("sha256"),
    )
    return facts


def _build_one(backend, inputs, outputs, p, cc, timing_cache):
    from .backends.core import build_plan
    from .gpus import pinned_gpu_if
    from .host import job_host_facts

    opts = p.get("tensorrt") or {}
    host = job_host_facts()  # provenance; for full TensorRT also the checks and the GPU pin below
    check_host_matches_key(backend, p, cc, host)  # on arrival: a job on the wrong node (Slurm pool) stops here
    # full TensorRT builds on (and for) one local GPU of the key's compute capability; RTX needs none
    with pinned_gpu_if(backend.builds_on_gpu, host, cc, model=p["model"]) as gpu:
        facts = build_plan(
            backend.module,
            inputs["onnx"],
            outputs["plan"],
            model=p["model"],
            input_profiles={
                k: {s: v[s] for s in ("min", "opt", "max", "values") if s in v} for k, v in p["inputs"].items()
            },
            workspace_mb=p["build"]["workspace_mb"],
            optimization_level=p["build"]["optimization_level"],
            tf32=p["build"].get("tf32", False),
            compute_capability=backend.aot_target(cc),
            timing_cache_path=timing_cache,
            hardware_compatibility_level=opts.get("hardware_compatibility_level"),
            version_compatible=opts.get("version_compatible", False),
            precision=p["precision"],
            log=lambda *a: print(*a, flush=True),
        )
    facts["gpu"] = gpu
    facts["compute_capability"] = cc
    if not timing_cache:
        facts["timing_cache"] = {"path": None, "reason": backend.timing_cache_unused or "no timing cache configured"}
    provenance.write(
        outputs["plan"],
        stage="build",
        inputs=inputs,
        params=p,
        facts=facts,
        host=host,
        artifact_sha256=facts.pop("plan_sha256"),
    )
    intoto.write_statement(outputs["plan"], outputs.get("intoto"))
    return facts


def check_host_matches_key(backend, p: dict, cc: str, host: dict) -> None:
    """The job's key names a backend version (and, where builds run on a GPU, its compute capability): refuse to
    build anything else."""
    from .errors import WrongHost

    if not p["key"].startswith(backend.key) or p["key"][len(backend.key) :][:1] not in ("", "-"):
        raise WrongHost(
            f"this job builds key '{p['key']}' but the installed backend is '{backend.key}'", model=p["model"]
        )
    if backend.builds_on_gpu:
        ccs = {g["compute_capability"] for g in host["gpus"]}
        if cc not in ccs:
            raise WrongHost(
                f"this job builds for compute capability {cc} but this host's "
                f"GPUs are {sorted(ccs) or 'none'} ({_where(host)})",
                model=p["model"],
            )


def _where(host: dict) -> str:
    """This host, and the Slurm job and partition when the job runs under Slurm (a pool routed to the wrong nodes)."""
    import os

    job, partition = os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_JOB_PARTITION")
    return f"host {host.get('hostname')}" + (f", Slurm job {job} in partition {partition}" if job else "")


@runner("validate")
def validate(inputs, outputs, p):
    from .paths import cc_tag

    return {
        cc: _validate_one(inputs, outputs[f"json_sm{cc_tag(cc)}"], inputs[f"plan_sm{cc_tag(cc)}"], p, cc)
        for cc in p["compute_capabilities"]
    }


def _validate_one(inputs, out, plan, p, cc):
    from .gpus import gpus_of, pinned_gpu_if
    from .host import job_host_facts
    from .validation.validate import validate_plan

    host = job_host_facts()
    # Run on one GPU of the plan's compute capability when there is one (held, so jobs don't share it);
    # otherwise execution reports not-run with the reason.
    with pinned_gpu_if(bool(gpus_of(host, cc)), host, cc, model=p["model"]) as gpu:
        run_host = {**host, "gpus": [gpu]} if gpu else host
        verdict = validate_plan(
            out,
            plan=plan,
            parity=inputs["parity"],
            golden_path=inputs["golden"],
            tolerance=p["tolerance"],
            backend=p["backend"],
            key=p["key"],
            version=p["version"],
            cc=cc,
            precision=p["precision"],
            opt_shapes=p["inputs"],
            host=run_host,
            onnx_path=inputs["onnx"],
            recorded=_recorded("validate", p),
            trust=signing.Trust(p["trust"]["trusted_keys"], p["trust"]["revoked_keys"]) if p.get("trust") else None,
        )
    _result(out, "validate", {"plan": plan, "parity": inputs["parity"], "golden": inputs["golden"]}, p)
    return verdict


@runner("deploy")
def deploy(inputs, outputs, p):
    from .deploy.triton import write_repository

    return write_repository(outputs["record"], inputs=inputs, settings=p)  # provenance and statement included


@runner("report")
def report(inputs, outputs, p):
    from .report import write_report

    return write_report(
        outputs["json"],
        outputs["html"],
        jobs=p["jobs"],
        skipped=p["skipped"],
        models=p["models"],
        backend=p["backend"],
        failed=p.get("failed", []),
    )
