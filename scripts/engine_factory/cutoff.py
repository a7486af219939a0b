"""Early cutoff: a job whose inputs (by content) and settings equal those of an earlier run of the same job gets that
run's outputs back instead of doing the work again.

Why here and not by keeping a byte-identical file in place: Snakemake removes a job's outputs before the job runs
and touches them after it (`check_and_touch_output`), and it decides at DAG time that every job downstream of a
re-run job runs too. A stage therefore never sees the file it would keep, and a kept mtime would not survive the
job. So the expensive stage remembers what it made: after a run it hard-links its outputs into
`artifacts/cache/cutoff/<job>/<action>/` (no extra space while they are live), where `<action>` is the sha256 of the
stage, its inputs' sha256s and its settings; a later job with the same action links them back (sha256 unchanged) and
skips the work. Two actions are kept per job: the live one and the one before, which is what reverting a change
needs; the one before holds its own bytes (one extra copy of a changed job's outputs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from . import atomic, paths

STORE = paths.ROOT + "/cache/cutoff"
KEEP = 2  # the live action and the one before it (a revert)


def action(stage: str, input_sha256: dict[str, str], params: dict) -> str:
    text = json.dumps({"stage": stage, "inputs": input_sha256, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _job_dir(outputs: dict[str, str]) -> Path:
    first = sorted(outputs.values())[0]  # a job's outputs are its own: the first names it
    return Path(STORE) / hashlib.sha256(first.encode()).hexdigest()[:32]


def restore(outputs: dict[str, str], key: str) -> bool:
    """Link the outputs recorded under `key` back into place; False (nothing written) when any is missing."""
    entry = _job_dir(outputs) / key
    saved = atomic.read_json(entry / "outputs.json") or {}
    if sorted(saved) != sorted(outputs) or not all((entry / label).is_file() for label in outputs):
        return False
    if not _intact(entry, outputs):  # a hard link shares a file damaged in place (`verify --repair` removed it)
        shutil.rmtree(entry, ignore_errors=True)
        return False
    for label, final in outputs.items():
        with atomic.atomic_path(final) as tmp:
            _link(entry / label, tmp)
    _touch_index(outputs, key)
    return True


def remember(outputs: dict[str, str], key: str) -> None:
    """Link the job's fresh outputs into the store under `key`; drop all but the last KEEP actions of this job."""
    job = _job_dir(outputs)
    entry = job / key
    if entry.exists():
        shutil.rmtree(entry)
    entry.mkdir(parents=True)
    for label, final in outputs.items():
        _link(Path(final), entry / label)
    atomic.write_json(entry / "outputs.json", outputs)
    _touch_index(outputs, key)


def _touch_index(outputs: dict[str, str], key: str) -> None:
    job = _job_dir(outputs)
    index = [k for k in (atomic.read_json(job / "index.json") or []) if k != key] + [key]
    for old in index[:-KEEP]:
        shutil.rmtree(job / old, ignore_errors=True)
    atomic.write_json(job / "index.json", index[-KEEP:])


def _intact(entry: Path, outputs: dict[str, str]) -> bool:
    """Every stored artifact whose sidecar is stored beside it has the sha256 that sidecar records."""
    label_of = {path: label for label, path in outputs.items()}
    for label, path in outputs.items():
        side = label_of.get(paths.provenance(path))
        if side is None:
            continue
        recorded = ((atomic.read_json(entry / side) or {}).get("artifact") or {}).get("sha256")
        h = hashlib.sha256()
        with open(entry / label, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != recorded:
            return False
    return True


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: a copy
        shutil.copy2(src, dst)
