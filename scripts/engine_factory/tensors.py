"""Tensors shared by stages: seeded inputs from the config's input specs, onnxruntime runs, the golden file, and the
one output comparison (with its ONNX use, `onnx_parity`).

An input spec (config `models.<m>.inputs.<name>`) is
    {"dtype": "float32", "shape": ["batch", 3, 32, 32], "min": [1,3,32,32], "opt": [8,3,32,32], "max": [32,3,32,32]}
with optional `range: [low, high]` (the values the input takes: golden inputs follow it), for a shape-tensor
input (an int input that carries a shape, e.g. Expand's target), `values: {min, opt, max}` (the values themselves),
`batch_axis` (where the samples are: default 0, and none for a scalar; `null`: the input has no batch axis, e.g. a
sample rate or a fixed state, the same in every calibration batch) and `value` (such an input's fixed value).
"""

from __future__ import annotations

import re

import numpy as np

from .outcomes import Outcome


def batch_axis(spec: dict) -> int | None:
    """The axis an input's samples lie on (calibration data, calibration batches): the config's `batch_axis`, else
    0, or None (no batch axis) for a scalar."""
    if "batch_axis" in spec:
        return spec["batch_axis"]
    return 0 if spec.get("shape", spec.get("opt")) else None


def sample_count(data: dict[str, np.ndarray], input_specs: dict) -> int:
    """The samples that calibration data holds: the length of the first batched input's batch axis (1 when no
    input has one)."""
    for name, spec in input_specs.items():
        axis = batch_axis(spec)
        if axis is not None and name in data:
            return int(data[name].shape[axis])
    return 1


def step_batch(data: dict[str, np.ndarray], input_specs: dict) -> int:
    """Samples in one calibration step: the profile's opt batch of the first input with a batch axis (at most the
    sample count), else 1."""
    for spec in input_specs.values():
        axis = batch_axis(spec)
        if axis is not None:
            return max(1, min(int(spec["opt"][axis]), sample_count(data, input_specs)))
    return 1


def calibration_batches(data: dict[str, np.ndarray], input_specs: dict, batch: int) -> list[dict[str, np.ndarray]]:
    """Calibration data as the model's feeds, `batch` samples each: every batched input is cut along its own batch
    axis (a state `[2, N, 16]` on axis 1, not axis 0), an input without one (a sample rate, a fixed state) is the
    same array in every feed. ModelOpt's own splitter cuts every array along axis 0, so the factory hands it these
    feeds instead (its `calibration_data_reader`)."""
    n = sample_count(data, input_specs)
    # a batch axis of fixed size (a static model) takes feeds of exactly that size: basic-pitch's SavedModel, [1, N, 1]
    # in its config, refused AutoCast's 8-sample feeds; and a short last feed would not fit it
    sizes = [
        size
        for s in input_specs.values()
        if (a := batch_axis(s)) is not None
        and isinstance(size := (s.get("shape") or s.get("opt") or [None] * (a + 1))[a], int)
    ]
    fixed = bool(sizes)
    batch = min(sizes) if sizes else max(1, min(int(batch), n))  # fixed, and fewer samples: no feed fits
    feeds = []
    for start in range(0, n - batch + 1 if fixed else n, batch):
        feed = {}
        for name, spec in input_specs.items():
            axis = batch_axis(spec)
            a = data[name]
            if axis is None:
                feed[name] = a
            else:
                index = [slice(None)] * a.ndim
                index[axis] = slice(start, start + batch)
                feed[name] = np.ascontiguousarray(a[tuple(index)])
        feeds.append(feed)
    return feeds


