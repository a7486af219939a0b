"""Backends, plan checks, runtime and host probe, for real through TensorRT-RTX on a CPU-only host.

The full-TensorRT code path runs with the `tensorrt_rtx` module passed in place of `tensorrt` where the APIs
coincide; what RTX refuses there (hardware compatibility, version compatible) is asserted as measured.
"""

import hashlib
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine_factory import intoto, provenance
from engine_factory.backends import build_plan, load_backend, precision_support, resolve_backend
from engine_factory.backends.header import check_plan_header
from engine_factory.backends.rtx import TARGETS as RTX_TARGETS
from engine_factory.backends.runtime import execute_plan
from engine_factory.errors import FactoryError
from engine_factory.host import probe_host

RTX = pytest.importorskip("tensorrt_rtx")
VERSION = RTX.__version__
X_PROFILE = {"x": {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [8, 3, 8, 8]}}


def _save(path, nodes, inputs, outputs, inits=(), check=True):
    model = helper.make_model(
        helper.make_graph(nodes, path.stem, inputs, outputs, list(inits)), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 9
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _tensor(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    g = numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "g")
    conv = helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])
    tiny = _save(
        d / "tiny.onnx",
        [
            conv,
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "g"], ["y"]),
        ],
        [_tensor("x", ["batch", 3, 8, 8])],
        [_tensor("y", ["batch", 5])],
        [w, g],
    )
    # no GEMM: builds for every RTX target, sm75 included
    convnet = _save(
        d / "conv.onnx",
        [conv, helper.make_node("Relu", ["c"], ["y"])],
        [_tensor("x", ["batch", 3, 8, 8])],
        [_tensor("y", ["batch", 4, 8, 8])],
        [w],
    )
    # a dynamic input and a fixed one
    two = _save(
        d / "two.onnx",
        [helper.make_node("Add", ["a", "b"], ["y"])],
        [_tensor("a", ["batch", 4]), _tensor("b", [1, 4])],
        [_tensor("y", ["batch", 4])],
    )
    bad_op = _save(
        d / "bad_op.onnx",
        [helper.make_node("FooBar", ["a"], ["y"])],
        [_tensor("a", [1, 4])],
        [_tensor("y", [1, 4])],
        check=False,
    )
    garbage, junk = d / "garbage.onnx", d / "junk.onnx"
    garbage.write_bytes(b"not an onnx file at all")  # protobuf rejects it
    junk.write_bytes(b"this is not an ONNX model")  # protobuf reads it as an empty model (measured)
    return {"tiny": tiny, "conv": convnet, "two": two, "bad_op": bad_op, "garbage": garbage, "junk": junk}


@pytest.fixture(scope="module")
def plans(models, tmp_path_factory):
    """Tiny-model plans for sm86 and sm89, built once for the module."""
    d = tmp_path_factory.mktemp("plans")
    out = {}
    for cc in ("8.6", "8.9"):
        path = d / f"sm{cc.replace('.', '')}" / "model.plan"
        facts = build_plan(
            RTX,
            models["tiny"],
            path,
            model="tiny",
            input_profiles=X_PROFILE,
            workspace_mb=256,
            optimization_level=3,
            compute_capability=cc,
            log=lambda m: None,
        )
        out[cc] = (path, facts)
    return out


def quiet(_):
    pass


# ------------------------------------------------------------------------------------------------- building
@pytest.mark.parametrize("cc", ["8.6", "8.9"])
def test_rtx_plan_per_target(plans, cc):
    path, facts = plans[cc]
    assert path.stat().st_size == facts["plan_bytes"] > 0
    assert facts["targets"] == [cc] and facts["version"] == VERSION and facts["build_seconds"] >= 0
    assert facts["input_shapes"] == {"x": [-1, 3, 8, 8]}
    check = check_plan_header(path, backend="rtx", version=VERSION, compute_capability=cc)
    assert check["status"] == "pass", check
    assert check["details"]["header_targets"] == [cc]
    assert check["details"]["header_version"] == VERSION
    other = "8.9" if cc == "8.6" else "8.6"
    wrong = check_plan_header(path, backend="rtx", version=VERSION, compute_capability=other)
    assert wrong["status"] == "fail" and "do not include" in wrong["reason"]


