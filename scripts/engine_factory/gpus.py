"""Pin a job to one local GPU of a given compute capability.

Snakemake's `gpu_sm{cc}` resource (registered with the number of such GPUs) caps how many jobs use those GPUs at
once; this module decides *which* one a job gets: the first GPU of that compute capability whose lock file it can
take, exported as CUDA_VISIBLE_DEVICES before any CUDA context exists. Where CUDA_VISIBLE_DEVICES is already set
(Slurm, or the user), it is respected: the job uses what it was given, and the caller checks the compute capability.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

from filelock import FileLock, Timeout

from .errors import WrongHost  # facts about the host, not the job's inputs: never a recorded failure

LOCK_DIR = os.environ.get("FACTORY_GPU_LOCK_DIR", os.path.join(tempfile.gettempdir(), "engine-factory-gpu-locks"))


def gpus_of(host: dict, cc: str) -> list[dict]:
    return [g for g in host["gpus"] if g["compute_capability"] == cc]


def pinned_gpu_if(wanted: bool, host: dict, cc: str, *, model: str):
    """`pinned_gpu` where the job runs on a GPU, else a context that yields None."""
    return pinned_gpu(host, cc, model=model) if wanted else contextlib.nullcontext(None)


@contextlib.contextmanager
def pinned_gpu(host: dict, cc: str, *, model: str, wait_s: float = 3600.0):
    """Yield the GPU dict this process now owns (CUDA_VISIBLE_DEVICES set to it); release on exit."""
    candidates = gpus_of(host, cc)
    if not candidates:
        found = sorted({g["compute_capability"] for g in host["gpus"]}) or "none"
        raise WrongHost(f"this job needs a GPU of compute capability {cc}; this host has {found}", model=model)
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        yield candidates[0]
        return
    os.makedirs(LOCK_DIR, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for gpu in candidates:
            lock = FileLock(os.path.join(LOCK_DIR, f"{gpu.get('uuid') or gpu['index']}.lock"))
            try:
                lock.acquire(timeout=0)  # an OS lock: a killed job's lock is released with its process
            except Timeout:
                continue
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu.get("uuid") or gpu["index"])
            try:
                yield {**gpu, "cuda_index": 0}  # the only visible device now
            finally:
                lock.release()
            return
        if time.monotonic() > deadline:
            raise WrongHost(f"no GPU of compute capability {cc} became free in {wait_s:.0f} s", model=model)
        time.sleep(0.5)
