"""`python -m engine_factory attest`: (re)write plans' in-toto statements from their provenance sidecars
(scripts/engine_factory/intoto.py)."""

from __future__ import annotations

import argparse
import glob
import os

from .. import intoto, paths


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "attest",
        help="(re)write plans' in-toto statements from their provenance sidecars",
        epilog="example:\n  python -m engine_factory attest artifacts/m/plans/rtx-1.7.1.116/sm89/fp16/model.plan",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("plans", nargs="*", help="plan files (default: every plan under artifacts/ lacking one)")
    p.set_defaults(func=main)


def main(args) -> int:
    plans = args.plans or [p for p in sorted(glob.glob(paths.plan_glob())) if not os.path.exists(paths.intoto(p))]
    for plan in plans:
        print(intoto.write_statement(plan))
    return 0