def test_rtx_target_bitmask_and_size_field_hold_for_every_target(models, tmp_path):
    """The undocumented header fields backends/header.py relies on, re-measured for each AOT target."""
    for cc, (_, bit) in RTX_TARGETS.items():
        path = tmp_path / f"{cc}.plan"
        build_plan(RTX, models["conv"], path, model="conv", input_profiles=X_PROFILE, compute_capability=cc, log=quiet)
        head = path.read_bytes()[:64]
        assert head[:4] == b"vtrt" and head[0x20] == bit, (cc, head[0x20])
        assert int.from_bytes(head[0x10:0x18], "little") == path.stat().st_size
        assert check_plan_header(path, backend="rtx", version=VERSION, compute_capability=cc)["status"] == "pass"


def test_fp32_gemm_refused_on_sm75(models, tmp_path):
    plan = tmp_path / "model.plan"
    with pytest.raises(FactoryError) as e:
        build_plan(
            RTX, models["tiny"], plan, model="tiny", input_profiles=X_PROFILE, compute_capability="7.5", log=quiet
        )
    assert "FP32 GEMM is not supported" in str(e.value) and "model 'tiny'" in str(e.value)
    assert not plan.exists()
    assert "sm75" in precision_support("rtx", "7.5", "fp32")


def test_progress_is_logged(models, tmp_path):
    lines = []
    build_plan(
        RTX,
        models["tiny"],
        tmp_path / "m.plan",
        model="tiny",
        input_profiles=X_PROFILE,
        compute_capability="8.6",
        log=lines.append,
    )
    assert any("Building engine: started" in line for line in lines)
    assert any("Building engine: done" in line for line in lines)


def test_timing_cache_written_and_reused(models, tmp_path):
    """Full TensorRT's timing-cache path (the workflow gives RTX builds none), run with the RTX module standing in."""
    cache = tmp_path / "cache" / "timing.cache"
    kw = dict(model="tiny", input_profiles=X_PROFILE, compute_capability="8.6", timing_cache_path=str(cache), log=quiet)
    first = build_plan(RTX, models["tiny"], tmp_path / "a.plan", **kw)["timing_cache"]
    assert first["loaded"] is False and first["written"] and cache.stat().st_size > 0
    facts = build_plan(RTX, models["tiny"], tmp_path / "b.plan", **kw)
    second = facts["timing_cache"]
    assert second["loaded"] is True
    # the plan's in-toto statement lists the cache as a byproduct: its digest and whether the build loaded it
    provenance.write(
        str(tmp_path / "b.plan"),
        stage="build",
        inputs={"onnx": models["tiny"]},
        params={},
        facts=facts,
        host={},
        artifact_sha256=facts["plan_sha256"],
    )
    st = json.loads(open(intoto.write_statement(str(tmp_path / "b.plan"))).read())
    [byproduct] = st["predicate"]["runDetails"]["byproducts"]
    assert byproduct["name"] == str(cache) and byproduct["digest"] == {"sha256": provenance.sha256(cache)}
    assert byproduct["annotations"]["loaded"] is True
    # measured: RTX keeps the API but its timing cache never holds entries; the notes say so
    assert any("no-ops" in n for n in second["notes"]) and second["entries_after"] == 0
    # an unreadable cache file is replaced, not fatal
    cache.write_bytes(b"junk")
    third = build_plan(RTX, models["tiny"], tmp_path / "c.plan", **kw)["timing_cache"]
    assert third["written"]


def test_plan_written_and_hashed_together(tmp_path):
    from engine_factory.backends.core import _write_hashed

    data = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    assert _write_hashed(tmp_path / "p.plan", data) == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "p.plan").read_bytes() == data
    with pytest.raises(FileNotFoundError):  # a failed write raises (the hashing thread is joined, nothing hangs)
        _write_hashed(tmp_path / "missing" / "p.plan", data)


