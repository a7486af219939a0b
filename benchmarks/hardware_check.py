#!/usr/bin/env python3
"""What a GPU host can show of the factory's GPU-side code, for real (run on the lent H100; see docs/hardware-runs.md).

    python3 benchmarks/hardware_check.py cuda OUT.json   # host probe, cuda-python + pycuda round trips, golden on GPU
    python3 benchmarks/hardware_check.py rtx OUT.json    # TensorRT-RTX plan built there, then the runtime path on it

Each part prints and writes a JSON of what it saw. Nothing here turns a refusal into a pass.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def part_cuda() -> dict:
    from engine_factory.backends.runtime import memory_round_trip
    from engine_factory.demo import make_asset
    from engine_factory.host import probe_host
    from engine_factory.tensors import load_golden
    from engine_factory.validation.golden import make_golden

    host = probe_host()
    result = {"host": host, "round_trips": {}}
    for kind in ("cuda-python", "pycuda"):
        try:
            result["round_trips"][kind] = memory_round_trip(kind, 0)
        except Exception as e:
            result["round_trips"][kind] = {"error": f"{type(e).__name__}: {e}"}
    tmp = Path(tempfile.mkdtemp())
    make_asset(str(tmp / "tiny_cnn.pth"))
    specs = {
        "x": {
            "dtype": "float32",
            "shape": ["batch", 3, 32, 32],
            "min": [1, 3, 32, 32],
            "opt": [8, 3, 32, 32],
            "max": [32, 3, 32, 32],
        }
    }
    source = {
        "framework": "pytorch",
        "kind": "checkpoint",
        "path": str(tmp / "tiny_cnn.pth"),
        "model_ref": "engine_factory.demo.models:TinyCNN",
    }
    golden = {}
    for device in ("cpu", "cuda"):
        t = time.perf_counter()
        make_golden(
            str(tmp / f"{device}.npz"),
            model="tiny_cnn",
            source=source,
            input_specs=specs,
            outputs=["logits"],
            seed=0,
            device=device,
        )
        golden[device] = {
            "seconds": round(time.perf_counter() - t, 3),
            "outputs": load_golden(str(tmp / f"{device}.npz"))[1],
        }
    diff = np.abs(golden["cuda"]["outputs"]["logits"] - golden["cpu"]["outputs"]["logits"])
    result["golden"] = {
        "cpu_s": golden["cpu"]["seconds"],
        "cuda_s": golden["cuda"]["seconds"],
        "max_abs_cuda_vs_cpu": float(diff.max()),
        "shape": list(diff.shape),
    }
    return result


def part_rtx() -> dict:
    import torch

    from engine_factory.backends import build_plan, load_backend
    from engine_factory.backends.header import check_plan_header
    from engine_factory.backends.runtime import execute_plan
    from engine_factory.host import probe_host
    from engine_factory.precisions import DEFAULT_TOLERANCES
    from engine_factory.tensors import random_inputs

    host = probe_host()
    backend = load_backend("tensorrt_rtx")
    tmp = Path(tempfile.mkdtemp())
    from engine_factory.demo.models import TinyCNN

    torch.manual_seed(0)
    net = TinyCNN().eval()
    torch.onnx.export(
        net,
        (torch.zeros(2, 3, 32, 32),),
        str(tmp / "m.onnx"),
        dynamo=False,
        opset_version=18,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}},
    )
    specs = {
        "x": {
            "dtype": "float32",
            "shape": ["batch", 3, 32, 32],
            "min": [1, 3, 32, 32],
            "opt": [8, 3, 32, 32],
            "max": [32, 3, 32, 32],
        }
    }
    feeds = random_inputs(specs, seed=0)
    with torch.no_grad():
        expected = {"logits": net(torch.from_numpy(feeds["x"])).numpy()}
    result = {"host_gpus": host["gpus"], "backend": backend.key, "plans": {}}
    for cc in ("8.9", None):  # a plan for sm89; and one with RTX's default target set (no 9.0 in it either)
        plan = tmp / f"{cc or 'default'}.plan"
        facts = build_plan(
            backend.module,
            str(tmp / "m.onnx"),
            str(plan),
            model="tiny_cnn",
            input_profiles={"x": {k: specs["x"][k] for k in ("min", "opt", "max")}},
            compute_capability=cc,
            log=lambda *a: None,
        )
        header = check_plan_header(
            str(plan), backend="rtx", version=backend.version, compute_capability=cc or "8.9", host=host
        )
        by_key = execute_plan(
            str(plan),
            backend="tensorrt_rtx",
            compute_capability=cc or "8.9",
            inputs=feeds,
            expected=expected,
            tolerance=DEFAULT_TOLERANCES["fp32"],
            host=host,
        )
        # Ask the runtime anyway, on the GPU that is here: TensorRT-RTX's own refusal is the answer to record.
        on_this_gpu = execute_plan(
            str(plan),
            backend="tensorrt_rtx",
            compute_capability=None,
            inputs=feeds,
            expected=expected,
            tolerance=DEFAULT_TOLERANCES["fp32"],
            host=host,
        )
        result["plans"][cc or "default"] = {
            "build_seconds": facts.get("build_seconds"),
            "header": header,
            "execution_for_its_key": by_key,
            "execution_on_this_gpu": on_this_gpu,
        }
    return result


if __name__ == "__main__":
    part, out = sys.argv[1], sys.argv[2]
    result = {
        "part": part,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **(part_cuda() if part == "cuda" else part_rtx()),
    }
    text = json.dumps(result, indent=1, default=str)
    Path(out).write_text(text)
    print(text)
