"""The one place that names artifacts. Snakemake rules use the patterns; Python code calls the functions.

A plan is valid only for (backend, backend version, compute capability), plus our precision: that tuple is the path.
    artifacts/{model}/plans/{key}/sm{cc}/{precision}/model.plan      key = "rtx-1.7.1.116" | "trt-10.13.3.9"
`cc` in paths is the compute capability without the dot ("86", "120"); config writes it "8.6", "12.0".
"""

from __future__ import annotations

import os
import re
import string

ROOT = "artifacts"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # fullmatch: a trailing newline is no name
MAX_NAME = 128  # a name is part of file names (logs: <name>.<key>.sm<cc>.<precision>.log) and must fit NAME_MAX 255
FROZEN = ROOT + "/{model}/frozen/model.{fmt}"  # fmt: pt2 (torch.export) | pt (TorchScript)
FROZEN_PB = ROOT + "/{model}/frozen/model.pb"  # TensorFlow: GraphDef, variables folded in
FROZEN_PB_IO = FROZEN_PB + ".io.json"  # its tensor names, shapes, dtypes, layouts
ONNX = ROOT + "/{model}/onnx/model.onnx"  # exported (or imported) ONNX
SIM_ONNX = ROOT + "/{model}/onnx/model.sim.onnx"
PRECISION_ONNX = ROOT + "/{model}/onnx/model.{precision}.onnx"
GOLDEN = ROOT + "/{model}/golden/golden.npz"  # inputs as "in/<name>", outputs as "out/<name>"
PARITY = ROOT + "/{model}/validation/onnx/{variant}.json"  # variant: export | sim | <precision>
PLAN = ROOT + "/{model}/plans/{key}/sm{cc}/{precision}/model.plan"
VALIDATION = ROOT + "/{model}/validation/{key}/sm{cc}/{precision}/validation.json"
TIMING_CACHE = ROOT + "/cache/timing/{key}/sm{cc}.cache"  # shared by every build of one key
DEMO = ROOT + "/demo/{asset}"
DEMO_DIR = ROOT + "/demo/{asset}.ckpt"  # a demo TF1 checkpoint (several files)
REPORT_JSON = ROOT + "/report/summary.json"
REPORT_HTML = ROOT + "/report/index.html"
OUTCOME = ROOT + "/report/outcome.json"  # written only when no target failed
REPORT_SPEC = ROOT + "/report/spec.json"  # what the report covers (written at DAG time)
REPORT_LIST_PAGE = ROOT + "/report/index-{n}.html"  # the models table's further pages (n >= 2)
REPORT_LIST_GLOB = ROOT + "/report/index-*.html"
REPORT_OVERVIEW_CHART = ROOT + "/report/overview.svg"  # outcomes per precision and target
REPORT_PAGES = ROOT + "/report/models"  # one page per model
REPORT_PAGE = REPORT_PAGES + "/{model}.html"
REPORT_CHARTS = ROOT + "/report/charts"  # one figure per model
REPORT_CHART = REPORT_CHARTS + "/{model}.svg"
REPORT_CHART_CACHE = ROOT + "/cache/report-charts"  # rendered figures by their spec's sha256
LOG = ROOT + "/logs/{rule}/{name}.log"
BENCHMARK = ROOT + "/benchmarks/{rule}/{name}.tsv"
FAILURE = ROOT + "/failed/{rule}/{name}.json"  # a job's recorded (deterministic) failure
FAILURE_GLOB = ROOT + "/failed/*/*.json"
CONTENT_CACHE = ROOT + "/cache/content-sha256.json"  # scripts/engine_factory/fingerprint.py
DEMO_ROOT = ROOT + "/demo/"  # the demo zoo's files, made by the workflow itself
TRITON_ROOT = ROOT + "/triton"  # one Triton model repository per deployed model
TRITON_MODEL = TRITON_ROOT + "/{repository}"  # a Triton model directory (the repository's entry)
TRITON_CONFIG = TRITON_MODEL + "/config.pbtxt"
TRITON_VERSION = "1"  # the one version directory, holding the plans
DEPLOY_RECORD = ROOT + "/deploy/{repository}.json"  # the deploy job's result: its repository published, or held

