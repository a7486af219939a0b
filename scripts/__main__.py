"""Command line: `python -m scripts <command> ...` (run `python -m scripts -h`)."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import FactoryError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts", description="TensorRT engine factory stages")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one stage from a JSON spec (what the Snakemake rules call)")
    run.add_argument("stage")
    run.add_argument("spec", help="JSON: {inputs: {...}, outputs: {...}, params: {...}}, or @file.json")
    check = sub.add_parser("check", help="validate a config file and list what this host would build")
    check.add_argument("config", nargs="?", default="config/config.yaml")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            text = open(args.spec[1:]).read() if args.spec.startswith("@") else args.spec
            facts = __import__("scripts.stages", fromlist=["run"]).run(args.stage, json.loads(text))
            print(json.dumps({"stage": args.stage, "facts": facts}, indent=1, default=str))
        elif args.command == "check":
            return _check(args.config)
    except FactoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _check(config_path: str) -> int:
    from .backends import load_backend, resolve_backend
    from .config import load_file
    from .host import probe_host
    from .targets import plan_jobs

    cfg = load_file(config_path)
    host = probe_host()
    backend = load_backend(resolve_backend(cfg["backend"], host["gpus"]))
    jobs, skipped = plan_jobs(cfg, backend_short=backend.short, backend_key=backend.key, gpus=host["gpus"])
    print(f"config {config_path}: ok; backend {backend.key}; {len(jobs)} plans to build, {len(skipped)} skipped")
    for s in skipped:
        print(f"  skip {s['model']} {s['precision']} sm{s['cc']}: {s['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
