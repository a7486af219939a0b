"""The jobs' forkserver imports this last (engine_factory/jobs.py PRELOAD): each library's first use, once, so that
every
job forked afterwards starts warm.

A first torch.export + torch.onnx.export in a process costs ~2.8 s more than the next one (dynamo, sympy, networkx
and onnxscript's torch library load lazily; measured 3.6 s against 0.8 s on a small CNN), and the freeze and export
jobs of every PyTorch model would each pay it. Likewise a first ModelOpt AutoCast call (0.25 s against 0.06 s, its
lazy sympy and shape-inference paths) and a first onnxruntime session in every precision job. Run with one torch
thread, on fake tensors, and onnxruntime's sessions closed again, so no thread pool exists when the forkserver forks
(a fork of a process with OpenMP or onnxruntime threads is unsafe); `threads_now()` lets the forkserver's users
check that. ModelOpt's quantization is not warmed here: it patches onnxruntime in the process that calls it (each job's
own, scripts/engine_factory/graph/precision.py), and every job forks from this one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile


def _warm_torch_export(onnx_path: str) -> None:
    import torch
    from torch import nn
    from torch.export import Dim

    from .frameworks.pytorch import reuse_onnx_registry

    reuse_onnx_registry()  # built by the export below, then copied by every export of a forked job (it says why)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
        ).eval()
        ep = torch.export.export(net, (torch.zeros(2, 3, 8, 8),), dynamic_shapes=({0: Dim("batch", min=1, max=4)},))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(ep, (), onnx_path, dynamo=True, opset_version=18, external_data=False, verbose=False)
    finally:
        torch.set_num_threads(threads)


def _warm_onnx_stages(onnx_path: str) -> None:
    """One onnxruntime run (parity) and one AutoCast fp16 conversion (precision) of the warm-up's ONNX file.
    ModelOpt's loggers are quietened for it by level, not by redirecting output: their handlers hold the stream
    they were made with, and the jobs inherit them."""
    import numpy as np
    from modelopt.onnx.autocast import convert_to_mixed_precision

    from .tensors import run_onnxruntime

    run_onnxruntime(onnx_path, {"input": np.zeros((2, 3, 8, 8), np.float32)})  # torch.onnx's name for it
    loggers = [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith("modelopt")
    ] + [logging.getLogger("modelopt")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        convert_to_mixed_precision(onnx_path, "fp16", keep_io_types=True, providers=["cpu"])
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _stop_tqdm_monitor() -> None:
    """tqdm's first progress bar starts its monitor thread, which takes tqdm's lock every few seconds: forked while
    it holds it, a job's next progress bar (ModelOpt's calibration) would wait forever. A job's own first bar starts
    its own monitor (tqdm starts a new one where the one it has was stopped)."""
    import threading

    for thread in threading.enumerate():
        if thread.name == "tqdm_monitor" and hasattr(thread, "exit"):
            thread.exit()  # ends and joins it


def threads_now() -> int:
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1


try:
    with tempfile.TemporaryDirectory(prefix="engine-factory-warmup-") as _d:
        _warm_torch_export(os.path.join(_d, "warm.onnx"))
        _warm_onnx_stages(os.path.join(_d, "warm.onnx"))
except Exception:  # a warm-up is an optimisation: a job that needs the path pays its first use itself
    pass
finally:
    _stop_tqdm_monitor()  # torch.export's and AutoCast's progress bars start it
    import gc

    # What the forkserver holds now lives as long as it does: out of the collector's sight, so that a job's garbage
    # collections neither walk these ~millions of objects nor write to (and so copy) their pages (Python's gc.freeze
    # documentation; measured in benchmarks/README.md).
    gc.collect()  # also ends the warm-up's onnxruntime sessions, and their thread pools with them
    gc.freeze()
