"""Slurm routing from the config (scripts/engine_factory/cluster.py), targets with pools, and the resources each rule
gets in a dry run: no Slurm needed (the real cluster runs are tests/workflow/test_slurm.py, marker `slurm`)."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from engine_factory import cluster
from engine_factory.backends import Backend
from engine_factory.config import check
from engine_factory.errors import FactoryError
from engine_factory.targets import plan_jobs, target_gpus

from helpers import MLP_INPUTS, REPO

POOLS = {
    "h100": {
        "compute_capability": "9.0",
        "partition": "gpu",
        "constraint": "h100",
        "gres": "gpu:h100:1",
        "runtime": 120,
    },
    "l4": {"compute_capability": "8.9", "partition": "gpu", "gpu_model": "l4"},
}
SLURM = {"cpu": {"partition": "cpu", "runtime": 30, "slurm_extra": "--qos=short"}, "pools": POOLS}


def zoo(**top):
    return {
        "models": {
            "tiny_mlp": {
                "framework": "onnx",
                "onnx": "artifacts/demo/tiny_mlp.opset11.onnx",
                "inputs": MLP_INPUTS,
                "outputs": ["scores"],
                "precisions": ["fp16", "fp8"],
                "calibration": "artifacts/demo/tiny_mlp.calib.npz",
            }
        },
        **top,
    }


def test_routes_by_compute_capability():
    cfg = check(zoo(slurm=SLURM))
    assert cluster.resources(cfg) == {
        "slurm_partition": "cpu",
        "constraint": "",
        "gres": "",
        "gpu": 0,
        "gpu_model": "",
        "runtime": 30,
        "slurm_extra": "--qos=short",
    }
    assert cluster.resources(cfg, "90") == {
        "slurm_partition": "gpu",
        "constraint": "h100",
        "gres": "gpu:h100:1",
        "gpu": 0,
        "gpu_model": "",
        "runtime": 120,
        "slurm_extra": "",
    }
    l4 = cluster.resources(cfg, "8.9")
    assert (l4["gpu"], l4["gpu_model"], l4["gres"], l4["runtime"]) == (1, "l4", "", 30)  # runtime from slurm.cpu
    assert cluster.resources(cfg, "86") == cluster.resources(cfg)  # no pool of that cc: the CPU route
    assert cluster.resource_names(check(zoo())) == [] and cluster.resources(check(zoo()), "90") == {}
    assert cluster.describe(cfg) == [
        "slurm cpu: -p cpu -t 30 --qos=short",
        "slurm pool h100 (sm90): -p gpu -C h100 --gres=gpu:h100:1 -t 120",
        "slurm pool l4 (sm89): -p gpu --gpus=l4:1",
    ]


def test_pools_are_the_full_tensorrt_targets():
    cfg = check(zoo(slurm=SLURM))
    local = [{"compute_capability": "8.6", "name": "local A6000"}]
    gpus = target_gpus(cfg, local)
    assert [(g["pool"], g["compute_capability"]) for g in gpus] == [("h100", "9.0"), ("l4", "8.9")]
    jobs, skipped = plan_jobs(
        cfg, backend=Backend("tensorrt", "trt", None, "10.13.3.9", "trt-10.13.3.9"), key="trt-10.13.3.9", gpus=gpus
    )
    assert sorted((j["cc"], j["precision"]) for j in jobs) == [
        ("89", "fp16"),
        ("89", "fp8"),
        ("90", "fp16"),
        ("90", "fp8"),
    ]
    assert target_gpus(check(zoo()), local) == local  # without pools: the local GPUs, as before


@pytest.mark.parametrize(
    "slurm, message",
    [
        (
            {
                "pools": {
                    "a": {"compute_capability": "8.0", "gres": "gpu:1"},
                    "b": {"compute_capability": "8.0", "gres": "gpu:a100:1"},
                }
            },
            r"slurm.pools.b.compute_capability.*pools 'a' and 'b' both have compute capability 8.0",
        ),
        ({"pools": {"a": {"compute_capability": "8.0", "gres": "gpu:1", "gpus": 1}}}, r"slurm.pools.a.*either 'gres'"),
        ({"pools": {"a": {"compute_capability": "8.0", "partition": "gpu"}}}, r"slurm.pools.a.*must ask for a GPU"),
        ({"cpu": {"partition": "cpu", "gres": "gpu:1"}}, r"slurm.cpu.gres.*GPU pools"),
        ({"pools": {"a": {"partition": "gpu", "gres": "gpu:1"}}}, r"slurm.pools.a: 'compute_capability' is a required"),
        (
            {"pools": {"a": {"compute_capability": "9.0", "gres": "gpu:1", "partiton": "gpu"}}},
            r"slurm.pools.a: Additional properties.*'partiton' was unexpected",
        ),
        ({"cpu": {"partition": "cpu", "gres": "'gpu:1'"}}, r"slurm.cpu.gres: .*does not match"),
        (
            {"pools": {"bad name": {"compute_capability": "9.0", "gres": "gpu:1"}}},
            r"slurm.pools: 'bad name' does not match",
        ),
    ],
)
def test_bad_slurm_config_is_named(slurm, message):
    with pytest.raises(FactoryError, match=message):
        check(zoo(slurm=slurm))


def dry_run(tmp_path, cfg, env=None, *targets):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "config.yaml"),
            "-n",
            *targets,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**{k: v for k, v in os.environ.items() if k != "FACTORY_HOST_FACTS"}, **(env or {})},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    jobs = []
    for block in re.split(r"\n(?=rule )", out):
        m = re.match(r"rule (\w+):", block)
        if m:
            wc = re.search(r"wildcards: (.*)", block)
            res = dict(re.findall(r"(\w+)=([^,\n]*)", re.search(r"resources: (.*)", block).group(1)))
            jobs.append((m.group(1), wc.group(1) if wc else "", res))
    return jobs


def test_dry_run_routes_every_rule(tmp_path):
    """TensorRT-RTX: everything on the CPU route except validation of plans whose compute capability has a pool."""
    jobs = dry_run(tmp_path, zoo(backend="tensorrt_rtx", targets={"rtx": ["8.6", "8.9"]}, slurm=SLURM))
    assert {r for r, _, _ in jobs} >= {
        "demo_asset",
        "export",
        "simplify",
        "precision",
        "build_sm86_89",
        "validate_sm86",
        "validate_sm89",
        "report",
    }
    for rule, wildcards, res in jobs:
        if rule in ("all", "outcome"):  # local rules: they run on the submit host
            continue
        pool = rule == "validate_sm89"  # with pools, validations go one cc per job; RTX builds span the targets
        assert res["slurm_partition"] == ("gpu" if pool else "cpu"), (rule, wildcards, res)
        assert (res["gpu_model"], res["gpu"]) == (("l4", "1") if pool else ("", "0")), (rule, res)
        assert res["runtime"] == "30" and "gpu_sm" not in " ".join(res)


def test_dry_run_full_tensorrt_builds_for_pools_not_local_gpus(tmp_path):
    """Full TensorRT (TensorRT-RTX stands in for it, importable as `tensorrt` from the run directory): with pools,
    the keys are the pools' compute capabilities, whatever the local GPUs, and builds go to their pool."""
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(
        "import sys, tensorrt_rtx\nsys.modules[__name__] = tensorrt_rtx\n"
    )
    facts = tmp_path / "host.json"
    facts.write_text(json.dumps({"gpus": [{"index": 0, "name": "local A6000", "compute_capability": "8.6"}]}))
    jobs = dry_run(tmp_path, zoo(backend="auto", slurm=SLURM), {"FACTORY_HOST_FACTS": str(facts)})
    builds = {(rule, wc): res for rule, wc, res in jobs if rule.startswith("build_")}  # one rule per cc
    assert sorted(rule.removeprefix("build_sm") for rule, _ in builds) == ["89", "89", "90", "90"]
    for (rule, wc), res in builds.items():
        assert "key=trt-" in wc and "gpu_sm86" not in res  # no local-GPU resource: the pools' nodes hold the GPUs
        expected = ("gpu", "h100", "gpu:h100:1") if rule == "build_sm90" else ("gpu", "", "")
        assert (res["slurm_partition"], res["constraint"], res["gres"]) == expected, (wc, res)
