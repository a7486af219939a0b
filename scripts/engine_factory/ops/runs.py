"""Runs of the factory on one workflow directory: is one in progress, and is Snakemake's lock stale?

Snakemake locks the working directory while it runs (`.snakemake/locks/`) and leaves the lock behind when it is
killed; every later run then fails with "Directory cannot be locked" until someone runs `--unlock`. A lock is stale
when no live Snakemake process works in that directory (Snakemake changes into its working directory, so a live
run is a process whose cwd is the directory and whose command is snakemake, read-only calls such as `-n`,
`--summary` or `--nolock` excepted). `recover` unlocks a stale lock with Snakemake's own `--unlock`, and refuses
to touch a live run's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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
