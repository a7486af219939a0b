"""The embedded demo zoo: small models and the files they start from, all made from fixed seeds (no downloads).

`make_asset(path)` writes one file under artifacts/demo/ (the `demo_asset` rule calls it):
    tiny_cnn.pth, two_tower.pth          state_dicts of the classes in engine_factory/demo/models (seeded, briefly
    trained)
    tiny_mlp.opset11.onnx                an old-opset ONNX file, to enter the chain at import (framework: onnx)
    <model>.calib.npz                    calibration inputs for int8/fp8, named like the model's inputs
    tf_cnn.keras, tf_two_head.h5, tf1_mlp.ckpt/   TensorFlow models (scripts/engine_factory/demo/tf_assets.py)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import FactoryError


def _torch():
    import torch
    from torch import nn

    return torch, nn


def _classes():
    from . import models

    return {"TinyCNN": models.TinyCNN, "TwoTower": models.TwoTower, "TinyMLP": models.TinyMLP}


# name -> (class, input shapes without batch, calibration seed)
DEMO_MODELS = {
    "tiny_cnn": ("TinyCNN", {"x": (3, 32, 32)}),
    "two_tower": ("TwoTower", {"image": (3, 16, 16), "features": (8,)}),
    "tiny_mlp": ("TinyMLP", {"features": (16,)}),
}
CALIBRATION_SAMPLES = 64


def _trained(name: str):
    """A seeded model, trained for a few steps on a synthetic task so that its outputs carry a signal."""
    torch, nn = _torch()
    cls_name, shapes = DEMO_MODELS[name]
    torch.manual_seed(0)
    net = _classes()[cls_name]()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(30):
        xs = [torch.randn(32, *s, generator=gen) for s in shapes.values()]
        out = net(*xs)
        logits = out[0] if isinstance(out, tuple) else out
        target = (xs[0].flatten(1)[:, : logits.shape[1]]).argmax(1)  # a learnable rule on the first input
        loss = nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def make_asset(path: str) -> None:
    p = Path(path)
    name, kind = p.name.split(".", 1)
    from .tf_assets import TF_DEMO_MODELS, make_tf_asset

    if name in TF_DEMO_MODELS:
        return make_tf_asset(p, name, kind)
    if name not in DEMO_MODELS:
        raise FactoryError(
            f"no demo asset named '{p.name}' (demo models: {', '.join([*DEMO_MODELS, *TF_DEMO_MODELS])})", path=path
        )
    torch, _ = _torch()
    if kind == "pth":
        buf = io.BytesIO()
        torch.save(_trained(name).state_dict(), buf)
        atomic.write_bytes(p, buf.getvalue())
    elif kind == "calib.npz":
        rng = np.random.default_rng(1234)
        arrays = {
            k: rng.standard_normal((CALIBRATION_SAMPLES, *s)).astype(np.float32)
            for k, s in DEMO_MODELS[name][1].items()
        }
        with atomic.atomic_path(p) as tmp:
            np.savez(tmp, **arrays)
    elif kind == "opset11.onnx":
        net = _trained(name)
        ((input_name, shape),) = DEMO_MODELS[name][1].items()
        with atomic.atomic_path(p) as tmp:
            torch.onnx.export(
                net,
                (torch.zeros(2, *shape),),
                str(tmp),
                dynamo=False,
                opset_version=11,
                input_names=[input_name],
                output_names=["scores"],
                dynamic_axes={input_name: {0: "batch"}, "scores": {0: "batch"}},
            )
    else:
        raise FactoryError(f"unknown demo asset kind '{kind}'", path=path)
