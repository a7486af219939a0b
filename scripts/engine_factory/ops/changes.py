"""`python -m engine_factory changes`: what changed since the last scheduled run's snapshot
(scripts/engine_factory/ops/scheduled.py), without running anything."""

from __future__ import annotations

from pathlib import Path

from .. import paths
from ..atomic import read_json
from . import emit, operation_parser
from .scheduled import DIR, changes, render, snapshot


def add_parser(subparsers) -> None:
    p = operation_parser(
        subparsers,
        "changes",
        "what changed since the last scheduled run's snapshot (runs nothing)",
        "python -m engine_factory changes -d ~/zoo",
        snakemake=False,
    )
    p.add_argument("--before", help="snapshot to compare from (default artifacts/scheduled/snapshot.json)")
    p.add_argument("--after", help="snapshot to compare to (default: the artifacts now)")
    p.set_defaults(func=main)


def main(args) -> int:
    base = Path(args.directory)
    before = read_json(Path(args.before) if args.before else base / paths.ROOT / DIR / "snapshot.json")
    if before is None:
        print("no snapshot of an earlier run (artifacts/scheduled/snapshot.json): nothing to compare with")
        return 1
    after = read_json(Path(args.after)) if args.after else snapshot(args.directory)
    emit({"changes": changes(before, after)}, render, args.json, end="")
    return 0
