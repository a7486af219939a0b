"""Cheap checks of a plan file without a GPU: non-empty, magic, version and targets in the header match the key.

Header facts and where they come from:
- magic: RTX plans start with b"vtrt" (measured); full TensorRT plans with b"ftrt" (widely relied on, e.g. by
  Torch-TensorRT's engine loader; not in NVIDIA's API docs).
- bytes 24, 25, 26: major, minor, patch of the building library. For full TensorRT this is NVIDIA's own answer on
  github.com/NVIDIA/TensorRT/issues/3073 (an engine's version "in the first few bytes", indices 24-26); for RTX 1.7
  it was measured, and byte 27 held the build number too (1.7.1.116 -> 01 07 01 74).
- RTX only, measured on plans built here for every target (tests/test_backends.py re-checks this on each run):
  a little-endian u64 at 0x10 equals the file size, and byte 0x20 is a bitmask of the AOT targets. Undocumented,
  so they are cross-checks against the key, and the test suite is what says they still hold.
- `Runtime.get_engine_validity(header)` where the backend has it (RTX): without a GPU a good plan also reads INVALID
  (a CUDA error is logged), so INVALID is judged only when `host` has a GPU of the plan's compute capability; the
  MALFORMED_ENGINE and VERSION_MISMATCH diagnostics are judged always.
Deserialization and execution are engine_factory.runtime's job (they need the right GPU selected).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FactoryError
from ..outcomes import Outcome
from .registry import SPECS, get_logger, load_backend, spec_of

VERSION_OFFSET = 24
HEADER_READ = 4096
MIN_HEADER = 0x28  # every field read below lies before it
ALWAYS_FATAL = ("MALFORMED_ENGINE", "VERSION_MISMATCH")


def check_plan_header(
    plan_path, *, backend: str, version: str, compute_capability: str | None, host: dict | None = None
) -> dict:
    """{"status": "pass"|"fail", "reason", "details"} for `backend` (name or short name); compute_capability None
    skips the target cross-check."""
    spec = spec_of(backend, version)
    short = spec.SHORT
    path = Path(plan_path)
    details: dict = {
        "path": str(path),
        "backend": short,
        "expected_version": version,
        "compute_capability": compute_capability,
    }
    if not path.is_file():
        return _result(["plan file is missing"], details)
    details["bytes"] = size = path.stat().st_size
    if size == 0:
        return _result(["plan file is empty"], details)
    with open(path, "rb") as f:
        head = f.read(HEADER_READ)
    magic = head[:4]
    details["magic"] = magic.decode("latin-1")
    if magic != spec.MAGIC:
        other = [getattr(b, "NAME", b.SHORT) for b in SPECS if b.MAGIC == magic]
        why = f"a {other[0]} plan" if other else "not a recognised plan header"
        return _result([f"magic {magic!r} is {why}, key says {short} (expects {spec.MAGIC!r})"], details)
    if len(head) < MIN_HEADER:
        return _result([f"plan is {size} bytes: too short for a header"], details)

    problems = []
    n = spec.HEADER_VERSION_FIELDS
    found = list(head[VERSION_OFFSET : VERSION_OFFSET + n])
    want = [int(x) for x in version.split(".")[:n]]
    details["header_version"] = ".".join(map(str, found))
    if found[: len(want)] != want[: len(found)]:  # a key may give fewer parts
        problems.append(f"header says version {details['header_version']}, key says {version}")
    problems += (
        spec.header_problems(head, size, compute_capability, details, version)
        if n == 0  # 8.x: its tag
        else spec.header_problems(head, size, compute_capability, details)
    )
    problems += _runtime_validity(short, head, compute_capability, host, details)
    return _result(problems, details)


def _runtime_validity(short: str, head: bytes, cc: str | None, host: dict | None, details: dict) -> list[str]:
    """Ask the backend's runtime about the header, where it can; returns problems to fail on."""
    try:
        trt = load_backend(short).module
    except FactoryError as e:
        details["engine_validity"] = {"checked": False, "reason": str(e)}
        return []
    logger = get_logger(trt)
    runtime = trt.Runtime(logger)
    if not hasattr(runtime, "get_engine_validity"):  # full TensorRT 10.x has no header-only check
        details["engine_validity"] = {"checked": False, "reason": f"{trt.__name__} has no get_engine_validity"}
        return []
    validity, diagnostics = runtime.get_engine_validity(head[: runtime.engine_header_size])
    flags = [name for name, member in trt.EngineInvalidityDiagnostics.__members__.items() if diagnostics & int(member)]
    gpu_here = any(g.get("compute_capability") == cc for g in (host or {}).get("gpus", []))
    details["engine_validity"] = {
        "checked": True,
        "validity": validity.name,
        "diagnostics": flags,
        "judged": gpu_here,
        "log": logger.errors()[:5],
    }
    problems = [f"runtime reports {f}" for f in flags if f in ALWAYS_FATAL]
    if validity.name == "INVALID" and gpu_here and not problems:
        problems.append(
            f"runtime reports the plan INVALID on this host's {cc} GPU ({', '.join(flags) or 'no flags'}"
            f"{': ' + logger.errors()[0] if logger.errors() else ''})"
        )
    if not gpu_here:
        details["engine_validity"]["note"] = (
            "no GPU of this compute capability here: INVALID is expected (measured) and not judged"
        )
    return problems


def _result(problems: list[str], details: dict) -> dict:
    if problems:
        return {"status": Outcome.FAIL, "reason": "; ".join(problems), "details": details}
    targets = details.get("header_targets")
    return {
        "status": Outcome.PASS,
        "details": details,
        "reason": f"{details['magic']} header, version {details['header_version']}"
        + (f", targets {targets}" if targets is not None else ""),
    }


def read_header(plan_path) -> dict:
    """What a plan's header says without a key to compare with (the load-time check,
    engine_factory/deploy/readiness.py):
    {"backend" (short name) , "module", "version", "targets" (RTX: the AOT targets; None where the header has
    none), "bytes", "problem" (None, or why the header is not readable)}."""
    path = Path(plan_path)
    out = {
        "path": str(path),
        "backend": None,
        "module": None,
        "version": None,
        "targets": None,
        "bytes": None,
        "problem": None,
    }
    if not path.is_file():
        return {**out, "problem": "plan file is missing"}
    out["bytes"] = size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_READ)
    spec = next((b for b in SPECS if b.MAGIC == head[:4]), None)
    if spec is None:
        return {**out, "problem": f"magic {head[:4]!r} is not a recognised plan header"}
    if len(head) < MIN_HEADER:
        return {**out, "problem": f"plan is {size} bytes: too short for a header"}
    details: dict = {}
    problems = spec.header_problems(head, size, None, details)  # size and target fields where the backend has them
    return {
        **out,
        "backend": spec.SHORT,
        "module": spec.MODULE,
        "version": details.get("header_version")  # 8.x: the release its serialization tag names
        or ".".join(str(b) for b in head[VERSION_OFFSET : VERSION_OFFSET + spec.HEADER_VERSION_FIELDS]),
        "targets": details.get("header_targets"),
        "problem": "; ".join(problems) or None,
    }
