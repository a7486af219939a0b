"""The commands of `python -m engine_factory` (README "Operations"): one module per command, each with its own
`add_parser(subparsers)` (its options, help and examples) and `main(args)` (its body, returning the exit status),
as DVC's dvc/commands/ are. COMMANDS is the one list of them, in the order `-h` shows them. `-h` builds every
command's parser, so a command imports the factory and the config in its body, not at its top. The other modules
here (runs, snakemake) are what the commands share."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

COMMANDS = (
    "run",
    "check",
    "status",
    "verify",
    "unlock",
    "prune",
    "changes",
    "scheduled",
    "deploy",
    "ready",
    "attest",
    "promote",
    "rollback",
)


def command(name: str):
    """A command's module. Imported only when its parser is built: a job's `run` imports no other command."""
    return importlib.import_module(f"{__name__}.{name}")


def operation_parser(subparsers, name: str, help: str, example: str, *, snakemake: bool = True):
    """The parser of an operation over a workflow directory: -d, --configfile (where it asks Snakemake), --json."""
    p = subparsers.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    workflow_args(p, snakemake)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def workflow_args(p, snakemake: bool = True) -> None:
    p.add_argument(
        "--directory", "-d", default=".", help="the workflow's working directory, where artifacts/ is (default: .)"
    )
    if snakemake:
        p.add_argument(
            "--configfile",
            nargs="+",
            metavar="FILE",
            help="the zoo's config file(s), as given to snakemake; several are overlays "
            "(default: the demo zoo, config/config.yaml)",
        )


def load_config(args) -> dict:
    """The zoo's config, checked before an operation asks Snakemake anything: a bad one is one line naming it.
    Without --configfile it is the demo zoo's; where the directory holds models of another zoo, it says so first
    (without it `status` once answered '72 missing' for a user's folder, checked against the demo)."""
    from .. import paths
    from ..config import DEMO_CONFIG, load, read_file

    if not args.configfile:
        top = os.path.join(args.directory, paths.ROOT)
        dirs = os.listdir(top) if os.path.isdir(top) else []
        built = {d for d in dirs if d not in paths.OUTSIDE_CHAIN and os.path.isdir(os.path.join(top, d))}
        demo = set(read_file(str(DEMO_CONFIG)).get("models") or {})
        if built and not built & demo:
            print(
                f"engine factory: no --configfile: using the demo zoo's {DEMO_CONFIG}, but {top} holds other models "
                f"({', '.join(sorted(built)[:5])}{', ...' if len(built) > 5 else ''}): pass --configfile YOUR-ZOO.yaml",
                file=sys.stderr,
            )
    return load(args.configfile or (), workdir=args.directory)


def emit(report: dict, render, as_json: bool, end: str = "\n") -> None:
    """Print a report as JSON (--json) or as its text form: every operation's output, one way."""
    print(json.dumps(report, indent=1) if as_json else render(report), end=end)
