"""Full TensorRT 8.x (8.5.3.1 is the PyPI wheel, Jetson JetPack 5.1 ships 8.5.2): the `tensorrt` module when its
version is 8.x. Same key shape as 10/11 (`trt-8.5.3.1/sm90/...`); what differs is answered here.

- Weakly typed: no STRONGLY_TYPED flag; networks need EXPLICIT_BATCH; precision is chosen by builder flags over the
  precision's ONNX variant (fp16: the fp16 variant with the FP16 flag, so I/O types and the layers AutoCast kept in
  fp32 are as the variant says, and TensorRT may still pick fp16 for the rest; int8: the Q/DQ variant with the INT8
  flag, explicit quantization; layers without Q/DQ stay fp32). bf16 and fp8 do not exist in 8.x: skipped, reason given.
- Its ONNX parser reads opsets up to 17: a variant exported at a newer opset is converted down with
  onnx.version_converter first (into a file beside the plan's temporary; recorded in the build facts).
- No builder optimization level (8.6+), no IProgressMonitor (10.0+), parser errors without node name/operator (10.0+).
- Tactic sources: where libcublas.so.11 / libcublasLt.so.11 / libcudnn.so.8 are stand-ins (shared/tools/trt85: a GPU
  machine without CUDA 11's math libraries; each of their functions only returns an error), the build must use
  TensorRT's own kernels only (EDGE_MASK_CONVOLUTIONS | JIT_CONVOLUTIONS). Detected from the loaded libraries' sizes
  (the real ones are tens to hundreds of MB), or set with FACTORY_TRT_TACTIC_SOURCES; recorded either way.
- Plan header: see MAGIC / header_problems (measured on the H100, docs/hardware-runs.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FactoryError
from .hardware import hardware_support
from .tensorrt import import_module, key_suffix, portable_across_cc, target_ccs  # noqa: F401  (same answers)

MODULE = "tensorrt"
NAME = "tensorrt8"  # how provenance and errors name this spec (the config still says `backend: tensorrt`)
SHORT = "trt"
MAJOR = 8
BUILDS_ON_GPU = True
PRELOADABLE = False
MAGIC = b"ptrt"  # measured on 8.5.3.1 plans (docs/hardware-runs.md); 10.x writes b"ftrt"
# 8.x plans keep no major/minor/patch bytes at 24-26 (that layout is 8.6+, NVIDIA/TensorRT#3073); they carry a
# serialization version tag that changes with every release (8.2.1.8: 205, 8.4.3.1: 213, 8.5.3.1: 232, ibid.).
HEADER_VERSION_FIELDS = 0
SERIALIZATION_TAG_OFFSET = 8
SERIALIZATION_TAGS = {"8.2.1": 205, "8.4.3": 213, "8.5.3": 232}
TRITON_UNLOADABLE = None  # Triton 22.12-23.02 ship TensorRT 8.5 (tensorrt_plan backend)
TIMING_CACHE_UNUSED = None
MAX_ONNX_OPSET = 17
WEAK_TYPE_FLAGS = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8"]}
NO_SUCH_TYPE = {
    "bf16": "TensorRT 8.x has no bf16 (BuilderFlag.BF16 and DataType.BF16 arrive in 9.0)",
    "fp8": "TensorRT 8.x has no fp8 (DataType.FP8 arrives in 8.6 for Hopper plugins, builds in 9.0+)",
}
STAND_IN_LIBS = ("libcublas.so.11", "libcublasLt.so.11", "libcudnn.so.8")
STAND_IN_MAX_BYTES = 1 << 20  # the stand-ins are a few KiB; cuBLAS 11 alone is ~100 MB
OWN_KERNELS = ("EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS")
TACTICS_ENV = "FACTORY_TRT_TACTIC_SOURCES"


def applies_to(version: str) -> bool:
    """This spec answers for the `tensorrt` module when its major version is 8."""
    return str(version).split(".")[0] == str(MAJOR)


def build_options(cfg: dict) -> dict:
    return {"tensorrt": cfg["tensorrt"]}


def precision_support(cc: str, precision: str) -> str | None:
    if precision in NO_SUCH_TYPE:
        return NO_SUCH_TYPE[precision]
    return hardware_support(cc, precision, what="GPU")


def network_flags(trt) -> int:
    """8.x: explicit batch must be asked for (the ONNX parser refuses implicit-batch networks); weakly typed."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def set_precision(trt, config, precision: str | None, model: str) -> list[str]:
    """The builder flags of a weakly typed build for `precision`; returns their names (recorded)."""
    if precision in NO_SUCH_TYPE:
        raise FactoryError(NO_SUCH_TYPE[precision], model=model, key="precisions")
    if precision not in WEAK_TYPE_FLAGS:
        raise FactoryError(
            f"a weakly typed {MODULE} {MAJOR}.x build needs the precision (one of "
            f"{', '.join(WEAK_TYPE_FLAGS)}), got {precision!r}",
            model=model,
            key="precisions",
        )
    for name in WEAK_TYPE_FLAGS[precision]:
        config.set_flag(getattr(trt.BuilderFlag, name))
    return WEAK_TYPE_FLAGS[precision]


