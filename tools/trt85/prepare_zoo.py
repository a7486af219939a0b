"""Here, on the CPU: make what a TensorRT 8.5 run on the GPU machine needs, and write its job list.

    .venv/bin/python tools/trt85/prepare_zoo.py WORK CARRY
      WORK   a working directory outside the checkout (the demo zoo plus two ONNX models that ship inside the onnx
             package: light_squeezenet, light_shufflenet); the factory runs there up to the plans' inputs
      CARRY  a git-excluded folder of the checkout: WORK's files that the build and validate jobs read, and jobs.json
             (each build and validate job's io and settings, exactly as the Snakefile would give them for a host
             with one H100 and `tensorrt` 8.5.3.1)

The DAG is resolved with a stand-in `tensorrt` module (its version only; no job imports it here) and the host facts
of the GPU machine (FACTORY_HOST_FACTS). On the GPU machine tools/trt85/gpu_run.py runs the jobs.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import yaml

ROOT = Path(__file__).resolve().parents[2]
VERSION = "8.5.3.1"
H100 = {
    "hostname": "gpu",
    "gpus": [
        {
            "index": 0,
            "cuda_index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "compute_capability": "9.0",
            "memory_mib": 81559,
            "sm_count": 132,
        }
    ],
    "driver_version": "580.159.04",
    "cuda_driver_version": "13.0",
    "probe_errors": [],
}
LIGHT = ("light_squeezenet", "light_shufflenet")  # light_resnet50: 293 MB of variants, over a call's 64 MiB


def main(work: Path, carry: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "config").mkdir(exist_ok=True)
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    # TensorFlow models: no TensorFlow on the GPU machine (their jobs here would make only the ONNX anyway; kept out)
    models = {k: v for k, v in demo["models"].items() if v.get("framework") != "tensorflow"}
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    for name in LIGHT:
        shutil.copy(light / f"{name}.onnx", work / "config" / f"{name}.onnx")
        graph = onnx.load(light / f"{name}.onnx", load_external_data=False).graph
        inits = {t.name for t in graph.initializer}
        (inp,) = [i for i in graph.input if i.name not in inits]
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        rng = np.random.default_rng(0)  # calibration for int8: seeded images in [0, 1)
        np.savez(work / "config" / f"{name}.calib.npz", **{inp.name: rng.random((8, *shape[1:]), np.float32)})
        models[name] = {
            "framework": "onnx",
            "onnx": f"{name}.onnx",
            "inputs": {inp.name: {"shape": shape}},
            "outputs": [o.name for o in graph.output],
            "calibration": f"{name}.calib.npz",
        }
    cfg = {
        **{k: v for k, v in demo.items() if k != "models"},
        "backend": "tensorrt",
        "precisions": ["fp32", "fp16", "bf16", "int8", "fp8"],
        "models": models,
    }
    cfg["deploy"] = {"triton": {"enabled": True}}  # one repository per (model, precision) of the plans that pass
    config = work / "config" / "zoo.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    fake = work / "fake-tensorrt"
    (fake / "tensorrt").mkdir(parents=True, exist_ok=True)
    (fake / "tensorrt" / "__init__.py").write_text(f'__version__ = "{VERSION}"  # DAG only: no job imports it\n')
    (work / "host.json").write_text(json.dumps(H100))
    env = {
        **os.environ,
        "FACTORY_HOST_FACTS": str(work / "host.json"),
        "PYTHONPATH": str(fake) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    os.environ.update(env)
    sys.path.insert(0, str(fake))
    from engine_factory import config as config_mod
    from engine_factory import paths
    from engine_factory.factory import resolve

    os.chdir(work)
    cfg_loaded = config_mod.load([str(config)], workdir=str(work))
    f = resolve(cfg_loaded, H100, workdir=str(work))
    jobs, needed = [], set()
    for stage in ("build", "validate"):
        for ts in f.target_sets(stage):
            for j in f.jobs:
                if j["precision"] not in ts.precisions or j["cc"] not in ts.ccs:
                    continue
                w = {"model": j["model"], "key": j["key"], "precision": j["precision"], "targets": ts.tag}
                inputs = f.inputs(stage, w)
                outputs = {k: v.format(**w) for k, v in paths.set_outputs(stage, list(ts.ccs)).items()}
                jobs.append(
                    {
                        "stage": stage,
                        "io": {"inputs": inputs, "outputs": outputs, "wildcards": w},
                        "settings": f.settings(stage, w),
                    }
                )
                needed |= {v for k, v in inputs.items() if stage == "build" or not k.startswith("plan")}
    # after the plans: the Triton repositories (deploy) and the report, with the settings the rules would pass
    for name in f.deploy_targets:
        w = {"repository": name}
        jobs.append(
            {
                "stage": "deploy",
                "io": {"inputs": f.inputs("deploy", w), "outputs": {"config": paths.triton_config(name)}},
                "settings": f.settings("deploy", w),
            }
        )
    report_outputs = {
        "json": paths.REPORT_JSON,
        "html": paths.REPORT_HTML,
        "overview": paths.REPORT_OVERVIEW_CHART,
        "pages": paths.REPORT_PAGES,
        "charts": paths.REPORT_CHARTS,
    }
    jobs.append({"stage": "report", "io": {"inputs": {}, "outputs": report_outputs}, "settings": f.report_settings()})
    # what the report reads besides the validations made there: parity results and the ONNX records
    needed |= {p for p in f.report_inputs() if "/validation/" not in p or "/validation/onnx/" in p}
    needed -= {paths.REPORT_SPEC}
    print(f"{len(jobs)} jobs; skipped: {[(s['model'], s['precision'], s['reason']) for s in f.skipped][:3]} ...")
    # PyTorch eager beside the plans on the GPU: the demo's state_dicts
    needed |= {f"artifacts/demo/{m}.pth" for m, v in models.items() if v.get("framework") == "pytorch"}
    targets = sorted(needed)
    # The files themselves are made with the default backend and no stand-in: ModelOpt imports `tensorrt` when it
    # finds one, and the stand-in has nothing but a version. Variants, golden outputs and parity do not depend on it.
    rtx_config = work / "config" / "zoo-rtx.yaml"
    rtx_config.write_text(yaml.safe_dump({**cfg, "backend": "tensorrt_rtx"}, sort_keys=False))
    plain = {k: v for k, v in env.items() if k != "FACTORY_HOST_FACTS"}
    plain["PYTHONPATH"] = env["PYTHONPATH"].split(os.pathsep, 1)[1]
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "snakemake"),
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(work),
            "--configfile",
            str(rtx_config),
            "--cores",
            "2",
            "--keep-going",
            *targets,
        ],
        check=False,
        env=plain,
    )
    if carry.exists():
        shutil.rmtree(carry)
    made = [p for p in targets if (work / p).exists()]  # a variant no tool could make stays out (its jobs fail there)
    for p in made:
        (carry / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / p, carry / p)
    (carry / "jobs.json").write_text(json.dumps({"jobs": jobs, "skipped": f.skipped, "host": H100}, indent=1))
    (carry / "zoo.yaml").write_text(config.read_text())
    print(f"{len(targets)} files into {carry}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
