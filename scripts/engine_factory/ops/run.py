"""`python -m engine_factory run <stage> <io> <settings>`: one stage in this process
(scripts/engine_factory/jobs.py)."""

from __future__ import annotations

import argparse

from ..jobs import run_stage

STAGES_HELP = """stages (each is one Snakemake rule's job; the workflow passes the arguments):
  demo       make one demo-zoo file (checkpoint, old-opset ONNX, calibration set) from fixed seeds
  freeze     PyTorch state_dict + class -> torch.export .pt2; TorchScript -> frozen .pt
  freeze_tf  TensorFlow (Keras .keras/.h5, SavedModel, TF1 checkpoint) -> frozen GraphDef .pb + tensor sidecar
  export     frozen model -> model.onnx (or import and upgrade a user's ONNX file)
  simplify   model.onnx -> model.sim.onnx (onnxslim / onnxsim, checked in onnxruntime, with fallbacks)
  precision  model.sim.onnx -> model.<precision>.onnx (ModelOpt AutoCast / PTQ)
  golden     reference outputs of the framework in fp32 on fixed inputs
  parity     one ONNX variant in onnxruntime vs the golden outputs
  build      one TensorRT / TensorRT-RTX plan for one key, compute capability and precision
  validate   one plan: ONNX parity of its variant, header check, execution on a GPU where possible
  report     summary.json + index.html over every target
  deploy     one Triton model repository entry (config.pbtxt + 1/ with a plan per compute capability)

example (what the build rule runs):
  python -m engine_factory run build \\
    '{"inputs": {"onnx": "artifacts/m/onnx/model.fp16.onnx"}, "outputs": {"plan": "artifacts/m/plans/rtx-1.7.1.116/sm89/fp16/model.plan", ...}}' \\
    '{"model": "m", "backend": "tensorrt_rtx", "key": "rtx-1.7.1.116", "compute_capability": "8.9", ...}'
"""  # noqa: E501 - the example is one command line


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="run one stage (what the Snakemake rules call)",
        epilog=STAGES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one stage in this process: read its inputs, write its outputs "
        "atomically with their provenance sidecars.",
    )
    p.add_argument("stage", help="the stage (listed below)")
    p.add_argument(
        "io", help='JSON {"inputs": {label: path}, "outputs": {label: path}, "wildcards": {...}}, or @file.json'
    )
    p.add_argument("settings", help="JSON of the stage's settings, or @file.json")
    p.set_defaults(func=main)


def main(args) -> int:
    return run_stage(args.stage, args.io, args.settings)