def random_inputs(input_specs: dict, *, shape_key: str = "opt", seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs of each input's `shape_key` shape: uniform in the input's `range` where the config gives one
    (sqrt/log/pow of a standard normal is NaN: such a reference proves nothing), else standard normal for floats and
    small ints for ints; a shape-tensor input takes its configured `values` at `shape_key`, an input with a
    configured `value` (a sample rate, a zero state) that value."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, spec in input_specs.items():
        shape = tuple(int(d) for d in spec[shape_key])
        dtype = np.dtype(spec.get("dtype", "float32"))
        low, high = spec.get("range", (None, None))
        if spec.get("values"):
            feeds[name] = np.asarray(spec["values"][shape_key], dtype=dtype).reshape(shape)
        elif spec.get("value") is not None:
            feeds[name] = np.full(shape, spec["value"], dtype=dtype)
        elif dtype == np.bool_:
            feeds[name] = rng.integers(0, 2, size=shape).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            lo, hi = (0, 9) if low is None else (int(np.ceil(low)), int(np.floor(high)))
            feeds[name] = rng.integers(lo, hi + 1, size=shape).astype(dtype)
        elif low is not None:
            feeds[name] = rng.uniform(low, high, size=shape).astype(dtype)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _session_feeds(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds the session takes, each float array in the float type the model declares (golden inputs are
    float32 once a float64 model is cast at import; its source still declares double)."""
    types = {"tensor(double)": np.float64, "tensor(float)": np.float32, "tensor(float16)": np.float16}
    out = {}
    for i in sess.get_inputs():
        if i.name not in feeds:
            continue
        a = np.asarray(feeds[i.name])
        want = types.get(i.type)
        out[i.name] = a.astype(want) if want is not None and a.dtype.kind == "f" and a.dtype != want else a
    return out


def run_onnxruntime(onnx_path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an ONNX file (or an in-memory ModelProto) on onnxruntime's CPU provider; returns outputs by name."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # Extended/layout optimizations rewrite Q/DQ patterns and change fp8 results (measured: cosine 0.966 vs
    # 0.9999 for a good fp8 model; onnxruntime issues #24711, #25259). Basic optimizations do not.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    model = onnx_path.SerializeToString() if hasattr(onnx_path, "SerializeToString") else str(onnx_path)
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, _session_feeds(sess, feeds))
    return dict(zip(names, outs))


def output_metrics(actual: np.ndarray, expected: np.ndarray) -> dict:
    """max abs/rel error and cosine over the positions where both are finite; NaN (and inf of one sign) at the same
    positions in both counts as equal (a model whose reference itself holds NaN is matched, not failed); elsewhere
    `nonfinite_mismatch` counts where they differ."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return {"shape_mismatch": [list(a.shape), list(e.shape)]}
    same_nonfinite = (np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e))
    finite = np.isfinite(a) & np.isfinite(e)
    af, ef = a[finite], e[finite]
    diff = np.abs(af - ef)
    denom = np.linalg.norm(af) * np.linalg.norm(ef)
    metrics = {
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "max_rel": float((diff / np.maximum(np.abs(ef), 1e-6)).max()) if diff.size else 0.0,
        "cosine": float(np.dot(af, ef) / denom) if denom > 0 else float(np.array_equal(af, ef)),
        "finite": bool(np.isfinite(a).all()),
        "nonfinite_mismatch": int((~finite & ~same_nonfinite).sum()),
    }
    if not np.isfinite(e).all():
        metrics["expected_nonfinite"] = int((~np.isfinite(e)).sum())
    if e.ndim == 2 and e.shape[1] > 1 and finite.all():  # [batch, classes]: a classifier's top-1 agreement
        metrics["top1_agreement"] = float((a.argmax(1) == e.argmax(1)).mean())
    return metrics


def degenerate(expected: np.ndarray) -> str | None:
    """Why a golden output proves nothing when matched, or None: empty, every value the same (an untrained net's
    0.001 everywhere, a zeroed output) or no finite value at all."""
    e = np.asarray(expected)
    if e.size == 0:
        return "empty"
    if e.dtype.kind not in "fc":
        return "constant" if e.size > 1 and (e == e.flat[0]).all() else None
    finite = e[np.isfinite(e)]
    if finite.size == 0:
        return "no finite value"
    if e.size > 1 and finite.size == e.size and np.ptp(finite) <= 1e-7 * max(1.0, float(np.abs(finite).max())):
        return f"constant ({float(finite.flat[0]):.6g} everywhere)"
    return None


def degenerate_outputs(expected: dict) -> dict[str, str]:
    """{output: why} of the golden outputs whose match would prove nothing."""
    return {k: why for k, v in expected.items() if (why := degenerate(v))}


KINDS = ("classifier", "embedding", "boxes", "regression", "dense", "generic")
# What each kind is judged by beyond cosine (config/README "Tolerances"): a classifier by top-k agreement, an
# embedding by cosine alone (its arg-max means nothing), boxes/regression by the largest absolute error in the
# output's units, a dense map elementwise with a share of values allowed outside (`max_mismatch_fraction`).
_EMBEDDING_NAME = re.compile(r"emb|feat|vector|descriptor|hidden|latent|pool", re.I)
_BOX_NAME = re.compile(r"box|bbox|coord", re.I)
_CLASS_NAME = re.compile(r"logit|prob|score|class|cls|label", re.I)


def infer_kind(name: str, expected) -> str:
    """The output's task where its shape (and name) make it safe to say, else "generic" (atol/rtol and cosine):
    [..., N, 4] or a box-like name: boxes; [batch, C] with 2 <= C <= 1000: a classifier, unless its name says
    embedding/feature or its rows have unit length (an L2-normalised embedding; softmax rows sum to 1 instead);
    a float output of rank >= 3 with at least 1024 values: a dense map."""
    e = np.asarray(expected)
    if e.dtype.kind not in "fc" or e.ndim == 0:
        return "generic"
    if (e.ndim >= 2 and e.shape[-1] == 4 and e.ndim != 2) or (_BOX_NAME.search(name) and e.shape[-1:] == (4,)):
        return "boxes"
    if e.ndim == 2 and 2 <= e.shape[1] <= 1000:
        if _EMBEDDING_NAME.search(name) and not _CLASS_NAME.search(name):
            return "embedding"
        f = np.asarray(e, dtype=np.float64)
        if np.isfinite(f).all():
            sums, norms = f.sum(1), np.linalg.norm(f, axis=1)
            softmax = (f >= 0).all() and np.allclose(sums, 1, atol=1e-3)
            if not softmax and np.allclose(norms, 1, atol=1e-3):
                return "embedding"
        return "classifier"
    if e.ndim >= 3 and e.size >= 1024:
        return "dense"
    return "generic"


def _topk_agreement(a: np.ndarray, e: np.ndarray, k: int) -> float:
    """Share of rows whose golden arg-max is among the actual's k largest."""
    top = np.argsort(-a, axis=1)[:, :k]
    return float((top == e.argmax(1)[:, None]).any(1).mean())


def _judge(name: str, kind: str, actual, exp, m: dict, tol: dict) -> list[str]:
    """The failures of one output held to its kind's criteria (metrics `m` gain the kind's own figures)."""
    failures = []
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(exp, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(e)  # non-finite positions are judged by the caller
    if "atol" in tol and "rtol" in tol and kind not in ("embedding",):
        bad = both & (np.abs(np.where(both, a - e, 0)) > tol["atol"] + tol["rtol"] * np.abs(np.where(both, e, 0)))
        allowed = tol.get("max_mismatch_fraction", 0.0) if kind == "dense" else 0.0
        m["mismatch_fraction"] = float(bad.mean()) if bad.size else 0.0
        if bad.any() and m["mismatch_fraction"] > allowed:
            share = f" (more than the {allowed:g} allowed)" if allowed else ""
            failures.append(
                f"{name}: {int(bad.sum())} of {bad.size} values outside atol={tol['atol']} "
                f"rtol={tol['rtol']}{share} (max_abs {m['max_abs']:.3g})"
            )
    if "min_cosine" in tol and m["cosine"] < tol["min_cosine"]:
        failures.append(f"{name}: cosine {m['cosine']:.6f} < {tol['min_cosine']}")
    if kind in ("boxes", "regression"):
        limit = tol.get("max_abs_error")
        if limit is None:  # the output's units: 1 % of the golden's spread (a pixel-box of 640 px: 6.4 px)
            spread = float(np.ptp(e[np.isfinite(e)])) if np.isfinite(e).any() else 0.0
            limit = 0.01 * spread if spread > 0 else 1e-6
        m["max_abs_error_limit"] = limit
        if m["max_abs"] > limit:
            failures.append(f"{name}: max abs error {m['max_abs']:.4g} > {limit:.4g} ({kind}, in the output's units)")
    if kind == "classifier" and both.all():
        k = int(tol.get("top_k", 1))
        if k > 1:
            m[f"top{k}_agreement"] = _topk_agreement(a, e, k)
        agreement = m[f"top{k}_agreement"] if k > 1 else m.get("top1_agreement")
        if "min_top1_agreement" in tol and agreement is not None and agreement < tol["min_top1_agreement"]:
            failures.append(f"{name}: top-{k} agreement {agreement:.3f} < {tol['min_top1_agreement']}")
    return failures


def compare_outputs(actual: dict, expected: dict, tolerance: dict) -> dict:
    """Compare every expected output, each judged by its task kind; returns {"status": pass|fail, "reason",
    "outputs": {name: metrics (with "kind" and "kind_source": config|inferred)}}.

    `tolerance` keys (all optional): atol+rtol (elementwise, both needed), min_cosine, min_top1_agreement and top_k
    (classifiers), max_abs_error (boxes/regression), max_mismatch_fraction (dense maps), kind (one of KINDS). A
    per-output override lives under tolerance["outputs"][name]; a kind not given is inferred (`infer_kind`).
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
        configured = tol.get("kind")
        kind = configured or infer_kind(name, exp)
        m["kind"], m["kind_source"] = kind, "config" if configured else "inferred"
        if m["nonfinite_mismatch"]:
            e = np.asarray(exp)
            beyond = e.dtype == np.float64 and bool((np.abs(e[np.isfinite(e)]) > np.finfo(np.float32).max).any())
            failures.append(
                f"{name}: {m['nonfinite_mismatch']} non-finite value(s) where the reference differs"
                + (
                    " (the reference holds values beyond float32's range: a float32 model cannot reproduce them)"
                    if beyond
                    else ""
                )
            )
        failures += _judge(name, kind, actual[name], exp, m, tol)
    status = Outcome.FAIL if failures else Outcome.PASS
    result = {
        "status": status,
        "reason": "; ".join(failures) if failures else "all outputs within tolerance",
        "tolerance": tolerance,
        "outputs": per_output,
    }
    weak = degenerate_outputs({k: v for k, v in expected.items() if k in actual})
    if weak:  # a pass on these proves nothing: say so wherever the result is shown
        result["degenerate_golden"] = weak
        result["reason"] += "; degenerate golden (proves little): " + ", ".join(f"{k} {v}" for k, v in weak.items())
    return result


# ---------------------------------------------------------------------------------------------------- golden
def save_golden(path, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    """The golden file: inputs as "in/<name>", outputs as "out/<name>" in one npz (paths.GOLDEN)."""
    np.savez(path, **{f"in/{k}": v for k, v in inputs.items()}, **{f"out/{k}": v for k, v in outputs.items()})


def _npy_header(fp) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the .npy header at the start of `fp` (a file or a zip member's stream): the magic and
    a header of at most numpy's 10,000 bytes are read, nothing of the data."""
    from numpy.lib import format as npy

    version = npy.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(fp)
    else:  # 3.0 (utf-8 field names; numpy writes it only when it must): numpy reads it with its private reader
        from numpy.lib import _format_impl

        shape, _, dtype = _format_impl._read_array_header(fp, version)
    return tuple(int(d) for d in shape), np.dtype(dtype)


def array_headers(path) -> dict[str | None, tuple[tuple[int, ...], np.dtype]]:
    """{name: (shape, dtype)} of every array an .npz holds ({None: ...} for an .npy), read from the .npy headers
    alone, without decompressing any data: what loading the file would allocate is known before anything is
    loaded (an .npz of 17 GB of zeros is 17 MB on disk). Told apart by their magic, as np.load does. Raises
    ValueError naming the array for a member that is no .npy array (np.load would read it whole, as bytes)."""
    import zipfile

    from numpy.lib import format as npy

    with open(path, "rb") as f:
        magic = f.read(len(npy.MAGIC_PREFIX))
        f.seek(0)
        if magic == npy.MAGIC_PREFIX:
            return {None: _npy_header(f)}
    headers = {}
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            name = member.removesuffix(".npy")
            with z.open(member) as stream:
                if stream.read(len(npy.MAGIC_PREFIX)) != npy.MAGIC_PREFIX:
                    raise ValueError(f"member '{member}' is not a .npy array")
                stream.seek(0)  # re-reads the few bytes decompressed so far, as np.load does
                try:
                    headers[name] = _npy_header(stream)
                except ValueError as e:
                    raise ValueError(f"array '{name}': {e}") from None
    return headers


def declared_nbytes(shape, dtype) -> int:
    """The bytes an array of `shape` and `dtype` takes in memory."""
    n = 1
    for d in shape:
        n *= int(d)
    return n * np.dtype(dtype).itemsize


def load_golden(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    with np.load(path) as z:
        ins = {k[3:]: z[k] for k in z.files if k.startswith("in/")}
        outs = {k[4:]: z[k] for k in z.files if k.startswith("out/")}
    return ins, outs


def onnx_parity(onnx_path: str, golden_path: str, tolerance: dict) -> dict:
    """Run one ONNX file in onnxruntime (CPU) on the golden inputs and compare with the golden outputs."""
    inputs, expected = load_golden(golden_path)
    try:
        actual = run_onnxruntime(onnx_path, inputs)
    except Exception as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "NOT_IMPLEMENTED" in message or "Could not find an implementation" in message:
            # e.g. bf16 Conv: onnxruntime's CPU provider has no kernel for it. The model may be fine.
            return {"status": Outcome.NOT_RUN, "reason": f"onnxruntime CPU cannot run this model: {message}"}
        return {"status": Outcome.FAIL, "reason": f"onnxruntime failed: {message}"}
    return compare_outputs(actual, expected, tolerance)
