"""Asking Snakemake what is out of date, through its machine-readable summary (`--summary`: one tab-separated row per
output file of the DAG with Snakemake's own status and whether an update is pending), never by reading its
human-oriented dry-run text. One call, `--nolock`, so it runs beside a factory run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ..errors import SnakemakeFailed

REPO = Path(__file__).resolve().parents[3]
PROFILE = REPO / "workflow" / "profiles" / "default"


def command(directory: str = ".", configfiles=(), *extra: str) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--workflow-profile",
        str(PROFILE),
        "--directory",
        str(directory),
        "--cores",
        "1",
        "--nolock",
    ]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    return cmd + list(extra)


def summary(directory: str = ".", configfiles=()) -> tuple[list[dict], float]:
    """(rows, seconds): every output file of the DAG with Snakemake's status and pending flag."""
    start = time.monotonic()
    proc = subprocess.run(command(directory, configfiles, "--summary"), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SnakemakeFailed(
            f"snakemake --summary failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return parse_summary(proc.stdout), round(time.monotonic() - start, 2)


def parse_summary(text: str) -> list[dict]:
    """Rows of `snakemake --summary`: file, date, rule, status ("ok", "missing", "updated input files", "rule
    implementation changed", "set of input files changed", "params changed"), pending ("update pending")."""
    rows = []
    lines = [line for line in text.splitlines() if "\t" in line]
    for line in lines[1:] if lines and lines[0].startswith("output_file") else lines:
        f = line.split("\t")
        if len(f) >= 6:
            rows.append(
                {"file": f[0], "date": f[1], "rule": f[2], "status": f[-2], "pending": f[-1] == "update pending"}
            )
    return rows
