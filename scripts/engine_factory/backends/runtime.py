"""Execute a plan on a GPU of its compute capability: golden-input comparison, then latency and throughput.

Status is "pass"/"fail" only after a real execution; anything that keeps the plan from running here (no GPU of that
compute capability, no CUDA, a backend that is not installed, a runtime that refuses the plan) is "not-run" with
the reason. Device memory goes through a tiny two-implementation interface: cuda-python (default) or pycuda
(FACTORY_CUDA=pycuda, when installed); both use page-locked host buffers, async copies and one stream.
Latency is GPU time of `execute_async_v3` alone (CUDA events around it, copies excluded), per iteration.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from .. import signing
from ..errors import FactoryError
from ..outcomes import Outcome
from ..tensors import compare_outputs
from .registry import get_logger, load_backend

CUDA_ENV = "FACTORY_CUDA"
ITERATIONS, WARMUP = 100, 10


def execute_plan(
    plan_path,
    *,
    backend: str,
    compute_capability: str | None,
    inputs: dict,
    expected: dict,
    tolerance: dict,
    opt_inputs: dict | None = None,
    host: dict,
    iterations: int = ITERATIONS,
    warmup: int = WARMUP,
    trust: signing.Trust | None = None,
    base: str = ".",
) -> dict:
    """`trust` (signing.Trust): the plan runs only if its DSSE envelope is signed by a trusted key and the signed
    sha256 is that of the very bytes deserialized (read once: no window to swap the file between check and load);
    anything else fails here, before TensorRT sees a byte. `base`: where the plan's workflow path is relative to."""
    gpu, why = _pick_gpu(host, compute_capability)
    if gpu is None:
        return _not_run(why)
    data = Path(plan_path).read_bytes()
    if trust is not None:
        sig = signing.verify_plan(str(plan_path), trust, base=base, data=data)
        if sig["state"] != signing.SIGNED:
            return {
                "status": Outcome.FAIL,
                "reason": f"refused before deserializing: {sig['state']}: {sig['detail']}",
                "signature": {k: v for k, v in sig.items() if k != "statement"},
                "gpu": gpu,
            }
    try:
        trt = load_backend(backend).module
    except FactoryError as e:
        return _not_run(str(e))
    try:
        cuda = make_cuda(os.environ.get(CUDA_ENV, "cuda-python"), gpu.get("cuda_index", gpu.get("index")))
    except Exception as e:  # ImportError, no driver, device not usable
        return _not_run(f"CUDA is not usable here: {e}", gpu=gpu)
    try:
        return {
            **_load_and_run(
                trt, cuda, data, gpu, inputs, expected, tolerance, opt_inputs or inputs, iterations, warmup
            ),
            "gpu": gpu,
            "cuda": cuda.name,
            "backend": trt.__name__,
        }
    except Exception as e:  # the plan loaded but running it broke: that is the plan's (or runtime's) failure
        return {
            "status": Outcome.FAIL,
            "reason": f"execution failed: {type(e).__name__}: {e}",
            "gpu": gpu,
            "cuda": cuda.name,
        }
    finally:
        cuda.close()


def _not_run(reason: str, **extra) -> dict:
    return {"status": Outcome.NOT_RUN, "reason": reason, **extra}


def _pick_gpu(host: dict, cc: str | None):
    """The first GPU of compute capability `cc` that CUDA can use in this process; else (None, why)."""
    gpus = host.get("gpus") or []
    if not gpus:
        errors = "; ".join(host.get("probe_errors") or []) or "the probe found none"
        return None, f"no CUDA GPU visible: {errors}"
    match = [g for g in gpus if cc is None or str(g.get("compute_capability")) == str(cc)]
    if not match:
        listing = ", ".join(f"{g.get('name')} ({g.get('compute_capability')})" for g in gpus)
        return None, f"no GPU of compute capability {cc} here (GPUs: {listing})"
    usable = [g for g in match if g.get("cuda_index", g.get("index")) is not None]
    if not usable:
        return None, f"GPU(s) of compute capability {cc} are not visible to CUDA here (CUDA_VISIBLE_DEVICES?)"
    return usable[0], None


def _load_and_run(trt, cuda, data: bytes, gpu, inputs, expected, tolerance, bench_inputs, iterations, warmup) -> dict:
    logger = get_logger(trt)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)  # the bytes that were checked, not the file again
    if engine is None:  # e.g. TensorRT-RTX on compute capability 9.0, or a plan for another GPU/version
        return _not_run(
            f"{trt.__name__} {trt.__version__} cannot load this plan on GPU {gpu.get('index')} "
            f"({gpu.get('name')}, {gpu.get('compute_capability')}): " + ("; ".join(logger.errors()) or "no message")
        )
    context = engine.create_execution_context()
    if context is None:
        raise RuntimeError("no execution context: " + ("; ".join(logger.errors()) or "no message"))
    outputs = _infer(trt, engine, context, cuda, logger, inputs)
    comparison = compare_outputs(outputs, expected, tolerance)
    performance = _benchmark(trt, engine, context, cuda, logger, bench_inputs, iterations, warmup)
    return {
        "status": comparison["status"],
        "reason": comparison["reason"],
        "comparison": comparison,
        "performance": performance,
    }


