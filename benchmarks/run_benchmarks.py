#!/usr/bin/env python3
"""Benchmarks of the engine factory on this machine; results go to benchmarks/results/ (committed).

    .venv/bin/python benchmarks/run_benchmarks.py [--skip-full-run] [--repeat N]

Measures, in one run:
  1. `snakemake --version` (the cost floor) and a no-op `make run` (target: within 3 s of the floor);
  2. a full `make run` on the demo zoo from empty artifacts (wall time), and per-stage wall time and peak memory
     from the rules' `benchmark:` files (Snakemake's own per-job measurement);
  3. the build stage's overhead: the same ONNX file and target built (a) by a bare TensorRT-RTX builder call in a
     fresh Python and (b) by the workflow's build stage command (`python -m engine_factory run build ...`), with each
     one's Python start-up alone (interpreter + imports), all four in every round, on the demo CNN and on a
     ResNet-18-sized CNN. Target: (b) beyond its start-up <= 1.05 x (a) beyond its start-up; start-up reported
     separately.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = str(REPO / ".venv" / "bin" / "python")
SNAKEMAKE = [str(REPO / ".venv" / "bin" / "snakemake"), "--workflow-profile", "workflow/profiles/default"]

BARE_BUILD = r"""
import json, sys, tensorrt_rtx as trt
onnx_path, plan_path, profile_json = sys.argv[1], sys.argv[2], sys.argv[3]
logger = trt.Logger(trt.Logger.WARNING)
builder = trt.Builder(logger)
network = builder.create_network(0)
parser = trt.OnnxParser(network, logger)
assert parser.parse_from_file(onnx_path)
config = builder.create_builder_config()
config.num_compute_capabilities = 1
config.set_compute_capability(trt.ComputeCapability.SM89, 0)
config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1024 << 20)
config.builder_optimization_level = 3
profile = builder.create_optimization_profile()
for name, p in json.loads(profile_json).items():
    profile.set_shape(name, p["min"], p["opt"], p["max"])
