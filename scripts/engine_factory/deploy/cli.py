"""`python -m engine_factory deploy`: write the configured Triton repositories from the plans already built, with the same
inputs and settings the workflow's deploy rule gets (scripts/engine_factory/factory.py), without Snakemake (e.g. after changing
only the deploy policy, or on a host that only holds copied artifacts)."""
from __future__ import annotations

import os


def main(args) -> int:
    from .. import paths
    from ..config import load
    from ..errors import FactoryError
    from ..factory import resolve
    from ..ops import emit
    from .triton import write_repository

    cfg = load(args.configfile or (), workdir=args.directory)
    cwd = os.getcwd()
    done, problems = {}, {}
    try:
        os.chdir(args.directory)  # artifacts/ and the failure records are relative to the workflow directory
        f = resolve(cfg)
        names = args.repository or list(f.deploy_targets)
        for name in names:
            inputs, settings = f.inputs("deploy", {"repository": name}), f.settings("deploy", {"repository": name})
            missing = sorted(p for p in inputs.values() if not os.path.exists(p))
            if missing:
                problems[name] = f"not built yet: {', '.join(missing)} (run the factory first)"
                continue
            try:
                done[name] = write_repository(paths.triton_config(name), inputs=inputs, settings=settings)
            except FactoryError as e:
                problems[name] = str(e)
    finally:
        os.chdir(cwd)
    report = {"written": done, "problems": problems,
              "note": None if f.deploy_targets else "deploy.triton is not enabled in this config"}
    emit(report, _render, args.json)
    return 1 if problems or not f.deploy_targets else 0


def _render(report: dict) -> str:
    lines = [f"wrote {name}: plans for {', '.join(r['plans'])}" + (f"; left out {r['left_out']}" if r["left_out"]
                                                                    else "") for name, r in report["written"].items()]
    lines += [f"error: {name}: {why}" for name, why in report["problems"].items()]
    if report["note"]:
        lines.append(report["note"])
    return "\n".join(lines)
