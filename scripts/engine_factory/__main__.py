"""Command line: `python -m engine_factory <command> ...` (run `python -m engine_factory -h`; every command has -h).

Each command is a module of scripts/engine_factory/ops/ with its own parser and body; ops.COMMANDS lists them. Here
the parser is built from that list and the command run under the one handler of refusals (errors.guarded: a
FactoryError is one line and its exit status)."""

from __future__ import annotations

import argparse
import os
import sys

import engine_factory

from .errors import guarded
from .ops import COMMANDS, command

DESCRIPTION = (
    "TensorRT engine factory: the stages the Snakemake rules run, and operations over a workflow "
    "directory. The factory itself runs through Snakemake (make run)."
)
EXAMPLES = """examples:
  python -m engine_factory check --configfile my-zoo.yaml
  python -m engine_factory status -d ~/zoo --configfile ~/zoo/my-zoo.yaml
  python -m engine_factory verify -d ~/zoo
  python -m engine_factory run -h"""


class _Version(argparse.Action):
    """--version looks the installed version up only when asked."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(message=f"engine-factory {engine_factory.__version__}\n")


def parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """The command line's parser; for `run` (a stage) only run's: the other commands' parsers cost it ~1 ms."""
    parser = argparse.ArgumentParser(
        prog="python -m engine_factory",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name in ["run"] if argv[:1] == ["run"] else COMMANDS:
        command(name).add_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser_for(argv).parse_args(argv)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    code = main()
    if sys.argv[1:2] == ["run"]:
        # A stage's outputs are complete (written, renamed) when main() returns: skip the interpreter's teardown,
        # ~13 ms per job (finalizing torch/onnx/TensorRT modules, measured), and let the OS reclaim the rest.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
