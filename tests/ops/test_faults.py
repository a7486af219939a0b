"""Faults a nightly factory meets, and what it does about them: sources replaced by other bytes with an older
mtime, ONNX external data, hand-damaged and deleted artifacts, temporary leftovers, a killed run with its stale lock,
checks during a run, values that reach a shell, and bad input that must be a one-line named error."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_faults_killed import deep_mlp

from engine_factory import paths
from engine_factory.ops import runs, status, verify

from helpers import MLP_INPUTS, REPO, SNAKEMAKE, build_once, cli, dry_run, load_test_config, snakemake, write_config

KEY = "rtx-1.7.1.116"


def mlp_onnx(path: Path, *, external: bool) -> Path:
    """A one-layer MLP as a user's ONNX file, its weights inside or in an external-data file beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["scores"])],
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(
        model,
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=path.name + ".weights",
        size_threshold=0,
    )
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A user zoo outside the checkout (sources in zoo/), built once in work/."""
    base = tmp_path_factory.mktemp("faults")
    zoo = base / "zoo"
    mlp_onnx(zoo / "inline.onnx", external=False)
    mlp_onnx(zoo / "external.onnx", external=True)
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.9"]},
        "precisions": ["fp32", "fp16"],
        "models": {
            name: {"framework": "onnx", "onnx": str(zoo / f"{name}.onnx"), "inputs": MLP_INPUTS, "outputs": ["scores"]}
            for name in ("inline", "external")
        },
    }
    return build_once(base, cfg)["work"], zoo


@pytest.fixture
def copy_of(built, tmp_path):
    work, zoo = built
    shutil.copytree(work, tmp_path / "work", symlinks=True)
    shutil.copytree(zoo, tmp_path / "zoo")
    cfg = json.loads(json.dumps(load_config(work)))
    for name, m in cfg["models"].items():
        m["onnx"] = str(tmp_path / "zoo" / f"{name}.onnx")
    write_config(tmp_path / "work", cfg)
    snakemake(tmp_path / "work")  # the copy's sources moved: rebase it once
    return tmp_path / "work", tmp_path / "zoo"


def load_config(work):
    import yaml

    return yaml.safe_load((work / "config" / "zoo.yaml").read_text())


def collect(work):
    return status.collect(str(work), [str(work / "config" / "zoo.yaml")])


def replace_keeping_an_older_mtime(path: Path, data: bytes):
    """What `cp -p` of an older file, a restore from backup or a synced folder does."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns - 10**10, st.st_mtime_ns - 10**10))


# ------------------------------------------------------------------------------------- staleness by content
def test_a_source_replaced_by_other_bytes_with_an_older_mtime_is_rebuilt(copy_of):
    work, zoo = copy_of
    other = zoo / "other.onnx"
    mlp_onnx(other, external=False)
    import onnx

    proto = onnx.load(str(other))
    proto.graph.initializer[0].raw_data = bytes(len(proto.graph.initializer[0].raw_data))  # other weights
    replace_keeping_an_older_mtime(zoo / "inline.onnx", proto.SerializeToString())
    assert {("export", "inline"), ("build", "inline")} <= set(dry_run(work)), "content, not clock"
    report = collect(work)
    inline = [t for t in report["targets"] if t["model"] == "inline"]
    assert all(t["state"] == "stale" for t in inline)
    assert {
        "category": "checkpoint",
        "stage": "export",
        "detail": f"source file {zoo / 'inline.onnx'} changed",
    } in inline[0]["reasons"], inline[0]["reasons"]
    assert all(t["state"] == "current" for t in report["targets"] if t["model"] == "external")


def test_onnx_external_data_is_an_input(copy_of):
    work, zoo = copy_of
    weights = zoo / "external.onnx.weights"
    data = bytearray(weights.read_bytes())
    data[:4] = b"\0\0\0\0"
    replace_keeping_an_older_mtime(weights, bytes(data))
    jobs = set(dry_run(work))
    assert ("export", "external") in jobs and ("export", "inline") not in jobs, jobs
    record = json.loads((work / paths.provenance(paths.onnx("external"))).read_text())
    assert [e["label"] for e in record["inputs"]] == ["external_data_0", "source"]


# ------------------------------------------------------------------------------------------------ repair
def test_a_truncated_plan_is_repaired_and_rebuilt(copy_of):
    work, _ = copy_of
    plan = work / paths.plan("inline", KEY, "89", "fp16")
    plan.write_bytes(plan.read_bytes()[:1000])
    jobs = dry_run(work)  # Snakemake cannot see it: the plan's mtime is newer, its bytes are not checked
    assert ("build", "inline") not in jobs and ("build", "external") not in jobs, jobs
    report = verify.verify(str(work))
    assert not report["ok"] and any(p["path"] == paths.plan("inline", KEY, "89", "fp16") for p in report["problems"])
    proc = cli("verify", "-d", work, "--repair")
    assert proc.returncode == 0 and "removed " + paths.plan("inline", KEY, "89", "fp16") in proc.stdout, proc.stdout
    jobs = dry_run(work)
    assert ("build", "inline") in jobs and ("build", "external") not in jobs, jobs
    snakemake(work)
    assert verify.verify(str(work))["ok"] and plan.stat().st_size > 1000


