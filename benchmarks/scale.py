"""The factory against the hand-written script, and at scale (issue 13). One run, side by side, on this machine:

1. A user's zoo of N small models (benchmarks/zoo_gen.py: its own package, checkpoints, ONNX files and calibration
   sets, in a temporary directory outside the checkout), 5 precisions, 4 TensorRT-RTX targets.
2. The bare script (benchmarks/bare_chain.py) and the factory (`snakemake --cores 1`, then again from empty artifacts
   with `--cores 2`; all validation, provenance and the report included), in turn, so that their ratio holds on a
   noisy machine.
3. For each zoo size: the full build, a no-op rerun against `snakemake --version` (the floor), `status` and
   `verify`, and Snakemake's main-process CPU per job; per stage, jobs' wall time and peak memory against the
   `mem_mb` their rules declare (from the jobs' own metrics files, scripts/engine_factory/jobs.py).

    python benchmarks/scale.py [--sizes 10 30 100] [--compare 10] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
# Snakemake in this process's child, reporting its own (main-process) CPU time at exit: the scheduler's cost.
SNAKEMAKE = [
    PY,
    "-c",
    "import atexit, resource, sys\n"
    "atexit.register(lambda: print('main-process-cpu-s', (lambda r: r.ru_utime + r.ru_stime)("
    "resource.getrusage(resource.RUSAGE_SELF)), file=sys.stderr))\n"
    "from snakemake.cli import main\nsys.argv[0] = 'snakemake'\nmain()",
    "-s",
    str(REPO / "Snakefile"),
    "--workflow-profile",
    str(REPO / "workflow/profiles/default"),
]
MEM_MB = {
    "freeze": 2000,
    "export": 2000,
    "golden": 2000,
    "simplify": 2000,
    "precision": 4000,
    "parity": 2000,
    "build": 4000,
    "validate": 2000,
    "report": 2000,
}  # what the rules declare (workflow/rules/*.smk)


def timed(cmd, **kw) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return time.perf_counter() - t, proc


def factory(zoo: Path, cores: int, *extra) -> dict:
    wall, proc = timed(
        [*SNAKEMAKE, "-d", str(zoo.parent), "--configfile", str(zoo), "--cores", str(cores), "--quiet", *extra],
        cwd=REPO,
    )
    if proc.returncode != 0:
        noise = ("Select jobs to execute", "Execute ", "Finished job", "localrule", "rule ", "    ")
        said = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(noise)]
        raise SystemExit(f"factory failed in {zoo.parent}:\n" + "\n".join(said[-40:]))
    cpu = [float(ln.split()[1]) for ln in proc.stderr.splitlines() if ln.startswith("main-process-cpu-s")]
    return {"wall_s": round(wall, 2), "main_process_cpu_s": round(cpu[-1], 2) if cpu else None}


def jobs_run(zoo: Path) -> int:
    return len(glob.glob(str(zoo.parent / "artifacts/benchmarks/*/*.tsv")))


def stage_table(zoo: Path) -> dict:
    out = {}
    for d in sorted(glob.glob(str(zoo.parent / "artifacts/benchmarks/*"))):
        rows = []
        for f in glob.glob(f"{d}/*.tsv"):
            rows.append([float(x) for x in Path(f).read_text().splitlines()[1].split("\t")])
        stage = os.path.basename(d)
        if rows:
            out[stage] = {
                "jobs": len(rows),
                "wall_s_total": round(sum(r[0] for r in rows), 2),
                "wall_s_mean": round(sum(r[0] for r in rows) / len(rows), 3),
                "peak_rss_mb": max(r[2] for r in rows),
                "mem_mb_declared": MEM_MB.get(stage),
            }
    return out


def clean(zoo: Path) -> None:
    for d in ("artifacts", ".snakemake"):
        shutil.rmtree(zoo.parent / d, ignore_errors=True)


def ops_times(zoo: Path) -> dict:
    floor, _ = timed([PY, "-m", "snakemake", "--version"])
    noop = factory(zoo, 2)
    st, proc = timed([PY, "-m", "engine_factory", "status", "-d", str(zoo.parent), "--configfile", str(zoo)], cwd=REPO)
    ve, proc2 = timed([PY, "-m", "engine_factory", "verify", "-d", str(zoo.parent)], cwd=REPO)
    return {
        "snakemake_version_s": round(floor, 2),
        "noop_rerun_s": noop["wall_s"],
        "status_s": round(st, 2),
        "status_exit": proc.returncode,
        "verify_s": round(ve, 2),
        "verify_exit": proc2.returncode,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", type=int, default=[10, 30, 100])
    ap.add_argument("--compare", type=int, default=10, help="zoo size of the side-by-side comparison")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from zoo_gen import write_zoo

    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
            "load_average_at_start": os.getloadavg(),
            "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        },  # other work on the machine skews all rows
        "compare": {},
        "scale": {},
    }
    tmp = tempfile.mkdtemp(prefix="engine-factory-bench-")  # kept when a run fails, for its logs
    zoo = write_zoo(
        Path(tmp) / f"zoo{a.compare}", a.compare, ["fp32", "fp16", "bf16", "int8", "fp8"], ["8.0", "8.6", "8.9", "12.0"]
    )
    bare_wall, proc = timed([PY, str(REPO / "benchmarks/bare_chain.py"), str(zoo), str(Path(tmp) / "bare")])
    if proc.returncode != 0:
        raise SystemExit(f"bare script failed:\n{proc.stderr[-3000:]}")
    c1 = factory(zoo, 1)
    c1["jobs"] = jobs_run(zoo)
    c1["stages"] = stage_table(zoo)
    clean(zoo)
    c2 = factory(zoo, 2)
    bare = json.loads(proc.stdout.strip().splitlines()[-1])
    result["machine"]["load_average_after_compare"] = os.getloadavg()
    result["compare"] = {
        "models": a.compare,
        "bare_script_s": round(bare_wall, 2),
        "bare_script": bare,
        "factory_cores1": c1,
        "factory_cores2": c2,
        "ratio_cores1": round(c1["wall_s"] / bare_wall, 2),
        "ratio_cores2": round(c2["wall_s"] / bare_wall, 2),
    }
    print(json.dumps(result["compare"], indent=1), flush=True)
    for n in a.sizes:
        zoo = write_zoo(
            Path(tmp) / f"scale{n}",
            n,  # its own folder: the comparison zoo is built already
            ["fp32", "fp16", "bf16", "int8", "fp8"],
            ["8.0", "8.6", "8.9", "12.0"],
        )
        full = factory(zoo, 2)
        jobs = jobs_run(zoo)
        plans = len(glob.glob(str(zoo.parent / "artifacts/*/plans/*/*/*/model.plan")))
        row = {
            "models": n,
            "plans": plans,
            "jobs": jobs,
            "full_build_cores2": full,
            "main_process_cpu_ms_per_job": round(1000 * full["main_process_cpu_s"] / max(jobs, 1), 1),
            **ops_times(zoo),
            "stages": stage_table(zoo),
        }
        result["scale"][n] = row
        print(json.dumps({k: v for k, v in row.items() if k != "stages"}), flush=True)
        clean(zoo)
    shutil.rmtree(tmp)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"{time.strftime('%Y-%m-%d')}-{platform.node() or 'host'}-scale.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(path)


if __name__ == "__main__":
    main()