# ------------------------------------------------------------------------------------------------- profiles
def test_fixed_input_needs_no_profile(models, tmp_path):
    facts = build_plan(
        RTX,
        models["two"],
        tmp_path / "two.plan",
        model="two",
        compute_capability="8.9",
        input_profiles={"a": {"min": [1, 4], "opt": [2, 4], "max": [4, 4]}},
        log=quiet,
    )
    assert facts["input_shapes"] == {"a": [-1, 4], "b": [1, 4]}


@pytest.mark.parametrize(
    "profiles, message",
    [
        ({}, "input 'a' has dynamic shape"),
        (
            {"a": {"min": [1, 4], "opt": [2, 4], "max": [4, 4]}, "c": {"min": [1], "opt": [1], "max": [1]}},
            "lacks (its inputs",
        ),
        ({"a": {"min": [2, 4], "opt": [1, 4], "max": [4, 4]}}, "min <= opt <= max"),
        ({"a": {"min": [1, 4], "opt": [2, 4]}}, "lacks ['max']"),
        ({"a": {"min": [1, 4, 1], "opt": [2, 4, 1], "max": [4, 4, 1]}}, "has rank 3"),
        (
            {"a": {"min": [1, 4], "opt": [2, 4], "max": [4, 4]}, "b": {"min": [1, 2], "opt": [1, 2], "max": [1, 2]}},
            "dimension 1 is fixed at 4",
        ),
    ],
)
def test_profile_errors(models, tmp_path, profiles, message):
    with pytest.raises(FactoryError) as e:
        build_plan(
            RTX,
            models["two"],
            tmp_path / "two.plan",
            model="two",
            input_profiles=profiles,
            compute_capability="8.9",
            log=quiet,
        )
    assert message in str(e.value) and "model 'two'" in str(e.value)
    assert not (tmp_path / "two.plan").exists()


# --------------------------------------------------------------------------------------------- parse errors
@pytest.mark.parametrize(
    "which, parser_says",
    [
        ("garbage", "Failed to parse the ONNX model"),
        ("junk", "parsed no outputs"),
        ("bad_op", "Plugin not found"),
        ("missing", "ONNX file not found"),
    ],
)
def test_parser_rejection_names_model_and_file(models, tmp_path, which, parser_says):
    onnx_path = models.get(which, tmp_path / "missing.onnx")
    plan = tmp_path / "model.plan"
    with pytest.raises(FactoryError) as e:
        build_plan(RTX, onnx_path, plan, model="m1", input_profiles={}, compute_capability="8.6", log=quiet)
    msg = str(e.value)
    assert "model 'm1'" in msg and str(onnx_path) in msg and parser_says in msg
    if which == "bad_op":
        assert "FooBar" in msg  # the node's operator is named
    assert not plan.exists() and not list(tmp_path.glob("*.tmp*"))


# ----------------------------------------------------------------- the full-TensorRT path, run with RTX's module
def test_full_tensorrt_path_without_target(models, tmp_path):
    """compute_capability=None (full TensorRT: the local GPU) + the TRT 10 STRONGLY_TYPED flag. RTX, given no
    target, picks several itself (measured bitmask 0x7e: sm80..sm121 plus 0x40, presumably '>12.0')."""
    path = tmp_path / "m.plan"
    facts = build_plan(
        RTX,
        models["tiny"],
        path,
        model="tiny",
        input_profiles=X_PROFILE,
        compute_capability=None,
        strongly_typed_flag=True,
        log=quiet,
    )
    assert facts["strongly_typed_flag"] and facts["targets"] is None
    check = check_plan_header(path, backend="rtx", version=VERSION, compute_capability=None)
    assert check["status"] == "pass" and len(check["details"]["header_targets"]) > 1