config.add_optimization_profile(profile)
plan = builder.build_serialized_network(network, config)
open(plan_path, "wb").write(plan)
"""
# What the build stage process imports before it starts working (`python -m engine_factory run build`: runpy, the CLI
# with argparse, the build runner's modules, the backend): its Python start-up, measured alone, reported separately.
# It ends as a stage process ends: without the interpreter's teardown (scripts/engine_factory/__main__.py), so neither
# side counts teardown as work.
STAGE_STARTUP = (
    "import runpy, engine_factory.__main__, engine_factory.stages, engine_factory.backends.core, engine_factory.gpus, "
    "engine_factory.host, engine_factory.provenance, engine_factory.intoto, tensorrt_rtx, os; os._exit(0)"
)


def resnetish_onnx(path: Path) -> None:
    """A ResNet-18-sized CNN (seeded, 21 MB of weights) exported to ONNX: a build big enough to measure."""
    code = (
        "import sys, torch\nfrom torch import nn\n"
        "def block(i, o, s):\n"
        "    return nn.Sequential(nn.Conv2d(i, o, 3, s, 1), nn.BatchNorm2d(o), nn.ReLU(), nn.Conv2d(o, o, 3, 1, 1),"
        " nn.BatchNorm2d(o), nn.ReLU())\n"
        "torch.manual_seed(0)\n"
        "net = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3), nn.ReLU(), block(64, 64, 1), block(64, 128, 2),"
        " block(128, 256, 2), block(256, 512, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)).eval()\n"
        "torch.onnx.export(net, (torch.zeros(1, 3, 224, 224),), sys.argv[1], dynamo=False, opset_version=18,"
        " input_names=['x'], output_names=['logits'], dynamic_axes={'x': {0: 'batch'}, 'logits': {0: 'batch'}})\n"
    )
    subprocess.run([PY, "-c", code, str(path)], check=True, capture_output=True)


def timed(cmd, **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, **kw)
    return time.perf_counter() - t


def median_of(n, fn) -> dict:
    xs = [fn() for _ in range(n)]
    return {"median_s": round(statistics.median(xs), 3), "runs_s": [round(x, 3) for x in xs]}


def stage_table() -> dict:
    """Per rule: jobs, wall seconds of the whole job (Snakemake's `benchmark:` files: process start included) and,
    from the `stage-metrics:` line each stage prints into its log, the stage's own wall time and peak RSS
    (children included). Snakemake's own max_rss samples too rarely for sub-second jobs, so it is not used."""
    table = {}
    for tsv in glob.glob(str(REPO / "artifacts" / "benchmarks" / "*" / "*.tsv")):
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        t = table.setdefault(Path(tsv).parent.name, {"jobs": 0, "job_total_s": 0.0, "job_max_s": 0.0})
        t["jobs"] += 1
        t["job_total_s"] += float(row["s"])
        t["job_max_s"] = max(t["job_max_s"], float(row["s"]))
    for log in glob.glob(str(REPO / "artifacts" / "logs" / "*" / "*.log")):
        line = next((ln for ln in open(log, errors="replace") if ln.startswith("stage-metrics: ")), None)
        if line:
            m = json.loads(line[len("stage-metrics: ") :])
            t = table.setdefault(Path(log).parent.name, {"jobs": 0, "job_total_s": 0.0, "job_max_s": 0.0})
            t["stage_total_s"] = t.get("stage_total_s", 0.0) + m["wall_s"]
            t["stage_runs"] = t.get("stage_runs", 0) + 1
            t["peak_rss_mb"] = max(t.get("peak_rss_mb", 0.0), m["peak_rss_mb"])
    for t in table.values():
        t["job_total_s"], t["job_max_s"] = round(t["job_total_s"], 2), round(t["job_max_s"], 2)
        if "stage_total_s" in t:
            t["stage_mean_s"] = round(t.pop("stage_total_s") / t["stage_runs"], 3)
    return table


def build_overhead(repeat: int) -> dict:
    """The build stage against a bare TensorRT-RTX builder call on the same ONNX file and target, and each one's
    start-up alone, interleaved."""
    tmp = Path(tempfile.mkdtemp())
    demo = REPO / "artifacts" / "tiny_cnn" / "onnx" / "model.fp16.onnx"
    if not demo.exists():
        subprocess.run(
            [*SNAKEMAKE, "--cores", "2", str(demo.relative_to(REPO))], check=True, cwd=REPO, capture_output=True
        )
    resnetish_onnx(tmp / "resnetish.onnx")
    sys.path.insert(0, str(REPO))
    from engine_factory import provenance  # as the export stage leaves it: the ONNX with its sidecar
    from engine_factory.host import PROBED_ENV, probe_host

    provenance.write(str(tmp / "resnetish.onnx"), stage="export", inputs={}, params={}, host={})
    cases = {
        "tiny_cnn fp16 (demo)": (demo, [3, 32, 32]),
        "resnet18-sized fp32, 21 MB": (tmp / "resnetish.onnx", [3, 224, 224]),
    }
    key = _rtx_key()
    # as the Snakefile runs every job: host probe, git commit and tool versions read once, inherited through the
    # environment
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        provenance.GIT_ENV: json.dumps(provenance.git_commit()),
        provenance.TOOLS_ENV: json.dumps(provenance.tool_versions()),
        PROBED_ENV: json.dumps(probe_host()),
    }
    out = {"target": "sm89", "repeat": repeat}
    startup_bare, startup_stage = [PY, "-c", "import tensorrt_rtx"], [PY, "-c", STAGE_STARTUP]
    for name, (onnx, chw) in cases.items():
        profile = {
            "x": {"dtype": "float32", "shape": ["batch", *chw], "min": [1, *chw], "opt": [8, *chw], "max": [32, *chw]}
        }
        io = {"inputs": {"onnx": str(onnx)}, "outputs": {"plan": str(tmp / "stage.plan")}}
        settings = {
            "model": "bench",
            "backend": "tensorrt_rtx",
            "key": key,
            "compute_capability": "8.9",
            "precision": "fp16",
            "inputs": profile,
            "build": {"workspace_mb": 1024, "optimization_level": 3},
            "timing_cache": None,
            "tensorrt": None,
        }  # as the workflow runs RTX builds: no timing cache
        runs = {"startup_bare": [], "bare": [], "startup_stage": [], "stage": []}
        for _ in range(repeat):  # each round runs all four, so that drift hits them alike
            for old in tmp.glob("*.plan*"):  # as in the workflow (Snakemake removes a job's outputs first)
                old.unlink()
            runs["startup_bare"].append(timed(startup_bare))
            runs["bare"].append(timed([PY, "-c", BARE_BUILD, str(onnx), str(tmp / "bare.plan"), json.dumps(profile)]))
            runs["startup_stage"].append(timed(startup_stage, env=env))
            runs["stage"].append(
                timed([PY, "-m", "engine_factory", "run", "build", json.dumps(io), json.dumps(settings)], env=env)
            )
        med = {k: statistics.median(v) for k, v in runs.items()}
        bare_work, stage_work = med["bare"] - med["startup_bare"], med["stage"] - med["startup_stage"]
        per_round = [(s - ss) / (b - sb) - 1 for sb, b, ss, s in zip(*runs.values())]
        hash_s = plan_hash_cost(tmp / "stage.plan", repeat)
        out[name] = {
            "onnx_mb": round(onnx.stat().st_size / 2**20, 1),
            "startup_bare_s": round(med["startup_bare"], 3),
            "startup_stage_s": round(med["startup_stage"], 3),
            "bare_process_s": round(med["bare"], 3),
            "stage_process_s": round(med["stage"], 3),
            "bare_beyond_startup_s": round(bare_work, 3),
            "stage_beyond_startup_s": round(stage_work, 3),
            "overhead_beyond_startup": round(stage_work / bare_work - 1, 3),
            "overhead_per_round_median": round(statistics.median(per_round), 3),
            "plan_mb": round((tmp / "stage.plan").stat().st_size / 2**20, 1),
            "plan_sha256_beyond_write_s": round(hash_s, 4),
            "overhead_without_plan_sha256": round((stage_work - hash_s) / bare_work - 1, 3),
            "runs_s": {k: [round(x, 3) for x in v] for k, v in runs.items()},
        }
    shutil.rmtree(tmp)
    return out


