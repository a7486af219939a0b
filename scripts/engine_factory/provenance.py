"""Provenance sidecars: `<artifact>.provenance.json` beside every artifact, chained through its inputs.

Each sidecar holds the artifact's sha256 and size, every input's path, sha256 and (when the input has one) its
own sidecar's path, so that a plan leads back by hashes to its checkpoint; the stage and its parameters; the
tool versions; the host facts; and the workflow's git commit.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path

from . import atomic, paths
from .fingerprint import sha256

SCHEMA_VERSION = 1
TOOLS = [
    "torch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "onnxslim",
    "onnxsim",
    "nvidia-modelopt",
    "onnxconverter-common",
    "tensorrt-rtx-cu13",
    "tensorrt",
    "tensorflow-cpu",
    "tf2onnx",
    "numpy",
    "snakemake",
    "cuda-python",
    "pycuda",
    "tensorflow",
    "keras",
    "tritonclient",
    "protobuf",
]
REPO = Path(__file__).resolve().parents[2]
# The tools whose version decides what a stage writes (the backend's version is in the plan key instead). The
# workflow writes them into each rule's command as a shell comment, so Snakemake's code trigger re-runs exactly the
# stages whose tools changed (and what depends on them); `python -m engine_factory status` names the change.
STAGE_TOOLS = {
    "freeze": ["torch"],
    "freeze_tf": ["tensorflow-cpu", "tensorflow", "keras"],
    "export": ["torch", "onnx", "onnxscript", "tf2onnx", "tensorflow-cpu", "tensorflow"],
    "simplify": ["onnxslim", "onnxsim", "onnx", "onnxruntime"],
    "precision": ["nvidia-modelopt", "onnxconverter-common", "onnx", "onnxruntime"],
    "golden": ["torch", "onnxruntime", "tensorflow-cpu", "tensorflow", "keras"],
    "parity": ["onnxruntime"],
    "validate": ["onnxruntime", "cuda-python", "pycuda"],
    "deploy": ["tritonclient", "protobuf"],
}


def size(path: str | os.PathLike) -> int:
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


TOOLS_ENV = "FACTORY_TOOL_VERSIONS"  # read once by the Snakefile: its jobs run the same interpreter and venv


def tool_versions() -> dict[str, str]:
    if os.environ.get(TOOLS_ENV):
        return json.loads(os.environ[TOOLS_ENV])
    return _installed(TOOLS)


def stage_tools(stage: str) -> dict[str, str]:
    """{dist: version} of the installed tools that decide `stage`'s output (see STAGE_TOOLS). From the versions the
    Snakefile passed where it did: a package-metadata lookup costs ~3 ms, a job made ~5 of them (measured)."""
    if os.environ.get(TOOLS_ENV):
        versions = tool_versions()
        return {dist: versions[dist] for dist in STAGE_TOOLS.get(stage, []) if dist in versions}
    return _installed(STAGE_TOOLS.get(stage, []))


def _installed(dists) -> dict[str, str]:
    import importlib.metadata  # ~15 ms to import: only where the Snakefile did not pass the versions

    versions = {}
    for dist in dists:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


GIT_ENV = "FACTORY_WORKFLOW_GIT"  # set once by the Snakefile at DAG time: jobs then skip two git calls each


def git_commit() -> dict:
    """The workflow's commit, and whether its tracked files differ from it."""
    if os.environ.get(GIT_ENV):
        return json.loads(os.environ[GIT_ENV])

    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"commit": None, "error": str(e)}
    if head.returncode != 0:
        return {"commit": None, "error": head.stderr.strip()}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def describe_input(label: str, path: str) -> dict:
    """An input's path, sha256 and size, and its own sidecar. When that sidecar recorded the file's size and mtime
    and both still match, its sha256 is reused instead of hashing the file again (make's and Snakemake's own test
    of up-to-dateness; `verify` re-hashes everything regardless)."""
    side = paths.provenance(str(path))
    recorded = (atomic.read_json(side) or {}).get("artifact", {}) if os.path.exists(side) else {}
    stat = os.stat(path)
    if os.path.isfile(path) and recorded.get("mtime_ns") == stat.st_mtime_ns and recorded.get("size") == stat.st_size:
        entry = {"label": label, "path": str(path), "sha256": recorded["sha256"], "size": stat.st_size}
    else:  # sources through the content cache; artifacts (no cache entry per artifact: it would grow with the zoo)
        source = not str(path).replace(os.sep, "/").startswith(paths.ROOT + "/")
        entry = {"label": label, "path": str(path), "sha256": sha256(path, cached=source), "size": size(path)}
    if recorded or os.path.exists(side):
        entry["provenance"] = side
    return entry


def write(
    artifact: str,
    *,
    stage: str,
    inputs: dict[str, str],
    params: dict,
    facts: dict | None = None,
    host: dict | None = None,
    artifact_sha256: str | None = None,
) -> str:
    """Write the sidecar of `artifact` (atomically) and return its path. `artifact_sha256`: the digest of the bytes
    the stage itself just wrote there (saves reading them back)."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "artifact": {
            "path": str(artifact),
            "sha256": artifact_sha256 or sha256(artifact, cached=False),
            "size": size(artifact),
            "mtime_ns": os.stat(artifact).st_mtime_ns,
        },
        "stage": stage,
        "inputs": [describe_input(label, p) for label, p in sorted(inputs.items()) if p],
        "params": params,
        "facts": facts or {},
        "tools": tool_versions(),
        "host": host if host is not None else _host_facts(),
        "workflow": git_commit(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    side = paths.provenance(str(artifact))
    atomic.write_json(side, record)
    return side


def _host_facts() -> dict:
    from .host import job_host_facts  # the Snakefile's probe, or a probe now; never raises

    return job_host_facts()
