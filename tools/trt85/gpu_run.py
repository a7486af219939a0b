"""On the GPU machine (no Snakemake there): run the build and validate jobs of tools/trt85/prepare_zoo.py's job list
with the factory's own stage code (engine_factory.stages.run, what every rule runs), TensorRT 8.5 from
/tmp/trt/site (tools/trt85/unpack.sh), then PyTorch eager (CUDA events) and onnxruntime (its CPU provider: the
only one there) on the same golden inputs, for comparison with the plans' latency.

    PYTHONPATH=scripts:/tmp/trt/site python3 tools/trt85/gpu_run.py CARRY OUT
Writes OUT/summary.json (one entry per job: status, seconds, error; `ready` on each Triton repository),
OUT/results.tar.gz (validation files, provenance sidecars, the plans' first bytes, the Triton repositories' configs)
and OUT/triton.tar.gz (the repositories whole). The build, validate and deploy jobs run there; the report, from
these files, here (tools/trt85/report_here.py).
"""

import io
import json
import os
import shutil
import sys
import tarfile
import time
import traceback
from pathlib import Path

import numpy as np


def run_jobs(jobs, progress=None):
    from engine_factory.stages import run

    done = []
    for j in jobs:
        w = j["io"].get("wildcards") or j["settings"]  # deploy jobs: no wildcards, the settings name them
        started = time.perf_counter()
        entry = {"stage": j["stage"], **{k: w[k] for k in ("model", "precision")}}
        try:
            facts = run(j["stage"], {**j["io"], "params": j["settings"]})
            entry.update(status="ok", facts=json.loads(json.dumps(facts, default=str)))
        except BaseException as e:  # a failed job is a result; the next one runs
            entry.update(status="error", error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-3000:])
        entry["seconds"] = round(time.perf_counter() - started, 3)
        print(
            json.dumps(
                {k: entry[k] for k in ("stage", "model", "precision", "status", "seconds")}
                | ({"error": entry["error"][:400]} if "error" in entry else {})
            ),
            flush=True,
        )
        done.append(entry)
        if progress:  # what ran so far comes back even if the call runs out of time
            progress(done)
    return done


def baselines(jobs, iterations=100, warmup=10):
    """PyTorch eager on the GPU (the PyTorch demo models) and onnxruntime CPU on the fp32 ONNX, golden inputs."""
    import onnxruntime as ort
    import torch

    from engine_factory.tensors import load_golden

    out = {}
    for j in jobs:
        if j["stage"] != "build" or j["io"]["wildcards"]["precision"] != "fp32":
            continue
        model = j["io"]["wildcards"]["model"]
        ins, _ = load_golden(j["io"]["inputs"]["golden"])
        feeds = {k: np.ascontiguousarray(v) for k, v in ins.items()}
        res = {"batch": int(next(iter(feeds.values())).shape[0])}
        sess = ort.InferenceSession(j["io"]["inputs"]["onnx"], providers=["CPUExecutionProvider"])
        for _ in range(3):
            sess.run(None, feeds)
        t = []
        for _ in range(20):
            s = time.perf_counter()
            sess.run(None, feeds)
            t.append((time.perf_counter() - s) * 1000)
        res["onnxruntime_cpu_ms"] = {"p50": float(np.percentile(t, 50)), "p99": float(np.percentile(t, 99))}
        ckpt = Path(f"artifacts/demo/{model}.pth")
        cls = {"tiny_cnn": "TinyCNN", "two_tower": "TwoTower"}.get(model)
        if ckpt.exists() and cls:
            from engine_factory.demo import models as demo

            net = getattr(demo, cls)()
            net.load_state_dict(torch.load(ckpt, map_location="cpu"))
            net = net.cuda().eval()
            for label, dtype in (("torch_eager_cuda_ms", torch.float32), ("torch_eager_cuda_fp16_ms", torch.float16)):
                m = net.to(dtype)
                args = [torch.from_numpy(v).cuda().to(dtype) for v in feeds.values()]
                with torch.inference_mode():
                    for _ in range(warmup):
                        m(*args)
                    torch.cuda.synchronize()
                    times = []
                    for _ in range(iterations):
                        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        a.record()
                        m(*args)
                        b.record()
                        torch.cuda.synchronize()
                        times.append(a.elapsed_time(b))
                res[label] = {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}
        else:
            res["torch_eager_cuda_ms"] = "not-run: an ONNX model (no PyTorch module)"
        out[model] = res
    return out


def ready() -> dict:
    """`ready` on every Triton repository written here: this host's GPU and TensorRT against each plan's header."""
    import subprocess

    found = {}
    for d in sorted(Path("artifacts/triton").glob("*/config.pbtxt")):
        proc = subprocess.run(
            [sys.executable, "-m", "engine_factory", "ready", str(d.parent), "--json"], capture_output=True, text=True
        )
        found[d.parent.name] = {"exit": proc.returncode, "output": (proc.stdout or proc.stderr)[-3000:]}
    return found


def main(carry: Path, out: Path):
    spec = json.loads((carry / "jobs.json").read_text())
    work = Path("/tmp/work")
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(carry, work)
    os.chdir(work)
    import tensorrt

    print("tensorrt", tensorrt.__version__, flush=True)
    order = {"build": 0, "validate": 1, "deploy": 2, "report": 3}  # as the workflow orders them
    # the report needs altair and vl-convert (33 MB), which the machine lacks: it is written here from what comes back
    jobs = sorted((j for j in spec["jobs"] if j["stage"] != "report"), key=lambda j: order[j["stage"]])
    if models := os.environ.get("GPU_RUN_MODELS"):  # a shorter run: these models' jobs only (comma-separated)
        keep = set(models.split(","))
        jobs = [j for j in jobs if (j["settings"].get("model") or j["io"].get("wildcards", {}).get("model")) in keep]
    summary = {"tensorrt": tensorrt.__version__}

    def progress(done):
        (out / "summary.json").write_text(json.dumps({**summary, "jobs": done}, indent=1, default=str))

    summary["jobs"] = run_jobs(jobs, progress)
    try:
        if os.environ.get("GPU_RUN_BASELINES", "1") == "0":
            raise RuntimeError("skipped (GPU_RUN_BASELINES=0)")
        summary["baselines"] = baselines(jobs)
    except Exception as e:
        summary["baselines"] = f"failed: {type(e).__name__}: {e}"
    summary["ready"] = ready()
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        for p in sorted(Path("artifacts").rglob("*")):
            if p.is_file() and (
                p.suffix in (".json", ".log", ".tsv")
                and "validation" in p.parts
                or p.name.endswith(".provenance.json")
                or p.name.endswith(".intoto.json")
                or "logs" in p.parts
            ):
                tar.add(p)
            elif "triton" in p.parts and p.suffix != ".plan":
                tar.add(p)
            elif p.suffix == ".plan":  # the header only: the plans stay on the machine
                head = p.read_bytes()[:64]
                info = tarfile.TarInfo(str(p) + ".head")
                info.size = len(head)
                tar.addfile(info, io.BytesIO(head))
    with tarfile.open(out / "triton.tar.gz", "w:gz") as tar:  # the repositories whole, plans included
        if Path("artifacts/triton").is_dir():
            tar.add("artifacts/triton")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