def plan_hash_cost(plan: Path, repeat: int) -> float:
    """What hashing a plan adds to writing it, both as the build stage does (scripts/engine_factory/backends/core.py):
    the part of the overhead that is provenance's `artifact.sha256`. Median over fresh copies of the plan's bytes."""
    from engine_factory.backends.core import _write_hashed

    data, out, with_hash, write_only = plan.read_bytes(), plan.with_suffix(".copy"), [], []
    for _ in range(repeat):
        for fn, times in ((_write_hashed, with_hash), (_write_only, write_only)):
            buf = bytearray(data)
            out.unlink(missing_ok=True)
            t = time.perf_counter()
            fn(out, buf)
            times.append(time.perf_counter() - t)
    out.unlink()
    return statistics.median(with_hash) - statistics.median(write_only)


def _write_only(path, data) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _rtx_key() -> str:
    out = subprocess.run(
        [PY, "-c", "import tensorrt_rtx; print(tensorrt_rtx.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return f"rtx-{out}"


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((int(ln.split()[1]) // 1024 for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), 0)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_mb": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": "none",
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-full-run", action="store_true", help="keep existing artifacts (no full make run)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    results = {"date": datetime.date.today().isoformat(), "machine": machine()}
    subprocess.run(["make", "install"], check=True, cwd=REPO, capture_output=True)
    out = REPO / "benchmarks" / "results" / f"{results['date']}-{platform.node()}.json"
    if args.skip_full_run and out.exists():  # keep the full run measured earlier today
        previous = json.loads(out.read_text())
        results.update({k: previous[k] for k in ("make_run_full_s", "stages") if k in previous})
    if not args.skip_full_run:
        shutil.rmtree(REPO / "artifacts", ignore_errors=True)
        shutil.rmtree(REPO / ".snakemake", ignore_errors=True)
        (REPO / "artifacts").mkdir()
        (REPO / "artifacts" / ".gitkeep").touch()
        results["make_run_full_s"] = round(timed(["make", "run"]), 2)
    if not args.skip_full_run or "stages" not in results:
        results["stages"] = stage_table()
    results["snakemake_version_s"] = median_of(args.repeat, lambda: timed([SNAKEMAKE[0], "--version"]))
    results["make_run_noop_s"] = median_of(args.repeat, lambda: timed(["make", "run"]))
    results["noop_minus_floor_s"] = round(
        results["make_run_noop_s"]["median_s"] - results["snakemake_version_s"]["median_s"], 3
    )
    results["build_overhead"] = build_overhead(3 * args.repeat)  # sub-second processes: more runs for a stable median
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "stages"}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    sys.exit(main())
