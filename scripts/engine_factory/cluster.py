"""Slurm routing from the config's `slurm` section: which partition, constraint and GPUs each job asks for.

    slurm:
      cpu:   {partition: cpu, runtime: 60}                       # every job that needs no GPU
      pools:                                                     # one per compute capability
        h100: {compute_capability: "9.0", partition: gpu, constraint: h100, gres: "gpu:h100:1"}

The workflow reads these as Snakemake resources (snakemake-executor-plugin-slurm turns them into sbatch options):
`slurm_partition`, `constraint`, `gres` or `gpu`/`gpu_model`, `runtime`, `cpus_per_task`, `slurm_extra`. Jobs that
use a GPU (full-TensorRT builds, plan validation) go to the pool of their compute capability where one exists; all
other jobs, and every job when no pool has that compute capability, to `slurm.cpu`. With pools configured, the
full-TensorRT targets are the pools' compute capabilities (scripts/engine_factory/targets.py), not the local GPUs.
Decided from the compute capability alone (a wildcard), never from a file: Snakemake evaluates resources early.
"""

from __future__ import annotations

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


def pools(cfg: dict) -> dict:
    return (cfg.get("slurm") or {}).get("pools") or {}


def check(cfg: dict) -> None:
    """What the schema cannot say: one pool per compute capability, GPUs asked for one way, none on the CPU route."""
    slurm = cfg.get("slurm")
    if not slurm:
        return
    cpu = slurm.get("cpu") or {}
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
    """The Snakemake resources the routes use (the same for every rule, so each rule declares the same keys)."""
    slurm = cfg.get("slurm")
    if not slurm:
        return []
    used = set(slurm.get("cpu") or {}) | {k for p in pools(cfg).values() for k in p}
    if "gpu_model" in used:
        used.add("gpus")  # --gpus=<model>:<count>
    if pools(cfg):
        used.add("partition")  # a GPU job without a pool of its cc must still be told to leave the GPU partition
    return [RESOURCES[k][0] for k in RESOURCES if k in used]


def resources(cfg: dict, cc: str | None = None) -> dict:
    """Every routing resource of a job: the pool of `cc` when given and configured, else the CPU route."""
    slurm = cfg.get("slurm") or {}
    name = pool_for(cfg, cc)
    route = pools(cfg)[name] if name else (slurm.get("cpu") or {})
    out = {res: route.get(k, default) for k, (res, default) in RESOURCES.items()}
    if name and "runtime" not in route:
        out["runtime"] = (slurm.get("cpu") or {}).get("runtime", 0)
    if "gpu_model" in route and "gpus" not in route:
        out["gpu"] = 1
    return {res: out[res] for res in resource_names(cfg)}


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
    ("slurm_extra", "{}"),
)


def _sbatch(route: dict) -> str:
    """The sbatch options a route gives, as a person would type them (the plugin builds the real call)."""
    gpus = None
    if route.get("gpu_model") or route.get("gpus"):
        gpus = (f"{route['gpu_model']}:" if route.get("gpu_model") else "") + str(route.get("gpus", 1))
    values = {**route, "gpus_option": gpus}
    return " ".join(form.format(values[k]) for k, form in SBATCH if values.get(k)) or "(cluster defaults)"