def test_a_deleted_intermediate_and_a_temporary_leftover_are_repaired(copy_of):
    work, _ = copy_of
    (work / paths.sim_onnx("external")).unlink()
    leftover = work / "artifacts/external/onnx/model.sim.tmp4912.onnx"
    leftover.write_bytes(b"partial")
    report = verify.verify(str(work))
    kinds = {(p["kind"], p["path"]) for p in report["problems"]}
    assert ("missing", paths.sim_onnx("external")) in kinds and ("orphaned", str(leftover.relative_to(work))) in kinds
    repaired = verify.verify(str(work), repair=True)
    assert str(leftover.relative_to(work)) in repaired["removed"]
    assert paths.precision_onnx("external", "fp16") in repaired["removed"]  # made from it: rebuilt from it
    snakemake(work)
    assert verify.verify(str(work))["ok"] and (work / paths.sim_onnx("external")).exists()
    assert collect(work)["counts"]["current"] == 4


def test_the_build_refuses_to_keep_a_plan_whose_header_fails(tmp_path):
    from engine_factory.backends import load_backend
    from engine_factory.backends.core import _refuse_bad_header
    from engine_factory.errors import FactoryError

    bad = tmp_path / "model.plan"
    bad.write_bytes(b"vtrt" + bytes(60))
    with pytest.raises(FactoryError, match="fails its header check.*not kept"):
        _refuse_bad_header(load_backend("tensorrt_rtx").module, bad, "8.9", "m")


# ------------------------------------------------------------------------------------- crash recovery
def _stage_pids(stage: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # a job's process names itself after its stage (scripts/engine_factory/jobs.py)
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm == f"ef-{stage}":
                pids.append(int(entry.name))
    return pids


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it finished first
        pass


def _wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    return None


def test_a_killed_run_is_recovered_by_the_next_scheduled_run(tmp_path):
    """Kill a precision job (it leaves a work folder in TMPDIR), a build if one is caught, then the workflow itself
    (it leaves its lock): the next scheduled run unlocks, repairs and rebuilds, with nothing stale, damaged or left."""
    work = tmp_path / "work"
    cfg = load_test_config("ops")
    # 300 MatMul+Relu layers: the fp16 job holds its work folder for seconds (the demo MLP's ~10 ms were missed on CI)
    cfg["models"]["tiny_mlp"]["onnx"] = str(deep_mlp(tmp_path / "zoo" / "deep.onnx", depth=300, width=16))
    write_config(work, cfg)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    cmd = [
        *SNAKEMAKE,
        "--directory",
        str(work),
        "--configfile",
        str(work / "config" / "zoo.yaml"),
        "--cores",
        "2",
    ]
    out = (tmp_path / "first-run.log").open("w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        folders = _wait_for(lambda: list(tmpdir.glob("engine-factory-precision-*")) or proc.poll() is not None, 300)
        assert isinstance(folders, list), (
            "no precision job was seen:\n" + (tmp_path / "first-run.log").read_text()[-3000:]
        )
        os.kill(int(folders[0].name.split("-")[3]), signal.SIGKILL)  # the job that owns the work folder
        # the run notes the kill in the job's log (its thread waits on the job); then the workflow dies too
        assert _wait_for(
            lambda: any(
                "killed by SIGKILL" in p.read_text() for p in (work / "artifacts/logs/precision").glob("*.log")
            ),
            30,
        ), "the killed job's log does not say so"
        for pid in _wait_for(lambda: _stage_pids("build"), 60) or []:
            _kill(pid)
        os.kill(proc.pid, signal.SIGKILL)  # the workflow itself
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run, so that the failure is reported, not a wait
        raise
    finally:
        proc.wait(timeout=60)
        out.close()
    time.sleep(1)
    assert runs.state(str(work))["stale_lock"], "a killed snakemake leaves its lock"
    assert list(tmpdir.glob("engine-factory-precision-*")), "a killed precision job leaves its work folder"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine_factory",
            "scheduled",
            "-d",
            str(work),
            "--configfile",
            str(work / "config" / "zoo.yaml"),
            "--cores",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=REPO,
    )
    summary = (work / "artifacts/scheduled/last-run.md").read_text()
    assert result.returncode == 0, result.stdout + result.stderr + summary
    assert "removed a stale Snakemake lock" in summary
    report = verify.verify(str(work))
    assert report["ok"] and report["counts"]["stale"] == 0, report["problems"]
    assert collect(work)["counts"] == {"current": 2, "stale": 0, "missing": 0, "failed": 0}
    assert not list(tmpdir.glob("engine-factory-*")), "the killed job's work folder is cleaned"
    assert not [p for p in (work / "artifacts").rglob("*") if paths.is_temporary(str(p))]


def test_unlock_refuses_a_live_run_and_checks_during_a_run_raise_no_false_alarm(copy_of):
    work, _ = copy_of
    (work / ".snakemake" / "locks").mkdir(parents=True, exist_ok=True)
    (work / ".snakemake" / "locks" / "0.input.lock").write_text("x")
    # a process named snakemake working in the directory: a run in progress, as far as anyone can tell
    live = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 60"], cwd=work)
    try:
        _wait_for(lambda: runs.live_runs(str(work)), 10)
        state = runs.recover(str(work))
        assert state["in_progress"] and not state.get("unlocked") and (work / ".snakemake/locks").exists()
        leftover = work / "artifacts/inline/onnx/model.fp16.tmp777.onnx"
        leftover.write_bytes(b"being written")
        report = verify.verify(str(work))
        assert report["ok"] and report["counts"]["in-flight"] >= 1 and report["in_progress"] == [live.pid]
        (work / paths.validation("inline", KEY, "89", "fp16")).unlink()
        assert "a factory run is in progress" in status.render(collect(work))
    finally:
        live.kill()
        live.wait()
    assert runs.recover(str(work))["unlocked"] and not runs.locked(str(work))


# ------------------------------------------------------------------------------------- no code from data
def test_a_path_with_shell_syntax_runs_nothing(tmp_path):
    cfg = load_test_config("ops")
    cfg["models"]["tiny_mlp"]["onnx"] = f"../artifacts/demo/$(touch {tmp_path}/pwned).onnx"
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, check=False)
    assert proc.returncode != 0 and "models.tiny_mlp.onnx" in proc.out and "file not found" in proc.out
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "artifacts" / "tiny_mlp").exists()


