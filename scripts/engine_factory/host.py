"""Facts about this host's GPUs, driver and CUDA: the source of full-TensorRT targets and of provenance.

`probe_host()` never raises: on a machine without a GPU or driver it returns `gpus: []`, the driver fields None, and
says why under `probe_errors`.

Override (tests, ops, cluster pools): when the environment variable FACTORY_HOST_FACTS names a JSON file, each of its
top-level keys replaces the probed value (e.g. `{"gpus": [{"index": 0, "name": "RTX A4000",
"compute_capability": "8.6", ...}], "driver_version": "580.1"}`); `overrides` records the file.
A driver or CUDA change re-runs validation only (they are params of the validate rule); a compute-capability
change is a new target. The file may also hold `backend_versions` (e.g. `{"tensorrt_rtx": "1.8.0.1"}`): artifact keys
then name that version, as after an upgrade (`backend_for_keys`); build jobs still refuse a key whose version is not
the installed module's, so this simulates an upgrade for status/prune/tests, it never mislabels a plan.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket

OVERRIDE_ENV = "FACTORY_HOST_FACTS"
PROBED_ENV = "FACTORY_HOST_PROBED"  # the Snakefile's probe of this host, handed to its jobs (see job_host_facts)


def job_host_facts() -> dict:
    """This host's facts for a stage job: the probe its Snakefile made at DAG time on this same host (every Snakemake
    process, also a Slurm job's on its node, probes afresh and sets PROBED_ENV), else a probe now. A probe whose
    hostname is not this host's (an environment carried elsewhere) is not used. Saves each job ~10-50 ms."""
    probed = os.environ.get(PROBED_ENV)
    if probed:
        facts = json.loads(probed)
        if facts.get("hostname") == socket.gethostname():
            return facts
    return probe_host()


def probe_host() -> dict:
    facts = {
        "gpus": [],
        "driver_version": None,
        "cuda_driver_version": None,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "probe_errors": [],
    }
    if _probe_nvml(facts):
        _probe_cuda(facts)
    else:  # no driver library at all: CUDA cannot work either (saves ~40 ms per job, measured)
        facts["probe_errors"].append("CUDA runtime: not probed (no NVIDIA driver library)")
    facts["backends"] = installed_backends()
    path = os.environ.get(OVERRIDE_ENV)
    if path:
        try:
            with open(path) as f:
                facts.update(json.load(f))
            facts["overrides"] = path
        except (OSError, ValueError) as e:
            facts["probe_errors"].append(f"{OVERRIDE_ENV}={path}: {e}")
    return facts


def backend_for_keys(backend, host: dict):
    """`backend` as the artifact keys see it: with `backend_versions.<name>` in the host facts (test/ops override),
    its version and key are replaced; the module stays the installed one."""
    import dataclasses

    version = (host.get("backend_versions") or {}).get(backend.name)
    if not version or str(version) == backend.version:
        return backend
    return dataclasses.replace(backend, version=str(version), key=f"{backend.short}-{version}")


def installed_backends() -> dict:
    """{module: version or None} for the TensorRT backends, read from package metadata (importing full TensorRT
    costs seconds; its version is what the key needs)."""
    import importlib.metadata
    import importlib.util

    dists = {
        "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
        "tensorrt_rtx": ("tensorrt-rtx-cu13", "tensorrt-rtx-cu12", "tensorrt-rtx"),
    }
    found = {}
    for module, names in dists.items():
        version = None
        spec = importlib.util.find_spec(module)
        if spec is not None:
            for name in names:
                try:
                    version = importlib.metadata.version(name)
                    break
                except importlib.metadata.PackageNotFoundError:
                    continue
            version = version or _declared_version(spec.origin)
        found[module] = version
    return found


_VERSION = re.compile(r"""^__version__\s*=\s*["']([0-9][0-9A-Za-z.+-]*)["']""", re.M)


def _declared_version(origin: str | None) -> str | None:
    """The `__version__ = "..."` its __init__.py declares, read as text, for a module installed without package
    metadata (TensorRT's tar install or its bindings built from source on PYTHONPATH): found by the first run on a
    GPU, where `ready` said no TensorRT was installed beside a working TensorRT 8.5."""
    try:
        with open(origin, errors="replace") as f:
            m = _VERSION.search(f.read(65536))
    except (OSError, TypeError):
        return None
    return m.group(1) if m else None


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _cuda_version(v: int) -> str:  # 13000 -> "13.0"
    return f"{v // 1000}.{v % 1000 // 10}"


def _probe_nvml(facts: dict) -> bool:
    """Names, memory, compute capability, UUIDs and driver from NVML (sees every GPU, ignores CUDA_VISIBLE_DEVICES).
    Returns False only when the driver's library is missing (then no GPU can be used)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as e:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
        facts["probe_errors"].append(f"NVML: {e}")
        return "Library Not Found" not in str(e)
    try:
        facts["driver_version"] = _text(pynvml.nvmlSystemGetDriverVersion())
        facts["cuda_driver_version"] = _cuda_version(pynvml.nvmlSystemGetCudaDriverVersion_v2())
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            facts["gpus"].append(
                {
                    "index": i,
                    "name": _text(pynvml.nvmlDeviceGetName(h)),
                    "compute_capability": f"{major}.{minor}",
                    "sm_count": None,
                    "memory_mb": pynvml.nvmlDeviceGetMemoryInfo(h).total // 2**20,
                    "uuid": _text(pynvml.nvmlDeviceGetUUID(h)),
                    "cuda_index": None,
                }
            )
    except Exception as e:
        facts["probe_errors"].append(f"NVML: {e}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return True


def _probe_cuda(facts: dict) -> None:
    """SM count (and, without NVML, everything else) from the CUDA runtime; GPUs are matched to NVML by UUID.

    `cuda_index` is the device's ordinal as CUDA sees it in this process (CUDA_VISIBLE_DEVICES applies); None means
    NVML lists the GPU but this process cannot use it.
    """
    try:
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
        if err != cudart.cudaError_t.cudaSuccess:
            facts["probe_errors"].append(f"CUDA runtime: {_text(cudart.cudaGetErrorString(err)[1])} ({err.name})")
            return
        err, version = cudart.cudaDriverGetVersion()
        if err == cudart.cudaError_t.cudaSuccess and not facts["cuda_driver_version"]:
            facts["cuda_driver_version"] = _cuda_version(version)
        by_uuid = {g["uuid"]: g for g in facts["gpus"]}
        for i in range(count):
            err, prop = cudart.cudaGetDeviceProperties(i)
            if err != cudart.cudaError_t.cudaSuccess:
                facts["probe_errors"].append(f"CUDA runtime: device {i}: {err.name}")
                continue
            b = bytes(prop.uuid.bytes)[:16]
            uuid = "GPU-" + "-".join(b[s:e].hex() for s, e in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 16)))
            gpu = by_uuid.get(uuid)
            if gpu is None:  # NVML missing: CUDA's view is all there is
                gpu = {
                    "index": i,
                    "name": _text(prop.name).rstrip("\x00"),
                    "compute_capability": f"{prop.major}.{prop.minor}",
                    "memory_mb": prop.totalGlobalMem // 2**20,
                    "uuid": uuid,
                }
                facts["gpus"].append(gpu)
            gpu["sm_count"] = prop.multiProcessorCount
            gpu["cuda_index"] = i
    except Exception as e:  # ImportError, driver library not found, ...
        facts["probe_errors"].append(f"CUDA runtime: {e}")


if __name__ == "__main__":
    print(json.dumps(probe_host(), indent=2))
