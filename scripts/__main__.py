"""Command line: `python -m scripts <command> ...` (run `python -m scripts -h`)."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import FactoryError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts", description="TensorRT engine factory stages")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one stage (what the Snakemake rules call)")
    run.add_argument("stage")
    run.add_argument("io", help='JSON {"inputs": {label: path}, "outputs": {label: path}}, or @file.json')
    run.add_argument("settings", help="JSON of the stage's settings, or @file.json")
    check = sub.add_parser("check", help="validate a config file and list what this host would build")
    check.add_argument("config", nargs="?", default="config/config.yaml")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from .stages import run

            spec = {**_json_arg(args.io), "params": _json_arg(args.settings)}
            facts = run(args.stage, spec)
            print(json.dumps({"stage": args.stage, "facts": facts}, indent=1, default=str))
        elif args.command == "check":
            return _check(args.config)
    except FactoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _json_arg(text: str):
    return json.loads(open(text[1:]).read() if text.startswith("@") else text)


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
