"""Slurm routing from the config's `slurm` section: which partition, constraint and GPUs each job asks for.

    slurm:
      cpu:   {partition: cpu, runtime: 60}                       # every job that needs no GPU
      pools:                                                     # one per compute capability
        h100: {compute_capability: "9.0", partition: gpu, constraint: h100, gres: "gpu:h100:1"}

The workflow reads these as Snakemake resources (snakemake-executor-plugin-slurm turns them into sbatch options):
`slurm_partition`, `constraint`, `gres` or `gpu`/`gpu_model`, `runtime`, `cpus_per_task`, `slurm_extra` (and `qos`,
`slurm_account` from `slurm_extra`'s --qos/--account). Jobs that use a GPU (full-TensorRT builds, plan validation) go
to the pool of their compute capability where one exists; all other jobs, and every job when no pool has that compute
capability, to `slurm.cpu`. With pools configured, the full-TensorRT targets are the pools' compute capabilities
(scripts/engine_factory/targets.py), not the local GPUs. Decided from the compute capability alone (a wildcard), never
from a file: Snakemake evaluates resources early.

No value reaches a shell as text. The plugin builds one sbatch command line and runs it with `shell=True` on the
submit host; it quotes the partition, constraint, runtime, qos and account, but puts `--gres`, `--gpus` and
`slurm_extra` in as they are. So every field is parsed here against a strict pattern (`re.fullmatch`: `$` in a
pattern would let a trailing newline through, and the schema's patterns are searched that way), and `slurm_extra` is
not text but a whitelist of sbatch options (`EXTRA`), each value checked and emitted through `shlex.quote`. Anything
else is a one-line config error naming the key, at config load: before the DAG, before any submission.
"""

from __future__ import annotations

import re
import shlex

from .errors import FactoryError

# config key -> Snakemake resource the Slurm executor plugin reads, and its value when a route does not set it
RESOURCES = {
    "partition": ("slurm_partition", ""),
    "constraint": ("constraint", ""),  # "" gives `-C ''`: no constraint
    "gres": ("gres", ""),
    "gpus": ("gpu", 0),
    "gpu_model": ("gpu_model", ""),
    "runtime": ("runtime", 0),  # minutes; a pool without it takes slurm.cpu's; 0: no -t (the partition's default)
    "cpus_per_task": ("cpus_per_task", 0),
    "slurm_extra": ("slurm_extra", ""),
}
GPU_KEYS = ("gres", "gpus", "gpu_model")

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # a Slurm partition, reservation, qos, account or wckey name
_NAMES = rf"{_NAME}(,{_NAME})*"
# each string field: its pattern (whole value) and what it may hold, for the error
FIELDS = {
    "partition": (re.compile(_NAMES), "partition names (letters, digits, '_', '.', '-'), comma-separated"),
    # node features joined by & | , with [ ] ( ) grouping and *count (sbatch -C); the plugin quotes it
    "constraint": (
        re.compile(r"[A-Za-z0-9_.\-&|,*()\[\]!]+"),
        "node features (letters, digits, '_', '.', '-') joined by '&', '|', ',' with '[]', '()', '*<count>', '!'",
    ),
    "gres": (
        re.compile(r"[A-Za-z0-9_]+(:[A-Za-z0-9_.]+)?(:[0-9]+[TGM]?)?"),
        "'<name>', '<name>:<count>' or '<name>:<type>:<count>', e.g. 'gpu:h100:1'",
    ),
    "gpu_model": (re.compile(r"[A-Za-z0-9_.]+"), "a GPU model name (letters, digits, '_', '.'), e.g. 'l40s'"),
}
INTEGERS = ("gpus", "runtime", "cpus_per_task")  # whole numbers >= 1 (never a string: the plugin writes them as-is)

