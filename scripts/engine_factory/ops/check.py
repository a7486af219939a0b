"""`python -m engine_factory check`: the config checked, every model class imported for real, and the targets exactly
as the Snakefile resolves them (scripts/engine_factory/factory.py)."""

from __future__ import annotations

import argparse
import json

from . import workflow_args

EXAMPLES = """examples:
  python -m engine_factory check                               # the demo zoo (config/config.yaml)
  python -m engine_factory check --configfile ~/zoo/my-zoo.yaml -d ~/zoo
  python -m engine_factory check --configfile my-zoo.yaml site.yaml --json
exit status: 0 ok, 1 the config (or a model class) is wrong; the message names the file, key and model.
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="validate a zoo's config and list what this host would build",
        description="Validate the config (schema, files, model classes imported for real) "
        "and list what this host would build and skip, exactly as the Snakefile "
        "resolves it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="a config file (same as --configfile FILE)")
    workflow_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=main)


def onnx_interfaces(cfg: dict, directory: str = ".") -> None:
    """Each ONNX-source model's graph inputs and outputs read from its file (no onnxruntime session) and held to the
    config: misspelt names, ranks, fixed dims and profiles that disagree are one error listing every problem, in
    seconds, instead of the import or build job's failure."""
    import os

    from ..errors import FactoryError
    from ..graph.interface import interface_problems, read_interface

    problems = []
    for name, m in cfg["models"].items():
        if m.get("framework") != "onnx" or not m.get("onnx"):
            continue
        path = os.path.join(directory, m["onnx"])
        if not os.path.exists(path):  # a demo asset the workflow makes itself (a user's missing file fails at load)
            continue
        try:
            proto = read_interface(path)
        except Exception as e:  # not ONNX at all: the file and the model named
            raise FactoryError(f"cannot read the ONNX file: {type(e).__name__}: {e}", model=name, path=m["onnx"])
        found = interface_problems(proto, model=name, input_specs=m.get("inputs", {}), outputs=m.get("outputs"))
        problems += [f"{key}: {problem} (file {m['onnx']})" for key, problem in found]
    if problems:
        raise FactoryError(f"{len(problems)} problem(s) between the config and the ONNX files: " + "; ".join(problems))


def main(args) -> int:
    from ..cluster import describe
    from ..factory import open_workflow
    from ..modelcode import import_class

    files = [*([args.config] if args.config else []), *(args.configfile or [])]
    workflow = open_workflow(args.directory, files)
    cfg = workflow.cfg
    for name, m in cfg["models"].items():
        if m.get("model"):
            import_class(m["model"], model=name, python_path=cfg["python_path"])
    onnx_interfaces(cfg, args.directory)
    f = workflow.resolve()
    failed = f.failed
    result = {
        "config": files or ["config/config.yaml (demo zoo)"],
        "ok": True,
        "backend": f.backend.name,
        "key": f.key,
        "models": list(cfg["models"]),
        "plans": len(f.jobs),
        "jobs": f.jobs,
        "skipped": f.skipped,
        "failed": failed,
        "slurm": describe(cfg),
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"config {' + '.join(result['config'])}: ok; {len(cfg['models'])} models; backend {f.key}; "
        f"{len(f.jobs)} plans to build, {len(f.skipped)} skipped, {len(failed)} known failures"
    )
    for line in result["slurm"]:
        print(f"  {line}")
    for s in f.skipped:
        print(f"  skip {s['model']} {s['precision']} sm{s['cc']}: {s['reason']}")
    for x in failed:
        print(f"  failed {x['model']} {x['precision']} sm{x['cc']} at {x['stage']}: {x['reason']} (log {x['log']})")
    return 0