# Each rule's job name: its log, benchmark and failure record are named by it.
JOB_NAMES = {
    "demo": "{asset}",
    "freeze": "{model}.{fmt}",
    "freeze_tf": "{model}.pb",
    "export": "{model}",
    "simplify": "{model}",
    "golden": "{model}",
    "precision": "{model}.{precision}",
    "parity": "{model}",
    "build": "{model}.{key}.{targets}.{precision}",
    "validate": "{model}.{key}.{targets}.{precision}",
    "report": "all",
    "outcome": "all",
    "deploy": "{repository}",
}
# Build and validation jobs each cover a set of targets (engine_factory/factory.py `TargetSet`: every TensorRT-RTX
# target
# of one precision in one job, one compute capability per job for full TensorRT); each set is a rule of its own,
# named after its targets (build_sm80_86_89_120), whose jobs' names carry the set's tag (sm80-86-89-120).
_JOB_WILDCARDS = {
    rule: tuple(f for _, f, _, _ in string.Formatter().parse(name) if f) for rule, name in JOB_NAMES.items()
}
SET_STAGES = ("build", "validate")
_SET_RULE = re.compile(r"(build|validate)_sm[0-9_]+")

WILDCARDS = {  # regexes Snakemake uses to split paths back into wildcards
    "model": r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    "precision": r"fp32|fp16|bf16|int8|fp8",
    "key": r"(rtx|trt)-[0-9][0-9.]*[0-9](-[a-z_]+)*",  # e.g. trt-10.13.3.9-ampere_plus-vc
    "cc": r"[0-9]{2,3}",
    "fmt": r"pt2|pt",
    "variant": r"export|sim|fp32|fp16|bf16|int8|fp8",
    "asset": r"[A-Za-z0-9][A-Za-z0-9_.-]*",  # a demo file's name: nothing a shell would read as code
    "repository": r"[A-Za-z0-9][A-Za-z0-9_.-]*",  # a Triton model name (deploy.triton.name)
}


# Each rule's main output (the file its job is known by); rules in WITH_SIDECAR write a provenance sidecar beside it,
# the others (parity, validate) record their settings inside it.
MAIN_OUTPUT = {
    "freeze": FROZEN,
    "freeze_tf": FROZEN_PB,
    "export": ONNX,
    "simplify": SIM_ONNX,
    "precision": PRECISION_ONNX,
    "golden": GOLDEN,
    "parity": PARITY,
    "build": PLAN,
    "validate": VALIDATION,
}
WITH_SIDECAR = {"freeze", "freeze_tf", "export", "simplify", "precision", "golden", "build"}


def main_output(rule: str, wildcards: dict) -> str:
    return MAIN_OUTPUT[rule].format(**wildcards)


def set_rule(stage: str, tag: str) -> str:
    """The rule of one target set's jobs: ('build', 'sm80-86') -> 'build_sm80_86'."""
    return f"{stage}_{tag.replace('-', '_')}"


def job_wildcards(rule: str) -> tuple[str, ...]:
    """The wildcards that name one job of `rule` (a parity job's has no variant: it checks two)."""
    return _JOB_WILDCARDS[rule]


def stage_of(rule: str) -> str:
    """The stage a rule runs: 'build_sm80_86' -> 'build'; other rules are their stage."""
    return rule.split("_sm", 1)[0] if _SET_RULE.fullmatch(rule) else rule


def targets_tag(ccs: list[str]) -> str:
    """['80', '86', '120'] -> 'sm80-86-120'."""
    return "sm" + "-".join(ccs)


def set_outputs(stage: str, ccs: list[str]) -> dict[str, str]:
    """A target set job's named outputs (wildcards model, key, precision left open): per cc, the plan with its
    provenance and in-toto statement (build) or the validation (validate)."""
    out = {}
    for cc in ccs:
        if stage == "build":
            plan = PLAN.replace("{cc}", cc)
            out.update({f"plan_sm{cc}": plan, f"provenance_sm{cc}": provenance(plan), f"intoto_sm{cc}": intoto(plan)})
        else:
            out[f"json_sm{cc}"] = VALIDATION.replace("{cc}", cc)
    return out


def set_job_log(stage: str, tag: str) -> str:
    return LOG.format(rule=stage, name=JOB_NAMES[stage].replace("{targets}", tag))


def cc_tag(cc: str) -> str:
    """'8.6' -> '86', '12.0' -> '120'."""
    return cc.replace(".", "")


def cc_dotted(tag: str) -> str:
    """'86' -> '8.6', '120' -> '12.0'."""
    return f"{tag[:-1]}.{tag[-1]}"


def provenance(path: str) -> str:
    return f"{path}.provenance.json"


