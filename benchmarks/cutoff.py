"""The early cutoff measured (issue 27): a model's code edited and reverted, the run after each, side by side.

A zoo of N small models (benchmarks/zoo_gen.py; its PyTorch classes share one module, zoo_models/nets.py), 5
precisions, 4 TensorRT-RTX targets, built once. Then, twice, the same change to the code (a comment appended to
nets.py: every PyTorch model's code digest changes, its exported ONNX does not):
  1. without the cutoff's store (artifacts/cache/cutoff removed first): every build job builds;
  2. the revert, with the store: the build jobs find their inputs and settings equal to the stored run's and link its
     plans back.
Snakemake schedules the same jobs both times (it decides at DAG time); what differs is the work the build jobs do.

    python benchmarks/cutoff.py [--models 4] [--cores 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from scale import factory  # noqa: E402  (benchmarks/ is not a package)


def jobs_since(zoo: Path, started: float) -> dict:
    """Per stage: jobs that ran since `started` and their summed wall time (Snakemake's benchmark files)."""
    out = {}
    for f in glob.glob(str(zoo.parent / "artifacts/benchmarks/*/*.tsv")):
        if os.path.getmtime(f) >= started:
            stage = Path(f).parent.name
            wall = float(Path(f).read_text().splitlines()[1].split("\t")[0])
            s = out.setdefault(stage, {"jobs": 0, "wall_s": 0.0})
            s["jobs"] += 1
            s["wall_s"] = round(s["wall_s"] + wall, 2)
    return out


def plans(zoo: Path) -> dict:
    from engine_factory.fingerprint import sha256

    return {str(p): sha256(p) for p in sorted((zoo.parent / "artifacts").rglob("*.plan"))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = ap.parse_args()
    from zoo_gen import write_zoo

    tmp = tempfile.mkdtemp(prefix="engine-factory-cutoff-")
    zoo = write_zoo(Path(tmp) / "zoo", a.models, ["fp32", "fp16", "bf16", "int8", "fp8"], ["8.0", "8.6", "8.9", "12.0"])
    first = factory(zoo, a.cores, "--keep-going")
    before = plans(zoo)
    nets = zoo.parent / "zoo_models" / "nets.py"
    original = nets.read_text()
    runs = {}
    for name, text, store in (
        ("edit_without_cutoff", original + "\n# edited\n", False),
        ("revert_with_cutoff", original, True),
    ):
        if not store:
            shutil.rmtree(zoo.parent / "artifacts/cache/cutoff", ignore_errors=True)
        nets.write_text(text)
        time.sleep(1.1)  # benchmark files of this run are told apart by mtime
        started = time.time()
        r = factory(zoo, a.cores, "--keep-going")
        r["stages"] = jobs_since(zoo, started)
        r["plans_unchanged"] = sum(1 for p, h in plans(zoo).items() if before.get(p) == h)
        r["plans"] = len(before)
        logs = glob.glob(str(zoo.parent / "artifacts/logs/build/*.log"))
        r["build_jobs_cut_off"] = sum(
            1 for f in logs if os.path.getmtime(f) >= started and "early cutoff" in Path(f).read_text()
        )
        runs[name] = r
    e, v = runs["edit_without_cutoff"], runs["revert_with_cutoff"]
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d"),
            "load_average_at_end": os.getloadavg(),
        },
        "models": a.models,
        "cores": a.cores,
        "first_build": first,
        "runs": runs,
        "saved_s": round(e["wall_s"] - v["wall_s"], 2),
        "build_work_saved_s": round(
            e["stages"].get("build", {}).get("wall_s", 0) - v["stages"].get("build", {}).get("wall_s", 0), 2
        ),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    out = a.out / f"{time.strftime('%Y-%m-%d')}-{platform.node().split('.')[0] or 'host'}-cutoff.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("saved_s", "build_work_saved_s")}), out)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
