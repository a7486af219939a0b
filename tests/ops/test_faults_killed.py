"""A job killed while the workflow survives (SIGKILL: what the OOM killer does; on Slurm, a job ended OUT_OF_MEMORY,
CANCELLED or NODE_FAIL is the same to the next run): the next plain run makes what it did not, and a job killed
again and again on the same inputs is recorded as failed instead of being run at every run."""

import faulthandler
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine_factory import failures, jobs, paths, stages
from engine_factory.errors import StageFailed
from engine_factory.ops import status

from helpers import SNAKEMAKE, write_config

INPUTS = {"features": {"dtype": "float32", "shape": ["batch", 16], "min": [1, 16], "opt": [4, 16], "max": [64, 16]}}
KEY = "rtx-1.7.1.116"


def deep_mlp(path: Path, depth: int = 30, width: int = 64) -> Path:
    """A user's ONNX MLP deep enough that its build and fp16 precision jobs live long enough to be killed (measured:
    ~0.2 s and ~0.4 s; the tiny demo MLP's are done in a few ms)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal((16, width)) / 4).astype(np.float32), "w_in")]
    nodes = [helper.make_node("MatMul", ["features", "w_in"], ["h0"])]
    for i in range(depth):
        weights.append(
            numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), f"w{i}")
        )
        nodes += [
            helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"m{i}"]),
            helper.make_node("Relu", [f"m{i}"], [f"h{i + 1}"]),
        ]
    weights.append(numpy_helper.from_array((rng.standard_normal((width, 4)) / 8).astype(np.float32), "w_out"))
    nodes.append(helper.make_node("MatMul", [f"h{depth}", "w_out"], ["scores"]))
    graph = helper.make_graph(
        nodes,
        "deep",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _jobs_of(stage: str) -> dict[int, str]:
    """{pid: the log its output goes to} of the live processes of `stage`'s jobs (each names itself ef-<stage>,
    scripts/engine_factory/jobs.py, and writes to its job's log)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == f"ef-{stage}":
                    found[int(entry.name)] = os.readlink(entry / "fd" / "1")
            except OSError:
                continue
    return found


def _kill_when_seen(wanted: dict[str, str], killed: dict[str, int], done: threading.Event) -> None:
    """SIGKILL each wanted job ({stage: its log's absolute path}) as soon as its process writes to its log (the path
    is this test's own: another run's jobs on the machine are never touched)."""
    while not done.is_set() and len(killed) < len(wanted):
        for stage, log in wanted.items():
            if stage in killed:
                continue
            for pid, out in _jobs_of(stage).items():
                if out == log:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed[stage] = pid
                    except ProcessLookupError:
                        pass
        time.sleep(0.002)


def _snakemake(work: Path, *args) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--directory", str(work), "--configfile", str(work / "config" / "zoo.yaml"), "--cores", "2"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600)


def test_killed_build_and_precision_jobs_are_made_by_the_next_plain_run(tmp_path):
    """Kill -9 the fp16 precision job and the fp32 build job of a run (it goes on, and writes the report after the
    failures); a plain `snakemake` then makes both plans (it once said "Nothing to be done" and exited 0 with them
    missing: the report written after the failures looked up to date), and the run after it has nothing to do."""
    work = tmp_path / "work"
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.9"]},
        "precisions": ["fp32", "fp16"],
        "models": {
            "deep": {
                "framework": "onnx",
                "onnx": str(deep_mlp(tmp_path / "zoo" / "deep.onnx")),
                "inputs": INPUTS,
                "outputs": ["scores"],
            }
        },
    }
    write_config(work, cfg)
    logs = Path(os.path.realpath(work)) / "artifacts" / "logs"  # as /proc shows a job's log
    wanted = {
        "precision": str(logs / "precision/deep.fp16.log"),
        "build": str(logs / f"build/deep.{KEY}.sm89.fp32.log"),
    }
    killed: dict[str, int] = {}
    done = threading.Event()
    killer = threading.Thread(target=_kill_when_seen, args=(wanted, killed, done), daemon=True)
    killer.start()
    try:
        first = _snakemake(work)
    finally:
        done.set()
        killer.join()
    assert set(killed) == set(wanted), f"not every job was caught alive: {killed}\n{first.stderr[-3000:]}"
    assert first.returncode != 0, "a run with killed jobs must fail"
    for log in wanted.values():
        assert "killed by SIGKILL" in Path(log).read_text()
    assert not list((work / "artifacts").glob(paths.FAILURE_GLOB.removeprefix(paths.ROOT + "/"))), (
        "a kill is no verdict on the model: nothing recorded"
    )
    plans = {p: work / paths.PLAN.format(model="deep", key=KEY, cc="89", precision=p) for p in ("fp32", "fp16")}
    assert not any(plan.exists() for plan in plans.values())
    assert (work / paths.REPORT_JSON).exists(), "the report is written after the failures"

    second = _snakemake(work)  # a plain run: no --forcerun, no RETRY_FAILED
    assert second.returncode == 0, second.stderr[-4000:]
    assert all(plan.exists() for plan in plans.values()), second.stderr[-4000:]
    report = status.collect(str(work), [str(work / "config" / "zoo.yaml")])
    assert {state: n for state, n in report["counts"].items() if n} == {"current": 2}
    assert not [p for p in (work / "artifacts").rglob("*") if p.is_file() and "unfinished" in p.parts]

    third = _snakemake(work, "-n")
    assert third.returncode == 0 and "Nothing to be done" in third.stdout + third.stderr, third.stdout[-3000:]