def loaded_stand_ins(maps: str = "/proc/self/maps") -> dict[str, int]:
    """{library: bytes} of the CUDA 11 math libraries loaded in this process that are stand-ins (tiny files)."""
    try:
        lines = Path(maps).read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        path = line.split()[-1] if line.split() else ""
        name = os.path.basename(path)
        if name in STAND_IN_LIBS and os.path.isfile(path):
            size = os.path.getsize(path)
            if size < STAND_IN_MAX_BYTES:
                found[name] = size
    return found


def set_tactic_sources(trt, config, model: str, stand_ins: dict | None = None) -> dict:
    """Limit the tactic sources where the math libraries are stand-ins (or where the environment says which)."""
    stand_ins = loaded_stand_ins() if stand_ins is None else stand_ins
    wanted = [s.strip().upper() for s in os.environ.get(TACTICS_ENV, "").split(",") if s.strip()]
    why = f"{TACTICS_ENV}={os.environ.get(TACTICS_ENV)}" if wanted else None
    if not wanted and stand_ins:
        wanted = list(OWN_KERNELS)
        why = (
            "stand-in math libraries loaded ("
            + ", ".join(f"{k} {v} B" for k, v in sorted(stand_ins.items()))
            + "): TensorRT's own kernels only"
        )
    if not wanted:
        return {"tactic_sources": "default", "reason": "the real cuBLAS/cuDNN (or none needed)"}
    mask = 0
    for name in wanted:
        member = getattr(trt.TacticSource, name, None)
        if member is None:
            raise FactoryError(
                f"unknown tactic source '{name}' (from {why}; {trt.__name__} has "
                f"{', '.join(trt.TacticSource.__members__)})",
                model=model,
                key=TACTICS_ENV,
            )
        mask |= 1 << int(member)
    config.set_tactic_sources(mask)
    return {"tactic_sources": wanted, "reason": why}


def onnx_for_parser(onnx_path, work_dir, model: str) -> tuple[str, dict]:
    """(path the parser reads, facts): the file itself where its default-domain opset is <= 17, else a copy converted
    down with onnx.version_converter, written into `work_dir` (external data is loaded and kept inline)."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    facts = {"onnx_opset": opset, "parser_max_opset": MAX_ONNX_OPSET, "converted_to": None}
    if opset is None or opset <= MAX_ONNX_OPSET:
        return str(onnx_path), facts
    from onnx import version_converter

    full = onnx.load(str(onnx_path))
    try:
        converted = version_converter.convert_version(full, MAX_ONNX_OPSET)
    except Exception as e:
        raise FactoryError(
            f"{MODULE} {MAJOR}.x parses ONNX opset <= {MAX_ONNX_OPSET}; converting this model's "
            f"opset {opset} down failed: {' '.join(str(e).split())[:300]}",
            model=model,
            path=str(onnx_path),
        ) from e
    out = Path(work_dir) / f"{Path(onnx_path).stem}.opset{MAX_ONNX_OPSET}.onnx"
    onnx.save(converted, str(out))
    facts["converted_to"] = MAX_ONNX_OPSET
    return str(out), facts


def header_problems(head: bytes, size: int, cc: str | None, details: dict, version: str | None = None) -> list[str]:
    """The serialization tag of 8.x plans (where this release's is known) as the version cross-check."""
    tag = head[SERIALIZATION_TAG_OFFSET]
    details["serialization_tag"] = tag
    details["header_bytes"] = head[:32].hex()
    details["header_version"] = next((v for v, t in SERIALIZATION_TAGS.items() if t == tag), f"tag {tag}")
    want = SERIALIZATION_TAGS.get(".".join(str(version or "").split(".")[:3]))
    if want is not None and tag != want:
        return [f"serialization tag {tag} is not {version}'s ({want})"]
    return []
