"""Precision variants as ONNX files (strongly typed builds take the precision from the ONNX).

fp32 is a copy; fp16/bf16 come from ModelOpt's AutoCast (I/O types kept); int8/fp8 are ModelOpt Q/DQ models
calibrated on the user's data. ModelOpt always runs in a child process: it monkeypatches onnxruntime's
quantization classes and rewrites files beside its input, so the parent stays clean (and can run the fallbacks,
onnxconverter-common for fp16 and onnxruntime's quantize_static for int8, unpatched). Each result must pass
onnx.checker and keep the source's I/O names, types and dynamic dims before it is written to `dst`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import FactoryError
from .simplify import _version, io_problem, load_checked

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")
QUANTIZED = ("int8", "fp8")
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- calibration data

def load_calibration(path, input_specs: dict, *, model: str) -> dict[str, np.ndarray]:
    """Calibration inputs by name, cast to each input's dtype: an .npz (arrays named like the inputs), a single
    .npy (one-input models), or a directory of such files concatenated on the batch (first) axis."""
    p = Path(path)
    key = f"models.{model}.calibration"
    if not p.exists():
        raise FactoryError("calibration data not found", model=model, path=str(p), key=key)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in (".npy", ".npz"))
        if not files:
            raise FactoryError("the calibration directory holds no .npy or .npz file", model=model, path=str(p),
                               key=key)
    else:
        files = [p]
    parts = [_read_calibration_file(f, input_specs, model=model, key=key) for f in files]
    return {name: np.concatenate([part[name] for part in parts]) if len(parts) > 1 else parts[0][name]
            for name in input_specs}


def _read_calibration_file(f: Path, input_specs: dict, *, model: str, key: str) -> dict[str, np.ndarray]:
    def error(msg):
        return FactoryError(msg, model=model, path=str(f), key=key)

    if f.suffix not in (".npy", ".npz"):
        raise error("calibration data must be an .npz, an .npy or a directory of them")
    if f.suffix == ".npy" and len(input_specs) != 1:
        raise error(f"a .npy holds one array but the model has inputs {list(input_specs)}: use an .npz with "
                    "arrays named like the inputs")
    try:
        if f.suffix == ".npy":
            arrays = {next(iter(input_specs)): np.load(f, allow_pickle=False)}
        else:
            with np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise error(f"cannot read calibration data ({type(e).__name__}: {e})")
    out, samples = {}, {}
    for name, spec in input_specs.items():
        if name not in arrays:
            raise error(f"input '{name}' is missing from the calibration data (arrays there: {sorted(arrays)})")
        a = arrays[name]
        want = np.dtype(spec.get("dtype", "float32"))
        if a.dtype.kind != want.kind and not (want.kind in "iu" and a.dtype.kind in "iu"):
            raise error(f"input '{name}' has dtype {a.dtype} in the calibration data; the input is {want}")
        opt, decl = spec["opt"], spec.get("shape", spec["opt"])
        layout = ["N", *decl[1:]]
        if a.ndim != len(opt):
            raise error(f"input '{name}' has shape {list(a.shape)} in the calibration data; expected rank "
                        f"{len(opt)} like {layout} (samples on the first axis)")
        for i in range(1, a.ndim):
            lo, hi = (spec["min"][i], spec["max"][i]) if "min" in spec and "max" in spec else (opt[i], opt[i])
            ok = a.shape[i] == decl[i] if isinstance(decl[i], int) else lo <= a.shape[i] <= hi
            if not ok:
                raise error(f"input '{name}' has shape {list(a.shape)} in the calibration data; dim {i} must be "
                            f"{decl[i] if isinstance(decl[i], int) else f'in [{lo}, {hi}]'} (expected {layout})")
        if a.shape[0] < 1:
            raise error(f"input '{name}' has no samples in the calibration data")
        samples[name] = a.shape[0]
        out[name] = np.ascontiguousarray(a, dtype=want)
    if len(set(samples.values())) > 1:
        raise error(f"inputs have different sample counts in the calibration data: {samples}")
    return out


def calibration_facts(path, data: dict[str, np.ndarray]) -> dict:
    """Hashes that key a calibrated variant: of the arrays (names sorted; dtype, shape, bytes) and of the file(s)."""
    h = hashlib.sha256()
    for name in sorted(data):
        a = np.ascontiguousarray(data[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    p = Path(path)
    if p.is_dir():
        fh = hashlib.sha256()
        for f in sorted(x for x in p.iterdir() if x.is_file() and x.suffix in (".npy", ".npz")):
            fh.update(f"{f.name}\0{_file_sha256(f)}\n".encode())
        file_sha = fh.hexdigest()
    else:
        file_sha = _file_sha256(p)
    return {"path": str(p), "file_sha256": file_sha, "data_sha256": h.hexdigest(),
            "samples": int(next(iter(data.values())).shape[0]),
            "shapes": {k: list(v.shape) for k, v in data.items()}}


def _file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- variants

def make_precision_variant(src, dst, precision: str, *, model: str, input_specs: dict, calibration_path=None,
                           seed: int = 0) -> dict:
    """Write the `precision` variant of `src` to `dst` (atomically); returns facts (tool, attempts, hashes...)."""
    if precision not in PRECISIONS:
        raise FactoryError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})", model=model,
                           key="precisions")
    source = load_checked(src, model=model)
    facts: dict = {"precision": precision}
    if precision in QUANTIZED and not calibration_path:
        raise FactoryError(f"{precision} needs calibration data (an .npz, .npy or directory)", model=model,
                           key=f"models.{model}.calibration")
    calib = None
    if calibration_path and precision != "fp32":
        calib = load_calibration(calibration_path, input_specs, model=model)
        facts["calibration"] = calibration_facts(calibration_path, calib)
    if precision == "fp32":
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return {**facts, "tool": "copy", "attempts": []}

    # All tool output goes to a private temp dir; only the checked result is copied (atomically) to dst.
    with tempfile.TemporaryDirectory(prefix=f"precision-{precision}-") as work:
        attempts, result = [], None
        for tool, fn_name in TOOLS[precision]:
            d = Path(work) / tool
            d.mkdir()
            shutil.copyfile(src, d / "source.onnx")  # ModelOpt rewrites files beside its input: give it a copy
            out, t0 = d / "out.onnx", time.perf_counter()
            try:
                globals()[fn_name](d / "source.onnx", out, precision, calib, input_specs)  # by name: patchable
                problem = check_variant(out, source)
            except Exception as e:
                problem = f"{type(e).__name__}: {e}"
            attempts.append({"tool": tool, "status": "failed" if problem else "ok",
                             "reason": problem[-800:] if problem else "valid ONNX, I/O kept",
                             "seconds": round(time.perf_counter() - t0, 2)})
            if not problem:
                result = out
                break
        if result is None:
            raise FactoryError(f"no tool could make the {precision} variant: "
                               + "; ".join(f"{a['tool']}: {a['reason']}" for a in attempts), model=model,
                               path=str(src))
        tool = attempts[-1]["tool"]
        facts.update(tool=tool, tool_version=_version(PACKAGES[tool]), attempts=attempts,
                     **describe_variant(result, precision))
        facts["parity_vs_source"] = parity(result, src, input_specs, seed=seed)
        with atomic_path(dst) as tmp:
            shutil.copyfile(result, tmp)
    return facts


def check_variant(path, source) -> str | None:
    """Why the variant at `path` is unusable (checker, I/O names/types/dims vs the source), or None."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:
        return f"onnx.checker: {e}"
    return io_problem(source, onnx.load(str(path), load_external_data=False))


