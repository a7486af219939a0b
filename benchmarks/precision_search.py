"""Precision search (issue 16): search time and accuracy reached, per quantized variant, on the demo zoo and on a
transformer-shaped encoder with outlier features (the LayerNorm-gain outliers of real transformers: one hidden
channel ~100x the others, read back by the next Linear).

The workflow itself runs it, as a user would: a zoo in a temporary folder (the demo zoo's models, the encoder as a
user's PyTorch package, `precision_search: {int8: {}, fp8: {}}` for every model, one TensorRT-RTX target), built up
to the precision jobs' parity files. Each variant's provenance holds the search (`facts.search`): trial 0 is the
variant ModelOpt makes without a search. Writes results/precision-search-<date>-<host>.json and prints a table.

    .venv/bin/python benchmarks/precision_search.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

ENCODER = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d, heads, outlier):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ff1, self.ff2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        with torch.no_grad():  # outlier features: LayerNorm gain of channel 0 x outlier, read back / outlier
            self.ln2.weight[0] *= outlier
            self.ff1.weight[:, 0] /= outlier

    def forward(self, x):
        b, s, d = x.shape
        h = self.ln1(x)
        q, k, v = (t(h).reshape(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(b, s, d))
        return x + self.ff2(torch.nn.functional.gelu(self.ff1(self.ln2(x))))


class Encoder(nn.Module):
    """A BERT-shaped encoder (pre-LN): 2 blocks, hidden 64, 4 heads; mean-pooled sentence embedding."""

    def __init__(self, d=64, heads=4, layers=2, outlier=1000.0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d, heads, outlier) for _ in range(layers))
        self.head = nn.Linear(d, d)

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.head(x.mean(dim=1))
'''


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((int(ln.split()[1]) // 1024 for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), 0)
    from importlib.metadata import version

    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_mb": mem,
        "gpu": "none",
        "python": platform.python_version(),
        "modelopt": version("nvidia-modelopt"),
        "onnxruntime": version("onnxruntime"),
        "load_average_at_start": os.getloadavg(),
    }


def write_zoo(root: Path) -> Path:
    import numpy as np
    import torch

    (root / "encpkg").mkdir(parents=True, exist_ok=True)
    (root / "encpkg" / "__init__.py").write_text("")
    (root / "encpkg" / "nets.py").write_text(ENCODER)
    sys.path.insert(0, str(root))
    from encpkg.nets import Encoder

    torch.manual_seed(0)
    torch.save(Encoder().state_dict(), root / "encoder.pth")
    np.savez(root / "encoder.calib.npz", x=np.random.default_rng(1).standard_normal((64, 16, 64)).astype(np.float32))
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    models = {}
    for name, m in demo["models"].items():
        if "calibration" not in m:
            continue  # no quantized variant to search
        m = {**m, "precisions": [p for p in m.get("precisions", demo["precisions"]) if p in ("int8", "fp8")]}
        for key in ("checkpoint", "onnx", "calibration"):
            if key in m:  # the demo's ../artifacts/demo/ files: made by the workflow in the working directory
                m[key] = m[key].replace("../artifacts/demo/", "artifacts/demo/")
        models[name] = m
    models["tiny_encoder"] = {
        "framework": "pytorch",
        "checkpoint": "encoder.pth",
        "model": "encpkg.nets:Encoder",
        "inputs": {"x": {"shape": ["batch", 16, 64], "min": [1, 16, 64], "opt": [8, 16, 64], "max": [16, 16, 64]}},
        "outputs": ["embedding"],
        "precisions": ["int8", "fp8"],
        "calibration": "encoder.calib.npz",
        "tolerances": {p: {"min_top1_agreement": 0} for p in ("int8", "fp8")},
    }  # an embedding: cosine only
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.9"]},
        "python_path": ["."],
        "precision_search": {"int8": {"budget_s": 300}, "fp8": {"budget_s": 300}},
        "models": models,
    }
    path = root / "zoo.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main() -> None:
    from engine_factory import paths

    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", type=Path, help="work in this folder (kept) instead of a temporary one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        work = base / "work"
        work.mkdir(parents=True, exist_ok=True)
        configfile = write_zoo(base / "zoo")
        # relative paths in the zoo resolve against the zoo folder; the demo assets against the working directory
        cfg = yaml.safe_load(configfile.read_text())
        for m in cfg["models"].values():
            for key in ("checkpoint", "onnx", "calibration"):
                if key in m and m[key].startswith("artifacts/demo/"):
                    m[key] = str(work / m[key])
        configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
        targets = [paths.parity(name, p) for name, m in cfg["models"].items() for p in m["precisions"]]
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "-s",
                str(REPO / "Snakefile"),
                "--workflow-profile",
                str(REPO / "workflow/profiles/default"),
                "--directory",
                str(work),
                "--configfile",
                str(configfile),
                "--cores",
                "2",
                *targets,
            ],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
        rows = []
        for name, m in cfg["models"].items():
            for p in m["precisions"]:
                facts = json.loads((work / paths.provenance(paths.precision_onnx(name, p))).read_text())["facts"]
                parity = json.loads((work / paths.parity(name, p)).read_text())
                s = facts.get("search", {})
                steps = s.get("steps", [])
                worst = lambda acc: min((o["cosine"] for o in acc.values() if "cosine" in o), default=None)  # noqa
                rows.append(
                    {
                        "model": name,
                        "precision": p,
                        "layers": facts.get("layers"),
                        "quantized_layers": facts.get("quantized_layers"),
                        "cosine_without_search": worst(steps[0]["accuracy"]) if steps else None,
                        "search": s.get("status"),
                        "trials": s.get("trials"),
                        "search_s": s.get("seconds"),
                        "kept": s.get("kept"),
                        "cosine_reached": worst(s.get("accuracy") or {}),
                        "parity": parity["status"],
                        "reason": parity.get("reason", "")[:300],
                        "sensitivity_top3": (s.get("sensitivity") or [])[:3],
                    }
                )
    result = {"date": datetime.date.today().isoformat(), "machine": machine(), "wall_s": round(wall, 1), "rows": rows}
    out = REPO / "benchmarks" / "results" / f"precision-search-{result['date']}-{platform.node()}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        "| model | precision | layers quantized | cosine without search | search | trials | search s | kept | "
        "cosine reached | parity |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        kept = ", ".join(n for v in (r["kept"] or {}).values() for n in v) or "—"
        fmt = lambda c: f"{c:.4f}" if c is not None else "—"  # noqa
        print(
            f"| {r['model']} | {r['precision']} | {r['quantized_layers']} of {r['layers']} | "
            f"{fmt(r['cosine_without_search'])} | {r['search']} | {r['trials']} | {r['search_s']} | {kept} | "
            f"{fmt(r['cosine_reached'])} | {r['parity']} |"
        )
    print(f"\nwall {wall:.1f} s (whole workflow to the parity files); {out}")


if __name__ == "__main__":
    main()
