"""Command line: `python -m engine_factory <command> ...` (run `python -m engine_factory -h`; every command has -h)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import engine_factory

from .errors import FactoryError

STAGES_HELP = """stages (each is one Snakemake rule's job; the workflow passes the arguments):
  demo       make one demo-zoo file (checkpoint, old-opset ONNX, calibration set) from fixed seeds
  freeze     PyTorch state_dict + class -> torch.export .pt2; TorchScript -> frozen .pt
  freeze_tf  TensorFlow (Keras .keras/.h5, SavedModel, TF1 checkpoint) -> frozen GraphDef .pb + tensor sidecar
  export     frozen model -> model.onnx (or import and upgrade a user's ONNX file)
  simplify   model.onnx -> model.sim.onnx (onnxslim / onnxsim, checked in onnxruntime, with fallbacks)
  precision  model.sim.onnx -> model.<precision>.onnx (ModelOpt AutoCast / PTQ)
  golden     reference outputs of the framework in fp32 on fixed inputs
  parity     one ONNX variant in onnxruntime vs the golden outputs
  build      one TensorRT / TensorRT-RTX plan for one key, compute capability and precision
  validate   one plan: ONNX parity of its variant, header check, execution on a GPU where possible
  report     summary.json + index.html over every target
  deploy     one Triton model repository entry (config.pbtxt + 1/ with a plan per compute capability)

example (what the build rule runs):
  python -m engine_factory run build \\
    '{"inputs": {"onnx": "artifacts/m/onnx/model.fp16.onnx"}, "outputs": {"plan": "artifacts/m/plans/rtx-1.7.1.116/sm89/fp16/model.plan", ...}}' \\
    '{"model": "m", "backend": "tensorrt_rtx", "key": "rtx-1.7.1.116", "compute_capability": "8.9", ...}'
"""
CHECK_EXAMPLES = """examples:
  python -m engine_factory check                               # the demo zoo (config/config.yaml)
  python -m engine_factory check --configfile ~/zoo/my-zoo.yaml -d ~/zoo
  python -m engine_factory check --configfile my-zoo.yaml site.yaml --json
exit status: 0 ok, 1 the config (or a model class) is wrong; the message names the file, key and model.
"""


class _Version(argparse.Action):
    """--version looks the installed version up only when asked (every job parses this command line)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(message=f"engine-factory {engine_factory.__version__}\n")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="python -m engine_factory", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="TensorRT engine factory: the stages the Snakemake rules run, and operations over a workflow "
                    "directory. The factory itself runs through Snakemake (make run).",
        epilog="examples:\n  python -m engine_factory check --configfile my-zoo.yaml\n  python -m engine_factory status -d ~/zoo "
               "--configfile ~/zoo/my-zoo.yaml\n  python -m engine_factory verify -d ~/zoo\n  python -m engine_factory run -h")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    run = sub.add_parser("run", help="run one stage (what the Snakemake rules call)", epilog=STAGES_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Run one stage in this process: read its inputs, write its outputs atomically "
                                     "with their provenance sidecars.")
    run.add_argument("stage", help="the stage (listed below)")
    run.add_argument("io", help='JSON {"inputs": {label: path}, "outputs": {label: path}, "wildcards": {...}}, '
                                "or @file.json")
    run.add_argument("settings", help="JSON of the stage's settings, or @file.json")
    ended = sub.add_parser("ended", help="what a rule runs when its stage exits non-zero: note a signal in the log",
                           epilog="example:\n  python -m engine_factory ended 137 artifacts/logs/build/m.log   # exits 137",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    ended.add_argument("status", type=int, help="the stage's exit status (128 + N: killed by signal N)")
    ended.add_argument("log", help="the stage's log")
    if argv[:1] not in (["run"], ["ended"]):  # every job runs `run`: other parsers cost it ~1 ms (measured)
        check = sub.add_parser("check", help="validate a zoo's config and list what this host would build",
                               description="Validate the config (schema, files, model classes imported for real) "
                                           "and list what this host would build and skip, exactly as the Snakefile "
                                           "resolves it.", epilog=CHECK_EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        check.add_argument("config", nargs="?", help="a config file (same as --configfile FILE)")
        _workflow_args(check)
        check.add_argument("--json", action="store_true", help="machine-readable output")
        _ops_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "ended":
        from .jobs import note_ended

        return note_ended(args.status, args.log)
    if args.command == "run":
        return run_stage(args.stage, args.io, args.settings)
    return _guarded(lambda: _check(args) if args.command == "check" else OPS[args.command](args))


def run_stage(stage: str, io: str, settings: str) -> int:
    """One stage, as a rule's job runs it (scripts/engine_factory/jobs.py forks this; `python -m engine_factory run` calls it): its facts
    and metrics to stdout (the job's log), an error as one line, the exit status returned."""
    def run():
        from .stages import run

        _signals_end_cleanly()
        spec = {**_json_arg(io), "params": _json_arg(settings)}
        started = time.perf_counter()
        facts = run(stage, spec)
        print(json.dumps({"stage": stage, "facts": facts}, indent=1, default=str))
        print("stage-metrics: " + json.dumps(_metrics(stage, started)), flush=True)
        return 0
    return _guarded(run)


def _guarded(command) -> int:
    """A command's expected errors as one line and exit status 1; anything else is a bug and keeps its traceback."""
    try:
        return command() or 0
    except FactoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        print(f"error: {e.strerror}, writing '{e.filename or '?'}'", file=sys.stderr)  # disk full, read-only, ...
        return 1


DISK_ERRORS = {28, 122, 30, 13}  # ENOSPC, EDQUOT, EROFS, EACCES: a fact of the disk, said in one line


def _signals_end_cleanly() -> None:
    """SIGTERM/SIGHUP (Snakemake stopping its jobs, a node going down) end the stage like an error, so its cleanup
    runs (temporary files, work folders); SIGKILL cannot be caught: `ended` notes it in the log."""
    import signal

    def stop(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def _workflow_args(p, snakemake: bool = True) -> None:
    p.add_argument("--directory", "-d", default=".", help="the workflow's working directory, where artifacts/ is "
                                                          "(default: .)")
    if snakemake:
        p.add_argument("--configfile", nargs="+", metavar="FILE",
                       help="the zoo's config file(s), as given to snakemake; several are overlays "
                            "(default: the demo zoo, config/config.yaml)")


def _metrics(stage: str, started: float) -> dict:
    """Wall time and peak memory of this stage process, its children included (a fallback may run in one);
    benchmarks/run_benchmarks.py collects these lines from the job logs."""
    import resource

    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"stage": stage, "wall_s": round(time.perf_counter() - started, 3), "peak_rss_mb": round(peak_kb / 1024, 1)}


def _ops(module: str):
    def call(args):
        import importlib

        if hasattr(args, "configfile"):
            from .config import load

            load(args.configfile or (), workdir=args.directory)  # a bad config: one line naming it, exit 1
        try:
            return importlib.import_module(f".ops.{module}", __package__).main(args)
        except RuntimeError as e:  # snakemake itself failed: its message says why
            print(f"error: {e}", file=sys.stderr)
            return 2
    return call


OPS = {"status": _ops("status"), "verify": _ops("verify"), "prune": _ops("prune"), "changes": _ops("scheduled"),
       "unlock": _ops("runs"),
       "scheduled": _ops("scheduled"), "attest": lambda args: _attest(args.plans),
       "ready": lambda args: _deploy_command("readiness", args), "deploy": lambda args: _deploy_command("cli", args)}


def _deploy_command(module: str, args) -> int:
    import importlib

    return importlib.import_module(f".deploy.{module}", __package__).main(args)


def _ops_commands(sub) -> None:
    """Operations over a workflow directory: status, verify, prune, changes, scheduled, attest (see README)."""
    def add(name, help, example, snakemake=True):
        p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                           epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
        _workflow_args(p, snakemake)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p
    st = add("status", "current / stale (why) / missing / failed per plan this host and config would build; exit 1 "
                       "if anything needs work or failed", "python -m engine_factory status -d ~/zoo --configfile "
                                                          "~/zoo/my-zoo.yaml -v")
    st.add_argument("--verbose", "-v", action="store_true", help="every plan and every reason (default: one line "
                                                                  "per model and reason class)")
    v = add("verify", "re-hash artifacts along the provenance chain; exit 1 on tampered, missing or orphaned files",
            "python -m engine_factory verify -d ~/zoo --strict", snakemake=False)
    v.add_argument("--strict", action="store_true", help="also fail on stale chains (inputs re-made since)")
    v.add_argument("--repair", action="store_true", help="remove damaged, orphaned and temporary files and what was "
                                                         "made from missing artifacts, so the next run rebuilds them")
    add("unlock", "remove Snakemake's lock when no live run holds it (after a killed run); refuse otherwise",
             "python -m engine_factory unlock -d ~/zoo")
    pr = add("prune", "remove plans/validations/timing caches of keys this host/config no longer builds",
             "python -m engine_factory prune --keep rtx-1.7.1.116/sm86 --delete")
    pr.add_argument("--keep", action="append", help="a key (rtx-1.7.1.116) or key/smCC to keep; repeatable")
    pr.add_argument("--delete", action="store_true", help="really delete (default: list only)")
    pr.add_argument("--force", action="store_true", help="delete even while plans of this host's keys are missing")
    ch = add("changes", "what changed since the last scheduled run's snapshot (runs nothing)",
             "python -m engine_factory changes -d ~/zoo", snakemake=False)
    ch.add_argument("--before", help="snapshot to compare from (default artifacts/scheduled/snapshot.json)")
    ch.add_argument("--after", help="snapshot to compare to (default: the artifacts now)")
    sc = add("scheduled", "run the factory, then status and verify; write artifacts/scheduled/last-run.md",
             "python -m engine_factory scheduled -d ~/zoo --configfile ~/zoo/my-zoo.yaml --cores 8")
    sc.add_argument("--cores", default="all")
    dp = add("deploy", "write the Triton repositories the config's deploy.triton names from the plans already built "
                       "(what the workflow's deploy rule runs, without Snakemake)",
             "python -m engine_factory deploy -d ~/zoo --configfile ~/zoo/my-zoo.yaml")
    dp.add_argument("--repository", action="append", help="only this repository (a name); repeatable")
    rd = sub.add_parser("ready", help="before Triton starts: can this host load the plans of a Triton repository?",
                        description="For each plan of a Triton model directory: read its header, compare backend "
                                    "version and compute capability with this host's GPUs and runtime; say ready, "
                                    "needs rebuild (which key) or cannot run here.",
                        epilog="example:\n  python -m engine_factory ready artifacts/triton/resnet50_fp16 --json\n"
                               "exit status: 0 ready, 2 needs rebuild, 3 cannot run here, 1 not a Triton model "
                               "directory (the message names the file).",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    rd.add_argument("repository", nargs="+", help="Triton model directories (artifacts/triton/<name>)")
    rd.add_argument("--runtime-version", help="the TensorRT version that will load the plans (e.g. the one in the "
                                              "Triton container); default: the version installed here")
    rd.add_argument("--json", action="store_true", help="machine-readable output")
    at = sub.add_parser("attest", help="(re)write plans' in-toto statements from their provenance sidecars",
                        epilog="example:\n  python -m engine_factory attest artifacts/m/plans/rtx-1.7.1.116/sm89/fp16/"
                               "model.plan", formatter_class=argparse.RawDescriptionHelpFormatter)
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


def _check(args) -> int:
    """The config checked, every model class imported for real, and the targets exactly as the Snakefile resolves
    them (scripts/engine_factory/factory.py)."""
    from .cluster import describe
    from .config import load
    from .factory import resolve
    from .modelcode import import_class

    files = [*([args.config] if args.config else []), *(args.configfile or [])]
    cfg = load(files, workdir=args.directory)
    for name, m in cfg["models"].items():
        if m.get("model"):
            import_class(m["model"], model=name, python_path=cfg["python_path"])
    cwd = os.getcwd()
    try:
        os.chdir(args.directory)  # failure records and content caches live under the workflow directory
        f = resolve(cfg)
        failed = f.failed
    finally:
        os.chdir(cwd)
    result = {"config": files or ["config/config.yaml (demo zoo)"], "ok": True, "backend": f.backend.name,
              "key": f.key, "models": list(cfg["models"]), "plans": len(f.jobs), "jobs": f.jobs,
              "skipped": f.skipped, "failed": failed, "slurm": describe(cfg)}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"config {' + '.join(result['config'])}: ok; {len(cfg['models'])} models; backend {f.key}; "
          f"{len(f.jobs)} plans to build, {len(f.skipped)} skipped, {len(failed)} known failures")
    for line in result["slurm"]:
        print(f"  {line}")
    for s in f.skipped:
        print(f"  skip {s['model']} {s['precision']} sm{s['cc']}: {s['reason']}")
    for x in failed:
        print(f"  failed {x['model']} {x['precision']} sm{x['cc']} at {x['stage']}: {x['reason']} (log {x['log']})")
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
