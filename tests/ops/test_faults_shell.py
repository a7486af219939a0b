"""Two nightlies at once (issue 25): one scheduled run at a time per directory, its lock taken before any log or
repair; a second run is refused (exit 75) with its own log and message, and the first's log and summary stay true.
(No Slurm value reaches a shell: tests/test_cluster.py.) Each test failed on the code before the fix: both runs
wrote artifacts/scheduled/run.log, the refused one truncated it, and the one that built reported "NOT RUN: locked"."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_factory.errors import ScheduledRunInProgress
from engine_factory.ops import runs

from helpers import REPO, load_test_config, write_config

SCHEDULED = "artifacts/scheduled"


@pytest.fixture
def work(tmp_path):
    """A user's zoo (the ops test zoo: one MLP, fp32 + fp16, one RTX target) in a folder outside the checkout."""
    work = tmp_path / "work"
    write_config(work, load_test_config("ops"))
    return work


def scheduled(work: Path, **kw):
    cmd = [sys.executable, "-m", "engine_factory", "scheduled", "-d", str(work)]
    cmd += ["--configfile", str(work / "config" / "zoo.yaml"), "--cores", "2"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.05)
    return None


def test_a_second_run_is_refused_while_one_holds_the_directory(work):
    """The lock held (as a running nightly holds it): the second run exits 75 naming the holder, runs nothing, and
    writes only its own log; the holder's log, run.log, the summary and the history are not touched."""
    out = work / SCHEDULED
    (out / "logs").mkdir(parents=True)
    holder_log = out / "logs" / "run-20270101T000000Z-1.log"
    holder_log.write_text("the first run's snakemake output\n")
    (out / "run.log").symlink_to("logs/" + holder_log.name)
    for name in ("last-run.md", "last-run.json", "history.jsonl"):
        (out / name).write_text(f"the first run's {name}\n")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with runs.scheduled_lock(str(work), f"{SCHEDULED}/logs/{holder_log.name}"):
        assert runs.scheduled_holder(str(work)).startswith(f"the scheduled run of pid {os.getpid()}")
        second = scheduled(work)
        stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == ScheduledRunInProgress.exit_code == 75, stdout + stderr
    assert stderr.count("\n") == 1 and stderr.startswith("error: the scheduled run of pid ") and not stdout, stderr
    assert f"(its log: {SCHEDULED}/logs/{holder_log.name}) holds {SCHEDULED}/scheduled.lock" in stderr
    assert {p: p.read_bytes() for p in before} == before  # nothing the first run owns changed
    assert os.readlink(out / "run.log") == "logs/" + holder_log.name
    own = [p for p in (out / "logs").iterdir() if p != holder_log]
    assert len(own) == 1 and own[0].read_text() == f"not run: {stderr.removeprefix('error: ')}", own
    assert not (work / ".snakemake").exists() and not (work / "artifacts" / "tiny_mlp").exists()  # ran nothing
    assert runs.scheduled_holder(str(work)) is None  # released with the block


def test_two_nightlies_at_once_each_says_what_it_did(work):
    """Start a nightly; start a second while the first's factory runs: the second is refused, and the first builds,
    keeps its own log whole and writes a summary that says it built the plans."""
    first = scheduled(work)
    try:
        logs = work / SCHEDULED / "logs"
        # the first holds the lock and its Snakemake is running (its log has Snakemake's first lines)
        started = wait_for(lambda: [p for p in logs.glob("run-*.log") if p.stat().st_size], 120)
        assert started and runs.scheduled_holder(str(work)), "the first run did not start"
        first_log = started[0]
        second = scheduled(work)
        stdout, stderr = second.communicate(timeout=300)
        assert first.poll() is None, "the first run ended before the second was refused: nothing was tested"
        stdout1, stderr1 = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 75 and f"pid {first.pid}" in stderr and first_log.name in stderr, stderr
    assert first.returncode == 0, stdout1 + stderr1
    out = work / SCHEDULED
    summary = json.loads((out / "last-run.json").read_text())
    assert summary["run"]["log"] == f"{SCHEDULED}/logs/{first_log.name}" and "locked_out" not in summary["run"]
    assert len(summary["changes"]["built"]) == 2 and summary["failed"] == []
    md = (out / "last-run.md").read_text()
    assert "factory run: ok" in md and "plans built: 2" in md and "NOT RUN" not in md, md
    text = first_log.read_text()
    assert "not run" not in text and "Finished job" in text and "steps (100%) done" in text, text[-2000:]
    assert os.readlink(out / "run.log") == f"logs/{first_log.name}"
    refused = [p for p in logs.iterdir() if p != first_log]
    assert len(refused) == 1 and refused[0].read_text().startswith("not run: the scheduled run of pid")
    history = (out / "history.jsonl").read_text().splitlines()
    assert len(history) == 1 and json.loads(history[0])["log"] == summary["run"]["log"]


def test_a_killed_nightly_leaves_no_lock_behind(work):
    """The lock is the kernel's (flock): a nightly killed with SIGKILL holds nothing, and the next one runs."""
    code = (
        "import sys, time; from engine_factory.ops import runs\n"
        "with runs.scheduled_lock(sys.argv[1], 'x.log'):\n"
        "    print('held', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(work)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline() == "held\n"
        assert "pid" in runs.scheduled_holder(str(work))
        with pytest.raises(ScheduledRunInProgress, match=f"pid {holder.pid}, started .* holds"):
            with runs.scheduled_lock(str(work), "y.log"):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert runs.scheduled_holder(str(work)) is None
    with runs.scheduled_lock(str(work), "y.log"):
        pass
