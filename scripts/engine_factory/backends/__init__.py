"""Backends that turn ONNX into plans: TensorRT-RTX (AOT, no GPU needed) and full TensorRT (local GPU).

load_backend(name) -> Backend(name, short, module, version, key)
resolve_backend("auto"|"tensorrt"|"tensorrt_rtx", gpus) -> backend name
precision_support(short, cc, precision) -> None or the reason to skip
build_plan(trt, onnx_path, plan_path, *, model, input_profiles, ...) -> build facts
"""

from .core import build_plan
from .registry import Backend, get_logger, load_backend, precision_support, resolve_backend

__all__ = ["Backend", "build_plan", "get_logger", "load_backend", "precision_support", "resolve_backend"]
