"""Full TensorRT (10.x, 11.x): builds on, and for, the local GPU; optional hardware compatibility / version compatible.

Not installed on CPU-only hosts: its code paths are run in tests through the `tensorrt_rtx` module where the APIs
coincide (see scripts/backends/core.py).
"""
from __future__ import annotations

from ..errors import FactoryError

MODULE = "tensorrt"
SHORT = "trt"
TIMING_CACHE_UNUSED = None  # full TensorRT keeps a timing cache per key (tactic timings: faster rebuilds)
HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere_plus": "AMPERE_PLUS",
                          "same_compute_capability": "SAME_COMPUTE_CAPABILITY"}


def import_module():
    try:
        import tensorrt
    except ImportError as e:
        raise FactoryError(
            f"backend 'tensorrt' needs NVIDIA TensorRT, which does not import here ({e}). Install it with "
            "`pip install tensorrt-cu12` (or tensorrt-cu13, from NVIDIA's package index) on a host with an NVIDIA "
            "GPU and driver, "
            "or set `backend: tensorrt_rtx`, which builds without a GPU.", key="backend") from e
    return tensorrt


def precision_support(cc: str, precision: str) -> str | None:
    major_minor = tuple(int(x) for x in cc.split("."))
    if precision == "fp8" and major_minor < (8, 9):
        return f"fp8 needs compute capability 8.9 or newer (GPU is {cc})"
    if precision == "bf16" and major_minor < (8, 0):
        return f"bf16 needs compute capability 8.0 or newer (GPU is {cc})"
    return None