def intoto(path: str) -> str:
    """The plan's in-toto Statement (SLSA Provenance v1 predicate), written beside its provenance sidecar."""
    return f"{path}.intoto.json"


def frozen(model: str, fmt: str) -> str:
    return FROZEN.format(model=model, fmt=fmt)


def frozen_io(model: str) -> str:
    return FROZEN_PB_IO.format(model=model)


def onnx(model: str) -> str:
    return ONNX.format(model=model)


def sim_onnx(model: str) -> str:
    return SIM_ONNX.format(model=model)


def precision_onnx(model: str, precision: str) -> str:
    return PRECISION_ONNX.format(model=model, precision=precision)


def golden(model: str) -> str:
    return GOLDEN.format(model=model)


def parity(model: str, variant: str) -> str:
    return PARITY.format(model=model, variant=variant)


def plan(model: str, key: str, cc: str, precision: str) -> str:
    return PLAN.format(model=model, key=key, cc=cc, precision=precision)


def plan_glob(root: str = ROOT) -> str:
    """Glob pattern (relative to the workflow directory) of every plan under `root`."""
    return PLAN.replace(ROOT, root, 1).format(model="*", key="*", cc="*", precision="*")


def _matcher(pattern: str):
    """A regex of `pattern` (any prefix before `artifacts/`), its wildcards as named groups of WILDCARDS' regexes."""
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(
        re.escape(p) if i % 2 == 0 else f"(?P<{p}>{WILDCARDS.get(p, '[^/]+')})" for i, p in enumerate(parts)
    )
    return re.compile(r"^(?:.*/)?" + regex + "$")


_PARSERS = {
    name: _matcher(pattern)
    for name, pattern in {
        "plan": PLAN,
        "validation": VALIDATION,
        "parity": PARITY,
        "plan_dir": PLAN.rsplit("/", 2)[0],
        "validation_dir": VALIDATION.rsplit("/", 2)[0],
        "timing_cache": TIMING_CACHE,
    }.items()
}


def parse(kind: str, path: str) -> dict | None:
    """The wildcards of a path of `kind` (plan, validation, parity, plan_dir, validation_dir, timing_cache), else
    None. `plan_dir` / `validation_dir`: the `{key}/sm{cc}` directory of a model's plans / validations."""
    m = _PARSERS[kind].match(str(path).replace(os.sep, "/"))
    return m.groupdict() if m else None


def parse_plan(path: str) -> dict | None:
    """{model, key, cc, precision} of a plan's path (any prefix before `artifacts/`), else None."""
    return parse("plan", path)


def glob_of(kind: str, root: str = ROOT) -> str:
    """Glob pattern (relative to the workflow directory) of every path of `kind` under `root`."""
    pattern = {
        "plan_dir": PLAN.rsplit("/", 2)[0],
        "validation_dir": VALIDATION.rsplit("/", 2)[0],
        "timing_cache": TIMING_CACHE + "*",
    }[kind]
    return re.sub(r"\{\w+\}", "*", pattern.replace(ROOT, root, 1))


def owner_of(path: str) -> str | None:
    """The artifact a result belongs to: a plan's validation -> the plan; a parity result -> its ONNX variant."""
    if (v := parse("validation", path)) is not None:
        return plan(**v)
    if (p := parse("parity", path)) is not None:
        return variant_onnx(p["model"], p["variant"])
    return None


def variant_onnx(model: str, variant: str) -> str:
    """The ONNX file of a parity variant: export | sim | <precision>."""
    return (
        onnx(model) if variant == "export" else sim_onnx(model) if variant == "sim" else precision_onnx(model, variant)
    )


SIDECAR_SUFFIX = ".provenance.json"
STATEMENT_SUFFIX = ".intoto.json"
OUTSIDE_CHAIN = {
    "demo",
    "logs",
    "benchmarks",
    "report",
    "cache",
    "scheduled",
    "failed",
    "triton",
    "deploy",
    "gate",
}  # top-level dirs of ROOT
_TEMPORARY = re.compile(r"\.tmp\d+(\.|$)")  # scripts/engine_factory/atomic.py's names: `<stem>.tmp<pid><suffix>`


