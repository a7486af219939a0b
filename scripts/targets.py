"""What this host and config build: every (model, backend key, compute capability, precision), and the
combinations skipped with the reason (e.g. fp8 below sm89)."""
from __future__ import annotations

from . import paths
from .config import model_settings


def backend_key(cfg: dict, backend) -> str:
    """The backend part of a plan key: backend and exact version, plus full TensorRT's portability options
    (a plan built hardware- or version-compatible is a different artifact)."""
    opts = cfg["tensorrt"]
    level, vc = opts["hardware_compatibility_level"], opts["version_compatible"]
    if backend.short == "rtx" and (level != "none" or vc):
        from .errors import FactoryError

        raise FactoryError("TensorRT-RTX supports neither option (measured: the level is ignored, VERSION_COMPATIBLE "
                           "fails the build); set them only with backend: tensorrt", key="tensorrt")
    return backend.key + (f"-{level}" if level != "none" else "") + ("-vc" if vc else "")


def target_gpus(cfg: dict, local_gpus: list[dict]) -> list[dict]:
    """The GPUs full TensorRT builds for: one per Slurm pool where `slurm.pools` is configured (the jobs run on the
    pools' nodes, so this host's GPUs do not matter), else the local GPUs."""
    from .cluster import pools

    if pools(cfg):
        return [{"name": f"pool {name}", "compute_capability": p["compute_capability"], "pool": name}
                for name, p in pools(cfg).items()]
    return local_gpus


def target_ccs(cfg: dict, backend_short: str, gpus: list[dict]) -> list[str]:
    """TensorRT-RTX builds ahead of time for configured targets; full TensorRT for each compute capability of
    `gpus` (from target_gpus: the Slurm pools', else the local GPUs')."""
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