# ------------------------------------------------------------------------------------------ binding, running
def _np_dtype(trt, dt):
    try:
        return np.dtype(trt.nptype(dt))
    except TypeError:  # numpy has no bf16/fp8: ml_dtypes has
        import ml_dtypes

        return np.dtype({"BF16": ml_dtypes.bfloat16, "FP8": ml_dtypes.float8_e4m3fn}[dt.name])


def _bind(trt, engine, context, cuda, feeds: dict) -> dict:
    """Set input shapes, allocate page-locked host + device buffers for every IO tensor, set their addresses."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
    missing = [n for n in names if is_input[n] and n not in feeds]
    if missing:
        raise ValueError(f"no data for input(s) {missing}")
    bound = {}
    for n in names:
        if is_input[n] and not context.set_input_shape(n, tuple(feeds[n].shape)):
            raise ValueError(f"input '{n}' shape {list(feeds[n].shape)} is outside the plan's shape profile")
        if is_input[n] and engine.is_shape_inference_io(n):
            # a shape-tensor input lives in host memory (TensorRT reads its values to infer shapes): bound before
            # the output shapes are asked for, never copied to the device
            host = cuda.host_buffer(tuple(feeds[n].shape), _np_dtype(trt, engine.get_tensor_dtype(n)))
            host[...] = feeds[n]
            context.set_tensor_address(n, host.ctypes.data)
            bound[n] = (host, None, True)  # an input with no device buffer
    for n in names:
        if n in bound:
            continue
        shape = tuple(context.get_tensor_shape(n))
        if any(d < 0 for d in shape):
            raise ValueError(f"tensor '{n}' has a data-dependent shape {list(shape)}: not supported here")
        host = cuda.host_buffer(shape, _np_dtype(trt, engine.get_tensor_dtype(n)))
        if is_input[n]:
            host[...] = feeds[n]
        dev = cuda.device_buffer(host.nbytes)
        context.set_tensor_address(n, dev)
        bound[n] = (host, dev, is_input[n])
    return bound


def _enqueue(context, cuda, logger) -> None:
    if not context.execute_async_v3(cuda.stream_handle):
        raise RuntimeError("execute_async_v3 failed: " + ("; ".join(logger.errors()) or "no message"))


def _bind_and_upload(trt, engine, context, cuda, feeds: dict) -> dict:
    bound = _bind(trt, engine, context, cuda, feeds)
    for host, dev, is_in in bound.values():
        if is_in and dev is not None:
            cuda.h2d(dev, host)
    return bound


def _infer(trt, engine, context, cuda, logger, feeds: dict) -> dict:
    bound = _bind_and_upload(trt, engine, context, cuda, feeds)
    _enqueue(context, cuda, logger)
    for host, dev, is_in in bound.values():
        if not is_in:
            cuda.d2h(host, dev)
    cuda.sync()
    return {n: host.copy() for n, (host, _, is_in) in bound.items() if not is_in}


def _benchmark(trt, engine, context, cuda, logger, feeds: dict, iterations: int, warmup: int) -> dict:
    _bind_and_upload(trt, engine, context, cuda, feeds)
    for _ in range(warmup):
        _enqueue(context, cuda, logger)
    cuda.sync()
    start, end = cuda.event(), cuda.event()
    times = []
    for _ in range(iterations):
        cuda.record(start)
        _enqueue(context, cuda, logger)
        cuda.record(end)
        cuda.sync()
        times.append(cuda.elapsed_ms(start, end))
    t = np.asarray(times)
    first = next(iter(feeds.values()))
    batch = int(first.shape[0]) if first.ndim else 1
    return {
        "shapes": {n: list(v.shape) for n, v in feeds.items()},
        "iterations": iterations,
        "warmup": warmup,
        "latency_ms": {
            "p50": float(np.percentile(t, 50)),
            "p90": float(np.percentile(t, 90)),
            "p99": float(np.percentile(t, 99)),
            "mean": float(t.mean()),
            "min": float(t.min()),
        },
        "throughput_per_s": batch * 1000.0 / float(t.mean()),
        "batch": batch,
    }


# --------------------------------------------------------------------------- device memory: two implementations
def memory_round_trip(kind: str, device: int, shape=(1024, 1024)) -> dict:
    """Page-locked host buffers, async copies on one stream, events: seeded data to the GPU and back."""
    cuda = make_cuda(kind, device)
    try:
        data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        host_in, host_out = cuda.host_buffer(data.shape, data.dtype), cuda.host_buffer(data.shape, data.dtype)
        host_in[...] = data
        dev = cuda.device_buffer(data.nbytes)
        start, end = cuda.event(), cuda.event()
        cuda.record(start)
        cuda.h2d(dev, host_in)
        cuda.d2h(host_out, dev)
        cuda.record(end)
        cuda.sync()
        return {
            "implementation": cuda.name,
            "bytes": int(data.nbytes),
            "equal": bool(np.array_equal(host_out, data)),
            "round_trip_ms": round(cuda.elapsed_ms(start, end), 3),
        }
    finally:
        cuda.close()


def make_cuda(kind: str, device: int):
    """cuda-python by default; pycuda when asked for and installed (else cuda-python, noted in `name`)."""
    if kind == "pycuda":
        try:
            return PyCudaMemory(device)
        except ImportError:
            mem = CudaPythonMemory(device)
            mem.name = "cuda-python (pycuda requested, not installed)"
            return mem
    return CudaPythonMemory(device)


class CudaPythonMemory:
    """Device memory, page-locked host buffers, one stream and events through cuda-python's runtime bindings."""

    name = "cuda-python"

    def __init__(self, device: int):
        from cuda.bindings import runtime as cudart

        self.rt = cudart
        self._host, self._dev, self._events, self.stream = [], [], [], None
        self._ck(cudart.cudaSetDevice(int(device)), "cudaSetDevice")
        self.stream = self._ck(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def _ck(self, result, what: str):
        err, *rest = result
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"{what}: {self.rt.cudaGetErrorString(err)[1].decode()} ({err.name})")
        return rest[0] if len(rest) == 1 else rest

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def host_buffer(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        nbytes = max(count * dtype.itemsize, 1)
        ptr = self._ck(self.rt.cudaMallocHost(nbytes), "cudaMallocHost")
        self._host.append(ptr)
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

    def device_buffer(self, nbytes: int) -> int:
        ptr = self._ck(self.rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc")
        self._dev.append(ptr)
        return int(ptr)

    def h2d(self, dev: int, host: np.ndarray) -> None:
        self._ck(
            self.rt.cudaMemcpyAsync(
                dev, host.ctypes.data, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream
            ),
            "cudaMemcpyAsync",
        )

    def d2h(self, host: np.ndarray, dev: int) -> None:
        self._ck(
            self.rt.cudaMemcpyAsync(
                host.ctypes.data, dev, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream
            ),
            "cudaMemcpyAsync",
        )

    def sync(self) -> None:
        self._ck(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def event(self):
        ev = self._ck(self.rt.cudaEventCreate(), "cudaEventCreate")
        self._events.append(ev)
        return ev

    def record(self, ev) -> None:
        self._ck(self.rt.cudaEventRecord(ev, self.stream), "cudaEventRecord")

    def elapsed_ms(self, start, end) -> float:
        return float(self._ck(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def close(self) -> None:
        if self.stream is not None:
            self.rt.cudaStreamSynchronize(self.stream)
        for ev in self._events:
            self.rt.cudaEventDestroy(ev)
        for p in self._dev:
            self.rt.cudaFree(p)
        for p in self._host:
            self.rt.cudaFreeHost(p)
        if self.stream is not None:
            self.rt.cudaStreamDestroy(self.stream)
        self._events, self._dev, self._host, self.stream = [], [], [], None


class PyCudaMemory:
    """The same interface through pycuda, on the device's primary context (the one TensorRT's CUDA runtime uses)."""

    name = "pycuda"

    def __init__(self, device: int):
        import pycuda.driver as drv

        drv.init()
        self.drv = drv
        self.ctx = drv.Device(int(device)).retain_primary_context()
        self.ctx.push()
        self.stream = drv.Stream()
        self._keep = []  # allocations live until close()

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def host_buffer(self, shape, dtype) -> np.ndarray:
        arr = self.drv.pagelocked_empty(tuple(shape), dtype)
        self._keep.append(arr)
        return arr

    def device_buffer(self, nbytes: int) -> int:
        alloc = self.drv.mem_alloc(max(nbytes, 1))
        self._keep.append(alloc)
        return int(alloc)

    def h2d(self, dev: int, host: np.ndarray) -> None:
        self.drv.memcpy_htod_async(dev, host, self.stream)

    def d2h(self, host: np.ndarray, dev: int) -> None:
        self.drv.memcpy_dtoh_async(host, dev, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    def event(self):
        return self.drv.Event()

    def record(self, ev) -> None:
        ev.record(self.stream)

    def elapsed_ms(self, start, end) -> float:
        return float(end.time_since(start))

    def close(self) -> None:
        self.stream.synchronize()
        for obj in self._keep:
            if hasattr(obj, "free"):
                obj.free()
        self._keep = []
        self.ctx.pop()
