"""Here, after a GPU run: the factory's report of that run's plans, written by the report stage's own code.

    .venv/bin/python tools/trt85/report_here.py WORK CARRY RESULTS OUT
      WORK     the working directory tools/trt85/prepare_zoo.py made (parity results and ONNX records are there)
      CARRY    its job list (CARRY/jobs.json: the report job's settings, as the Snakefile gives them)
      RESULTS  what came back: a results.tar.gz of tools/trt85/gpu_run.py, or a folder of
               <model>.<precision>.validation.json files (docs/hardware-runs/<run>/)
      OUT      where the report goes (summary.json, index.html, models/, charts/)

The GPU machine has no altair/vl-convert, so the report is not written there; it reads only files (validation
results, records, parity), so writing it here from the run's files gives the report of that run.
"""

import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from engine_factory import paths
from engine_factory.atomic import read_json
from engine_factory.fingerprint import sha256
from engine_factory.stages import run


def place_results(work: Path, results: Path, jobs: list[dict]) -> int:
    """The run's validation files (and, from a tarball, its records) at their paths under `work`."""
    if results.is_file():
        with tarfile.open(results) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("artifacts/")]
            members = [m for m in members if ".." not in Path(m.name).parts and not m.name.endswith(".head")]
            tar.extractall(work, members=members, filter="data")
        return len(members)
    placed = 0
    for j in jobs:
        src = results / f"{j['model']}.{j['precision']}.validation.json"
        if src.exists():
            dest = work / paths.validation(**{k: j[k] for k in ("model", "key", "cc", "precision")})
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
            placed += 1
    return placed


def place_plans(work: Path, repository: Path) -> int:
    """The plans back at their paths from the run's Triton repositories (deploy copies them byte for byte), each
    only where its sha256 is the one the repository's record names for it."""
    placed = 0
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(repository) as tar:
            tar.extractall(tmp, filter="data")
        for copy in Path(tmp).glob("artifacts/triton/*/1/model.sm*.plan"):
            record = read_json(copy.parent.parent / "config.pbtxt.provenance.json") or {}
            for entry in (record.get("facts") or {}).get("plans", []):
                if Path(entry["file"]).name == copy.name and sha256(copy, cached=False) == entry["sha256"]:
                    dest = work / entry["source"]  # the plan the repository was made from
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(copy, dest)
                    placed += 1
    return placed


def main(work: Path, carry: Path, results: Path, out: Path) -> None:
    spec = json.loads((carry / "jobs.json").read_text())
    (report,) = [j for j in spec["jobs"] if j["stage"] == "report"]
    if models := os.environ.get("GPU_RUN_MODELS"):  # the shorter run's models only (gpu_run.py's variable)
        keep, st = set(models.split(",")), report["settings"]
        st["jobs"] = [j for j in st["jobs"] if j["model"] in keep]
        st["skipped"] = [j for j in st["skipped"] if j["model"] in keep]
        st["models"] = {m: v for m, v in st["models"].items() if m in keep}
    print(f"{place_results(work, results, report['settings']['jobs'])} files of the run placed in {work}")
    if (repository := results.parent / "triton.tar.gz").exists():  # gpu_run.py's, beside its results
        print(f"{place_plans(work, repository)} plans placed from {repository}")
    os.chdir(work)
    shutil.rmtree(work / paths.ROOT / "report", ignore_errors=True)
    print(run("report", {**report["io"], "params": report["settings"]}))
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(work / paths.ROOT / "report", out, ignore=shutil.ignore_patterns("spec.json"))
    print(f"report in {out}")


if __name__ == "__main__":
    main(*(Path(a).resolve() for a in sys.argv[1:5]))
