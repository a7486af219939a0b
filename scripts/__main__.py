"""Command line: `python -m scripts <command> ...` (run `python -m scripts -h`)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .errors import FactoryError


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m scripts", description="TensorRT engine factory stages")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one stage (what the Snakemake rules call)")
    run.add_argument("stage")
    run.add_argument("io", help='JSON {"inputs": {label: path}, "outputs": {label: path}}, or @file.json')
    run.add_argument("settings", help="JSON of the stage's settings, or @file.json")
    if argv[:1] != ["run"]:  # every job runs `run`: the other commands' parsers cost it ~1 ms (measured)
        check = sub.add_parser("check", help="validate a config file and list what this host would build")
        check.add_argument("config", nargs="?", default="config/config.yaml")
        _ops_commands(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from .stages import run

            spec = {**_json_arg(args.io), "params": _json_arg(args.settings)}
            started = time.perf_counter()
            facts = run(args.stage, spec)
            print(json.dumps({"stage": args.stage, "facts": facts}, indent=1, default=str))
            print("stage-metrics: " + json.dumps(_metrics(args.stage, started)), flush=True)
        elif args.command == "check":
            return _check(args.config)
        elif args.command in OPS:
            return OPS[args.command](args)
    except FactoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _metrics(stage: str, started: float) -> dict:
    """Wall time and peak memory of this stage process, its children included (ModelOpt runs in a child);
    benchmarks/run_benchmarks.py collects these lines from the job logs."""
    import resource

    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"stage": stage, "wall_s": round(time.perf_counter() - started, 3), "peak_rss_mb": round(peak_kb / 1024, 1)}


def _ops(module: str):
    def call(args):
        import importlib

        try:
            return importlib.import_module(f".{module}", __package__).main(args)
        except RuntimeError as e:  # snakemake itself failed (bad config, ...): its message says why
            print(f"error: {e}", file=sys.stderr)
            return 2
    return call


OPS = {"status": _ops("status"), "verify": _ops("verify"), "prune": _ops("prune"), "changes": _ops("scheduled"),
       "scheduled": _ops("scheduled"), "attest": lambda args: _attest(args.plans)}


def _ops_commands(sub) -> None:
    """Operations over a workflow directory: status, verify, prune, changes, scheduled, attest (see README)."""
    def add(name, help, snakemake=True):
        p = sub.add_parser(name, help=help)
        p.add_argument("--directory", "-d", default=".", help="the workflow's working directory (default: .)")
        if snakemake:
            p.add_argument("--configfile", nargs="+", help="config overlays, as given to snakemake")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p
    st = add("status", "current / stale (why) / missing per plan this host and config would build; exit 1 if "
                       "anything needs work")
    st.add_argument("--verbose", "-v", action="store_true", help="list current plans too")
    v = add("verify", "re-hash artifacts along the provenance chain; exit 1 on tampered, missing or orphaned files",
            snakemake=False)
    v.add_argument("--strict", action="store_true", help="also fail on stale chains (inputs re-made since)")
    pr = add("prune", "remove plans/validations/timing caches of keys this host/config no longer builds")
    pr.add_argument("--keep", action="append", help="a key (rtx-1.7.1.116) or key/smCC to keep; repeatable")
    pr.add_argument("--delete", action="store_true", help="really delete (default: list only)")
    pr.add_argument("--force", action="store_true", help="delete even while plans of this host's keys are missing")
    ch = add("changes", "what changed since the last scheduled run's snapshot (runs nothing)", snakemake=False)
    ch.add_argument("--before", help="snapshot to compare from (default artifacts/scheduled/snapshot.json)")
    ch.add_argument("--after", help="snapshot to compare to (default: the artifacts now)")
    sc = add("scheduled", "run the factory, then status and verify; write artifacts/scheduled/last-run.md")
    sc.add_argument("--cores", default="all")
    at = sub.add_parser("attest", help="(re)write plans' in-toto statements from their provenance sidecars")
    at.add_argument("plans", nargs="*", help="plan files (default: every plan under artifacts/ lacking one)")


def _attest(plans: list[str]) -> int:
    import glob

    from . import intoto, paths

    if not plans:
        plans = [p for p in sorted(glob.glob(paths.plan_glob()))
                 if not os.path.exists(paths.intoto(p))]
    for plan in plans:
        print(intoto.write_statement(plan))
    return 0


def _json_arg(text: str):
    return json.loads(open(text[1:]).read() if text.startswith("@") else text)


def _check(config_path: str) -> int:
    from .backends import load_backend, resolve_backend
    from .config import load_file
    from .host import backend_for_keys, probe_host
    from .cluster import describe
    from .targets import plan_jobs, target_gpus

    cfg = load_file(config_path)
    host = probe_host()
    gpus = target_gpus(cfg, host["gpus"])  # the Slurm pools' where configured
    backend = backend_for_keys(load_backend(resolve_backend(cfg["backend"], gpus)), host)
    jobs, skipped = plan_jobs(cfg, backend_short=backend.short, backend_key=backend.key, gpus=gpus)
    print(f"config {config_path}: ok; backend {backend.key}; {len(jobs)} plans to build, {len(skipped)} skipped")
    for line in describe(cfg):
        print(f"  {line}")
    for s in skipped:
        print(f"  skip {s['model']} {s['precision']} sm{s['cc']}: {s['reason']}")
    return 0


if __name__ == "__main__":
    code = main()
    if sys.argv[1:2] == ["run"]:
        # A stage's outputs are complete (written, renamed) when main() returns: skip the interpreter's teardown,
        # ~13 ms per job (finalizing torch/onnx/TensorRT modules, measured), and let the OS reclaim the rest.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
