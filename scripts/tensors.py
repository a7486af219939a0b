"""Tensors shared by stages: seeded inputs from the config's input specs, onnxruntime runs, output comparison.

An input spec (config `models.<m>.inputs.<name>`) is
    {"dtype": "float32", "shape": ["batch", 3, 32, 32], "min": [1,3,32,32], "opt": [8,3,32,32], "max": [32,3,32,32]}
"""
from __future__ import annotations

import numpy as np

DEFAULT_TOLERANCES = {
    # Elementwise |a-g| <= atol + rtol*|g| on every output, plus cosine similarity; classifier outputs also
    # need top-1 agreement. Quantized variants are judged at task level (cosine, top-1), not elementwise.
    "fp32": {"atol": 1e-4, "rtol": 1e-3, "min_cosine": 0.9999},
    "fp16": {"atol": 1e-2, "rtol": 1e-2, "min_cosine": 0.999},
    "bf16": {"atol": 5e-2, "rtol": 5e-2, "min_cosine": 0.995},
    "int8": {"min_cosine": 0.98, "min_top1_agreement": 0.9},
    "fp8": {"min_cosine": 0.97, "min_top1_agreement": 0.85},
}


def random_inputs(input_specs: dict, *, shape_key: str = "opt", seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs of each input's `shape_key` shape (standard normal for floats, small ints for ints)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, spec in input_specs.items():
        shape = tuple(int(d) for d in spec[shape_key])
        dtype = np.dtype(spec.get("dtype", "float32"))
        if np.issubdtype(dtype, np.integer):
            feeds[name] = rng.integers(0, 10, size=shape).astype(dtype)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def run_onnxruntime(onnx_path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an ONNX file on onnxruntime's CPU provider; returns outputs by name."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # Extended/layout optimizations rewrite Q/DQ patterns and change fp8 results (measured: cosine 0.966 vs
    # 0.9999 for a good fp8 model; onnxruntime issues #24711, #25259). Basic optimizations do not.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    outs = sess.run(names, {k: v for k, v in feeds.items() if k in wanted})
    return dict(zip(names, outs))


def output_metrics(actual: np.ndarray, expected: np.ndarray) -> dict:
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return {"shape_mismatch": [list(a.shape), list(e.shape)]}
    diff = np.abs(a - e)
    denom = np.linalg.norm(a) * np.linalg.norm(e)
    metrics = {
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "max_rel": float((diff / np.maximum(np.abs(e), 1e-6)).max()) if diff.size else 0.0,
        "cosine": float(np.dot(a.ravel(), e.ravel()) / denom) if denom > 0 else float(np.array_equal(a, e)),
        "finite": bool(np.isfinite(a).all()),
    }
    if e.ndim == 2 and e.shape[1] > 1:  # [batch, classes]: treat as a classifier for top-1 agreement
        metrics["top1_agreement"] = float((a.argmax(1) == e.argmax(1)).mean())
    return metrics


def compare_outputs(actual: dict, expected: dict, tolerance: dict) -> dict:
    """Compare every expected output; returns {"status": pass|fail, "reason", "outputs": {name: metrics}}.

    `tolerance` keys (all optional): atol+rtol (elementwise, both needed), min_cosine, min_top1_agreement
    (only applied to [batch, classes] outputs). A per-output override lives under tolerance["outputs"][name].
    """
    failures, per_output = [], {}
    for name, exp in expected.items():
        tol = {**{k: v for k, v in tolerance.items() if k != "outputs"}, **tolerance.get("outputs", {}).get(name, {})}
        if name not in actual:
            failures.append(f"{name}: missing from the outputs")
            continue
        m = output_metrics(actual[name], exp)
        per_output[name] = m
        if "shape_mismatch" in m:
            failures.append(f"{name}: shape {m['shape_mismatch'][0]} != expected {m['shape_mismatch'][1]}")
            continue
        if not m["finite"]:
            failures.append(f"{name}: non-finite values")
        if "atol" in tol and "rtol" in tol:
            a = np.asarray(actual[name], dtype=np.float64)
            e = np.asarray(exp, dtype=np.float64)
            bad = np.abs(a - e) > tol["atol"] + tol["rtol"] * np.abs(e)
            if bad.any():
                failures.append(f"{name}: {int(bad.sum())} of {bad.size} values outside atol={tol['atol']} "
                                f"rtol={tol['rtol']} (max_abs {m['max_abs']:.3g})")
        if "min_cosine" in tol and m["cosine"] < tol["min_cosine"]:
            failures.append(f"{name}: cosine {m['cosine']:.6f} < {tol['min_cosine']}")
        if "min_top1_agreement" in tol and "top1_agreement" in m and m["top1_agreement"] < tol["min_top1_agreement"]:
            failures.append(f"{name}: top-1 agreement {m['top1_agreement']:.3f} < {tol['min_top1_agreement']}")
    status = "fail" if failures else "pass"
    return {"status": status, "reason": "; ".join(failures) if failures else "all outputs within tolerance",
            "tolerance": tolerance, "outputs": per_output}
