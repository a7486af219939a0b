# Config validation, target resolution and the helpers every rule uses. Runs at DAG time: keep it cheap.
import json
import os
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, workflow.basedir)
from scripts import cluster, paths
from scripts.backends import load_backend, resolve_backend
from scripts.config import check, model_settings
from scripts.errors import FactoryError
from scripts.host import PROBED_ENV, backend_for_keys, probe_host
from scripts.provenance import GIT_ENV, TOOLS_ENV, git_commit, stage_tools, tool_versions
from scripts.targets import backend_key, plan_jobs, target_gpus
from scripts.tf_stages import MEM_MB as TF_MEM_MB, source_files as tf_source_files

try:
    CFG = check(config)
    HOST = probe_host()
    GPUS = target_gpus(CFG, HOST["gpus"])  # the Slurm pools' where configured, else the local GPUs
    BACKEND = backend_for_keys(load_backend(resolve_backend(CFG["backend"], GPUS)), HOST)
    KEY = backend_key(CFG, BACKEND)
    PLAN_JOBS, SKIPPED = plan_jobs(CFG, backend_short=BACKEND.short, backend_key=KEY, gpus=GPUS)
except FactoryError as e:
    raise WorkflowError(f"engine factory: {e}")
# Read once here and inherited by every job (same interpreter, same venv, same host): saves each job ~25 ms for git
# and versions, ~10-50 ms for the host probe (measured).
os.environ[PROBED_ENV] = json.dumps(HOST)
os.environ[GIT_ENV] = json.dumps(git_commit())
os.environ[TOOLS_ENV] = json.dumps(tool_versions())
# One Snakemake resource per local compute capability, sized by its GPU count (`--resources gpu_sm90=N` overrides):
# jobs that use such a GPU take one unit, and scripts/gpus.py hands each its own device. Not with Slurm pools:
# their jobs run on the pools' nodes, where Slurm hands out the GPUs.
LOCAL_GPUS = [] if cluster.pools(CFG) else HOST["gpus"]
for _cc in sorted({g["compute_capability"] for g in LOCAL_GPUS}):
    if f"gpu_sm{paths.cc_tag(_cc)}" not in workflow.global_resources:
        workflow.register_resource(f"gpu_sm{paths.cc_tag(_cc)}",
                                   sum(g["compute_capability"] == _cc for g in LOCAL_GPUS))

PY = os.path.join(sys.prefix, "bin", "python")  # one spelling for python/python3: the command is code-tracked
STAGE = f"PYTHONPATH='{workflow.basedir}' '{PY}' -m scripts run {{stage}} {{{{params.io:q}}}} {{{{params.settings:q}}}} > {{{{log}}}} 2>&1"


wildcard_constraints:
    **paths.WILDCARDS,


def stage(name):
    """The shell command of every rule: one stage runner in its own process, output to the rule's log. The
    stage's tool versions end it as a comment: an upgrade is a code change to Snakemake, re-running that stage."""
    tools = " ".join(f"{k}=={v}" for k, v in stage_tools(name).items())
    return STAGE.format(stage=name) + (f"  # tools: {tools}" if tools else "")


def spec(settings_fn):
    """The params of every rule: `settings` (the stage's config, tracked: a change re-runs exactly that job) and
    `io` (its named inputs and outputs; Snakemake does not track params derived from them, nor need it)."""
    def io(wildcards, input, output):
        return json.dumps({"inputs": dict(input.items()), "outputs": dict(output.items())})
    return {"settings": lambda wildcards: json.dumps(settings_fn(wildcards)), "io": io}  # key order kept


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


def model_cfg(model):
    return CFG["models"][model]


def source_path(model):
    m = model_cfg(model)
    return m.get("checkpoint") or m.get("torchscript") or m.get("onnx")


def source_inputs(model):
    """A model's source files, labelled: `source`, plus a TF1 checkpoint's index and data shards."""
    m = model_cfg(model)
    if m["framework"] == "tensorflow":
        return tf_source_files(m["checkpoint"], m["format"])
    return {"source": source_path(model)}


def source_kind(model):
    """What a model starts from: checkpoint (state_dict + class), torchscript, onnx or tensorflow."""
    m = model_cfg(model)
    if m["framework"] == "tensorflow":
        return "tensorflow"
    return "checkpoint" if "checkpoint" in m else "torchscript" if "torchscript" in m else "onnx"


def frozen_format(model):
    """pt2 for state_dict checkpoints (torch.export), pt for TorchScript sources, pb for TensorFlow (frozen
    GraphDef), None for ONNX sources."""
    return {"checkpoint": "pt2", "torchscript": "pt", "tensorflow": "pb", "onnx": None}[source_kind(model)]


def framework_mem_mb(stage, default):
    """mem_mb of a model's framework jobs (freeze, export, golden): the model's `mem_mb`, else TensorFlow's
    measured need (tf2onnx peaks at 5-8 GB on ResNet50-size models), else `default`."""
    def mem_mb(wildcards):
        m = model_cfg(wildcards.model)
        return m.get("mem_mb") or (TF_MEM_MB[stage] if m["framework"] == "tensorflow" else default)
    return mem_mb


def exported_from(model):
    fmt = frozen_format(model)
    return paths.frozen(model, fmt) if fmt else source_path(model)
