"""`python -m engine_factory check` and the Snakefile resolve targets with the same function
(scripts/engine_factory/factory.py): for every backend option they name the same plan keys, or refuse the config with
the same message. Full TensorRT is played by
TensorRT-RTX (importable as `tensorrt` from the run directory) on a simulated sm86 GPU."""

import json
import re

import pytest

from helpers import MLP_INPUTS, cli, env_without, snakemake, write_config

CASES = [
    ("tensorrt_rtx", {}, None),
    ("tensorrt_rtx", {"hardware_compatibility_level": "ampere_plus"}, "TensorRT-RTX supports neither option"),
    ("tensorrt_rtx", {"version_compatible": True}, "TensorRT-RTX supports neither option"),
    ("tensorrt", {}, None),
    ("tensorrt", {"hardware_compatibility_level": "ampere_plus"}, None),
    ("tensorrt", {"hardware_compatibility_level": "same_compute_capability", "version_compatible": True}, None),
]


@pytest.mark.parametrize("backend, options, refused", CASES)
def test_check_and_the_snakefile_name_the_same_keys(tmp_path, backend, options, refused):
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(
        "import sys, tensorrt_rtx\nsys.modules[__name__] = tensorrt_rtx\n"
    )
    facts = tmp_path / "host.json"
    facts.write_text(json.dumps({"gpus": [{"index": 0, "name": "sim A6000", "compute_capability": "8.6"}]}))
    cfg = {
        "backend": backend,
        "targets": {"rtx": ["8.9"]},
        "precisions": ["fp32", "fp16"],
        "tensorrt": options,
        "models": {
            "mlp": {
                "framework": "onnx",
                "onnx": "../artifacts/demo/tiny_mlp.opset11.onnx",
                "inputs": MLP_INPUTS,
                "outputs": ["scores"],
            }
        },
    }
    configfile = write_config(tmp_path, cfg)
    env = env_without("FACTORY_HOST_FACTS", FACTORY_HOST_FACTS=str(facts))
    check = cli("check", "--configfile", configfile, "-d", tmp_path, "--json", env=env, cwd=tmp_path)
    dag = snakemake(tmp_path, "-n", env=env, check=False, cwd=tmp_path)
    if refused:
        assert check.returncode == 1 and refused in check.stderr, check.stderr
        assert dag.returncode != 0 and refused in dag.out
        return
    assert check.returncode == 0 and dag.returncode == 0, check.stderr + dag.out[-2000:]
    checked = {(j["key"], j["cc"], j["precision"]) for j in json.loads(check.stdout)["jobs"]}
    # the plans the build jobs will write (one job may build several targets)
    planned = set(re.findall(r"artifacts/mlp/plans/([^/]+)/sm(\d+)/(\w+)/model\.plan(?=[,\s])", dag.out))
    assert checked == planned and checked, (checked, planned)
    suffix = "".join(f"-{v}" for k, v in options.items() if k == "hardware_compatibility_level") + (
        "-vc" if options.get("version_compatible") else ""
    )
    assert {k for k, _, _ in checked} == {("trt-" if backend == "tensorrt" else "rtx-") + "1.7.1.116" + suffix}
