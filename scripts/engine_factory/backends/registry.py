"""The backend registry: which backends there are, how to import one, and what each answers (rtx.py, tensorrt.py),
without building anything. The builder (core.py), the header check (header.py) and the runtime (runtime.py) stand on
it; it imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import FactoryError
from . import rtx, tensorrt, tensorrt8

BACKENDS = {rtx.MODULE: rtx, tensorrt.MODULE: tensorrt}
_BY_SHORT = {m.SHORT: m for m in BACKENDS.values()}
# specs that answer for a backend module of one major version (tensorrt8.py for `tensorrt` 8.x); every plan magic
VERSIONED = {tensorrt.MODULE: [tensorrt8]}
SPECS = [*BACKENDS.values(), tensorrt8]


@dataclass(frozen=True)
class Backend:
    """An installed backend. Its differences are answered by its own module (rtx.py, tensorrt.py), so no caller
    tests a backend's name."""

    name: str  # "tensorrt_rtx" | "tensorrt"
    short: str  # "rtx" | "trt"
    module: Any  # the imported Python module
    version: str  # module.__version__
    key: str  # f"{short}-{version}", the backend part of an artifact key

    @property
    def spec(self):
        return _backend_module(self.name, self.version)

    @property
    def strongly_typed_flag(self) -> bool:
        return default_strongly_typed_flag(self.module)

    @property
    def timing_cache_unused(self) -> str | None:
        """Why this backend's builds keep no timing cache; None when they keep one per key."""
        return self.spec.TIMING_CACHE_UNUSED

    @property
    def builds_on_gpu(self) -> bool:
        """Full TensorRT builds on (and for) a GPU of the key's compute capability; TensorRT-RTX ahead of time."""
        return self.spec.BUILDS_ON_GPU

    @property
    def preload(self) -> list[str]:
        """Modules the jobs' forkserver may import before forking them (scripts/engine_factory/jobs.py): the
        backend's own where importing it touches no GPU."""
        return [self.name] if self.spec.PRELOADABLE else []

    def aot_target(self, cc: str) -> str | None:
        """The compute capability to hand the builder as an AOT target; None where the build is for the local GPU."""
        return None if self.builds_on_gpu else cc

    @property
    def triton_unloadable(self) -> str | None:
        """Why stock Triton (tensorrt_plan) cannot load this backend's plans; None when it can."""
        return self.spec.TRITON_UNLOADABLE

    def target_ccs(self, cfg: dict, gpus: list[dict]) -> list[str]:
        return self.spec.target_ccs(cfg, gpus)

    def key_for(self, cfg: dict) -> str:
        """The backend part of a plan key: backend, exact version, and the build options that make another
        artifact (full TensorRT's portability options)."""
        return self.key + self.spec.key_suffix(cfg["tensorrt"])

    def build_options(self, cfg: dict) -> dict:
        return self.spec.build_options(cfg)

    def precision_support(self, cc: str, precision: str) -> str | None:
        return self.spec.precision_support(str(cc), precision)


def _backend_module(name: str, version: str | None = None):
    mod = BACKENDS.get(name) or _BY_SHORT.get(name)
    if mod is None:
        raise FactoryError(f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})", key="backend")
    if version is not None:  # the module's version picks the spec where one answers for that version (TensorRT 8.x)
        mod = next((v for v in VERSIONED.get(mod.MODULE, []) if v.applies_to(version)), mod)
    return mod


def load_backend(name: str) -> Backend:
    """Import a backend by name ("tensorrt_rtx", "tensorrt"; "rtx"/"trt" accepted); FactoryError says how to fix."""
    mod = _backend_module(name)
    trt = mod.import_module()
    mod = _backend_module(mod.MODULE, trt.__version__)
    return Backend(mod.MODULE, mod.SHORT, trt, trt.__version__, f"{mod.SHORT}-{trt.__version__}")


def resolve_backend(requested: str, gpus: list) -> str:
    """`auto` means full TensorRT where it imports and a GPU is present, TensorRT-RTX otherwise."""
    if requested != "auto":
        return _backend_module(requested).MODULE
    if gpus:
        try:
            tensorrt.import_module()
            return tensorrt.MODULE
        except FactoryError:
            pass
    return rtx.MODULE


def precision_support(backend: str, cc: str, precision: str) -> str | None:
    """None when (backend by name or short name, compute capability, precision) can be built, else the reason."""
    return _backend_module(backend).precision_support(str(cc), precision)


def spec_of(name: str, version: str | None = None):
    """A backend's module of answers (rtx.py, tensorrt.py; tensorrt8.py for a `tensorrt` of version 8.x), by name or
    short name, without importing TensorRT."""
    return _backend_module(name, version)


def default_strongly_typed_flag(trt) -> bool:
    """TensorRT 10.x needs NetworkDefinitionCreationFlag.STRONGLY_TYPED; 11.x and RTX are always strongly typed."""
    major = int(trt.__version__.split(".")[0])
    return (
        trt.__name__.split(".")[0] == tensorrt.MODULE
        and major == 10
        and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    )


# --------------------------------------------------------------------------------------------------- logging
_LOGGERS: dict[str, Any] = {}


def get_logger(trt, echo: Callable[[str], None] | None = None):
    """One ILogger per backend module (TensorRT warns when builders get different loggers).

    It keeps (severity, message) of warnings and errors in `.records` (callers reset it) and echoes them to `echo`.
    """
    if trt.__name__ not in _LOGGERS:

        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.records, self.echo = [], None

            def log(self, severity, msg):
                if severity <= trt.ILogger.Severity.WARNING:
                    self.records.append((severity.name, msg))
                    if self.echo:
                        self.echo(f"[{trt.__name__}] {severity.name}: {msg}")

            def errors(self) -> list[str]:
                return [m for s, m in self.records if s in ("ERROR", "INTERNAL_ERROR")]

        _LOGGERS[trt.__name__] = _Logger()
    logger = _LOGGERS[trt.__name__]
    logger.records, logger.echo = [], echo
    return logger
