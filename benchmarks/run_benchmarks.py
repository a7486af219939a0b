#!/usr/bin/env python3
"""Benchmarks of the engine factory on this machine; results go to benchmarks/results/ (committed).

    .venv/bin/python benchmarks/run_benchmarks.py [--skip-full-run] [--repeat N]

Measures, in one run:
  1. `snakemake --version` (the cost floor) and a no-op `make run` (target: within 3 s of the floor);
  2. a full `make run` on the demo zoo from empty artifacts (wall time), and per-stage wall time and peak memory
     from the rules' `benchmark:` files (Snakemake's own per-job measurement);
  3. the build stage's overhead: the same ONNX file and target built (a) by a bare TensorRT-RTX builder call in a
     fresh Python and (b) by the workflow's build stage command (`python -m scripts run build ...`), alternated,
     plus Python start-up alone (interpreter + `import tensorrt_rtx`), reported separately.
     Target: (b) - (a) <= 5 % of (a) - start-up.
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
import sys, time, tensorrt_rtx as trt
onnx_path, plan_path = sys.argv[1], sys.argv[2]
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
profile.set_shape("x", (1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))
config.add_optimization_profile(profile)
t = time.perf_counter()
plan = builder.build_serialized_network(network, config)
print(time.perf_counter() - t, file=sys.stderr)
open(plan_path, "wb").write(plan)
"""


def timed(cmd, **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, **kw)
    return time.perf_counter() - t


def median_of(n, fn) -> dict:
    xs = [fn() for _ in range(n)]
    return {"median_s": round(statistics.median(xs), 3), "runs_s": [round(x, 3) for x in xs]}


def stage_table() -> dict:
    """Per rule: job count, total/mean/max wall seconds, max peak RSS (MB), from Snakemake's benchmark files."""
    table = {}
    for tsv in glob.glob(str(REPO / "artifacts" / "benchmarks" / "*" / "*.tsv")):
        rule = Path(tsv).parent.name
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        s, rss = float(row["s"]), float(row["max_rss"]) if row["max_rss"] not in ("", "NA", "-") else 0.0
        t = table.setdefault(rule, {"jobs": 0, "total_s": 0.0, "max_s": 0.0, "max_rss_mb": 0.0})
        t["jobs"] += 1
        t["total_s"] += s
        t["max_s"] = max(t["max_s"], s)
        t["max_rss_mb"] = max(t["max_rss_mb"], rss)
    for t in table.values():
        t["mean_s"] = round(t["total_s"] / t["jobs"], 3)
        t["total_s"] = round(t["total_s"], 2)
    return table


def build_overhead(repeat: int) -> dict:
    onnx = REPO / "artifacts" / "tiny_cnn" / "onnx" / "model.fp16.onnx"
    if not onnx.exists():
        subprocess.run([*SNAKEMAKE, "--cores", "2", str(onnx.relative_to(REPO))], check=True, cwd=REPO,
                       capture_output=True)
    tmp = Path(tempfile.mkdtemp())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    io = {"inputs": {"onnx": str(onnx)}, "outputs": {"plan": str(tmp / "stage.plan")}}
    x = {"dtype": "float32", "shape": ["batch", 3, 32, 32], "min": [1, 3, 32, 32], "opt": [8, 3, 32, 32],
         "max": [32, 3, 32, 32]}
    settings = {"model": "tiny_cnn", "backend": "tensorrt_rtx", "key": _rtx_key(), "compute_capability": "8.9",
                "precision": "fp16", "inputs": {"x": x}, "build": {"workspace_mb": 1024, "optimization_level": 3},
                "timing_cache": str(tmp / "timing.cache")}
    bare, stage, startup = [], [], []
    for _ in range(repeat):  # alternate, so that drift hits both alike
        startup.append(timed([PY, "-c", "import tensorrt_rtx"]))
        bare.append(timed([PY, "-c", BARE_BUILD, str(onnx), str(tmp / "bare.plan")]))
        (tmp / "timing.cache").unlink(missing_ok=True)  # no warm cache advantage for the stage
        stage.append(timed([PY, "-m", "scripts", "run", "build", json.dumps(io), json.dumps(settings)], env=env))
    shutil.rmtree(tmp)
    b, s, st = statistics.median(bare), statistics.median(stage), statistics.median(startup)
    return {"onnx": str(onnx.relative_to(REPO)), "target": "sm89", "repeat": repeat,
            "python_startup_s": round(st, 3), "bare_build_process_s": round(b, 3),
            "stage_process_s": round(s, 3), "overhead_s": round(s - b, 3),
            "overhead_vs_bare_build_beyond_startup": round((s - b) / max(b - st, 1e-9), 4),
            "runs": {"startup": startup, "bare": bare, "stage": stage}}


def _rtx_key() -> str:
    out = subprocess.run([PY, "-c", "import tensorrt_rtx; print(tensorrt_rtx.__version__)"], capture_output=True,
                         text=True, check=True).stdout.strip()
    return f"rtx-{out}"


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_mb": mem, "platform": platform.platform(),
            "python": platform.python_version(), "gpu": "none"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-full-run", action="store_true", help="keep existing artifacts (no full make run)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    results = {"date": datetime.date.today().isoformat(), "machine": machine()}
    subprocess.run(["make", "install"], check=True, cwd=REPO, capture_output=True)
    if not args.skip_full_run:
        shutil.rmtree(REPO / "artifacts", ignore_errors=True)
        shutil.rmtree(REPO / ".snakemake", ignore_errors=True)
        (REPO / "artifacts").mkdir()
        (REPO / "artifacts" / ".gitkeep").touch()
        results["make_run_full_s"] = round(timed(["make", "run"]), 2)
    results["stages"] = stage_table()
    results["snakemake_version_s"] = median_of(args.repeat, lambda: timed([SNAKEMAKE[0], "--version"]))
    results["make_run_noop_s"] = median_of(args.repeat, lambda: timed(["make", "run"]))
    results["noop_minus_floor_s"] = round(results["make_run_noop_s"]["median_s"]
                                          - results["snakemake_version_s"]["median_s"], 3)
    results["build_overhead"] = build_overhead(args.repeat)
    out = REPO / "benchmarks" / "results" / f"{results['date']}-{platform.node()}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "stages"}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    sys.exit(main())
