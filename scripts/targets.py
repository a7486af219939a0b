"""What this host and config build: every (model, backend key, compute capability, precision), and the
combinations skipped with the reason (e.g. fp8 below sm89)."""
from __future__ import annotations

from . import paths
from .config import model_settings


def target_ccs(cfg: dict, backend_short: str, gpus: list[dict]) -> list[str]:
    """TensorRT-RTX builds ahead of time for configured targets; full TensorRT for each local compute capability."""
    if backend_short == "rtx":
        return list(cfg["targets"]["rtx"])
    return sorted({g["compute_capability"] for g in gpus}, key=lambda cc: tuple(map(int, cc.split("."))))


def plan_jobs(cfg: dict, *, backend_short: str, backend_key: str, gpus: list[dict]) -> tuple[list[dict], list[dict]]:
    from .backends import precision_support

    jobs, skipped = [], []
    for model in cfg["models"]:
        for precision in model_settings(cfg, model)["precisions"]:
            for cc in target_ccs(cfg, backend_short, gpus):
                entry = {"model": model, "key": backend_key, "cc": paths.cc_tag(cc), "precision": precision}
                reason = precision_support(backend_short, cc, precision)
                if reason:
                    skipped.append({**entry, "reason": reason})
                else:
                    jobs.append(entry)
    return jobs, skipped
