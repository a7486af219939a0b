"""What this host and config build: every (model, backend key, compute capability, precision), and the
combinations skipped with the reason (e.g. fp8 below sm89). engine_factory/factory.py's `resolve` is the one caller that
strings these together (probe -> targets -> backend -> key -> jobs)."""

from __future__ import annotations

from . import paths
from .config import model_settings


def target_gpus(cfg: dict, local_gpus: list[dict]) -> list[dict]:
    """The GPUs full TensorRT builds for: one per Slurm pool where `slurm.pools` is configured (the jobs run on the
    pools' nodes, so this host's GPUs do not matter), else the local GPUs."""
    from .cluster import pools

    if pools(cfg):
        return [
            {"name": f"pool {name}", "compute_capability": p["compute_capability"], "pool": name}
            for name, p in pools(cfg).items()
        ]
    return local_gpus


def plan_jobs(cfg: dict, *, backend, key: str, gpus: list[dict]) -> tuple[list[dict], list[dict]]:
    """(jobs, skipped): every configured (model, precision) at every target compute capability of `backend`."""
    jobs, skipped = [], []
    ccs = backend.target_ccs(cfg, gpus)
    for model in cfg["models"]:
        for precision in model_settings(cfg, model)["precisions"]:
            for cc in ccs:
                entry = {"model": model, "key": key, "cc": paths.cc_tag(cc), "precision": precision}
                reason = backend.precision_support(cc, precision)
                if reason:
                    skipped.append({**entry, "reason": reason})
                else:
                    jobs.append(entry)
    return jobs, skipped