# ------------------------------------------------------------------------------------- the same job, again and again
WILDCARDS = {"model": "m", "precision": "fp16"}


@pytest.fixture
def job(tmp_path, monkeypatch):
    """One precision job run as a rule runs it (jobs.execute: a forked child), in a workflow directory of its own:
    `run(now)` runs it once and returns its exit status; `now` is what its stage does: kill, crash, stop or make."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(failures.CODE_ENV, "test-code")  # the workflow's code digest, as the Snakefile passes it
    monkeypatch.delenv(failures.RETRY_ENV, raising=False)
    Path("in.onnx").write_bytes(b"graph")
    inputs = {"onnx": "in.onnx"}
    log = tmp_path / "job.log"
    behaviour = {"now": "kill"}

    def stage(inputs, outputs, params):
        if behaviour["now"] == "kill":  # what the OOM killer does
            os.kill(os.getpid(), signal.SIGKILL)
        if behaviour["now"] == "crash":  # a native library's segfault
            faulthandler.disable()  # pytest's would print this process's stack to the test's stderr
            os.kill(os.getpid(), signal.SIGSEGV)
        if behaviour["now"] == "stop":  # Snakemake or scancel stopping it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        Path(outputs["onnx"]).write_bytes(b"made")
        return {}

    monkeypatch.setitem(stages.RUNNERS, "precision", stage)
    io = json.dumps({"inputs": inputs, "outputs": {"onnx": "out.onnx"}, "wildcards": WILDCARDS})

    def run(now: str) -> int:
        behaviour["now"] = now
        try:
            jobs.execute("precision", io, json.dumps({"opset": 18}), str(log), main_process=False)
            return 0
        except StageFailed as e:
            return e.exit_code

    return run, log, inputs


def test_a_job_killed_three_times_in_a_row_is_recorded_as_failed(job):
    run, log, inputs = job
    record = Path(paths.failure("precision", WILDCARDS))
    for _ in range(failures.KILLED_LIMIT):
        assert run("kill") == 128 + signal.SIGKILL
        assert "killed by SIGKILL" in log.read_text() and not record.exists()
    assert run("make") == 1, "the next start records the kills instead of running the job a further time"
    assert not Path("out.onnx").exists()
    rec = json.loads(record.read_text())
    assert rec["error_type"] == "KilledRepeatedly" and "killed 3 times in a row" in rec["error"]
    assert "killed 3 times in a row" in log.read_text()
    assert failures.still_applies(rec, inputs, {"opset": 18}), "kept out like any recorded failure"
    os.environ[failures.RETRY_ENV] = "1"
    try:
        assert not failures.still_applies(rec, inputs, {"opset": 18}), "RETRY_FAILED=1 retries it"
    finally:
        del os.environ[failures.RETRY_ENV]
    assert run("make") == 0 and Path("out.onnx").exists()
    assert not record.exists(), "a success clears the record"


def test_kills_count_only_in_a_row_on_the_same_inputs(job):
    """A stop (SIGTERM) is seen by the job and is no kill; a changed input starts the count again; a success too.
    A crash (SIGSEGV) ends a job as unseen as a kill, and counts like one."""
    run, log, inputs = job
    record = Path(paths.failure("precision", WILDCARDS))
    assert run("kill") == 137 and run("kill") == 137
    assert run("stop") == 128 + signal.SIGTERM  # ends the row
    assert "a stop is not held against it" in log.read_text()
    assert run("kill") == 137 and run("kill") == 137
    Path(inputs["onnx"]).write_bytes(b"another graph")  # what it depends on changed
    assert run("kill") == 137 and run("kill") == 137
    assert run("make") == 0  # each row was shorter than the limit: it ran
    assert run("kill") == 137 and run("kill") == 137
    assert run("make") == 0 and not record.exists()
    assert [run(now) for now in ("kill", "crash", "kill", "make")] == [137, 139, 137, 1] and record.exists()  # a row


def test_a_models_mem_mb_raises_its_onnx_jobs_memory_and_never_lowers_it(tmp_path):
    """The remedy the record names for a model killed for its memory: `models.<name>.mem_mb` reaches its simplify,
    parity, precision and build jobs (on Slurm, their memory limit) where it is more than the rule's own."""
    import re

    from helpers import load_test_config

    cfg = load_test_config("ops")
    cfg["precisions"] = ["fp16"]
    mlp = cfg["models"]["tiny_mlp"]
    cfg["models"] = {"big": {**mlp, "mem_mb": 9000}, "small": {**mlp, "mem_mb": 1000}}
    work = tmp_path / "work"
    write_config(work, cfg)
    dry = _snakemake(work, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    mem = {}
    for block in re.split(r"\n(?=rule |localrule )", dry.stdout):
        job = re.match(r"(?:local)?rule (\w+):", block)
        model = re.search(r"wildcards: .*?model=([\w.-]+)", block)
        if job and model:
            mem[(paths.stage_of(job.group(1)), model.group(1))] = int(re.search(r"mem_mb=(\d+)", block).group(1))
    for stage, own in {"simplify": 3000, "parity": 2000, "precision": 4000, "build": 4000}.items():
        assert mem[(stage, "big")] == 9000 and mem[(stage, "small")] == own, (stage, mem)
