#!/usr/bin/env python3
"""Keras ResNet50 and InceptionV3 (weights=None, nothing downloaded) through the whole chain, timed.

    .venv/bin/python benchmarks/tf_large_models.py [--workdir DIR] [--cores 2] [--mem-mb 12000]

Writes `results/tf-large-models-<date>-<host>.json` (committed): the machine, the command, the total wall time,
and per job its wall time and peak RSS (from the `stage-metrics:` line each stage prints into its log; children
included) next to Snakemake's own per-job measurement (`benchmark:` files; process start-up included).
The slow test `tests/frameworks/test_tensorflow_large.py` (`make test-slow`) runs the same function in a temporary
directory.

ResNet50 is presented to the plan as NCHW (`layout: NCHW`, tf2onnx `inputs_as_nchw`), InceptionV3 as NHWC.
`--resources mem_mb` is set so that the scheduler keeps the declared memory (TensorFlow export 8000 MB) in bounds.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
MODELS = {  # name -> (keras.applications class, NHWC input size, presented layout)
    "resnet50": ("ResNet50", 224, "NCHW"),
    "inception_v3": ("InceptionV3", 299, "NHWC"),
}
MAKE_MODEL = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2"); os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
import keras
keras.utils.set_random_seed(0)
getattr(keras.applications, sys.argv[1])(weights=None).save(sys.argv[2])
"""


def config(workdir: Path, precisions: list[str]) -> dict:
    models = {}
    for name, (_, size, layout) in MODELS.items():
        shape = [3, size, size] if layout == "NCHW" else [size, size, 3]
        spec = {"shape": ["batch", *shape], "min": [1, *shape], "opt": [2, *shape], "max": [8, *shape]}
        if layout == "NCHW":
            spec["layout"] = "NCHW"
        models[name] = {
            "framework": "tensorflow",
            "format": "keras",
            "checkpoint": str(workdir / f"{name}.keras"),
            "inputs": {"x": spec},
            "outputs": ["predictions"],
            "precisions": precisions,
        }
    return {"backend": "tensorrt_rtx", "targets": {"rtx": ["8.9"]}, "opset": 17, "models": models}


def stage_metrics(workdir: Path) -> dict:
    """{rule: {model: {wall_s, peak_rss_mb, snakemake_s, snakemake_max_rss_mb}}} from the logs and benchmark files."""
    out: dict = {}
    for log in glob.glob(str(workdir / "artifacts" / "logs" / "*" / "*.log")):
        rule, name = Path(log).parent.name, Path(log).stem
        m = re.findall(r"^stage-metrics: (.*)$", Path(log).read_text(errors="replace"), re.M)
        if m:
            out.setdefault(rule, {})[name] = json.loads(m[-1])
    for tsv in glob.glob(str(workdir / "artifacts" / "benchmarks" / "*" / "*.tsv")):
        rule, name = Path(tsv).parent.name, Path(tsv).name[: -len(".tsv")]
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        entry = out.setdefault(rule, {}).setdefault(name, {})
        entry["snakemake_s"] = round(float(row["s"]), 2)
        if row["max_rss"] not in ("", "NA", "-"):
            entry["snakemake_max_rss_mb"] = round(float(row["max_rss"]), 1)
    return out


def run(workdir: Path, *, cores: int = 2, mem_mb: int = 12000, precisions=("fp32", "fp16")) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, (cls, _, _) in MODELS.items():
        path = workdir / f"{name}.keras"
        t = time.perf_counter()
        if not path.exists():
            subprocess.run([PY, "-c", MAKE_MODEL, cls, str(path)], check=True, capture_output=True)
        made[name] = {
            "keras_file_mb": round(path.stat().st_size / 2**20, 1),
            "make_s": round(time.perf_counter() - t, 2),
        }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config(workdir, list(precisions)), sort_keys=False))
    cmd = [
        PY,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--workflow-profile",
        str(REPO / "workflow" / "profiles" / "default"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        str(cores),
        "--resources",
        f"mem_mb={mem_mb}",
    ]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    summary = json.loads((workdir / "artifacts" / "report" / "summary.json").read_text())
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": " ".join(cmd[1:]).replace(str(workdir), "<workdir>").replace(str(REPO), "<repo>"),
        "models": {n: {**made[n], "class": MODELS[n][0], "presented_layout": MODELS[n][2]} for n in MODELS},
        "precisions": list(precisions),
        "workflow_wall_s": round(wall, 1),
        "parity": {m: {v: p["status"] for v, p in i["onnx_parity"].items()} for m, i in summary["models"].items()},
        "plans": summary["counts"],
        "stages": stage_metrics(workdir),
    }


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) // 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_mb": mem, "python": platform.python_version(), "gpu": "none"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, help="keep the run here (default: a temporary directory)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--mem-mb", type=int, default=12000)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tf-large-"))
    results = run(workdir, cores=args.cores, mem_mb=args.mem_mb)
    out = REPO / "benchmarks" / "results" / f"tf-large-models-{results['date']}-{platform.node()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "stages"}, indent=1))
    print(f"written {out} (work directory {workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
