"""How a rule's job runs its stage (`run_stage`, which `python -m engine_factory run` also calls): in a child process
forked from one that already imported the heavy libraries.

Each stage's own work is small next to its imports (measured per process: torch 1.5 s, torch + onnxscript 2.2 s,
ModelOpt ~3 s, against a 0.1 s TensorRT-RTX build of a small model), so a process per job spent most of a run
importing. Instead the rules' `run:` blocks run in threads of Snakemake's own process (`force-use-threads` in the
workflow profile) and each forks its stage from multiprocessing's forkserver, whose preload imports those libraries
once per Snakemake run. The child is still a process of its own: its own memory and log, its own GIL (jobs run in
parallel), a crash or a kill ends only that job, and ModelOpt's monkeypatching of onnxruntime dies with it.

Where Snakemake made a process for this one job (a Slurm job; a local run without the profile) nothing is gained by
a preload, and the child is a plain fork of that process, importing what its stage needs.

Libraries that start threads when imported (TensorFlow) or that touch a GPU are never preloaded: a fork of a
process with threads or a CUDA context is unsafe, so those stages import them in their child.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time

from . import failures
from .errors import StageFailed, guarded

# CPU-side libraries every PyTorch / ONNX model's stages import (none starts a thread or a CUDA context on import).
# engine_factory.forkserver first: the children skip re-running Snakemake's main script (it says why). polygraphy:
# AutoCast imports its comparator on first use (0.3-0.5 s per fp16/bf16 job, measured), and its ONNX loader in
# ModelOpt's child (0.12 s).
# The rest: what a job imported that the forkserver had not (measured per stage: sys.modules before and after), each
# a few ms a job, more where Python may not write bytecode (PYTHONDONTWRITEBYTECODE: compiled in every job).
PRELOAD = [
    "numpy",
    "torch",
    "torch.export",
    "torch.utils.serialization",
    "torch._inductor.ir",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "onnxslim",
    "modelopt.onnx.quantization",
    "modelopt.onnx.autocast",
    "polygraphy.comparator",
    "polygraphy.backend.onnxrt",
    "polygraphy.backend.onnx",
    "polygraphy.cuda",
    "multiprocessing.popen_fork",
    "encodings.cp437",
    "numpy.ma",
    "ctypes",
    "engine_factory.jobs",
    "engine_factory.stages",
    "engine_factory.failures",
    "engine_factory.host",
    "engine_factory.gpus",
    "engine_factory.frameworks.pytorch",
    "engine_factory.frameworks.onnx",
    "engine_factory.graph.simplify",
    "engine_factory.graph.precision",
    "engine_factory.graph.precision_search",
    "engine_factory.validation.golden",
    "engine_factory.validation.validate",
    "engine_factory.backends.core",
    "engine_factory.backends.header",
    "engine_factory.backends.runtime",
]

WARMUP = ["engine_factory.warmup"]  # imported last: each library's first use, once (it says why)

_context = None
_context_lock = threading.Lock()
_process_lock = threading.Lock()


def _mp_context(main_process: bool, preload: list[str]):
    """The forkserver (preloaded; started at the Snakefile's parse, else by the first job) in Snakemake's main
    process, else plain fork."""
    global _context
    if not main_process:
        return multiprocessing.get_context("fork")
    with _context_lock:
        if _context is None:
            from . import forkserver

            main_script = forkserver.main_script_of_this_process()
            if main_script:
                os.environ[forkserver.MAIN_ENV] = main_script
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(["engine_factory.forkserver"] + PRELOAD + preload + WARMUP)
            import atexit

            atexit.register(_stop_forkserver)
        return _context


def start_forkserver_now(preload: list[str] = ()) -> None:
    """Start the forkserver's imports now, beside Snakemake's DAG building, not at the first job. Call it once the
    jobs' environment is set: the forkserver's children get the environment it started with. Whether jobs will run
    is not known yet; a run that starts none kills it at exit (`_stop_forkserver`), imports finished or not."""
    from multiprocessing import forkserver

    _mp_context(True, list(preload))
    forkserver.ensure_running()


def _stop_forkserver() -> None:
    """At this process's exit: the jobs are done; the forkserver's own interpreter teardown would only have nanobind
    report the objects frozen out of the collector (scripts/engine_factory/warmup.py) as leaks."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def execute(
    stage: str,
    io: str,
    settings: str,
    log: str,
    *,
    metrics: str | None = None,
    main_process: bool,
    preload: list[str] = (),
) -> None:
    """Run one stage for a rule's job: `io` and `settings` are the rule's params (JSON, or @file); `metrics` the
    job's benchmark file. Raises with a one-line message when the stage fails (its log holds the rest)."""
    context = _mp_context(main_process, list(preload))
    said, say = context.Pipe(duplex=False)
    child = context.Process(
        target=_child, args=(stage, io, settings, log, metrics, say), name=f"engine-factory-{stage}"
    )
    # multiprocessing's Process is not thread-safe: start() polls the other live children, and two threads reading
    # one child's exit status leave one of them without it (exit status 255, measured at --cores 2). So starting
    # and reaping hold one lock; waiting for the child to end does not.
    with _process_lock:
        child.start()
    say.close()  # the child holds its own end
    # The child says its status once its outputs are complete and then exits: the job ends then, not after the
    # kernel has torn down a forked ~500 MB process (~15 ms a job, measured). A child that ends without saying it
    # (killed, crashed) is waited for, and its exit status read; one that said it is reaped by multiprocessing at a
    # later start() (its process cleanup).
    multiprocessing.connection.wait([said, child.sentinel])
    status = _said_status(said)
    if status is None:
        with _process_lock:
            child.join()
        status = 128 - child.exitcode if child.exitcode < 0 else child.exitcode  # -N: killed by signal N
    said.close()
    if status:
        note_ended(status, log)
        raise StageFailed(f"engine factory: stage {stage} exited with status {status}; see {log}", status=status)


