"""`python -m engine_factory unlock`: remove a stale Snakemake lock (scripts/engine_factory/ops/runs.py), never a live
run's."""

from __future__ import annotations

from . import emit, load_config, operation_parser
from .runs import recover


def add_parser(subparsers) -> None:
    p = operation_parser(
        subparsers,
        "unlock",
        "remove Snakemake's lock when no live run holds it (after a killed run); refuse otherwise",
        "python -m engine_factory unlock -d ~/zoo",
    )
    p.set_defaults(func=main)


def main(args) -> int:
    load_config(args)
    s = recover(args.directory)
    emit(s, lambda r: f"unlock: {r['message']}", args.json)
    return 0 if not s["in_progress"] and s.get("unlocked", True) else 1
