# Config, host and targets (scripts/factory.py resolves them; `python -m scripts check` asks the same function), and
# the helpers that all rules use. Runs at DAG time, so it stays cheap.
import json
import os
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, workflow.basedir)
from scripts import cluster, paths
from scripts.config import load
from scripts.errors import FactoryError
from scripts.factory import job_environment, resolve
from scripts.host import probe_host
from scripts.provenance import stage_tools
from scripts.report import verdict, write_report

try:
    # The user's zoo alone: the --configfile files (overlays merge), else the demo zoo; never both.
    CFG = load(workflow.config_settings.configfiles, overrides=dict(workflow.config_settings.config), workdir=".")
    F = resolve(CFG, probe_host())
    F.write_report_spec()  # only when it changes: recorded failures, retries and new targets re-run the report
except FactoryError as e:
    raise WorkflowError(f"engine factory: {e}")
HOST, BACKEND, KEY = F.host, F.backend, F.key
# Jobs find this interpreter and the code through the environment (scripts/factory.py says why), not through paths in
# their commands.
os.environ.update(job_environment(CFG, HOST))
# One Snakemake resource per local compute capability, sized by its GPU count (`--resources gpu_sm90=N` overrides):
# jobs that use such a GPU take one unit, and scripts/gpus.py hands each its own device. Not with Slurm pools:
# their jobs run on the pools' nodes, where Slurm hands out the GPUs.
LOCAL_GPUS = [] if cluster.pools(CFG) else HOST["gpus"]
for _cc in sorted({g["compute_capability"] for g in LOCAL_GPUS}):
    if f"gpu_sm{paths.cc_tag(_cc)}" not in workflow.global_resources:
        workflow.register_resource(f"gpu_sm{paths.cc_tag(_cc)}",
                                   sum(g["compute_capability"] == _cc for g in LOCAL_GPUS))

# Every value reaches the shell quoted (:q); a stage that dies (killed by a signal) still gets a last log line.
STAGE = ("python3 -m scripts run {stage} {{params.io:q}} {{params.settings:q}} > {{log:q}} 2>&1 "
         "|| python3 -m scripts ended $? {{log:q}}")


def stage(name):
    """The shell command of every rule: one stage runner in its own process, output to the rule's log. The
    stage's tool versions end it as a comment: an upgrade is a code change to Snakemake, re-running that stage."""
    tools = " ".join(f"{k}=={v}" for k, v in stage_tools(name).items())
    return STAGE.format(stage=name) + (f"  # tools: {tools}" if tools else "")


def stage_inputs(rule):
    """A rule's named inputs for its wildcards (scripts/factory.py)."""
    return lambda wildcards: F.inputs(rule, wildcards)


def spec(rule):
    """The params of every rule: `settings` (the stage's config, tracked: a change re-runs exactly that job) and
    `io` (its named inputs and outputs, and the job's wildcards for its failure record)."""
    def io(wildcards, input, output):
        return json.dumps({"inputs": dict(input.items()), "outputs": dict(output.items()),
                           "wildcards": dict(wildcards.items())})
    return {"settings": lambda wildcards: json.dumps(F.settings(rule, wildcards)), "io": io}  # key order kept


def gpu_resources(uses_gpu):
    """resources entries `gpu_sm{cc}: 1` for the jobs (by wildcards) that run on a local GPU of their `cc`."""
    def needs(tag):
        return lambda wildcards: int(wildcards.cc == tag and uses_gpu(wildcards))
    tags = {paths.cc_tag(g["compute_capability"]) for g in LOCAL_GPUS}
    return {f"gpu_sm{tag}": needs(tag) for tag in sorted(tags)}


def slurm_resources(uses_gpu=lambda wildcards: False):
    """Slurm routing of a rule's jobs (the config's `slurm` section, read by snakemake-executor-plugin-slurm): jobs
    that use a GPU (by wildcards) go to the pool of their `cc`, all others to `slurm.cpu` (scripts/cluster.py).
    From wildcards only, never a file. No entries without a `slurm` section; local runs ignore them."""
    def value(name):
        return lambda wildcards: cluster.resources(CFG, wildcards.cc if uses_gpu(wildcards) else None)[name]
    return {name: value(name) for name in cluster.resource_names(CFG)}


def framework_mem_mb(rule, default):
    """mem_mb of a model's framework jobs (freeze, export, golden): scripts/factory.py decides."""
    return lambda wildcards: F.mem_mb(rule, wildcards.model, default)
