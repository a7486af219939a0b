"""`python -m engine_factory deploy`: write the configured Triton repositories from the plans already built, with the
same inputs and settings the workflow's deploy rule gets (scripts/engine_factory/factory.py), without Snakemake (e.g.
after changing only the deploy policy, or on a host that only holds copied artifacts)."""

from __future__ import annotations

import os

from .. import paths
from ..errors import FactoryError
from . import emit, operation_parser


def add_parser(subparsers) -> None:
    p = operation_parser(
        subparsers,
        "deploy",
        "write the Triton repositories the config's deploy.triton names from "
        "the plans already built (what the workflow's deploy rule runs, without Snakemake)",
        "python -m engine_factory deploy -d ~/zoo --configfile ~/zoo/my-zoo.yaml",
    )
    p.add_argument("--repository", action="append", help="only this repository (a name); repeatable")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..deploy.triton import write_repository
    from ..factory import open_workflow

    done, problems = {}, {}
    with open_workflow(args.directory, args.configfile or ()) as f:  # artifacts/ are relative to the directory
        names = args.repository or list(f.deploy_targets)
        for name in names:
            inputs, settings = f.inputs("deploy", {"repository": name}), f.settings("deploy", {"repository": name})
            missing = sorted(p for p in inputs.values() if not os.path.exists(p))
            if missing:
                problems[name] = f"not built yet: {', '.join(missing)} (run the factory first)"
                continue
            try:
                done[name] = write_repository(paths.deploy_record(name), inputs=inputs, settings=settings)
            except FactoryError as e:
                problems[name] = str(e)
    report = {
        "written": done,
        "problems": problems,
        "note": None if f.deploy_targets else "deploy.triton is not enabled in this config",
    }
    emit(report, _render, args.json)
    return 1 if problems or not f.deploy_targets else 0


def _render(report: dict) -> str:
    lines = [
        f"wrote {name}: plans for {', '.join(r['plans'])}" + (f"; left out {r['left_out']}" if r["left_out"] else "")
        if r["plans"]
        else f"withheld {name}: {r['reason']}"
        for name, r in report["written"].items()
    ]
    lines += [f"error: {name}: {why}" for name, why in report["problems"].items()]
    if report["note"]:
        lines.append(report["note"])
    return "\n".join(lines)
