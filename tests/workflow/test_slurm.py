"""Scale-out on a real Slurm (marker `slurm`: `make test-slurm`; CI runs it): the same workflow through
`snakemake --executor slurm` (snakemake-executor-plugin-slurm), each job routed by the config's `slurm` section.

The cluster is one node on loopback (tests/helpers/slurm_cluster.py): partition `cpu`, and partition `gpu` whose node
offers one GPU of type sm89 (fake device file) and, through a TaskProlog, the host facts of a simulated
compute-capability-8.9 GPU. What is asserted comes from Slurm's own records (`scontrol show job`, kept by MinJobAge)
and the controller's log. Full TensorRT is not installable here: where a test needs full-TensorRT keys, a stand-in
`tensorrt` package in the run's directory re-exports TensorRT-RTX (same API), so keys read `trt-<RTX version>`.
Every wait is bounded; the daemons are stopped by PID in the fixture's teardown, also when a test fails.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from helpers import REPO, slurm_cluster

pytestmark = pytest.mark.slurm

GPU_NODE = {
    "gpus": [
        {
            "index": 0,
            "name": "simulated L4",
            "compute_capability": "8.9",
            "uuid": "GPU-sim-0",
            "cuda_index": 0,
            "sm_count": 58,
            "memory_mb": 23034,
        }
    ],
    "driver_version": "580.1",
    "cuda_driver_version": "13.0",
}
ROUTES = {
    "cpu": {"partition": "cpu", "runtime": 30},
    "pools": {"ada": {"compute_capability": "8.9", "partition": "gpu", "constraint": "sm89", "gpu_model": "sm89"}},
}
# this cluster has no slurmdbd: squeue (MinJobAge keeps finished jobs); first status check after 1 s, not 20
SLURM_ARGS = [
    "--workflow-profile",
    str(REPO / "workflow" / "profiles" / "slurm"),
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--latency-wait",
    "5",
    "--jobs",
    "8",
]
LOCAL_ARGS = ["--workflow-profile", str(REPO / "workflow" / "profiles" / "default"), "--cores", "2"]
RUN_TIMEOUT_S = 600  # the zoo takes ~150 s here; one job ~15 s
JOB_TIMEOUT_S = 300
TRT_STANDIN = '''"""Test stand-in for full TensorRT (not installable here): TensorRT-RTX shares its Python API."""
import sys

import tensorrt_rtx

sys.modules[__name__] = tensorrt_rtx
'''
TIMINGS: dict = {}


def demo_zoo() -> dict:
    """The demo zoo (config/config.yaml) cut to a few minutes on Slurm: its PyTorch and ONNX models, fp16, two
    TensorRT-RTX targets (sm89 has a pool, so its validation runs on the GPU node; sm86's on the CPU route)."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["models"] = {k: m for k, m in cfg["models"].items() if m["framework"] != "tensorflow"}
    cfg.update(backend="tensorrt_rtx", precisions=["fp16"], targets={"rtx": ["8.6", "8.9"]}, slurm=ROUTES)
    for m in cfg["models"].values():
        m.pop("precisions", None)
        for key in ("checkpoint", "onnx", "calibration"):  # relative to config/ there, to the workdir here
            if key in m:
                m[key] = m[key].removeprefix("../")
    return cfg


def snakemake(workdir: Path, cfg: dict, *args, cluster=None, timeout=RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("FACTORY_HOST_FACTS", "CUDA_VISIBLE_DEVICES")}
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]
    t0 = time.monotonic()
    try:  # cwd: `python -m` puts it on sys.path, so a stand-in package there is importable by every process
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        state = f"\n{cluster.logs_tail()}\nSlurm jobs: {cluster.jobs()}" if cluster else ""
        raise AssertionError(
            f"snakemake did not finish in {timeout} s:\n{_text(e.stdout)[-3000:]}\n{_text(e.stderr)[-5000:]}{state}"
        ) from None
    proc.wall_s = time.monotonic() - t0
    proc.out = proc.stdout + proc.stderr
    return proc


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def run_id(proc) -> str:
    m = re.search(r"SLURM run ID: (\S+)", proc.out)
    assert m, proc.out[-3000:]
    return m.group(1)


def rule_of(job: dict) -> tuple[str, str]:
    """(rule, wildcards) from the comment the plugin gives each Slurm job: rule_<rule>[_wildcards_<values>]."""
    m = re.fullmatch(r"rule_(.+?)(?:_wildcards_(.*))?", job["Comment"])
    return m.group(1), m.group(2) or ""


