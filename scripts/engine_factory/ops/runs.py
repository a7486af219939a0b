"""Runs of the factory on one workflow directory: is one in progress, and is Snakemake's lock stale?

Snakemake locks the working directory while it runs (`.snakemake/locks/`) and leaves the lock behind when it is
killed; every later run then fails with "Directory cannot be locked" until someone runs `--unlock`. A lock is stale
when no live Snakemake process works in that directory (Snakemake changes into its working directory, so a live
run is a process whose cwd is the directory and whose command is snakemake, read-only calls such as `-n`,
`--summary` or `--nolock` excepted). `recover` unlocks a stale lock with Snakemake's own `--unlock`, and refuses
to touch a live run's.

Scheduled runs take their own lock first, before any log or repair (`scheduled_lock`): one nightly at a time per
directory. Snakemake's lock cannot be that lock: it is taken only when Snakemake starts, after the scheduled run has
repaired, and released before it writes its summary. It is an flock(2) on artifacts/scheduled/scheduled.lock, so the
kernel releases it when its process dies (no stale nightly lock to recover), and the file holds who has it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import subprocess
from pathlib import Path

from .. import paths
from ..errors import ScheduledRunInProgress

SCHEDULED_LOCK = "scheduled/scheduled.lock"  # under artifacts/

READ_ONLY = ("--nolock", "--dry-run", "-n", "--summary", "--detailed-summary", "--unlock", "--lint", "--list-rules")


def live_runs(directory: str = ".") -> list[dict]:
    """[{pid, started, command}] of the Snakemake processes running the workflow in `directory` (Linux /proc)."""
    target = os.path.realpath(directory)
    runs = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
            started = _start_time(entry)
        except OSError:  # gone, or not ours to read
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        is_snakemake = any(os.path.basename(a) == "snakemake" or a == "snakemake" for a in args[:3])
        if is_snakemake and cwd == target and not any(a in READ_ONLY for a in args):
            runs.append({"pid": int(entry.name), "started": started, "command": " ".join(args)[:300]})
    return runs


def _start_time(proc: Path) -> float:
    """A process's start (epoch seconds): /proc/<pid>/stat field 22 (clock ticks after boot) + /proc/stat btime."""
    ticks = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[19])
    stat = Path("/proc/stat").read_text().splitlines()
    boot = next(int(line.split()[1]) for line in stat if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def locked(directory: str = ".") -> bool:
    """Whether Snakemake's (file-based) lock is held: files under .snakemake/locks."""
    locks = Path(directory) / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def state(directory: str = ".") -> dict:
    runs = live_runs(directory)
    is_locked = locked(directory)
    return {"in_progress": bool(runs), "runs": runs, "locked": is_locked, "stale_lock": is_locked and not runs}


def recover(directory: str = ".") -> dict:
    """Unlock a stale lock (Snakemake's --unlock); say so. A live run's lock is left alone."""
    import sys
    import tempfile

    s = state(directory)
    if s["stale_lock"]:
        # Snakemake's own --unlock, with an empty Snakefile: the lock belongs to the directory, and unlocking must
        # not depend on the zoo's config still loading (its files may be what the killed run left half-made)
        with tempfile.TemporaryDirectory(prefix="engine-factory-unlock-") as empty:
            snakefile = os.path.join(empty, "Snakefile")
            open(snakefile, "w").close()
            proc = subprocess.run(
                [sys.executable, "-m", "snakemake", "-s", snakefile, "--directory", str(directory), "--unlock"],
                capture_output=True,
                text=True,
                timeout=600,
            )
        s["unlocked"] = proc.returncode == 0
        s["message"] = (
            "removed a stale Snakemake lock (no live run held it: the last run was killed)"
            if s["unlocked"]
            else f"could not remove the stale lock: {proc.stderr.strip()[-500:]}"
        )
    elif s["in_progress"]:
        s["message"] = "a run is in progress: " + ", ".join(f"pid {r['pid']}" for r in s["runs"])
    else:
        s["message"] = "not locked"
    return s


def _scheduled_lock_path(directory: str) -> Path:
    return Path(directory) / paths.ROOT / SCHEDULED_LOCK


def _holder_text(path: Path) -> str:
    """Who holds the nightly lock, as the holder wrote it into the lock file (empty while it is being written)."""
    try:
        h = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        h = {}
    if not h:
        return "another scheduled run"
    return f"the scheduled run of pid {h.get('pid')}, started {h.get('started')} (its log: {h.get('log')})"


@contextlib.contextmanager
def scheduled_lock(directory: str, log: str):
    """Hold the directory's nightly lock for the block, recording this process and its `log` in the lock file.
    Raises ScheduledRunInProgress, naming the holder, when another scheduled run has it."""
    path = _scheduled_lock_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's record stays for the refused
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ScheduledRunInProgress(
                f"{_holder_text(path)} holds {paths.ROOT}/{SCHEDULED_LOCK}: one scheduled run at a time per "
                "directory; this one did nothing (try again when it has finished)"
            ) from None
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        record = json.dumps({"pid": os.getpid(), "started": started, "log": log})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # nobody holds it once released
    finally:
        os.close(fd)  # releases the flock (as the process's death would)


def scheduled_holder(directory: str = ".") -> str | None:
    """Who holds the nightly lock (a sentence), or None when no scheduled run does."""
    path = _scheduled_lock_path(directory)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_text(path)
    finally:
        os.close(fd)
    return None