_MAIL = r"NONE|BEGIN|END|FAIL|REQUEUE|ALL|INVALID_DEPEND|STAGE_OUT|TIME_LIMIT(_90|_80|_50)?|ARRAY_TASKS"
_LICENSE = r"[A-Za-z0-9_.-]+(@[A-Za-z0-9_.-]+)?(:[0-9]+)?"
# The sbatch options `slurm_extra` may hold: option -> (pattern of its value, or None for a flag; the Snakemake
# resource it becomes, or None for slurm_extra itself). Long forms only. The options the plugin sets itself
# (partition, time, memory, CPUs, GPUs, constraint, job name, output, comment, working directory, export, ...) are
# not here: the plugin refuses them in slurm_extra, and the route's own keys set them.
EXTRA = {
    "--qos": (re.compile(_NAME), "qos"),  # the plugin refuses --qos in slurm_extra: its own `qos` resource, quoted
    "--account": (re.compile(_NAME), "slurm_account"),  # likewise (-A, quoted)
    "--reservation": (re.compile(_NAMES), None),
    "--wckey": (re.compile(_NAME), None),
    "--mail-type": (re.compile(rf"({_MAIL})(,({_MAIL}))*"), None),
    "--mail-user": (re.compile(r"[A-Za-z0-9._%+-]+(@[A-Za-z0-9.-]+)?"), None),
    "--licenses": (re.compile(rf"{_LICENSE}(,{_LICENSE})*"), None),
    "--nice": (re.compile(r"-?[0-9]+"), None),
    "--priority": (re.compile(r"[0-9]+|TOP"), None),
    "--hint": (re.compile(r"compute_bound|memory_bound|multithread|nomultithread"), None),
    "--signal": (re.compile(r"((R|B|RB|BR):)?[A-Z0-9]+(@[0-9]+)?"), None),
    "--tmp": (re.compile(r"[0-9]+[KMGT]?"), None),
    "--nodelist": (re.compile(r"[A-Za-z0-9_.\-\[\],]+"), None),
    "--threads-per-core": (re.compile(r"[0-9]+"), None),
    "--exclusive": (re.compile(r"user|mcs|topo"), None),  # a flag, or --exclusive=<user|mcs|topo>
    "--requeue": (None, None),
    "--no-requeue": (None, None),
    "--oversubscribe": (None, None),
    "--contiguous": (None, None),
    "--spread-job": (None, None),
}
OPTIONAL_VALUE = {"--exclusive"}


def _shown(value) -> str:
    """A value as one line: repr() shows a newline or control character escaped."""
    return repr(value)


def parse_extra(text, key: str) -> list[tuple[str, str | None]]:
    """`slurm_extra` as [(option, value or None)], every option on the whitelist and every value its pattern's.
    Split on whitespace only: no quoting, escaping or expansion is interpreted, so none can be smuggled in."""
    if not isinstance(text, str):
        raise FactoryError(f"must be a string of sbatch options, not {_shown(text)}", key=key)
    tokens, out = text.split(), []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        option, eq, value = token.partition("=")
        if option not in EXTRA:
            allowed = ", ".join(EXTRA)
            raise FactoryError(
                f"{_shown(token)} is not an sbatch option slurm_extra passes on (allowed: {allowed}; partition, "
                "constraint, runtime, CPUs and GPUs have their own keys)",
                key=key,
            )
        pattern = EXTRA[option][0]
        if not eq:
            if pattern is None or option in OPTIONAL_VALUE:
                out.append((option, None))
                i += 1
                continue
            if i + 1 >= len(tokens):
                raise FactoryError(f"{option} needs a value", key=key)
            value = tokens[i + 1]
            i += 1
        if pattern is None:
            raise FactoryError(f"{option} takes no value, got {_shown(value)}", key=key)
        if not pattern.fullmatch(value):
            raise FactoryError(f"{option}: {_shown(value)} is not a valid value (pattern {pattern.pattern})", key=key)
        out.append((option, value))
        i += 1
    return out


def route_values(route: dict, key: str) -> dict:
    """A route's fields, each checked against its pattern; raises FactoryError naming `<key>.<field>`."""
    for field, (pattern, what) in FIELDS.items():
        if field in route:
            v = route[field]
            if not isinstance(v, str) or not pattern.fullmatch(v):
                raise FactoryError(f"{_shown(v)} is not valid here: {what}", key=f"{key}.{field}")
    for field in INTEGERS:
        if field in route:
            v = route[field]
            if type(v) is not int or v < 1:  # bool and float excluded: the plugin writes them into the command
                raise FactoryError(f"{_shown(v)} is not a whole number >= 1", key=f"{key}.{field}")
    if "slurm_extra" in route:
        parse_extra(route["slurm_extra"], f"{key}.slurm_extra")
    return route


def pools(cfg: dict) -> dict:
    return (cfg.get("slurm") or {}).get("pools") or {}


def check(cfg: dict) -> None:
    """What the schema cannot say: every field's value safe for the plugin's shell command, one pool per compute
    capability, GPUs asked for one way, none on the CPU route."""
    slurm = cfg.get("slurm")
    if not slurm:
        return
    cpu = slurm.get("cpu") or {}
    route_values(cpu, "slurm.cpu")
    for name, pool in pools(cfg).items():
        route_values(pool, f"slurm.pools.{name}")
    for k in ("compute_capability", *GPU_KEYS):
        if k in cpu:
            raise FactoryError(f"'{k}' is for GPU pools (slurm.pools.<name>), not the CPU route", key=f"slurm.cpu.{k}")
    seen: dict[str, str] = {}
    for name, pool in pools(cfg).items():
        cc = pool["compute_capability"]
        if cc in seen:
            raise FactoryError(
                f"pools '{seen[cc]}' and '{name}' both have compute capability {cc}: a plan key names "
                "one compute capability, so one pool each (reach several node types with a constraint "
                "such as 'a100_40g|a100_80g')",
                key=f"slurm.pools.{name}.compute_capability",
            )
        seen[cc] = name
        if "gres" in pool and ("gpus" in pool or "gpu_model" in pool):
            raise FactoryError(
                "give either 'gres' or 'gpus'/'gpu_model' (Slurm rejects --gres with --gpus)", key=f"slurm.pools.{name}"
            )
        if not any(k in pool for k in GPU_KEYS):
            raise FactoryError(
                "a GPU pool must ask for a GPU: set 'gres' (e.g. 'gpu:h100:1') or 'gpus'/'gpu_model'",
                key=f"slurm.pools.{name}",
            )


