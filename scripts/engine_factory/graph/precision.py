"""Precision variants as ONNX files (strongly typed builds take the precision from the ONNX).

fp32 is a copy; fp16/bf16 come from ModelOpt's AutoCast (I/O types kept); int8/fp8 are ModelOpt Q/DQ models
calibrated on the user's data. ModelOpt runs in the calling process (a job's own, forked for it:
engine_factory/jobs.py),
on a copy of its input (it rewrites files beside it). Its quantization monkeypatches onnxruntime's calibrators, so
onnxruntime's own quantizer (the int8 fallback) then runs in a fresh interpreter (`run_ort_int8`); AutoCast patches
nothing (the jobs' forkserver runs it in its warm-up, engine_factory/warmup.py). Until 2026-12-03 ModelOpt ran in a
forked child of the job: ~50 ms (fork, hand-over files, teardown) of every fp16/bf16/int8/fp8 job
(benchmarks/README.md). Each result must pass
onnx.checker and keep the source's I/O names, types and dynamic dims before it is written to `dst`.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, private_tempdir
from ..errors import FactoryError
from ..outcomes import Outcome
from ..precisions import PRECISIONS, QUANTIZED
from ..tensors import (
    batch_axis,
    calibration_batches,
    load_golden,
    output_metrics,
    random_inputs,
    run_onnxruntime,
    step_batch,
)
from .calibration import calibration_facts, load_calibration
from .onnx_io import check_against, load_checked, tool_version
from .precision_search import search_variant
from .variant import LOW_TYPES, describe_variant

# ---------------------------------------------------------------- variants


def make_precision_variant(
    src,
    dst,
    precision: str,
    *,
    model: str,
    input_specs: dict,
    calibration_path=None,
    seed: int = 0,
    search: dict | None = None,
    golden_path=None,
    tolerance: dict | None = None,
    calibration_code: dict | None = None,
) -> dict:
    """Write the `precision` variant of `src` to `dst` (atomically); returns facts (tool, attempts, hashes...).

    With `search` (the model's `precision_search.<precision>` setting), a ModelOpt variant that misses `tolerance`
    against the golden outputs (`golden_path`) is searched for the nodes to keep out of `precision`
    (scripts/engine_factory/graph/precision_search.py); the variant written is the search's result (facts["search"])."""
    if precision not in PRECISIONS:
        raise FactoryError(
            f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})", model=model, key="precisions"
        )
    source = load_checked(src, model=model)
    facts: dict = {"precision": precision}
    if precision in QUANTIZED and not calibration_path:
        raise FactoryError(
            f"{precision} needs calibration data (an .npz, .npy, a directory or a callable)",
            model=model,
            key=f"models.{model}.calibration",
        )
    calib = None
    if calibration_path and precision != "fp32":
        calib = load_calibration(calibration_path, input_specs, model=model)
        facts["calibration"] = calibration_facts(
            calibration_path, calib, code=calibration_code, input_specs=input_specs
        )
    if precision in LOW_TYPES:
        # AutoCast's range check runs the model: without data it draws random inputs with 1 in every dynamic dim and
        # fails on models whose dims must agree ("Concat dims 1 vs 2"). The calibration data, else the golden inputs
        # (the samples, or seeded inputs at the profile's opt shape).
        if calib is None and golden_path:
            calib = load_golden(str(golden_path))[0]
            facts["autocast_data"] = "golden inputs (opt shape)"
        else:
            facts["autocast_data"] = "calibration data" if calib is not None else "random (no data)"
    if precision == "fp32":
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return {**facts, "tool": "copy", "attempts": []}

    # All tool output goes to a private temp dir; only the checked result is copied (atomically) to dst. Each tool
    # runs with that dir as its working directory: onnxruntime's symbolic shape inference (which ModelOpt's int8/fp8
    # calibration calls) saves `sym_shape_infer_temp.onnx` and its external data into the working directory when it
    # fails, which for a job is the user's zoo folder (the workflow directory). The job's process is its own (forked
    # for it: engine_factory/jobs.py), so changing its directory for the call touches no other job.
    with private_tempdir("precision") as work:
        attempts, result = [], None
        options = {"fallback": search["fallback"]} if search else {}
        for tool, fn_name in TOOLS[precision]:
            d = Path(work) / tool
            d.mkdir()
            shutil.copyfile(src, d / "source.onnx")  # ModelOpt rewrites files beside its input: give it a copy
            out, t0 = d / "out.onnx", time.perf_counter()
            try:
                with contextlib.chdir(d):  # the tools' own temporary files land here (see above)
                    globals()[fn_name](d / "source.onnx", out, precision, calib, input_specs, options)  # patchable
                problem = check_against(out, source) or loads_in_onnxruntime(out)
            except Exception as e:
                problem = f"{type(e).__name__}: {e}"
            attempts.append(
                {
                    "tool": tool,
                    "status": "failed" if problem else "ok",
                    "reason": problem[-800:] if problem else "valid ONNX, I/O kept, loads in onnxruntime",
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            if not problem:
                result = out
                break
        if result is None:
            raise FactoryError(
                f"no tool could make the {precision} variant: "
                + "; ".join(f"{a['tool']}: {a['reason']}" for a in attempts),
                model=model,
                path=str(src),
            )
        tool = attempts[-1]["tool"]
        if search:

            def trial(exclude, name):  # one ModelOpt run per trial, its output checked like the first one's
                d = Path(work) / name
                d.mkdir()
                shutil.copyfile(src, d / "source.onnx")
                out = d / "out.onnx"
                with contextlib.chdir(d):
                    globals()[TOOLS[precision][0][1]](
                        d / "source.onnx",
                        out,
                        precision,
                        calib,
                        input_specs,
                        {**options, "nodes_to_exclude": list(exclude)},
                    )
                problem = check_against(out, source)
                if problem:
                    raise RuntimeError(problem)
                return out

            result, facts["search"] = search_variant(
                result,
                precision=precision,
                tool=tool,
                searchable=tool == TOOLS[precision][0][0],
                trial=trial,
                source=src,
                golden_path=golden_path,
                tolerance=tolerance or {},
                settings=search,
                describe=lambda path: describe_variant(path, precision, fallback=search["fallback"]),
                first_seconds=attempts[-1]["seconds"],
            )
        facts.update(
            tool=tool,
            tool_version=tool_version(PACKAGES[tool]),
            attempts=attempts,
            **describe_variant(result, precision, fallback=(search or {}).get("fallback", "fp32")),
        )
        facts["warnings"] += (facts.get("calibration") or {}).get("warnings", [])
        facts["parity_vs_source"] = parity(result, src, input_specs, seed=seed)
        with atomic_path(dst) as tmp:
            shutil.copyfile(result, tmp)
    return facts


def loads_in_onnxruntime(path) -> str | None:
    """Why onnxruntime refuses the tool's output (a type mismatch, an invalid graph: what a fallback tool once wrote
    and four plans were built from), or None. A missing CPU kernel (bf16 Conv) is no refusal of the file: that
    variant is judged by its fp32 emulation instead (precision_search.emulated_parity)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:
        text = str(e).strip()
        if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
            return None
        return f"onnxruntime cannot load it: {text[:400]}"
    return None


def parity(variant, source, input_specs: dict, *, seed: int = 0) -> dict:
    """Variant vs source in onnxruntime (CPU) on seeded opt-shape inputs; "not-run" with the reason when
    onnxruntime cannot run the variant (e.g. bf16 Conv has no CPU kernel)."""
    feeds = random_inputs(input_specs, shape_key="opt", seed=seed)
    try:
        expected, actual = run_onnxruntime(source, feeds), run_onnxruntime(variant, feeds)
    except Exception as e:
        return {"status": Outcome.NOT_RUN, "reason": f"onnxruntime CPU cannot run it: {str(e).strip()[:300]}"}
    return {"status": "measured", "outputs": {k: output_metrics(actual[k], v) for k, v in expected.items()}}


# ---------------------------------------------------------------- tools


def run_modelopt(src: Path, out: Path, precision: str, calib, input_specs: dict, options: dict | None = None) -> None:
    """ModelOpt in this process (see the module doc): AutoCast for fp16/bf16, quantization for int8/fp8. `options`:
    `nodes_to_exclude` (exact node names: kept out of the quantized type, or in fp32 by AutoCast for fp16/bf16) and
    `fallback` (the type of everything not quantized: ModelOpt's high_precision_dtype, fp32 or fp16)."""
    options = options or {}
    nodes_to_exclude = [f"^{re.escape(n)}$" for n in options.get("nodes_to_exclude", ())]  # regexes there
    if precision in LOW_TYPES:
        _autocast(src, out, precision, calib, input_specs, nodes_to_exclude)
        return
    from modelopt.onnx.quantization import quantize

    quantize(
        str(src),
        quantize_mode=precision,
        # the feeds, each input cut on its own batch axis: ModelOpt's splitter (calibration_data=) cuts every array
        # on axis 0, which slices a state [2, N, 16] into 2-row pieces of the wrong axis, silently
        calibration_data_reader=_Feeds(calibration_batches(calib, input_specs, step_batch(calib, input_specs)))
        if calib is not None
        else None,
        calibration_eps=["cpu"],
        calibration_shapes=calibration_shapes(calib, input_specs) if calib is not None else None,
        nodes_to_exclude=nodes_to_exclude,
        high_precision_dtype=options.get("fallback", "fp32"),
        output_path=str(out),
        log_level="WARNING",
    )


def _autocast(src: Path, out: Path, precision: str, calib, input_specs: dict, nodes_to_exclude: list[str]) -> None:
    """ModelOpt AutoCast to fp16/bf16 (I/O types kept), on the calibration data where there is some."""
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    data_dir = None
    feeds = calibration_batches(calib, input_specs, 8) if calib is not None else []
    if feeds:  # real inputs for AutoCast's range check (else it uses random data); one feed a file,
        data_dir = out.parent / "calib_chunks"  # each input cut on its own batch axis (tensors.calibration_batches)
        data_dir.mkdir()
        for i, feed in enumerate(feeds):
            np.savez(data_dir / f"{i:08d}.npz", **feed)
    proto = convert_to_mixed_precision(
        str(src),
        precision,
        keep_io_types=True,
        providers=["cpu"],
        calibration_data=str(data_dir) if data_dir else None,
        nodes_to_exclude=nodes_to_exclude or None,
    )
    # AutoCast leaves intermediate shapes whose unknown dims all carry one name ('unk'): onnxruntime then takes
    # tensors of different sizes as one dim and refuses the variant (nudenet's fp16, benchmarks/real_models.md).
    # They are annotations only: onnxruntime, TensorRT and the factory's checks infer them again.
    del proto.graph.value_info[:]
    onnx.save(proto, str(out))


class _Feeds:
    """ModelOpt's calibration reader (onnxruntime's CalibrationDataReader protocol, with ModelOpt's get_first and
    rewind) over ready feeds."""

    def __init__(self, feeds: list[dict]):
        self.feeds, self._it = feeds, iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def get_first(self):
        return self.feeds[0]

    def rewind(self):
        self._it = iter(self.feeds)

    def __iter__(self):
        return iter(self.feeds)

    def __len__(self):
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int):  # onnxruntime's protocol (unused by ModelOpt's calibrator)
        self._it = iter(self.feeds[start_index:end_index])


def calibration_shapes(calib: dict, input_specs: dict) -> str | None:
    """ModelOpt's `calibration_shapes` (one calibration step's input shapes) where every input has the same dynamic
    batch dim on its batch axis (tensors.batch_axis): the profile's opt batch (at most the sample count) there, the
    other dims as the data has them. Without it ModelOpt takes dynamic dims as 1, so every Gemm/MatMul looks like a
    GEMV and none is quantized (measured: ModelOpt 0.47, the demo tiny_mlp; "the tool found no layer worth int8").
    None where inputs share no batch dim, or one is a scalar (the spec cannot say a rank-0 shape): ModelOpt then
    reads the shapes off the first feed of the reader (run_modelopt), which holds the opt batch too."""
    axes = {name: batch_axis(s) for name, s in input_specs.items()}
    if any(a is None for a in axes.values()):
        return None
    dims = {str(s["shape"][axes[name]]) for name, s in input_specs.items()}
    if len(dims) != 1 or not all(isinstance(s["shape"][axes[n]], str) for n, s in input_specs.items()):
        return None
    if any(re.search(r"[,:\s]", name) for name in input_specs):  # the spec's separators
        return None
    batch = step_batch(calib, input_specs)
    shapes = {}
    for name in input_specs:
        shape = list(calib[name].shape)
        shape[axes[name]] = batch
        shapes[name] = shape
    return ",".join(f"{name}:" + "x".join(str(d) for d in shape) for name, shape in shapes.items())


def run_onnxconverter_fp16(src: Path, out: Path, precision: str, calib, input_specs: dict, options=None) -> None:
    import onnx
    from onnxconverter_common import float16

    onnx.save(float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(out))


def run_ort_int8(src: Path, out: Path, precision: str, calib, input_specs: dict, options=None) -> None:
    """onnxruntime's static Q/DQ quantization: symmetric int8 (TensorRT's form), bias left in float (with bias
    quantization TensorRT-RTX rejects the Int32 DequantizeLinear). In this process while its onnxruntime is
    onnxruntime's own; where ModelOpt quantized here before (it patches onnxruntime's calibrators, as when it has
    just failed on this model), in a fresh interpreter."""
    if _ort_patched():
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.apply(_ort_int8, (str(src), str(out), calib, input_specs))
    else:
        _ort_int8(str(src), str(out), calib, input_specs)


def _ort_patched() -> bool:
    """Whether ModelOpt's patches of onnxruntime's quantization classes are in this process (each quantize applies
    them; CalibraterBase.__init__ is one they always replace)."""
    from onnxruntime.quantization.calibrate import CalibraterBase

    return not CalibraterBase.__init__.__module__.startswith("onnxruntime")


def _ort_int8(src: str, out: str, calib: dict, input_specs: dict | None = None) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    input_specs = input_specs or {k: {"batch_axis": 0 if v.ndim else None} for k, v in calib.items()}

    class Reader(CalibrationDataReader):
        def __init__(self):  # each input cut on its own batch axis (tensors.calibration_batches)
            self.batches = iter(calibration_batches(calib, input_specs, 8))

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        src,
        out,
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        op_types_to_quantize=["Conv", "ConvTranspose", "Gemm", "MatMul"],  # what ModelOpt targets too
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"QuantizeBias": False, "ActivationSymmetric": True, "WeightSymmetric": True},
    )


# precision -> the tools to try, in order
TOOLS = {
    "fp16": [("modelopt", "run_modelopt"), ("onnxconverter-common", "run_onnxconverter_fp16")],
    "bf16": [("modelopt", "run_modelopt")],
    "int8": [("modelopt", "run_modelopt"), ("onnxruntime-quantize_static", "run_ort_int8")],
    "fp8": [("modelopt", "run_modelopt")],
}
PACKAGES = {
    "modelopt": "nvidia-modelopt",
    "onnxconverter-common": "onnxconverter-common",
    "onnxruntime-quantize_static": "onnxruntime",
}
