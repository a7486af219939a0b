# Config, host and targets (scripts/engine_factory/factory.py resolves them; `python -m engine_factory check` asks the same function), and
# the helpers that all rules use. Runs at DAG time, so it stays cheap.
import json
import os
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, workflow.basedir)
from engine_factory import cluster, jobs, paths, scheduling
from engine_factory.config import load
from engine_factory.errors import FactoryError
from engine_factory.factory import job_environment, resolve
from engine_factory.host import probe_host
from engine_factory.provenance import stage_tools
from engine_factory.report import verdict, write_report

try:
    # The user's zoo alone: the --configfile files (overlays merge), else the demo zoo; never both.
    CFG = load(workflow.config_settings.configfiles, overrides=dict(workflow.config_settings.config), workdir=".")
    F = resolve(CFG, probe_host())
    F.write_report_spec()  # only when it changes: recorded failures, retries and new targets re-run the report
except FactoryError as e:
    raise WorkflowError(f"engine factory: {e}")
HOST, BACKEND, KEY = F.host, F.backend, F.key
scheduling.coalesce_reevaluation_timers()  # one pending scheduler wake-up, not one per finished job (it says why)
# Jobs find this interpreter and the code through the environment (scripts/engine_factory/factory.py says why), not through paths in
# their commands.
os.environ.update(job_environment(CFG, HOST))
# The jobs' forkserver starts its imports now, beside the DAG's building, on the core the DAG leaves free, not at the
# first job. Measured: a no-op at 100 models is the same with and without it (interleaved A/B); the 10-model compare
# at --cores 2 gained ~2 s on 2026-12-02 (0.86x against 1.00x, on different runs) and 1.03x against 1.04x in one
# pair of runs on 2026-12-03 (benchmarks/results/2026-12-03-*). A run that starts no job (no-op, dry run, --lint,
# `status`) kills it at exit, imports finished or not (scripts/engine_factory/jobs.py).
if workflow.is_main_process and not cluster.pools(CFG):
    jobs.start_forkserver_now(BACKEND.preload)
# One Snakemake resource per local compute capability, sized by its GPU count (`--resources gpu_sm90=N` overrides):
# jobs that use such a GPU take one unit, and scripts/engine_factory/gpus.py hands each its own device. Not with Slurm pools:
# their jobs run on the pools' nodes, where Slurm hands out the GPUs.
LOCAL_GPUS = [] if cluster.pools(CFG) else HOST["gpus"]
for _cc in sorted({g["compute_capability"] for g in LOCAL_GPUS}):
    if f"gpu_sm{paths.cc_tag(_cc)}" not in workflow.global_resources:
        workflow.register_resource(
            f"gpu_sm{paths.cc_tag(_cc)}", sum(g["compute_capability"] == _cc for g in LOCAL_GPUS)
        )


def run_stage(name, params, log):
    """The body of every rule: its stage in a child process forked from a preloaded one (scripts/engine_factory/jobs.py says why),
    output to the rule's log. Run in a thread of this process where the profile says `force-use-threads`."""
    jobs.execute(
        name,
        params.io,
        params.settings,
        log[0],
        metrics=params.metrics,
        main_process=workflow.is_main_process,
        preload=BACKEND.preload,
    )


def job_wildcards(wildcards, target_set=None):
    """A job's wildcards as the factory takes them: a target set's jobs also name their set (`targets`)."""
    return {**dict(wildcards.items()), **({"targets": target_set.tag} if target_set is not None else {})}


def stage_inputs(rule, target_set=None):
    """A rule's named inputs for its wildcards (scripts/engine_factory/factory.py)."""
    return lambda wildcards: F.inputs(rule, job_wildcards(wildcards, target_set))


def spec(rule, target_set=None):
    """The params of every rule: `settings` (the stage's config, tracked: a change re-runs exactly that job), `io`
    (its named inputs and outputs, and the job's wildcards for its failure record), `tools` (the stage's tool
    versions: an upgrade re-runs it) and `metrics` (where the job writes its wall time, CPU time and peak memory).
    A target set's jobs name their set (`targets`) beside their wildcards."""

    def io(wildcards, input, output):
        return json.dumps(
            {
                "inputs": dict(input.items()),
                "outputs": dict(output.items()),
                "wildcards": job_wildcards(wildcards, target_set),
            }
        )

    metrics = paths.job_benchmark(rule)
    if target_set is not None:
        metrics = metrics.replace("{targets}", target_set.tag)
    return {
        "settings": lambda wildcards: json.dumps(F.settings(rule, job_wildcards(wildcards, target_set))),
        "io": io,
        "tools": " ".join(f"{k}=={v}" for k, v in stage_tools(rule).items()),
        "metrics": metrics,
    }


def labelled_validations(ccs):
    """A target set's validation.json outputs, flagged for `snakemake --report`, labelled by model, precision and
    target."""
    return {
        label: report(
            path,
            caption="../report/validation.rst",
            category="Validation",
            subcategory="{model}",
            labels={"model": "{model}", "precision": "{precision}", "target": f"sm{label[len('json_sm'):]}"},
        )
        for label, path in paths.set_outputs("validate", ccs).items()
    }


def gpu_resources(target_set):
    """`gpu_sm{cc}: 1` for a target set's jobs that run on a local GPU of its one cc (scripts/engine_factory/gpus.py pins it)."""
    local = {paths.cc_tag(g["compute_capability"]) for g in LOCAL_GPUS}
    return {f"gpu_sm{cc}": 1 for cc in target_set.ccs if target_set.per_cc and cc in local}


def slurm_resources(target_set=None):
    """Slurm routing of a rule's jobs (the config's `slurm` section, read by snakemake-executor-plugin-slurm): a
    target set of one cc goes to that cc's pool, everything else to `slurm.cpu` (scripts/engine_factory/cluster.py). No entries
    without a `slurm` section; local runs ignore them."""
    cc = target_set.ccs[0] if target_set is not None and target_set.per_cc else None
    return cluster.resources(CFG, cc)


def framework_mem_mb(rule, default):
    """mem_mb of a model's framework jobs (freeze, export, golden): scripts/engine_factory/factory.py decides."""
    return lambda wildcards: F.mem_mb(rule, wildcards.model, default)


def model_mem_mb(default):
    """mem_mb of a model's ONNX jobs (simplify, parity, precision, build, validate): the rule's own, raised to the
    model's `mem_mb` where that is more (never lowered by it). What a model killed for its memory (OOM; on Slurm,
    OUT_OF_MEMORY at this limit) needs: scripts/engine_factory/failures.py."""
    return lambda wildcards: max(default, F.model(wildcards.model).get("mem_mb") or 0)
