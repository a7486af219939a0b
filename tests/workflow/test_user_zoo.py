"""A user's own zoo, outside the checkout: their package (a UNet with ConvTranspose, an MLP importing a helper that
lives on their own PYTHONPATH), their checkpoints and calibration files beside their config, relative and absolute
paths; nothing under artifacts/demo/. The workflow runs it unmodified, from another working directory.

Also: only the zoo's models are built and counted; a class that does not exist is refused naming the model and key;
editing the model's code rebuilds it; a combination the backend cannot build (TensorRT-RTX 1.7 fails bf16 on this
UNet: "Could not infer output types") is a recorded result, the report is still written, the exit status says so, and
the failure is not retried until something it depends on changes; moving the checkout rebuilds nothing.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine_factory import paths

from helpers import REPO, build_once, cli, planned_jobs
from helpers import snakemake as run_snakemake

KEY = "rtx-1.7.1.116"
NETS = '''
import torch
from torch import nn

from zoo_helpers import scale  # from the user's own PYTHONPATH, not the config's python_path


class UNet(nn.Module):
    """Tiny encoder-decoder with a ConvTranspose upsampling and a skip connection."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.pool = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.head = nn.Conv2d(2 * width, 2, 1)

    def forward(self, x):
        d = self.down(x)
        u = self.up(torch.relu(self.pool(d)))
        return self.head(torch.cat([d, u], dim=1))


class MLP(nn.Module):
    def __init__(self, features: int = 12):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 24), nn.ReLU(), nn.Linear(24, 5))

    def forward(self, features):
        return scale(self.net(features))