def planned(proc) -> dict[str, int]:
    """Job counts per rule from Snakemake's 'Job stats' table."""
    table = proc.out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def clone(zoo, dest: Path) -> Path:
    """A run directory holding the zoo run's artifacts (mtimes kept: Snakemake sees them up to date), plus the
    full-TensorRT stand-in, so a test submits only the jobs it is about."""
    src, proc, _ = zoo
    if proc.returncode != 0:
        pytest.skip("needs the demo zoo's Slurm run, which failed (see test_demo_zoo_runs_through_slurm_...)")
    dest.mkdir(parents=True, exist_ok=True)
    if (src / "artifacts").exists():
        shutil.copytree(src / "artifacts", dest / "artifacts", ignore=shutil.ignore_patterns("logs", "benchmarks"))
    (dest / "tensorrt").mkdir()
    (dest / "tensorrt" / "__init__.py").write_text(TRT_STANDIN)
    return dest


def trt_zoo(pools: dict) -> dict:
    return {**demo_zoo(), "backend": "tensorrt", "slurm": {"cpu": ROUTES["cpu"], "pools": pools}}


def _secs(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


# ----------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    slurm_cluster.require()
    t0 = time.monotonic()
    slurm_cluster.install()
    TIMINGS["install_s"] = round(time.monotonic() - t0, 1)
    c = slurm_cluster.Cluster(tmp_path_factory.mktemp("slurm"), partition_facts={"gpu": GPU_NODE})
    try:
        c.start()
        TIMINGS["daemons_ready_s"] = round(c.started_s, 2)
        yield c
    finally:
        c.stop()
        print(f"\nSlurm test timings: {json.dumps(TIMINGS)}")
    assert not c.alive(), f"daemons still running after stop: {c.alive()}"


@pytest.fixture(scope="module")
def zoo(cluster, tmp_path_factory):
    """The demo zoo run through Slurm once; the tests below read its records and artifacts."""
    workdir = tmp_path_factory.mktemp("zoo-slurm")
    proc = snakemake(workdir, demo_zoo(), *SLURM_ARGS, cluster=cluster)
    TIMINGS["zoo_slurm_wall_s"] = round(proc.wall_s, 1)
    jobs = cluster.jobs(run_id(proc)) if "SLURM run ID" in proc.out else []
    if jobs:
        rt = [_secs(j["SubmitTime"], j["EndTime"]) for j in jobs if j["EndTime"] not in ("Unknown", "None")]
        TIMINGS.update(
            zoo_slurm_jobs=len(jobs), job_submit_to_end_median_s=statistics.median(rt), job_submit_to_end_max_s=max(rt)
        )
    return workdir, proc, jobs


# ----------------------------------------------------------------------------------------------------- tests
def test_demo_zoo_runs_through_slurm_on_the_expected_partitions(zoo, cluster):
    workdir, proc, jobs = zoo
    assert proc.returncode == 0, proc.out[-6000:]
    assert jobs and all(j["JobState"] == "COMPLETED" for j in jobs), [(j["JobId"], j["JobState"]) for j in jobs]
    per_rule: dict[str, int] = {}
    for j in jobs:
        rule, wildcards = rule_of(j)
        per_rule[rule] = per_rule.get(rule, 0) + 1
        on_pool = rule == "validate_sm89"  # plan execution needs the pool's GPU: one validation job per cc there
        assert j["Partition"] == ("gpu" if on_pool else "cpu"), j
        assert ("gres:gpu:sm89:1" in j.get("TresPerJob", "")) == on_pool, j
        assert (j["Features"] == "sm89") == on_pool, j
    # every job Snakemake ran went through Slurm, but for its local rules (the target `all`, the verdict `outcome`)
    expected = {r: n for r, n in planned(proc).items() if r not in ("all", "outcome")}
    assert per_rule == expected, (per_rule, planned(proc))
    # builds span the RTX targets of a precision (CPU route); validations go one cc per job (the pools' GPUs)
    assert {r for r in per_rule if r.startswith("validate_")} == {"validate_sm86", "validate_sm89"}, per_rule
    assert any(r.startswith("build_sm86_89") for r in per_rule), per_rule
    # the controller's own log agrees: it allocated the pool's jobs in the gpu partition
    log = cluster.controller_log()
    for j in jobs:
        assert re.search(
            rf"sched: Allocate JobId={j['JobId']} NodeList=\S+ #CPUs=\d+ Partition={j['Partition']}\n|"
            rf"sched/backfill: _start_job: Started JobId={j['JobId']} in {j['Partition']} on ",
            log,
        ), j
    # the sm89 validations ran on the node with the (simulated) GPU: they saw it and tried to execute there
    for path in workdir.glob("artifacts/*/validation/rtx-*/sm*/fp16/validation.json"):
        execution = json.loads(path.read_text())["checks"]["plan_execution"]
        assert execution["status"] == "not-run"
        assert (execution.get("gpu", {}).get("name") == "simulated L4") == ("/sm89/" in str(path)), (path, execution)


def test_slurm_run_builds_the_same_keys_as_a_local_run(zoo, tmp_path):
    workdir, proc, _ = zoo
    assert proc.returncode == 0, proc.out[-3000:]
    local = snakemake(tmp_path, demo_zoo(), *LOCAL_ARGS)
    TIMINGS["zoo_local_wall_s"] = round(local.wall_s, 1)
    assert local.returncode == 0, local.out[-6000:]

    def keys(d: Path):
        summary = json.loads((d / "artifacts" / "report" / "summary.json").read_text())
        plans = sorted((p["model"], p["key"], p["cc"], p["precision"], p["status"]) for p in summary["plans"])
        files = sorted(str(p.relative_to(d)) for p in d.glob("artifacts/*/plans/*/*/*/model.plan"))
        return plans, files

    slurm_plans, slurm_files = keys(workdir)
    assert (slurm_plans, slurm_files) == keys(tmp_path)
    assert len(slurm_files) == 6 and all("/rtx-" in f for f in slurm_files)


def test_full_tensorrt_build_goes_to_the_pool_of_its_key(zoo, cluster, tmp_path):
    import tensorrt_rtx

    workdir = clone(zoo, tmp_path / "run")
    plan = f"artifacts/tiny_mlp/plans/trt-{tensorrt_rtx.__version__}/sm89/fp16/model.plan"
    proc = snakemake(
        workdir, trt_zoo({"ada": ROUTES["pools"]["ada"]}), *SLURM_ARGS, plan, cluster=cluster, timeout=JOB_TIMEOUT_S
    )
    TIMINGS["one_build_job_wall_s"] = round(proc.wall_s, 1)
    assert proc.returncode == 0, proc.out[-6000:]
    [job] = cluster.jobs(run_id(proc))
    assert rule_of(job)[0] == "build_sm89" and job["Partition"] == "gpu" and job["JobState"] == "COMPLETED", job
    assert "gres:gpu:sm89:1" in job["TresPerJob"] and job["Features"] == "sm89", job
    record = json.loads((workdir / (plan + ".provenance.json")).read_text())
    assert record["facts"]["gpu"]["name"] == "simulated L4"  # built on (and for) the pool's GPU
    assert record["params"]["key"].startswith("trt-") and record["params"]["compute_capabilities"] == ["8.9"]


def test_build_on_a_node_of_the_wrong_compute_capability_fails_with_the_key_mismatch(zoo, cluster, tmp_path):
    """A pool that claims compute capability 8.6 but whose routing (any GPU in partition gpu) reaches the 8.9 node."""
    import tensorrt_rtx

    workdir = clone(zoo, tmp_path / "run")
    key = f"trt-{tensorrt_rtx.__version__}"
    plan = f"artifacts/tiny_mlp/plans/{key}/sm86/fp16/model.plan"
    pools = {"ampere": {"compute_capability": "8.6", "partition": "gpu", "gres": "gpu:1"}}
    proc = snakemake(workdir, trt_zoo(pools), *SLURM_ARGS, plan, cluster=cluster, timeout=JOB_TIMEOUT_S)
    assert proc.returncode != 0, proc.out[-3000:]
    [job] = cluster.jobs(run_id(proc))
    assert job["Partition"] == "gpu" and job["JobState"] == "FAILED", job
    log = (workdir / "artifacts" / "logs" / "build" / f"tiny_mlp.{key}.sm86.fp16.log").read_text()
    message = (
        rf"model 'tiny_mlp'.*this job builds for compute capability 8.6 but this host's GPUs are \['8.9'\] "
        rf"\(host \S+, Slurm job {job['JobId']} in partition gpu\)"
    )
    assert re.search(message, log), log
    assert re.search(message, proc.out), proc.out[-6000:]  # Snakemake shows the failed job's log
    assert not (workdir / plan).exists()


def test_build_for_a_pool_no_node_offers_fails_at_submission(zoo, cluster, tmp_path):
    import tensorrt_rtx

    workdir = clone(zoo, tmp_path / "run")
    plan = f"artifacts/tiny_mlp/plans/trt-{tensorrt_rtx.__version__}/sm90/fp16/model.plan"
    pools = {"hopper": {"compute_capability": "9.0", "partition": "gpu", "constraint": "h100", "gpu_model": "h100"}}
    proc = snakemake(workdir, trt_zoo(pools), *SLURM_ARGS, plan, cluster=cluster, timeout=JOB_TIMEOUT_S)
    TIMINGS["refused_submission_wall_s"] = round(proc.wall_s, 1)
    assert proc.returncode != 0, proc.out[-3000:]
    assert "SLURM sbatch failed" in proc.out, proc.out[-6000:]
    assert re.search(
        r"Batch job submission failed: (Requested node configuration is not available|"
        r"Invalid feature specification)",
        proc.out,
    ), proc.out[-6000:]
    assert cluster.jobs(run_id(proc)) == []  # Slurm holds no job of that run: nothing pending forever