def deletable(path: str, base: str = ".", root: str = ROOT) -> str | None:
    """`path` (relative to the workflow directory `base`) as a path the factory may delete, else None: relative,
    inside the real `root` after `..`, and reached without a symlink between `root` and the file (a folder symlink out
    of it is never followed). The file itself may be a symlink: unlinking it removes the link, not its target. The one
    test `verify --repair` and a run's removal of damaged files make before any delete."""
    if os.path.isabs(path):
        return None
    top = os.path.abspath(os.path.join(base, root))
    full = os.path.normpath(os.path.join(os.path.abspath(base), path))
    if not full.startswith(top + os.sep):
        return None
    parent = os.path.dirname(full)
    inside = os.path.normpath(os.path.join(os.path.realpath(top), os.path.relpath(parent, top)))
    return full if os.path.realpath(parent) == inside else None


def is_record(path: str) -> bool:
    """A provenance sidecar or an in-toto statement (records of an artifact, not artifacts)."""
    return str(path).endswith((SIDECAR_SUFFIX, STATEMENT_SUFFIX))


def artifact_of_record(path: str) -> str:
    """The artifact a provenance sidecar or in-toto statement describes."""
    for suffix in (SIDECAR_SUFFIX, STATEMENT_SUFFIX):
        if str(path).endswith(suffix):
            return str(path)[: -len(suffix)]
    return str(path)


def is_temporary(path: str) -> bool:
    return bool(_TEMPORARY.search(os.path.basename(str(path))))


def report_page(model: str) -> str:
    return REPORT_PAGE.format(model=model)


def report_list_page(n: int) -> str:
    return REPORT_LIST_PAGE.format(n=n)


def report_chart(model: str) -> str:
    return REPORT_CHART.format(model=model)


def validation(model: str, key: str, cc: str, precision: str) -> str:
    return VALIDATION.format(model=model, key=key, cc=cc, precision=precision)


def timing_cache(key: str, cc: str) -> str:
    return TIMING_CACHE.format(key=key, cc=cc)


def log(rule: str, *parts: str) -> str:
    return LOG.format(rule=rule, name=".".join(parts))


def benchmark(rule: str, *parts: str) -> str:
    return BENCHMARK.format(rule=rule, name=".".join(parts))


def job_log(rule: str, wildcards: dict | None = None) -> str:
    """The rule's log pattern, or with `wildcards` the log of one job."""
    name = JOB_NAMES[rule]
    return LOG.format(rule=rule, name=name.format(**wildcards) if wildcards is not None else name)


def job_benchmark(rule: str) -> str:
    return BENCHMARK.format(rule=rule, name=JOB_NAMES[rule])


def failure(rule: str, wildcards: dict) -> str:
    """Where a job's deterministic failure is recorded (scripts/engine_factory/failures.py)."""
    return FAILURE.format(rule=rule, name=JOB_NAMES[rule].format(**wildcards))


def made_by_workflow(path: str) -> bool:
    """A configured file the workflow makes itself (the demo zoo's checkpoints, ONNX and calibration files)."""
    p = path.replace(os.sep, "/")
    return p.startswith(DEMO_ROOT) and re.fullmatch(WILDCARDS["asset"], p[len(DEMO_ROOT) :]) is not None


def triton_model(repository: str, root: str = ROOT) -> str:
    """The model directory of one Triton repository entry: artifacts/triton/<name>."""
    return TRITON_MODEL.replace(ROOT, root, 1).format(repository=repository)


def triton_config(repository: str) -> str:
    return TRITON_CONFIG.format(repository=repository)


def deploy_record(repository: str) -> str:
    return DEPLOY_RECORD.format(repository=repository)


def deploy_record_files(model_dir: str) -> set[str]:
    """The deploy record of a Triton model directory (artifacts/triton/<name>) and its provenance: removed with the
    directory, so that the next run deploys it again."""
    record = deploy_record(os.path.basename(model_dir.rstrip("/")))
    return {record, provenance(record)}


def triton_plan_file(cc: str) -> str:
    """The file name of the plan for compute capability `cc` ("8.6") in the version directory: model.sm86.plan."""
    return f"model.sm{cc_tag(cc)}.plan"


def triton_plan(model_dir: str, cc: str) -> str:
    """A plan inside a Triton model directory: <model_dir>/1/model.sm86.plan."""
    return f"{model_dir}/{TRITON_VERSION}/{triton_plan_file(cc)}"


def triton_model_of(path: str) -> str | None:
    """The Triton model directory (artifacts/triton/<name>) a path lies in, else None."""
    m = re.match(r"^(?:.*/)?(" + re.escape(TRITON_ROOT) + r"/[^/]+)(/|$)", str(path).replace(os.sep, "/"))
    return m.group(1) if m else None
