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

MODULE = "tensorrt_rtx"
SHORT = "rtx"
# AOT targets -> ComputeCapability member names; "sm86" in artifact paths == "8.6" here.
TARGETS = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121"}
# Why the builds of this backend keep no timing cache (None: they keep one per key); recorded in each plan's provenance.
TIMING_CACHE_UNUSED = ("TensorRT-RTX: timing cache calls have no effect on the engine and force a GPU query during "
                       "AOT builds (NVIDIA, TensorRT-RTX 'Timing Cache Migration': do not use)")


def import_module():
    import tensorrt_rtx
    return tensorrt_rtx


def precision_support(cc: str, precision: str) -> str | None:
    if cc not in TARGETS:
        return (f"TensorRT-RTX has no sm{cc.replace('.', '')} target "
                f"(its AOT targets: {', '.join(TARGETS)})")
    major_minor = tuple(int(x) for x in cc.split("."))
    if precision == "fp8" and major_minor < (8, 9):
        return f"fp8 needs compute capability 8.9 or newer (target is {cc})"
    if precision == "bf16" and major_minor < (8, 0):
        return f"bf16 needs compute capability 8.0 or newer (target is {cc})"
    if precision == "fp32" and cc == "7.5":
        return "TensorRT-RTX refuses fp32 GEMM on sm75 (measured: 'FP32 GEMM is not supported' for Turing)"
    return None