def test_full_tensorrt_compatibility_options_refused_by_rtx(models, tmp_path):
    kw = dict(model="tiny", input_profiles=X_PROFILE, log=quiet)
    with pytest.raises(FactoryError, match="unsupported in TensorRT-RTX"):  # measured: warning, level stays NONE
        build_plan(RTX, models["tiny"], tmp_path / "a.plan", hardware_compatibility_level="ampere_plus", **kw)
    with pytest.raises(FactoryError, match="libnvinfer_lean"):  # measured: flag accepted, build fails
        build_plan(RTX, models["tiny"], tmp_path / "b.plan", version_compatible=True, **kw)
    with pytest.raises(FactoryError, match="unknown hardware compatibility level"):
        build_plan(RTX, models["tiny"], tmp_path / "c.plan", hardware_compatibility_level="turing", **kw)
    assert not list(tmp_path.glob("*.plan"))


def test_unknown_rtx_target(models, tmp_path):
    with pytest.raises(FactoryError, match="no target for compute capability 9.0"):
        build_plan(
            RTX,
            models["tiny"],
            tmp_path / "a.plan",
            model="tiny",
            input_profiles=X_PROFILE,
            compute_capability="9.0",
            log=quiet,
        )


# ------------------------------------------------------------------------------------------------ plan checks
def test_plan_header_failures(plans, tmp_path):
    good = plans["8.6"][0].read_bytes()
    kw = dict(backend="rtx", version=VERSION, compute_capability="8.6")
    (tmp_path / "empty.plan").write_bytes(b"")
    assert "empty" in check_plan_header(tmp_path / "empty.plan", **kw)["reason"]
    assert "missing" in check_plan_header(tmp_path / "none.plan", **kw)["reason"]
    (tmp_path / "cut.plan").write_bytes(good[: len(good) // 2])
    assert "truncated" in check_plan_header(tmp_path / "cut.plan", **kw)["reason"]
    (tmp_path / "onnx.plan").write_bytes(b"\x08\x09" + good[2:])
    bad = check_plan_header(tmp_path / "onnx.plan", **kw)
    assert bad["status"] == "fail" and "not a recognised plan header" in bad["reason"]
    # the header is also shown to the runtime, which flags a malformed one even without a GPU (measured)
    assert "magic" in bad["reason"]
    old = check_plan_header(plans["8.6"][0], backend="rtx", version="1.6.0.1", compute_capability="8.6")
    assert old["status"] == "fail" and "key says 1.6.0.1" in old["reason"]
    as_trt = check_plan_header(plans["8.6"][0], backend="trt", version="10.13.3.9", compute_capability="8.6")
    assert as_trt["status"] == "fail" and "rtx plan" in as_trt["reason"]


def test_runtime_validity_recorded_not_judged_without_gpu(plans):
    check = check_plan_header(
        plans["8.6"][0], backend="rtx", version=VERSION, compute_capability="8.6", host={"gpus": []}
    )
    validity = check["details"]["engine_validity"]
    assert check["status"] == "pass" and validity["checked"] and validity["judged"] is False


# -------------------------------------------------------------------------------------------------- runtime
def test_runtime_not_run_without_gpu(plans, tmp_path, monkeypatch):
    path = plans["8.6"][0]
    x = {"x": np.zeros((2, 3, 8, 8), np.float32)}
    kw = dict(backend="tensorrt_rtx", inputs=x, expected={"y": np.zeros((2, 5), np.float32)}, tolerance={})
    host = probe_host()
    if host["gpus"]:
        pytest.skip("a GPU is visible: this test is about GPU-less hosts")
    result = execute_plan(path, compute_capability="8.6", host=host, **kw)
    assert result["status"] == "not-run" and result["reason"].startswith("no CUDA GPU visible")
    fake = tmp_path / "host.json"
    fake.write_text(json.dumps({"gpus": [{"index": 0, "name": "RTX A4000", "compute_capability": "8.6"}]}))
    monkeypatch.setenv("FACTORY_HOST_FACTS", str(fake))
    host = probe_host()
    result = execute_plan(path, compute_capability="8.9", host=host, **kw)
    assert result == {"status": "not-run", "reason": "no GPU of compute capability 8.9 here (GPUs: RTX A4000 (8.6))"}
    result = execute_plan(path, compute_capability="8.6", host=host, **kw)  # claims a GPU, CUDA finds no driver
    assert result["status"] == "not-run" and "CUDA is not usable here" in result["reason"]
    result = execute_plan(path, compute_capability="8.6", host=host, **{**kw, "backend": "tensorrt"})
    assert result["status"] == "not-run"


# --------------------------------------------------------------------------------------- backends, precisions
def test_precision_support_reasons():
    assert precision_support("rtx", "8.6", "fp16") is None
    assert precision_support("rtx", "8.9", "fp8") is None
    assert "no sm90 target" in precision_support("rtx", "9.0", "fp16")
    assert "no sm100 target" in precision_support("tensorrt_rtx", "10.0", "fp16")
    assert "fp8 needs compute capability 8.9" in precision_support("rtx", "8.6", "fp8")
    assert "bf16 needs compute capability 8.0" in precision_support("rtx", "7.5", "bf16")
    assert "FP32 GEMM" in precision_support("rtx", "7.5", "fp32")
    assert precision_support("trt", "9.0", "fp8") is None
    assert "fp8" in precision_support("trt", "8.6", "fp8")
    assert precision_support("trt", "7.5", "fp32") is None


def test_load_and_resolve_backends(monkeypatch):
    b = load_backend("tensorrt_rtx")
    assert (b.name, b.short, b.version, b.key) == ("tensorrt_rtx", "rtx", VERSION, f"rtx-{VERSION}")
    assert b.module is RTX and b.strongly_typed_flag is False
    assert resolve_backend("auto", []) == "tensorrt_rtx"
    assert resolve_backend("tensorrt", []) == "tensorrt"
    with pytest.raises(FactoryError, match="unknown backend"):
        resolve_backend("onnxruntime", [])
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    assert resolve_backend("auto", [{"compute_capability": "8.6"}]) == "tensorrt_rtx"
    with pytest.raises(FactoryError) as e:
        load_backend("tensorrt")
    msg = str(e.value)
    assert "pip install tensorrt-cu12" in msg and "backend: tensorrt_rtx" in msg and "without a GPU" in msg


# ------------------------------------------------------------------------------------------------------ host
def test_host_probe_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("FACTORY_HOST_FACTS", raising=False)
    facts = probe_host()
    assert {"gpus", "driver_version", "cuda_driver_version", "hostname", "platform", "probe_errors"} <= set(facts)
    if not facts["gpus"]:  # this CPU-only host: no driver, and the probe says why
        assert facts["driver_version"] is None and facts["probe_errors"]
    override = tmp_path / "facts.json"
    gpu = {
        "index": 0,
        "name": "NVIDIA L4",
        "compute_capability": "8.9",
        "sm_count": 58,
        "memory_mb": 23034,
        "uuid": "GPU-x",
    }
    override.write_text(json.dumps({"gpus": [gpu], "driver_version": "580.1"}))
    monkeypatch.setenv("FACTORY_HOST_FACTS", str(override))
    facts = probe_host()
    assert facts["gpus"] == [gpu] and facts["driver_version"] == "580.1" and facts["overrides"] == str(override)
    override.write_text("{not json")
    assert any("FACTORY_HOST_FACTS" in e for e in probe_host()["probe_errors"])


def test_jobs_take_the_snakefiles_probe_of_this_host_only(monkeypatch):
    """Stage jobs use the probe their Snakefile made (PROBED_ENV), never one made on another host."""
    from engine_factory.host import PROBED_ENV, job_host_facts

    monkeypatch.delenv("FACTORY_HOST_FACTS", raising=False)
    probed = {**probe_host(), "driver_version": "probed-by-the-snakefile"}
    monkeypatch.setenv(PROBED_ENV, json.dumps(probed))
    assert job_host_facts() == probed
    monkeypatch.setenv(PROBED_ENV, json.dumps({**probed, "hostname": "another-node"}))
    assert job_host_facts()["driver_version"] != "probed-by-the-snakefile"  # probed afresh here
    monkeypatch.delenv(PROBED_ENV)
    assert job_host_facts()["hostname"] == probe_host()["hostname"]


# ------------------------------------------------------------------------------- GPU hosts (`pytest -m gpu`)
def _local_gpu():
    host = probe_host()
    if not host["gpus"]:
        pytest.skip("no GPU: " + "; ".join(host["probe_errors"]))
    return host


@pytest.mark.gpu
def test_gpu_host_probe():
    host = _local_gpu()
    gpu = host["gpus"][0]
    assert host["driver_version"] and host["cuda_driver_version"]
    assert gpu["sm_count"] > 0 and gpu["cuda_index"] is not None and "." in gpu["compute_capability"]


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["cuda-python", "pycuda"])
def test_gpu_memory_round_trip(kind):
    from engine_factory.backends.runtime import memory_round_trip

    host = _local_gpu()
    if kind == "pycuda":
        pytest.importorskip("pycuda.driver")
    result = memory_round_trip(kind, host["gpus"][0]["cuda_index"], shape=(3, 5))
    assert result["implementation"] == kind and result["equal"] and result["round_trip_ms"] >= 0


@pytest.mark.gpu
def test_gpu_execute_plan(models, tmp_path):
    """On a GPU the plan runs and passes, or the runtime's refusal is the reason (RTX refuses cc 9.0, measured)."""
    from engine_factory.tensors import run_onnxruntime

    host = _local_gpu()
    cc = host["gpus"][0]["compute_capability"]
    plan = tmp_path / "model.plan"
    target = cc if precision_support("rtx", cc, "fp32") is None else None  # None: RTX's own target set
    build_plan(RTX, models["tiny"], plan, model="tiny", input_profiles=X_PROFILE, compute_capability=target, log=quiet)
    x = {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    result = execute_plan(
        plan,
        backend="tensorrt_rtx",
        compute_capability=cc,
        inputs=x,
        expected=run_onnxruntime(models["tiny"], x),
        tolerance={"atol": 1e-3, "rtol": 1e-3},
        opt_inputs={"x": np.zeros((4, 3, 8, 8), np.float32)},
        host=host,
        iterations=20,
    )
    print(json.dumps(result, indent=1, default=str))
    if result["status"] == "not-run":
        assert "cannot load this plan" in result["reason"]
    else:
        assert result["status"] == "pass", result
        assert result["performance"]["latency_ms"]["p50"] > 0 and result["performance"]["batch"] == 4


def test_tf32_is_off_unless_asked(models, tmp_path, monkeypatch):
    """TensorRT computes fp32 conv/matmul in TF32 by default: on the H100 that moved fp32 plans' outputs by up to
    2.6e-3 (docs/hardware-runs.md). The builder clears the flag unless `build.tf32` asks for it, and records it."""
    seen = []
    real = RTX.IBuilderConfig.clear_flag, RTX.IBuilderConfig.set_flag
    monkeypatch.setattr(RTX.IBuilderConfig, "clear_flag", lambda c, f: (seen.append(("clear", f)), real[0](c, f))[1])
    monkeypatch.setattr(RTX.IBuilderConfig, "set_flag", lambda c, f: (seen.append(("set", f)), real[1](c, f))[1])
    kw = dict(model="conv", input_profiles=X_PROFILE, compute_capability="8.9", log=quiet)
    facts = build_plan(RTX, models["conv"], tmp_path / "a.plan", **kw)
    assert facts["tf32"] is False and ("clear", RTX.BuilderFlag.TF32) in seen
    seen.clear()
    facts = build_plan(RTX, models["conv"], tmp_path / "b.plan", tf32=True, **kw)
    assert facts["tf32"] is True and ("set", RTX.BuilderFlag.TF32) in seen
