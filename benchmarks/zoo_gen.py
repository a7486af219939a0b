"""A user's zoo of N small models, written outside the checkout: its own model package, checkpoints, ONNX files and
calibration sets, and its config (what benchmarks/scale.py runs the factory and the bare script on).

Three kinds in turn, as a user's zoo mixes them: a PyTorch CNN (one input), a PyTorch two-tower net (two inputs, two
outputs) and an ONNX MLP (a file the user exported elsewhere). Each model has its own seed, so no two are equal.

    python benchmarks/zoo_gen.py DIR N [--precisions fp32 fp16 ...] [--targets 8.0 8.6 ...]
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import yaml

NETS = textwrap.dedent('''\
    """The benchmark zoo's model code (a user's own package)."""
    import torch
    from torch import nn


    class SmallCNN(nn.Module):
        def __init__(self, width: int = 32, classes: int = 10):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(2 * width, classes)

        def forward(self, x):
            return self.head(self.features(x))


    class TwoTower(nn.Module):
        def __init__(self):
            super().__init__()
            self.image = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.feats = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
            self.embed = nn.Linear(64, 32)
            self.classify = nn.Linear(32, 5)

        def forward(self, image, features):
            e = self.embed(torch.cat([self.image(image), self.feats(features)], dim=1))
            return self.classify(torch.relu(e)), e


    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))

        def forward(self, features):
            return self.net(features)
    ''')

KINDS = {
    "cnn": {"class": "SmallCNN", "inputs": {"x": ([3, 32, 32], 8, 32)}, "outputs": ["logits"]},
    "tower": {
        "class": "TwoTower",
        "inputs": {"image": ([3, 16, 16], 4, 16), "features": ([8], 4, 16)},
        "outputs": ["logits", "embedding"],
    },
    "mlp": {"class": "MLP", "onnx": True, "inputs": {"features": ([16], 4, 64)}, "outputs": ["scores"]},
}


def _input_specs(kind: dict) -> dict:
    return {
        name: {
            "dtype": "float32",
            "shape": ["batch", *dims],
            "min": [1, *dims],
            "opt": [opt, *dims],
            "max": [mx, *dims],
        }
        for name, (dims, opt, mx) in kind["inputs"].items()
    }


def write_zoo(root: Path, n: int, precisions: list[str], targets: list[str]) -> Path:
    """Write the zoo under `root`; returns its config file."""
    import sys

    import numpy as np
    import torch

    pkg = root / "zoo_models"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NETS)
    sys.path.insert(0, str(root))
    import zoo_models.nets as nets

    models = {}
    for i in range(n):
        kind_name = list(KINDS)[i % len(KINDS)]
        kind, name = KINDS[kind_name], f"{kind_name}_{i:03d}"
        torch.manual_seed(i)
        net = getattr(nets, kind["class"])().eval()
        rng = np.random.default_rng(i)
        calib = {k: rng.standard_normal((32, *dims)).astype("float32") for k, (dims, _, _) in kind["inputs"].items()}
        np.savez(root / f"{name}.calib.npz", **calib)
        entry = {"inputs": _input_specs(kind), "outputs": kind["outputs"], "calibration": f"{name}.calib.npz"}
        if kind.get("onnx"):
            example = tuple(torch.from_numpy(calib[k][:2]) for k in kind["inputs"])
            torch.onnx.export(
                net,
                example,
                str(root / f"{name}.onnx"),
                dynamo=False,
                opset_version=17,
                input_names=list(kind["inputs"]),
                output_names=kind["outputs"],
                dynamic_axes={k: {0: "batch"} for k in [*kind["inputs"], *kind["outputs"]]},
            )
            entry = {"framework": "onnx", "onnx": f"{name}.onnx", **entry}
        else:
            torch.save(net.state_dict(), root / f"{name}.pth")
            entry = {
                "framework": "pytorch",
                "checkpoint": f"{name}.pth",
                "model": f"zoo_models.nets:{kind['class']}",
                **entry,
            }
        models[name] = entry
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": targets},
        "precisions": precisions,
        "python_path": ["."],
        "models": models,
    }
    path = root / "zoo.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("n", type=int)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "bf16", "int8", "fp8"])
    ap.add_argument("--targets", nargs="+", default=["8.0", "8.6", "8.9", "12.0"])
    a = ap.parse_args()
    print(write_zoo(a.dir, a.n, a.precisions, a.targets))


if __name__ == "__main__":
    main()
