"""The baseline a plan's speed is compared with: the same ONNX variant in onnxruntime, on the GPU when
onnxruntime has its CUDA provider there, else on the CPU (said in the result, so no one mistakes the device)."""

from __future__ import annotations

import time

import numpy as np

from ..outcomes import Outcome


def onnxruntime_latency(onnx_path: str, feeds: dict, *, iterations: int = 50, warmup: int = 5) -> dict:
    import onnxruntime as ort

    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        wanted = {i.name for i in sess.get_inputs()}
        feeds = {k: v for k, v in feeds.items() if k in wanted}
        for _ in range(warmup):
            sess.run(None, feeds)
        times = []
        for _ in range(iterations):
            t = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t) * 1e3)
    except Exception as e:  # e.g. bf16 Conv on the CPU provider
        return {"status": Outcome.NOT_RUN, "reason": f"onnxruntime cannot run this variant: {str(e).splitlines()[0]}"}
    t = np.asarray(times)
    return {
        "status": "ran",
        "runtime": f"onnxruntime {ort.__version__}",
        "provider": sess.get_providers()[0],
        "note": "wall time of session.run, host<->device copies included",
        "latency_ms": {"p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)), "mean": float(t.mean())},
    }