# ------------------------------------------------------------------------------------- named errors
@pytest.mark.parametrize(
    "name, message", [("a" * 200, "at most 128"), ("bad\n", "path component"), ("x/../y", "path component")]
)
def test_model_names_the_file_system_cannot_hold_are_refused(tmp_path, name, message):
    from engine_factory.config import check
    from engine_factory.errors import FactoryError

    cfg = load_test_config("ops")
    cfg["models"] = {name: cfg["models"]["tiny_mlp"]}
    with pytest.raises(FactoryError, match=message):
        check(cfg, check_files=False)


def test_empty_checkpoint_and_nan_data_are_named(tmp_path, demo_dir):
    from engine_factory.errors import FactoryError
    from engine_factory.frameworks.pytorch import load_state_dict_model
    from engine_factory.graph.calibration import load_calibration

    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(FactoryError, match=r"model 'm', file '.*empty.pth': the checkpoint is empty \(0 bytes\)"):
        load_state_dict_model(str(tmp_path / "empty.pth"), "engine_factory.demo.models:TinyCNN", {}, model="m")
    x = np.ones((4, 16), np.float32)
    x[1, 3] = np.nan
    np.savez(tmp_path / "nan.npz", features=x)
    with pytest.raises(
        FactoryError,
        match=r"config key 'models.m.calibration', file '.*nan.npz': array 'features' "
        r"holds 1 NaN or Inf value",
    ):
        load_calibration(tmp_path / "nan.npz", MLP_INPUTS, model="m")
    with pytest.raises(FactoryError, match=r"config key 'models.m.samples'.*array 'features'"):
        load_calibration(tmp_path / "nan.npz", MLP_INPUTS, model="m", what="samples")


def test_a_full_disk_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    import errno

    from engine_factory import __main__ as cli_main
    from engine_factory import atomic

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.json"))

    monkeypatch.setattr(atomic, "write_json", full)
    onnx_file, out = str(tmp_path / "x.onnx"), str(tmp_path / "out.json")
    spec = json.dumps(
        {
            "inputs": {"export": onnx_file, "sim": onnx_file, "golden": str(tmp_path / "g.npz")},
            "outputs": {"export": out, "sim": out},
        }
    )
    monkeypatch.setattr("engine_factory.validation.validate.onnx_parity", lambda *a: {"status": "pass"})
    assert cli_main.main(["run", "parity", spec, json.dumps({"tolerance": {}})]) == 1
    err = capsys.readouterr().err
    assert err == f"error: No space left on device, writing '{tmp_path / 'out.json'}'\n"


def test_status_works_where_artifacts_cannot_be_written(copy_of):
    work, _ = copy_of
    shutil.rmtree(work / "artifacts" / "cache")
    (work / "artifacts" / "cache").write_text("not a folder: nothing can be cached here")
    (work / paths.REPORT_SPEC).unlink()
    (work / paths.REPORT_SPEC).mkdir()  # nor can the report's spec be written
    report = collect(work)
    assert report["counts"]["current"] == 4
