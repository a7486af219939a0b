"""TensorRT-RTX: ahead-of-time builds for named compute capabilities, no GPU needed to build.

Measured with tensorrt_rtx 1.7.1.116 on a GPU-less CPU host (November 2026):
- targets: ComputeCapability has SM75, SM80, SM86, SM89, SM120, SM121 only (no sm90/sm100); one target per plan
  after `num_compute_capabilities = 1; set_compute_capability(SMxx, 0)` (the count must be set first). Without any
  target the builder picks several itself (header bitmask 0x7e; on an H100 the runtime then listed the plan's
  "Supported compute capabilities: 8.0 8.6 8.9 12.0 12.1 >12.0", so bit 0x40 is presumably ">12.0").
- runtime on an H100 (cc 9.0, driver 580.159): deserialize_cuda_engine returns None, logging "The engine cannot run
  on this GPU, which has compute capability 9.0 ... TensorRT-RTX does not support this compute capability".
- fp32 GEMM on SM75: Myelin "Cannot compile operation ... for Turing (SM75): FP32 GEMM is not supported".
- IProgressMonitor works (phase_start / phase_finish are called).
- timing cache: the API exists but "Timing cache operations are no-ops in TensorRT-RTX" (DeprecationWarning since
  1.2); the cache serializes to a 172-byte file with 0 entries. NVIDIA's "Timing Cache Migration" page: no impact on
  the engine, and it forces a GPU query during AOT builds; "do not use". So RTX builds use none (TIMING_CACHE_UNUSED).
- hardware_compatibility_level: logs "setHardwareCompatibilityLevel() is unsupported in TensorRT-RTX" and stays NONE.
- BuilderFlag.VERSION_COMPATIBLE: accepted, then the build fails: "Unable to load library: libnvinfer_lean.so.1".
- NetworkDefinitionCreationFlag.STRONGLY_TYPED: accepted (networks are strongly typed anyway).
"""

from __future__ import annotations

from ..errors import FactoryError
from .hardware import hardware_support

MODULE = "tensorrt_rtx"
SHORT = "rtx"
BUILDS_ON_GPU = False  # ahead of time, for named compute capabilities
PRELOADABLE = True  # importing it touches no GPU: job processes may fork from one that imported it
MAGIC = b"vtrt"  # measured: every RTX plan starts with it
HEADER_VERSION_FIELDS = 4  # measured: bytes 24..27 hold major, minor, patch and the build number
# AOT targets: compute capability -> (ComputeCapability member, its bit in the header's target mask at 0x20).
TARGETS = {
    "7.5": ("SM75", 0x01),
    "8.0": ("SM80", 0x02),
    "8.6": ("SM86", 0x04),
    "8.9": ("SM89", 0x08),
    "12.0": ("SM120", 0x10),
    "12.1": ("SM121", 0x20),
}
SIZE_OFFSET = 0x10  # measured: a little-endian u64 there equals the file size
TARGETS_OFFSET = 0x20
# Why the builds of this backend keep no timing cache (None: they keep one per key); recorded in each plan's provenance.
# Triton Inference Server's tensorrt_plan backend links full TensorRT (libnvinfer), which cannot deserialize a
# TensorRT-RTX plan (another library, another magic): why this backend's repositories cannot be served by stock Triton.
TRITON_UNLOADABLE = (
    "TensorRT-RTX plans are not loadable by stock Triton: its tensorrt_plan backend runs full "
    "TensorRT; build with `backend: tensorrt` on a GPU host for a repository Triton can serve"
)
PORTABLE_ACROSS_CC = False  # one AOT target per plan
TIMING_CACHE_UNUSED = (
    "TensorRT-RTX: timing cache calls have no effect on the engine and force a GPU query during "
    "AOT builds (NVIDIA, TensorRT-RTX 'Timing Cache Migration': do not use)"
)


def import_module():
    import tensorrt_rtx

    return tensorrt_rtx


def target_ccs(cfg: dict, gpus: list[dict]) -> list[str]:
    """The configured AOT targets; no GPU needed."""
    return list(cfg["targets"]["rtx"])


def key_suffix(options: dict) -> str:
    """TensorRT-RTX has neither of full TensorRT's portability options (measured: the level is ignored,
    VERSION_COMPATIBLE fails the build): asking for them is a config error."""
    if options["hardware_compatibility_level"] != "none" or options["version_compatible"]:
        raise FactoryError(
            "TensorRT-RTX supports neither option (measured: the level is ignored, VERSION_COMPATIBLE "
            "fails the build); set them only with backend: tensorrt",
            key="tensorrt",
        )
    return ""


def portable_across_cc(key: str) -> bool:
    return PORTABLE_ACROSS_CC


def build_options(cfg: dict) -> dict:
    return {}


def precision_support(cc: str, precision: str) -> str | None:
    if cc not in TARGETS:
        return f"TensorRT-RTX has no sm{cc.replace('.', '')} target (its AOT targets: {', '.join(TARGETS)})"
    if precision == "fp32" and cc == "7.5":
        return "TensorRT-RTX refuses fp32 GEMM on sm75 (measured: 'FP32 GEMM is not supported' for Turing)"
    return hardware_support(cc, precision, what="target")


def set_aot_target(trt, config, cc: str, model: str) -> None:
    """One AOT target per plan. The count must be set before set_compute_capability (measured)."""
    if not hasattr(config, "set_compute_capability"):  # a module without AOT targets (full TensorRT)
        raise FactoryError(
            f"{trt.__name__} builds for the local GPU only; it takes no compute_capability target",
            model=model,
            key="targets",
        )
    if cc not in TARGETS:
        raise FactoryError(
            f"{trt.__name__} has no target for compute capability {cc} (targets: {', '.join(TARGETS)})",
            model=model,
            key="targets",
        )
    config.num_compute_capabilities = 1
    config.set_compute_capability(getattr(trt.ComputeCapability, TARGETS[cc][0]), 0)


def header_problems(head: bytes, size: int, cc: str | None, details: dict) -> list[str]:
    """RTX's undocumented header fields (measured; tests/backends re-check them on every run), as cross-checks."""
    problems = []
    recorded = int.from_bytes(head[SIZE_OFFSET : SIZE_OFFSET + 8], "little")
    details["header_size_field"] = recorded
    if recorded != size:
        problems.append(f"header records {recorded} bytes, file has {size} (truncated or damaged?)")
    mask = head[TARGETS_OFFSET]
    details["target_bitmask"] = hex(mask)
    details["header_targets"] = [c for c, (_, bit) in TARGETS.items() if mask & bit]
    if cc is not None and not mask & TARGETS.get(str(cc), (None, 0))[1]:
        problems.append(f"header targets {details['header_targets'] or hex(mask)} do not include {cc}")
    return problems