LOW_TYPES = {"fp16": 10, "bf16": 16}  # onnx.TensorProto.FLOAT16, BFLOAT16


def describe_variant(path, precision: str) -> dict:
    """What the variant holds: opset, op counts, initializer dtypes, Q/DQ nodes and their dtype; warnings when
    nothing was converted (ModelOpt skips layers it deems not worth it, e.g. fp8 convs with <= 16 channels)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    name = onnx.TensorProto.DataType.Name
    ops = Counter(n.op_type for n in proto.graph.node)
    inits = Counter(name(i.data_type) for i in proto.graph.initializer)
    facts = {"opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
             "nodes": len(proto.graph.node), "initializer_dtypes": dict(inits), "warnings": []}
    if precision in LOW_TYPES:
        low = sum(i.data_type == LOW_TYPES[precision] for i in proto.graph.initializer) + sum(
            1 for n in proto.graph.node if n.op_type == "Cast" and any(
                a.name == "to" and a.i == LOW_TYPES[precision] for a in n.attribute))
        facts["low_precision_tensors"] = low
        if not low:
            facts["warnings"].append(f"no {precision} tensor in the result: the variant computes in fp32")
    else:
        inits_by_name = {i.name: i for i in proto.graph.initializer}
        qtypes = Counter()
        for n in proto.graph.node:
            if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits_by_name:
                qtypes[name(inits_by_name[n.input[2]].data_type)] += 1  # the zero point carries the type
        facts.update(quantize_nodes=ops["QuantizeLinear"], dequantize_nodes=ops["DequantizeLinear"],
                     quantized_dtypes=dict(qtypes))
        if not ops["DequantizeLinear"]:
            facts["warnings"].append(f"no Q/DQ node in the result: the tool found no layer worth {precision}")
    return facts


def parity(variant, source, input_specs: dict, *, seed: int = 0) -> dict:
    """Variant vs source in onnxruntime (CPU) on seeded opt-shape inputs; "not-run" with the reason when
    onnxruntime cannot run the variant (e.g. bf16 Conv has no CPU kernel)."""
    from .tensors import output_metrics, random_inputs

    feeds = random_inputs(input_specs, shape_key="opt", seed=seed)
    try:
        expected, actual = run_ort_basic(source, feeds), run_ort_basic(variant, feeds)
    except Exception as e:
        return {"status": "not-run", "reason": f"onnxruntime CPU cannot run it: {str(e).strip()[:300]}"}
    return {"status": "measured", "outputs": {k: output_metrics(actual[k], v) for k, v in expected.items()}}


def run_ort_basic(path, feeds: dict) -> dict:
    """onnxruntime CPU with basic graph optimizations only. Measured (ort 1.32): the level-2 Q/DQ fusions change
    results of Q/DQ models, badly for fp8 (cosine 0.87 vs 0.9999 for a small CNN); basic equals no optimization."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {i.name: feeds[i.name] for i in sess.get_inputs()})))


