"""The jobs' forkserver imports this last (scripts/jobs.py PRELOAD): each library's first use, once, so that every
job forked afterwards starts warm.

A first torch.export + torch.onnx.export in a process costs ~2.8 s more than the next one (dynamo, sympy, networkx
and onnxscript's torch library load lazily; measured 3.6 s against 0.8 s on a small CNN), and the freeze and export
jobs of every PyTorch model would each pay it. Run with one torch thread, on fake tensors, so no thread pool exists
when the forkserver forks (a fork of a process with OpenMP or onnxruntime threads is unsafe); `threads_now()` lets
the forkserver's users check that.
"""
from __future__ import annotations

import os
import tempfile


def _warm_torch_export() -> None:
    import torch
    from torch import nn
    from torch.export import Dim

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(4, 2)).eval()
        ep = torch.export.export(net, (torch.zeros(2, 3, 8, 8),), dynamic_shapes=({0: Dim("batch", min=1, max=4)},))
        with tempfile.TemporaryDirectory(prefix="engine-factory-warmup-") as d:
            torch.onnx.export(ep, (), os.path.join(d, "warm.onnx"), dynamo=True, opset_version=18,
                              external_data=False, verbose=False)
    finally:
        torch.set_num_threads(threads)


def threads_now() -> int:
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1


try:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        _warm_torch_export()
except Exception:  # a warm-up is an optimisation: a job that needs the path pays its first use itself
    pass
