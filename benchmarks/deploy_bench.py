"""Deploy timings: the deploy test zoo (tests/deploy/triton_zoo.py: three small ONNX models, fp32 + one fp16, two
TensorRT-RTX targets) built from nothing in a temporary folder, then the deploy stage per repository (from each
job's stage-metrics line), `python -m engine_factory ready`, `python -m engine_factory verify` and the import of
Triton's schema. Writes results/<date>-<host>-deploy.json.

    .venv/bin/python benchmarks/deploy_bench.py [--repeat 5]
"""

import argparse
import datetime
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "deploy")]


def timed(cmd, env=None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, env=env, check=False, cwd=REPO)
    return time.perf_counter() - t


def main() -> None:
    from triton_zoo import write_zoo

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        zoo, work = write_zoo(Path(tmp) / "zoo"), Path(tmp) / "work"
        work.mkdir()
        t = time.perf_counter()
        subprocess.run(
            [
                py,
                "-m",
                "snakemake",
                "-s",
                str(REPO / "Snakefile"),
                "--workflow-profile",
                str(REPO / "workflow/profiles/default"),
                "--directory",
                str(work),
                "--configfile",
                str(zoo),
                "--cores",
                "2",
            ],
            check=True,
            capture_output=True,
        )
        full = time.perf_counter() - t
        stages = {}
        for log in sorted((work / "artifacts/logs/deploy").glob("*.log")):
            m = re.search(r"stage-metrics: (\{.*\})", log.read_text())
            stages[log.stem] = json.loads(m.group(1))
        host = Path(tmp) / "host.json"
        host.write_text(json.dumps({"gpus": [{"index": 0, "name": "simulated", "compute_capability": "8.6"}]}))
        env = {**os.environ, "FACTORY_HOST_FACTS": str(host)}
        repo = work / "artifacts/triton/dyn_fp32"
        ready = [timed([py, "-m", "engine_factory", "ready", str(repo), "--json"], env) for _ in range(args.repeat)]
        verify = [timed([py, "-m", "engine_factory", "verify", "-d", str(work)]) for _ in range(args.repeat)]
        schema = [timed([py, "-c", "import tritonclient.grpc.model_config_pb2"]) for _ in range(args.repeat)]
        bare = [timed([py, "-c", "pass"]) for _ in range(args.repeat)]
    result = {
        "date": datetime.date.today().isoformat(),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "full_run_s": round(full, 2),
        "deploy_stage": stages,
        "ready_cli_s_median": round(statistics.median(ready), 3),
        "verify_cli_s_median": round(statistics.median(verify), 3),
        "import_triton_schema_s_median": round(statistics.median(schema), 3),
        "python_start_s_median": round(statistics.median(bare), 3),
        "repeat": args.repeat,
    }
    out = REPO / "benchmarks" / "results" / f"{result['date']}-{result['host']}-deploy.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