'''
UNET_INPUTS = {
    "x": {"shape": ["batch", 3, 16, 16], "min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}
}
MLP_INPUTS = {"features": {"shape": ["batch", 12], "min": [1, 12], "opt": [4, 12], "max": [8, 12]}}


def write_zoo(root: Path) -> Path:
    """The user's files: mypkg (nets + a sibling module), helpers elsewhere, checkpoints, calibration, config."""
    import numpy as np
    import torch

    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "nets.py").write_text(NETS)
    (root / "helpers").mkdir()
    (root / "helpers" / "zoo_helpers.py").write_text("def scale(t):\n    return t * 2.0\n")
    sys.path[:0] = [str(root), str(root / "helpers")]
    try:
        from mypkg.nets import MLP, UNet

        torch.manual_seed(0)
        torch.save(UNet().state_dict(), root / "unet.pth")
        (root / "weights").mkdir()
        torch.save(MLP().state_dict(), root / "weights" / "mlp.pth")
    finally:
        del sys.path[:2]
        for name in ("mypkg", "mypkg.nets", "zoo_helpers"):
            sys.modules.pop(name, None)
    (root / "calib").mkdir()
    np.savez(root / "calib" / "unet.npz", x=np.random.default_rng(0).standard_normal((16, 3, 16, 16), np.float32))
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.6"]},
        "python_path": ["."],
        "models": {
            "unet": {
                "framework": "pytorch",
                "checkpoint": "unet.pth",
                "model": "mypkg.nets:UNet",
                "inputs": UNET_INPUTS,
                "outputs": ["mask"],
                "precisions": ["fp32", "bf16", "int8"],
                "calibration": "calib/unet.npz",
            },
            "mlp": {
                "framework": "pytorch",
                "checkpoint": str(root / "weights" / "mlp.pth"),  # absolute: kept
                "model": "mypkg.nets:MLP",
                "inputs": MLP_INPUTS,
                "outputs": ["scores"],
                "precisions": ["fp32"],
            },
        },
    }
    (root / "my-zoo.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root / "my-zoo.yaml"


def user_env(zoo: Path, **extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(zoo / "helpers"), **extra}


def snakemake(workdir: Path, configfile: Path, *args, env=None):
    return run_snakemake(workdir, *args, configfile=configfile, env=env, check=False)


def dry_run_rules(workdir, configfile, env) -> list[tuple[str, str | None]]:
    proc = snakemake(workdir, configfile, "-n", env=env)
    assert proc.returncode == 0, proc.out
    return planned_jobs(proc.out)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The zoo written outside the checkout, built once from a separate working directory."""
    base = tmp_path_factory.mktemp("user")
    return build_once(base, write_zoo, env=user_env(base / "zoo"), check=False)


def test_only_the_zoo_is_built_and_the_failure_is_a_result(built):
    work, proc = built["work"], built["proc"]
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, "a failed target must make the run's exit status non-zero"
    summary = json.loads((work / paths.REPORT_JSON).read_text())  # written although a job failed
    assert set(summary["models"]) == {"unet", "mlp"}
    assert not (work / "artifacts" / "demo").exists() and not (work / "artifacts" / "tiny_cnn").exists()
    cells = {(p["model"], p["precision"]): p for p in summary["plans"]}
    assert set(cells) == {("unet", "fp32"), ("unet", "bf16"), ("unet", "int8"), ("mlp", "fp32")}
    failed = cells[("unet", "bf16")]
    assert failed["status"] == "failed" and failed["stage"] == "build", failed
    assert "Could not infer output types" in failed["error"] and failed["log"].endswith(".log")
    assert (work / failed["log"]).exists()
    for ok in (("unet", "fp32"), ("unet", "int8"), ("mlp", "fp32")):
        assert cells[ok]["status"] in ("not-run", "fail"), cells[ok]  # built; execution not possible here
        assert (work / cells[ok]["plan"]).read_bytes()[:4] == b"vtrt"
    assert not (work / paths.plan("unet", KEY, "86", "bf16")).exists()
    html = (work / paths.REPORT_HTML).read_text()  # the overview says it once; the model's page shows it whole
    assert "failed to build</span> at <b>build</b>" in html and "Could not infer output types" in html
    page = (work / paths.report_page("unet")).read_text()
    assert "failed at <b>build</b>" in page and "Could not infer output types" in page
    assert f'href="{os.path.relpath(failed["log"], paths.REPORT_PAGES)}"' in page
    assert "Could not infer output types" in out


def test_a_known_failure_is_not_retried_until_something_changes(built, tmp_path):
    work, configfile, env = built["work"], built["config"], built["env"]
    rules = dry_run_rules(work, configfile, env)
    assert ("build", "unet") not in rules and ("validate", "unet") not in rules, rules
    proc = snakemake(work, configfile, env=env)  # the no-op rerun still says that something failed
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "1 of 4 targets failed" in out and "unet bf16 sm86: build" in out, out[-3000:]
    assert "rule build" not in out
    st = cli("status", "-d", str(work), "--configfile", str(configfile), env=env)
    assert st.returncode == 1 and "3 current, 0 stale, 0 missing, 1 failed" in st.stdout, st.stdout + st.stderr
    assert "unet: 1 failed - failed: build: " in st.stdout and "Could not infer output types" in st.stdout
    retry = dry_run_rules(work, configfile, {**env, "FACTORY_RETRY_FAILED": "1"})
    assert ("build", "unet") in retry
    # a settings change of that target retries it (and only what depends on that setting)
    cfg = yaml.safe_load(configfile.read_text())
    cfg["models"]["unet"]["build"] = {"optimization_level": 2}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    shutil.copy(configfile, tmp_path / "orig.yaml")
    configfile.write_text(changed.read_text())
    try:
        assert ("build", "unet") in dry_run_rules(work, configfile, env)
    finally:
        shutil.copy(tmp_path / "orig.yaml", configfile)


def test_check_agrees_with_the_snakefile(built):
    work, configfile, env = built["work"], built["config"], built["env"]
    proc = cli("check", "--configfile", str(configfile), "-d", str(work), "--json", env=env, cwd="/")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["models"] == ["unet", "mlp"] and result["key"] == KEY
    assert {(j["model"], j["precision"]) for j in result["jobs"]} == {
        ("unet", "fp32"),
        ("unet", "bf16"),
        ("unet", "int8"),
        ("mlp", "fp32"),
    }
    assert [(f["model"], f["precision"], f["stage"]) for f in result["failed"]] == [("unet", "bf16", "build")]
    text = cli("check", "--configfile", str(configfile), "-d", str(work), env=env, cwd="/")
    assert "2 models; backend rtx-1.7.1.116; 4 plans to build, 0 skipped, 1 known failures" in text.stdout


def test_a_class_that_does_not_exist_is_refused_naming_model_and_key(built, tmp_path):
    cfg = yaml.safe_load(built["config"].read_text())
    cfg["models"]["mlp"]["model"] = "mypkg.nets:NoSuchNet"
    bad = built["zoo"] / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = cli("check", "--configfile", str(bad), "-d", str(tmp_path), env=built["env"])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: model 'mlp', config key 'models.mlp.model': module 'mypkg.nets' "
        f"({built['zoo'] / 'mypkg' / 'nets.py'}) defines no 'NoSuchNet'"
    ], proc.stderr
    dag = snakemake(tmp_path, bad, "-n", env=built["env"])
    assert dag.returncode != 0 and "models.mlp.model" in dag.stdout + dag.stderr
    cfg["models"]["mlp"]["model"] = "otherpkg.nets:MLP"
    bad.write_text(yaml.safe_dump(cfg))
    proc = cli("check", "--configfile", str(bad), "-d", str(tmp_path), env=built["env"])
    assert proc.returncode == 1 and "no module named 'otherpkg'" in proc.stderr and "python_path" in proc.stderr
    assert not (tmp_path / "artifacts").exists()


def test_editing_the_model_code_rebuilds_that_model(built, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(built["work"], work, symlinks=True)
    zoo = tmp_path / "zoo"
    shutil.copytree(built["zoo"], zoo)
    cfg = yaml.safe_load(built["config"].read_text())
    cfg["models"]["mlp"]["checkpoint"] = str(zoo / "weights" / "mlp.pth")
    configfile = zoo / "my-zoo.yaml"
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = user_env(zoo)
    nets = zoo / "mypkg" / "nets.py"
    # the copy moved the zoo (new absolute paths): rebase the copy's state by a first run, then edit
    snakemake(work, configfile, env=env)
    assert ("freeze", "mlp") not in dry_run_rules(work, configfile, env)
    nets.write_text(
        nets.read_text().replace("return scale(self.net(features))", "return scale(self.net(features)) + 1.0")
    )
    rules = dry_run_rules(work, configfile, env)
    assert ("freeze", "mlp") in rules and ("golden", "mlp") in rules and ("build", "mlp") in rules, rules
    assert ("freeze", "unet") in rules  # same file: both classes share their digest (a module is the unit)
    st = cli("status", "-d", str(work), "--configfile", str(configfile), env=env)
    assert "model code" in st.stdout, st.stdout
    snakemake(work, configfile, env=env)
    record = json.loads((work / paths.provenance(paths.frozen("mlp", "pt2"))).read_text())
    assert record["params"]["model_code"] and record["params"]["source_sha256"]["source"]


def test_moving_the_checkout_rebuilds_nothing(built, tmp_path):
    """A copy of the checkout elsewhere (as a Slurm node that mounts it at another path would see it): same
    commands, so Snakemake and status both say nothing to do."""
    moved = tmp_path / "elsewhere" / "factory"
    moved.mkdir(parents=True)
    for part in ("Snakefile", "scripts", "workflow", "config"):
        src = REPO / part
        (
            shutil.copytree(src, moved / part, ignore=shutil.ignore_patterns("__pycache__"))
            if src.is_dir()
            else shutil.copy(src, moved / part)
        )
    work = tmp_path / "work"
    shutil.copytree(built["work"], work, symlinks=True)
    zoo = built["zoo"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(moved / "Snakefile"),
            "--workflow-profile",
            str(moved / "workflow" / "profiles" / "default"),
            "--directory",
            str(work),
            "--configfile",
            str(built["config"]),
            "--cores",
            "2",
            "-n",
        ],
        capture_output=True,
        text=True,
        env=built["env"],
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    jobs = [rule for rule, _ in planned_jobs(out) if rule not in ("outcome", "all")]  # outcome: the failed target
    assert proc.returncode == 0 and jobs == [], out[-3000:]
    st = subprocess.run(
        [sys.executable, "-m", "engine_factory", "status", "-d", str(work), "--configfile", str(built["config"])],
        capture_output=True,
        text=True,
        cwd=moved,
        env={**built["env"], "PYTHONPATH": f"{moved}:{zoo / 'helpers'}"},
        timeout=600,
    )
    assert "3 current, 0 stale, 0 missing, 1 failed" in st.stdout, st.stdout + st.stderr


def test_help_and_errors_are_short(tmp_path):
    for args in (
        ["-h"],
        ["check", "-h"],
        ["run", "-h"],
        ["status", "-h"],
        ["verify", "-h"],
        ["prune", "-h"],
        ["scheduled", "-h"],
        ["changes", "-h"],
        ["attest", "-h"],
    ):
        proc = cli(*args, cwd=tmp_path)
        assert proc.returncode == 0 and "example" in proc.stdout, (args, proc.stdout)
    assert "build      one TensorRT" in cli("run", "-h").stdout
    proc = cli("check", "--configfile", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr == f"error: file '{tmp_path / 'nope.yaml'}': config file not found\n"
    proc = cli("status", "-d", str(tmp_path), "--configfile", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "config file not found" in proc.stderr
    (tmp_path / "broken.yaml").write_text("models: [unclosed\n")
    proc = cli("check", str(tmp_path / "broken.yaml"), cwd=tmp_path)
    assert proc.returncode == 1 and "not valid YAML at line" in proc.stderr and proc.stderr.count("\n") == 1


def test_overlays_merge_but_a_model_lives_in_one_file(built, tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"targets": {"rtx": ["8.9"]}}))
    proc = cli(
        "check", "--configfile", str(built["config"]), str(site), "-d", str(tmp_path), "--json", env=built["env"]
    )
    assert proc.returncode == 0, proc.stderr
    assert {j["cc"] for j in json.loads(proc.stdout)["jobs"]} == {"89"}
    twice = tmp_path / "twice.yaml"
    twice.write_text(yaml.safe_dump({"models": {"mlp": {"precisions": ["fp16"]}}}))
    proc = cli("check", "--configfile", str(built["config"]), str(twice), "-d", str(tmp_path), env=built["env"])
    assert proc.returncode == 1 and f"defined in both {built['config']} and {twice}" in proc.stderr