# ---------------------------------------------------------------- tools

def run_modelopt(src: Path, out: Path, precision: str, calib, input_specs: dict) -> None:
    """ModelOpt in a child process (see the module doc); its log tail becomes the error on failure."""
    spec = {"src": str(src), "out": str(out), "precision": precision, "calib": None}
    if calib is not None:
        spec["calib"] = str(src.parent / "calib.npz")
        np.savez(spec["calib"], **calib)
    (src.parent / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", "import sys; from scripts.precision import _modelopt_child as c; "
                           "c(sys.argv[1])", str(src.parent / "spec.json")], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise RuntimeError(f"ModelOpt exited with {proc.returncode}: " + "\n".join(lines[-6:]))


def _modelopt_child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    calib = None
    if spec["calib"]:
        with np.load(spec["calib"]) as z:
            calib = {k: z[k] for k in z.files}
    if spec["precision"] in ("fp16", "bf16"):
        import onnx
        from modelopt.onnx.autocast import convert_to_mixed_precision

        data_dir = None
        if calib is not None:  # real inputs for AutoCast's range check (else it uses random data)
            data_dir = Path(spec_path).parent / "calib_chunks"
            data_dir.mkdir()
            n = next(iter(calib.values())).shape[0]
            for i in range(0, n, 8):
                np.savez(data_dir / f"{i:08d}.npz", **{k: v[i:i + 8] for k, v in calib.items()})
        proto = convert_to_mixed_precision(spec["src"], spec["precision"], keep_io_types=True, providers=["cpu"],
                                           calibration_data=str(data_dir) if data_dir else None)
        onnx.save(proto, spec["out"])
    else:
        from modelopt.onnx.quantization import quantize

        quantize(spec["src"], quantize_mode=spec["precision"], calibration_data=calib, calibration_eps=["cpu"],
                 high_precision_dtype="fp32", output_path=spec["out"], log_level="WARNING")


def run_onnxconverter_fp16(src: Path, out: Path, precision: str, calib, input_specs: dict) -> None:
    import onnx
    from onnxconverter_common import float16

    onnx.save(float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(out))


def run_ort_int8(src: Path, out: Path, precision: str, calib, input_specs: dict) -> None:
    """onnxruntime's static Q/DQ quantization: symmetric int8 (TensorRT's form), bias left in float (with bias
    quantization TensorRT-RTX rejects the Int32 DequantizeLinear). Runs in this process: never after ModelOpt
    here, which is why ModelOpt runs in a child."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    n = next(iter(calib.values())).shape[0]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{k: v[i:i + 8] for k, v in calib.items()} for i in range(0, n, 8)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    op_types_to_quantize=["Conv", "ConvTranspose", "Gemm", "MatMul"],  # what ModelOpt targets too
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"QuantizeBias": False, "ActivationSymmetric": True, "WeightSymmetric": True})


# precision -> the tools to try, in order
TOOLS = {
    "fp16": [("modelopt", "run_modelopt"), ("onnxconverter-common", "run_onnxconverter_fp16")],
    "bf16": [("modelopt", "run_modelopt")],
    "int8": [("modelopt", "run_modelopt"), ("onnxruntime-quantize_static", "run_ort_int8")],
    "fp8": [("modelopt", "run_modelopt")],
}
PACKAGES = {"modelopt": "nvidia-modelopt", "onnxconverter-common": "onnxconverter-common",
            "onnxruntime-quantize_static": "onnxruntime"}