def pool_for(cfg: dict, cc: str | None) -> str | None:
    """The name of the pool of compute capability `cc` ("8.9" or the path tag "89"), or None."""
    if cc is None:
        return None
    dotted = cc if "." in cc else f"{cc[:-1]}.{cc[-1]}"
    return next((name for name, p in pools(cfg).items() if p["compute_capability"] == dotted), None)


def resource_names(cfg: dict) -> list[str]:
    """The Snakemake resources the routes use (the same for every rule, so each rule declares the same keys;
    `qos` and `slurm_account` only on the routes that set them, so the others keep the profile's defaults)."""
    slurm = cfg.get("slurm")
    if not slurm:
        return []
    used = set(slurm.get("cpu") or {}) | {k for p in pools(cfg).values() for k in p}
    if "gpu_model" in used:
        used.add("gpus")  # --gpus=<model>:<count>
    if pools(cfg):
        used.add("partition")  # a GPU job without a pool of its cc must still be told to leave the GPU partition
    return [RESOURCES[k][0] for k in RESOURCES if k in used]


def _route(cfg: dict, cc: str | None) -> tuple[str, dict]:
    slurm = cfg.get("slurm") or {}
    name = pool_for(cfg, cc)
    return (f"slurm.pools.{name}", pools(cfg)[name]) if name else ("slurm.cpu", slurm.get("cpu") or {})


def resources(cfg: dict, cc: str | None = None) -> dict:
    """Every routing resource of a job: the pool of `cc` when given and configured, else the CPU route. Values are
    checked again here (a config that skipped `check` still reaches no shell); `slurm_extra` comes back rebuilt from
    its parsed options, each value shell-quoted."""
    slurm = cfg.get("slurm") or {}
    key, route = _route(cfg, cc)
    route_values(route, key)
    out = {res: route.get(k, default) for k, (res, default) in RESOURCES.items()}
    if key != "slurm.cpu" and "runtime" not in route:
        out["runtime"] = (slurm.get("cpu") or {}).get("runtime", 0)
    if "gpu_model" in route and "gpus" not in route:
        out["gpu"] = 1
    extra, own = [], {}
    for option, value in parse_extra(route.get("slurm_extra", ""), f"{key}.slurm_extra"):
        resource = EXTRA[option][1]
        if resource:
            own[resource] = value  # the plugin's own option, which it quotes
        else:
            extra.append(option if value is None else f"{option}={shlex.quote(value)}")
    out["slurm_extra"] = " ".join(extra)
    return {res: out[res] for res in resource_names(cfg)} | own


def describe(cfg: dict) -> list[str]:
    """One line per route, for `python -m engine_factory check` and logs."""
    lines = []
    slurm = cfg.get("slurm") or {}
    if slurm:
        lines.append(f"slurm cpu: {_sbatch(slurm.get('cpu') or {})}")
    for name, pool in pools(cfg).items():
        lines.append(f"slurm pool {name} (sm{pool['compute_capability'].replace('.', '')}): {_sbatch(pool)}")
    return lines


SBATCH = (
    ("partition", "-p {}"),
    ("constraint", "-C {}"),
    ("gres", "--gres={}"),
    ("gpus_option", "--gpus={}"),
    ("runtime", "-t {}"),
)


def _sbatch(route: dict) -> str:
    """The sbatch options a route gives, as a person would type them, quoted (the plugin builds the real call)."""
    gpus = None
    if route.get("gpu_model") or route.get("gpus"):
        gpus = (f"{route['gpu_model']}:" if route.get("gpu_model") else "") + str(route.get("gpus", 1))
    values = {**route, "gpus_option": gpus}
    words = [form.format(shlex.quote(str(values[k]))) for k, form in SBATCH if values.get(k)]
    extra = parse_extra(route.get("slurm_extra", ""), "slurm_extra")
    words += [option if value is None else f"{option}={shlex.quote(value)}" for option, value in extra]
    return " ".join(words) or "(cluster defaults)"
