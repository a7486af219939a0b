"""Failures as results. A stage that fails deterministically (the model cannot be exported, the backend cannot build
bf16 for this graph, ...) records why in `artifacts/failed/<rule>/<job>.json`, and its job still fails so that the
run's exit status says so. The next run's DAG leaves every target whose chain holds a failure that still applies
out of the jobs (the report shows it as failed, `status` lists it), so a known failure is not retried on every
rerun; it is retried when anything it was made from changes: the stage's settings (which carry the sources'
content digests and the model code's), the content of its inputs, its tools' versions, or the workflow's code;
and in the same run when that run makes anything upstream of it from something else (a replaced checkpoint or ONNX
source, an upstream stage's settings or tools: `outdated`), where its inputs' bytes alone, still the old ones when
the run starts, would retry it one run later. `FACTORY_RETRY_FAILED=1` (`make run RETRY_FAILED=1`) retries them all.
A job that succeeds removes its record.

Not recorded (they say nothing about the inputs): a killed job, MemoryError, KeyboardInterrupt, a full or read-only
disk, and a job on the wrong host (errors.WrongHost: another backend version, no GPU of its compute capability).

A killed job (SIGKILL, the OOM killer, a Slurm job ended OUT_OF_MEMORY or NODE_FAIL, a machine gone; a crash in native
code, SIGSEGV or SIGABRT, alike) is run again by the next run: the Snakefile's `all` asks for every result the report
reads, so the one a killed job did not make is missing and made again (the report written after the failure would
otherwise look up to date: Snakemake never re-makes a missing input of an up-to-date job). Such a job cannot say how
it ended, so every job notes its start (`begin_attempt`, in `artifacts/cache/unfinished/`) and removes the note at any
end its process lives to see: success, a failure (recorded or transient) and a stop (SIGTERM/SIGHUP/SIGINT:
Snakemake, `scancel`, a Slurm time limit; a stop is no kill). A note found when the job starts again is a kill. After
KILLED_LIMIT kills in a row with the same inputs, settings, tools and code, the job is not run a further time: the
kill is recorded as its failure (a model that always runs out of memory would otherwise be retried, and kill its
neighbours, at every run), which keeps it out like any other until something it depends on changes or
`RETRY_FAILED=1`; a kill with anything changed since the one before starts the count again.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import traceback
from pathlib import Path

from . import atomic, paths
from .errors import FactoryError, WrongHost

RETRY_ENV = "FACTORY_RETRY_FAILED"
CODE_ENV = "FACTORY_WORKFLOW_CODE"  # the workflow code digest, computed once by the Snakefile for its jobs
TRANSIENT = (MemoryError, KeyboardInterrupt, SystemExit)
ERROR_LINES = 12
UNFINISHED = paths.ROOT + "/cache/unfinished/{rule}/{name}.json"  # a running job's note (begin_attempt)
KILLED_LIMIT = 3  # kills in a row, of one job on the same inputs, after which the kill is recorded as its failure
REPO = Path(__file__).resolve().parents[2]
PARTS = ("scripts", "workflow")  # the workflow's own code


def workflow_code() -> str:
    """Digest of the workflow's own code (scripts/ and workflow/): a fix there retries recorded failures."""
    if os.environ.get(CODE_ENV):
        return os.environ[CODE_ENV]
    from . import fingerprint

    with fingerprint.deferred():  # ~100 files: the content cache written once, not once per new digest (0.12 s)
        parts = {part: fingerprint.sha256(REPO / part, suffixes=(".py", ".smk", ".yaml")) for part in PARTS}
    return fingerprint.combined(parts)


def fingerprint_of(rule: str, inputs: dict, settings: dict) -> dict:
    """What a job's outcome depends on: its settings, its inputs' contents, its tools and the workflow's code."""
    from . import fingerprint
    from .provenance import stage_tools

    return {
        "settings": json.loads(json.dumps(settings, sort_keys=True)),
        "inputs": {
            label: {"path": p, "sha256": fingerprint.sha256(p) if os.path.exists(p) else None}
            for label, p in sorted(inputs.items())
            if p
        },
        "tools": stage_tools(rule),
        "workflow_code": workflow_code(),
    }


def record(rule: str, wildcards: dict, inputs: dict, settings: dict, error: BaseException) -> str | None:
    """Write the failure record of one job; returns its path (None for transient errors)."""
    if isinstance(error, (*TRANSIENT, WrongHost)) or rule not in paths.JOB_NAMES or "model" not in wildcards:
        return None
    if isinstance(error, OSError) and error.errno in (28, 122, 30):  # disk full / quota / read-only: the disk's
        return None
    text = str(error).strip() or type(error).__name__
    lines = text.splitlines()
    rec = {
        "rule": rule,
        "wildcards": wildcards,
        "error": "\n".join(lines[:ERROR_LINES]),
        "error_type": type(error).__name__,
        "log": paths.job_log(rule, wildcards),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "fingerprint": fingerprint_of(rule, inputs, settings),
    }
    if not _is_user_error(error):
        rec["traceback"] = traceback.format_exception(error)[-8:]
    path = paths.failure(rule, wildcards)
    atomic.write_json(path, rec)
    return path


def _is_user_error(error) -> bool:
    return isinstance(error, FactoryError)


def clear(rule: str, wildcards: dict) -> None:
    if rule in paths.JOB_NAMES and "model" in wildcards:
        try:
            os.remove(paths.failure(rule, wildcards))
        except OSError:
            pass


