"""Provenance sidecars: `<artifact>.provenance.json` beside every artifact, chained through its inputs.

Each sidecar holds the artifact's sha256 and size, every input's path, sha256 and (when the input has one) its
own sidecar's path, so that a plan leads back by hashes to its checkpoint; the stage and its parameters; the
tool versions; the host facts; and the workflow's git commit.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
import subprocess
from pathlib import Path

from . import atomic, fingerprint, paths
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


# ------------------------------------------------------------------------------------------------ intact
NO_RECORD = "it has no provenance record"


def intact(path: str, *, need_record: bool = True) -> str | None:
    """Why the artifact at `path` is not what its own provenance record says (None: it is): missing, not a regular
    file, another size than recorded, another sha256. The one check deploy, the report, `status` and the workflow's
    start make (`verify` makes the same one, and trusts no cache).

    Cheap: a stat first. The verdict is cached (fingerprint.derived) under the file's (size, mtime, ctime, inode) and
    its record's stamp: while neither changed, no byte is read; a file written since (emptied, halved, zeroed in
    place all change ctime, which no tool sets back) is judged again: its size first, its sha256 where the size
    holds. Snakemake
    touches every output after its job, so each artifact is hashed once after it is made, then never until it
    changes. A file damaged without any stamp changing (a disk returning other bytes) is `verify`'s to find.
    `need_record=False`: a file without a record (a result made before 0.3.0) is not judged (None)."""
    side = paths.provenance(path)
    if why := _not_a_file(path):
        return why
    if not os.path.exists(side):
        return NO_RECORD if need_record else None
    return fingerprint.derived(path, "intact", lambda full: _judge(path, side), also=(side,))


def listed_intact(path: str, sha256: str, record: str) -> str | None:
    """Why a file that another record lists with its sha256 (a plan in a Triton model directory, listed by its
    config.pbtxt's record) is not those bytes (None: it is); cached as `intact` is."""

    def judge(full):
        digest = fingerprint.file_digest(full)
        return None if digest == sha256 else f"sha256 {digest[:12]}… differs from {record} ({sha256[:12]}…; damaged)"

    if why := _not_a_file(path):
        return why
    return fingerprint.derived(path, "listed", judge, also=(record,))


def _not_a_file(path: str) -> str | None:
    """Why `path` is no file to judge (missing, not a regular file), before any of it is read; None: it is one."""
    try:
        st = os.stat(path)
    except OSError:
        return "it is missing"
    return None if stat.S_ISREG(st.st_mode) else "it is not a regular file"


def _judge(path: str, side: str) -> str | None:
    art = (atomic.read_json(side) or {}).get("artifact")
    if not isinstance(art, dict) or not isinstance(art.get("sha256"), str):
        return "its provenance record is unreadable"
    if os.path.normpath(str(art.get("path"))) != os.path.normpath(path):
        return f"its provenance record names {art.get('path')}"
    st = os.stat(path)
    if "size" in art and st.st_size != art["size"]:
        return f"{st.st_size} bytes, its provenance record says {art['size']} (truncated or damaged)"
    digest = fingerprint.file_digest(path)
    if digest != art["sha256"]:
        return f"sha256 {digest[:12]}… differs from its provenance record ({art['sha256'][:12]}…; damaged)"
    return None
