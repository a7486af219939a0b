"""Full TensorRT (10.x, 11.x): builds on, and for, the local GPU; optional hardware compatibility / version compatible.

Not installed on CPU-only hosts: its code paths are run in tests through the `tensorrt_rtx` module where the APIs
coincide (see scripts/engine_factory/backends/core.py).
"""

from __future__ import annotations

from ..errors import FactoryError
from .hardware import hardware_support

MODULE = "tensorrt"
SHORT = "trt"
BUILDS_ON_GPU = True  # on, and for, a GPU of the key's compute capability
PRELOADABLE = (
    False  # imported in each job: no fork of a process that may hold CUDA state (scripts/engine_factory/jobs.py)
)
MAGIC = b"ftrt"  # widely relied on (e.g. Torch-TensorRT's engine loader); not in NVIDIA's API docs
HEADER_VERSION_FIELDS = 3  # NVIDIA (github.com/NVIDIA/TensorRT/issues/3073): major, minor, patch at bytes 24-26
TRITON_UNLOADABLE = None  # Triton's tensorrt_plan backend loads full TensorRT plans (of its own TensorRT version)
TIMING_CACHE_UNUSED = None  # full TensorRT keeps a timing cache per key (tactic timings: faster rebuilds)
HARDWARE_COMPATIBILITY = {
    "none": "NONE",
    "ampere_plus": "AMPERE_PLUS",
    "same_compute_capability": "SAME_COMPUTE_CAPABILITY",
}


def import_module():
    try:
        import tensorrt
    except ImportError as e:
        raise FactoryError(
            f"backend 'tensorrt' needs NVIDIA TensorRT, which does not import here ({e}). Install it with "
            "`pip install tensorrt-cu12` (or tensorrt-cu13, from NVIDIA's package index) on a host with an NVIDIA "
            "GPU and driver, "
            "or set `backend: tensorrt_rtx`, which builds without a GPU.",
            key="backend",
        ) from e
    return tensorrt


def target_ccs(cfg: dict, gpus: list[dict]) -> list[str]:
    """Each distinct compute capability of `gpus` (the Slurm pools', else the local GPUs)."""
    return sorted({g["compute_capability"] for g in gpus}, key=lambda cc: tuple(map(int, cc.split("."))))


def key_suffix(options: dict) -> str:
    """A plan built hardware- or version-compatible is a different artifact: the options are part of the key."""
    level, vc = options["hardware_compatibility_level"], options["version_compatible"]
    return (f"-{level}" if level != "none" else "") + ("-vc" if vc else "")


def portable_across_cc(key: str) -> bool:
    """A plan built with hardware compatibility level ampere_plus runs on any Ampere-or-newer GPU (NVIDIA: "Hardware
    Compatibility"); otherwise it runs on GPUs of the compute capability it was built on only."""
    return "-ampere_plus" in key


def build_options(cfg: dict) -> dict:
    return {"tensorrt": cfg["tensorrt"]}


def precision_support(cc: str, precision: str) -> str | None:
    return hardware_support(cc, precision, what="GPU")


def set_compatibility(trt, config, logger, level: str | None, version_compatible: bool, model: str) -> dict:
    """Full TensorRT's portability options; both change the artifact key, so a module that ignores them is an error.
    Measured on TensorRT-RTX 1.7 (standing in): the level is ignored with a warning (caught here); VERSION_COMPATIBLE
    is accepted but the build then fails (libnvinfer_lean.so.1 missing), reported by the build's error."""
    used = {"hardware_compatibility_level": None, "version_compatible": False}
    if level and level != "none":
        if level not in HARDWARE_COMPATIBILITY:
            raise FactoryError(
                f"unknown hardware compatibility level '{level}' (choose from {', '.join(HARDWARE_COMPATIBILITY)})",
                model=model,
                key="hardware_compatibility_level",
            )
        wanted = getattr(trt.HardwareCompatibilityLevel, HARDWARE_COMPATIBILITY[level])
        seen = len(logger.records)
        config.hardware_compatibility_level = wanted  # full TensorRT only
        if config.hardware_compatibility_level != wanted:
            warned = "; ".join(m for _, m in logger.records[seen:]) or "no message"
            raise FactoryError(
                f"{trt.__name__} {trt.__version__} does not support hardware compatibility level '{level}' ({warned})",
                model=model,
                key="hardware_compatibility_level",
            )
        used["hardware_compatibility_level"] = level
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)  # full TensorRT only
        used["version_compatible"] = True
    return used


def header_problems(head: bytes, size: int, cc: str | None, details: dict) -> list[str]:
    return []  # full TensorRT plans carry no documented target field