def load_all(root: str = ".") -> list[dict]:
    """Every failure record under `root` (the workflow directory), with its `path`."""
    out = []
    for p in sorted(glob.glob(os.path.join(root, paths.FAILURE_GLOB))):
        rec = atomic.read_json(p)
        if isinstance(rec, dict) and "rule" in rec and "wildcards" in rec:
            out.append({**rec, "path": os.path.relpath(p, root)})
    return out


def still_applies(rec: dict, inputs: dict, settings: dict) -> bool:
    """Whether a recorded failure was made from exactly what the job would run on now."""
    if os.environ.get(RETRY_ENV, "").lower() in ("1", "true", "yes"):
        return False
    return rec.get("fingerprint") == fingerprint_of(rec["rule"], inputs, settings)


_STAGE_TOOLS: dict[str, dict] = {}  # stage -> its tools' versions, once per process: `status` has no versions from
# the Snakefile, and a package lookup costs ~3 ms (provenance.stage_tools)


def outdated(record: str, stage: str, inputs: dict, settings: dict) -> str | None:
    """Why the job that made an artifact makes it again in this run from something else, or None: `record` is the
    artifact's provenance record, `inputs` and `settings` the job's now. It was made with other settings (a replaced
    checkpoint or ONNX source changes them: they carry the sources' digests) or tools than the job has now, or from
    an input artifact that was made again since (its own record names other bytes than this one lists). A missing
    artifact is no change: made again from the same inputs, it fails again.
    A failure downstream of such a job is retried in the same run (the factory's `failures`): judged by its inputs'
    bytes alone, it would apply until the run had made them again, and be retried one run later. Reads the records
    only, no artifact is hashed."""
    from .provenance import stage_tools

    artifact = paths.artifact_of_record(record)
    rec = atomic.read_json(record) if os.path.exists(record) else None
    if not isinstance(rec, dict) or not os.path.exists(artifact):  # made again from the same upstream: no change
        return None  # (its own inputs' jobs are judged by the caller all the same)
    if rec.get("params") != json.loads(json.dumps(settings, sort_keys=True)):
        return f"{artifact} was made with other settings"
    if stage not in _STAGE_TOOLS:
        _STAGE_TOOLS[stage] = stage_tools(stage)
    made_with = rec.get("tools") or {}
    if any(made_with.get(dist) != version for dist, version in _STAGE_TOOLS[stage].items()):
        return f"{artifact} was made with other tools"
    made_from = {e.get("path"): e.get("sha256") for e in rec.get("inputs") or [] if isinstance(e, dict)}
    for p in inputs.values():
        upstream = paths.provenance(p)
        if p.replace(os.sep, "/").startswith(paths.ROOT + "/") and os.path.exists(upstream):  # sources: settings
            now = (atomic.read_json(upstream) or {}).get("artifact", {}).get("sha256")
            if made_from.get(p) != now:
                return f"{artifact} was made from an earlier {p}"
    return None


def first_line(rec: dict, limit: int = 300) -> str:
    """The error in one line: its first line, and the next one when the first only introduces it ("...:")."""
    lines = [ln.strip() for ln in (rec.get("error") or "").splitlines() if ln.strip()]
    if not lines:
        return rec.get("error_type", "failed")
    text = lines[0] + (" " + lines[1] if lines[0].endswith(":") and len(lines) > 1 else "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class KilledRepeatedly(FactoryError):
    """A job killed KILLED_LIMIT times in a row on the same inputs (see the module doc): recorded as its failure."""


def begin_attempt(rule: str, wildcards: dict, inputs: dict, settings: dict) -> str | None:
    """Note that this job starts (returns the note's path for `end_attempt`; None for a job that has no failure
    record, e.g. the report). A note left by its previous attempt counts one more kill; at KILLED_LIMIT, record the
    failure and raise KilledRepeatedly instead of running the job again."""
    if rule not in paths.JOB_NAMES or "model" not in wildcards:
        return None
    path = UNFINISHED.format(rule=rule, name=paths.JOB_NAMES[rule].format(**wildcards))
    key = _attempt_key(rule, inputs, settings)
    before = atomic.read_json(path) or {}
    kills = before.get("kills", 0) + 1 if before.get("key") == key else 0  # a note left behind: that attempt was killed
    if kills >= KILLED_LIMIT:
        error = KilledRepeatedly(
            f"killed {kills} times in a row on the same inputs and settings (SIGKILL: the OOM killer, or a Slurm job "
            "out of memory or on a lost node; or a crash in native code): not run again until something it depends on "
            "changes or RETRY_FAILED=1; "
            f"if it ran out of memory, raise models.{wildcards['model']}.mem_mb (MB) and run with RETRY_FAILED=1"
        )
        record(rule, wildcards, inputs, settings, error)
        end_attempt(path)
        raise error
    atomic.write_json(path, {"rule": rule, "wildcards": wildcards, "key": key, "kills": kills, "pid": os.getpid()})
    return path


def end_attempt(path: str | None) -> None:
    """The job ended in a way its process saw (see the module doc): its note goes."""
    if path:
        try:
            os.remove(path)
        except OSError:
            pass


def _attempt_key(rule: str, inputs: dict, settings: dict) -> str:
    """What an attempt ran on, cheaply (a stat per input, no hashing: a job's start must stay cheap): two attempts
    with the same key ran the same job on the same files. A rewritten input starts the count again."""
    import hashlib

    from .provenance import stage_tools

    stamps = {}
    for label, p in sorted(inputs.items()):
        try:
            st = os.stat(p)
            stamps[label] = [p, st.st_size, st.st_mtime_ns, st.st_ino]
        except (OSError, TypeError):
            stamps[label] = [p, None]
    text = json.dumps(
        {"settings": settings, "inputs": stamps, "tools": stage_tools(rule), "code": os.environ.get(CODE_ENV)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()
