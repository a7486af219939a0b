"""The hand-written script a user would write instead of the factory: one process, the same chain, nothing else.

For each model of a zoo config (benchmarks/zoo_gen.py writes one): torch.export -> torch.onnx.export(dynamo) (or the
user's ONNX file, converted to opset 18) -> onnxslim -> per precision: fp32 as is, ModelOpt AutoCast (fp16/bf16) or
ModelOpt PTQ on the calibration set (int8/fp8) -> a TensorRT-RTX AOT build per target (fp8 only at sm89 and up, as
the factory). No validation, provenance, failure records or report: the floor the factory is measured against.

    python benchmarks/bare_chain.py ZOO.yaml OUTDIR
"""

from __future__ import annotations

import importlib
import shutil
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import yaml

RTX_TARGETS = {"8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120"}
FP8_FROM = (8, 9)


def main(zoo: Path, out: Path) -> dict:
    import numpy as np
    import onnx
    import onnxslim
    import tensorrt_rtx as trt
    import torch  # noqa: F401 - every import is part of the script's cost, paid up front as a user's script would
    from modelopt.onnx.autocast import convert_to_mixed_precision  # noqa: F401
    from modelopt.onnx.quantization import quantize  # noqa: F401

    cfg = yaml.safe_load(zoo.read_text())
    root = zoo.parent
    sys.path.insert(0, str(root))
    logger = trt.Logger(trt.Logger.ERROR)
    plans = 0
    phases = defaultdict(float)  # seconds per phase, to set beside the factory's per-stage totals

    @contextmanager
    def phase(name):
        t0 = time.perf_counter()
        yield
        phases[name] += time.perf_counter() - t0

    started = time.perf_counter()
    for name, m in cfg["models"].items():
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        onnx_path = d / "model.onnx"
        specs = m["inputs"]
        with phase("export"):
            export_model(m, specs, root, onnx_path)
        sim = d / "model.sim.onnx"
        with phase("simplify"):
            onnx.save(onnxslim.slim(onnx.load(str(onnx_path))), str(sim))
        with np.load(root / m["calibration"]) as z:
            calib = {k: z[k] for k in z.files}
        for precision in cfg["precisions"]:
            variant = d / f"model.{precision}.onnx"
            with phase("precision"):
                make_variant(precision, sim, variant, calib)
            for cc in cfg["targets"]["rtx"]:
                if precision == "fp8" and tuple(map(int, cc.split("."))) < FP8_FROM:
                    continue
                with phase("build"):
                    plan = build(trt, logger, variant, specs, cc, f"{name} {precision} sm{cc}")
                (d / f"model.{precision}.sm{cc.replace('.', '')}.plan").write_bytes(plan)
                plans += 1
    return {
        "plans": plans,
        "work_s": round(time.perf_counter() - started, 2),
        "phases_s": {k: round(v, 2) for k, v in phases.items()},
    }


def export_model(m, specs, root, onnx_path):
    import onnx
    import torch
    from onnx import version_converter
    from torch.export import Dim

    if m["framework"] == "pytorch":
        module, cls = m["model"].split(":")
        net = getattr(importlib.import_module(module), cls)()
        net.load_state_dict(torch.load(root / m["checkpoint"], weights_only=True))
        net.eval()
        example = tuple(torch.randn(*s["opt"]) for s in specs.values())
        batch = Dim("batch", min=1, max=max(s["max"][0] for s in specs.values()))
        ep = torch.export.export(net, example, dynamic_shapes=tuple({0: batch} for _ in specs))
        torch.onnx.export(
            ep,
            (),
            str(onnx_path),
            dynamo=True,
            opset_version=18,
            external_data=False,
            input_names=list(specs),
            output_names=m["outputs"],
        )
    else:
        onnx.save(version_converter.convert_version(onnx.load(str(root / m["onnx"])), 18), str(onnx_path))


def make_variant(precision, sim, variant, calib):
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision
    from modelopt.onnx.quantization import quantize

    if precision == "fp32":
        shutil.copy(sim, variant)
    elif precision in ("fp16", "bf16"):
        onnx.save(convert_to_mixed_precision(str(sim), precision, keep_io_types=True, providers=["cpu"]), str(variant))
    else:
        quantize(
            str(sim),
            quantize_mode=precision,
            calibration_data=calib,
            calibration_eps=["cpu"],
            high_precision_dtype="fp32",
            output_path=str(variant),
            log_level="ERROR",
        )


def build(trt, logger, variant, specs, cc, what):
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(variant)):
        raise RuntimeError(f"{what}: {parser.get_error(0)}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for k, s in specs.items():
        profile.set_shape(k, s["min"], s["opt"], s["max"])
    config.add_optimization_profile(profile)
    config.num_compute_capabilities = 1
    config.set_compute_capability(getattr(trt.ComputeCapability, RTX_TARGETS[cc]), 0)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"{what}: build failed")
    return plan


if __name__ == "__main__":
    import json

    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