def _said_status(said) -> int | None:
    """The status a job's child sent before exiting; None where it ended without sending one."""
    try:
        return said.recv() if said.poll() else None
    except (EOFError, OSError):
        return None


def note_ended(status: int, log: str) -> int:
    """A stage killed by a signal (128 + N) could not say so itself: note it at the end of its log."""
    if status > 128:
        try:
            name = signal.Signals(status - 128).name
        except ValueError:
            name = f"signal {status - 128}"
        # SIGTERM/SIGHUP/SIGINT are caught (the stage cleans up, `_signals_end_cleanly`): a stop, not counted
        stopped = status - 128 in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
        then = (
            "a stop is not held against it"
            if stopped
            else f"after {failures.KILLED_LIMIT} such ends in a row on the same inputs it is recorded as failed instead"
        )
        with open(log, "a") as f:
            f.write(
                f"\nengine factory: the stage was killed by {name} (exit status {status}); Snakemake removes what it "
                f"wrote and the next run runs it again ({then})\n"
            )
    return status


def _child(stage: str, io: str, settings: str, log: str, metrics: str | None, say) -> None:
    """The job's process: output to its log, the job's search path, then the stage (`run_stage`); its exit status is
    also sent through `say` (see execute)."""
    import resource

    at_start = resource.getrusage(resource.RUSAGE_SELF)
    _end_with_parent()
    _name_process(stage)
    redirect_output(log)
    # the zoo's model packages (the config's python_path) reach the job through PYTHONPATH, as for any process
    for entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    started = time.perf_counter()
    status = run_stage(stage, io, settings)
    if metrics and status == 0:
        write_metrics(metrics, time.perf_counter() - started, at_start)
    sys.stdout.flush()
    sys.stderr.flush()
    say.send(status)
    os._exit(status)  # the stage's outputs are complete: skip the interpreter's teardown (~13 ms, measured)


def run_stage(stage: str, io: str, settings: str) -> int:
    """One stage in this process, as a rule's job runs it (`_child`; `python -m engine_factory run` calls it too): its
    facts and metrics to stdout (the job's log), an error as one line, the exit status returned."""

    def run():
        from .stages import run

        _signals_end_cleanly()
        spec = {**_json_arg(io), "params": _json_arg(settings)}
        started = time.perf_counter()
        # noted while it runs: a note still there when the job starts again was left by a kill (failures.py says why)
        attempt = failures.begin_attempt(stage, spec.get("wildcards") or {}, spec.get("inputs") or {}, spec["params"])
        try:
            facts = run(stage, spec)
        finally:
            failures.end_attempt(attempt)
        print(json.dumps({"stage": stage, "facts": facts}, indent=1, default=str))
        print("stage-metrics: " + json.dumps(_metrics(stage, started)), flush=True)
        return 0

    return guarded(run)


def _json_arg(text: str):
    return json.loads(open(text[1:]).read() if text.startswith("@") else text)


def _signals_end_cleanly() -> None:
    """SIGTERM/SIGHUP (Snakemake stopping its jobs, a node going down) end the stage like an error, so its cleanup
    runs (temporary files, work folders); SIGKILL cannot be caught: `execute` notes it in the log (`note_ended`)."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def _metrics(stage: str, started: float) -> dict:
    """Wall time and peak memory of this stage process, its children included (a fallback may run in one);
    benchmarks/run_benchmarks.py collects these lines from the job logs."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb = max(u.ru_maxrss for u in usage)
    return {"stage": stage, "wall_s": round(time.perf_counter() - started, 3), "peak_rss_mb": round(peak_kb / 1024, 1)}


def redirect_output(path: str) -> None:
    """This process's output, native libraries' and Python's alike, to the file at `path` (truncated). Python's
    streams are made anew on the file: the parent's may not be its fds 1 and 2 (Snakemake's remote mode, on a
    Slurm node, replaces sys.stderr), and a traceback written there would be lost."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


METRICS_HEADER = "s\tcpu_time\tmax_rss\n"  # Snakemake's benchmark columns (seconds, seconds, MB), read alike


def write_metrics(path: str, wall_s: float, at_start) -> None:
    """The job's own wall time, CPU time and peak RSS (its children included). Not Snakemake's `benchmark:`: for a
    `run:` job in a thread that measures Snakemake's whole process."""
    import resource

    from .atomic import atomic_path

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime - at_start.ru_utime - at_start.ru_stime
    peak_mb = max(me.ru_maxrss, kids.ru_maxrss) / 1024
    with atomic_path(path) as tmp:
        tmp.write_text(METRICS_HEADER + f"{wall_s:.4f}\t{cpu:.4f}\t{peak_mb:.1f}\n")


def _end_with_parent() -> None:
    """SIGTERM when the process that forked this one ends (a killed Snakemake takes its jobs with it): Linux only."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _name_process(stage: str) -> None:
    """`ef-<stage>` in ps/top and /proc/<pid>/comm: a job is found by its stage (tests kill them by that)."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(f"ef-{stage}"[:15])
    except OSError:
        pass
