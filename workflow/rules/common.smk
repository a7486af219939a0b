# Config validation, target resolution and the helpers every rule uses. Runs at DAG time: keep it cheap.
import json
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, workflow.basedir)
from scripts import paths
from scripts.backends import load_backend, resolve_backend
from scripts.config import check, model_settings
from scripts.errors import FactoryError
from scripts.host import probe_host
from scripts.targets import plan_jobs

try:
    CFG = check(config)
    HOST = probe_host()
    BACKEND = load_backend(resolve_backend(CFG["backend"], HOST["gpus"]))
    PLAN_JOBS, SKIPPED = plan_jobs(CFG, backend_short=BACKEND.short, backend_key=BACKEND.key, gpus=HOST["gpus"])
except FactoryError as e:
    raise WorkflowError(f"engine factory: {e}")

PY = sys.executable
STAGE = f"PYTHONPATH='{workflow.basedir}' '{PY}' -m scripts run {{stage}} {{{{params.spec:q}}}} > {{{{log}}}} 2>&1"


wildcard_constraints:
    **paths.WILDCARDS,


def stage(name):
    """The shell command of every rule: one stage runner in its own process, output to the rule's log."""
    return STAGE.format(stage=name)


def spec(params_fn):
    """params.spec: the stage's inputs, outputs and settings as JSON (a change re-runs exactly that job)."""
    def make(wildcards, input, output):
        return json.dumps({"inputs": dict(input.items()), "outputs": dict(output.items()),
                           "params": params_fn(wildcards)})  # key order kept: input order matters
    return make


def model_cfg(model):
    return CFG["models"][model]


def source_path(model):
    m = model_cfg(model)
    return m.get("checkpoint") or m.get("torchscript") or m.get("onnx")


def frozen_format(model):
    """pt2 for state_dict checkpoints (torch.export), pt for TorchScript sources, None for ONNX sources."""
    m = model_cfg(model)
    return "pt2" if "checkpoint" in m else "pt" if "torchscript" in m else None


def exported_from(model):
    fmt = frozen_format(model)
    return paths.frozen(model, fmt) if fmt else source_path(model)
