"""Issue 27: a rebuild does exactly the work that changed — the code digest follows what a class uses."""

from engine_factory.modelcode import code_fingerprint, search_path


def _pkg(root):
    pkg = root / "zoopkg"
    (pkg / "layers").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "layers" / "__init__.py").write_text("")
    (pkg / "layers" / "conv.py").write_text("def block():\n    return 1\n")
    (pkg / "common.py").write_text("K = 2\n")
    (pkg / "unet.py").write_text(
        "import torch\nfrom .layers.conv import block\nfrom zoopkg import common\n\nclass UNet:\n    pass\n"
    )
    (pkg / "mlp.py").write_text("from . import common\n\nclass MLP:\n    def forward(self):\n        return 1\n")
    (pkg / "other.py").write_text("X = 1\n")  # imported by no one
    return pkg


def _digest(root, ref):
    return code_fingerprint(ref, search_path([root]), model="m")


def test_editing_one_module_rebuilds_only_the_classes_that_use_it(tmp_path):
    pkg = _pkg(tmp_path)
    unet, mlp = _digest(tmp_path, "zoopkg.unet:UNet"), _digest(tmp_path, "zoopkg.mlp:MLP")
    # unet.py, layers/conv.py, layers/__init__.py, common.py, __init__.py
    assert unet["files"] == 5 and mlp["files"] == 3, (unet, mlp)
    (pkg / "mlp.py").write_text((pkg / "mlp.py").read_text().replace("return 1", "return 2"))
    assert _digest(tmp_path, "zoopkg.unet:UNet") == unet  # the sibling in another module: unchanged
    assert _digest(tmp_path, "zoopkg.mlp:MLP")["sha256"] != mlp["sha256"]
    (pkg / "other.py").write_text("X = 2\n")  # a module nobody imports changes nothing
    assert _digest(tmp_path, "zoopkg.unet:UNet") == unet
    (pkg / "layers" / "conv.py").write_text("def block():\n    return 3\n")  # imported (relative, two levels)
    assert _digest(tmp_path, "zoopkg.unet:UNet")["sha256"] != unet["sha256"]


def test_a_shared_module_changes_every_class_that_imports_it(tmp_path):
    pkg = _pkg(tmp_path)
    unet, mlp = _digest(tmp_path, "zoopkg.unet:UNet"), _digest(tmp_path, "zoopkg.mlp:MLP")
    (pkg / "common.py").write_text("K = 3\n")
    assert _digest(tmp_path, "zoopkg.unet:UNet")["sha256"] != unet["sha256"]
    assert _digest(tmp_path, "zoopkg.mlp:MLP")["sha256"] != mlp["sha256"]


def test_a_module_outside_any_package_follows_its_neighbours(tmp_path):
    (tmp_path / "nets.py").write_text("import helper\nimport numpy\n\nclass Net:\n    pass\n")
    (tmp_path / "helper.py").write_text("A = 1\n")
    (tmp_path / "unrelated.py").write_text("B = 1\n")
    first = _digest(tmp_path, "nets:Net")
    assert first["files"] == 2
    (tmp_path / "unrelated.py").write_text("B = 2\n")
    assert _digest(tmp_path, "nets:Net") == first
    (tmp_path / "helper.py").write_text("A = 2\n")
    assert _digest(tmp_path, "nets:Net")["sha256"] != first["sha256"]


# --- the workflow: two models whose classes live in two modules of one package ---

NET = """
import torch
from torch import nn


class {name}(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, features):
        return self.net(features)
"""
INPUTS = {"features": {"shape": ["batch", 12], "min": [1, 12], "opt": [2, 12], "max": [4, 12]}}


def _write_zoo(root):
    import sys

    import torch
    import yaml

    (root / "twopkg").mkdir(parents=True)
    (root / "twopkg" / "__init__.py").write_text("")
    for mod, name in (("a", "NetA"), ("b", "NetB")):
        (root / "twopkg" / f"{mod}.py").write_text(NET.format(name=name))
    sys.path.insert(0, str(root))
    try:
        from twopkg.a import NetA
        from twopkg.b import NetB

        torch.manual_seed(0)
        torch.save(NetA().state_dict(), root / "a.pth")
        torch.save(NetB().state_dict(), root / "b.pth")
    finally:
        sys.path.remove(str(root))
        for name in ("twopkg", "twopkg.a", "twopkg.b"):
            sys.modules.pop(name, None)
    models = {
        m: {
            "framework": "pytorch",
            "checkpoint": f"{m}.pth",
            "model": f"twopkg.{m}:Net{m.upper()}",
            "inputs": INPUTS,
            "outputs": ["y"],
            "precisions": ["fp32", "fp16"],
        }
        for m in ("a", "b")
    }
    cfg = {"backend": "tensorrt_rtx", "targets": {"rtx": ["8.6", "8.9"]}, "python_path": ["."], "models": models}
    (root / "zoo.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root / "zoo.yaml"


def _plans(work, model):
    from engine_factory.fingerprint import sha256

    return {
        p.relative_to(work).as_posix(): sha256(p)
        for p in sorted((work / "artifacts").rglob("*.plan"))
        if f"/{model}/" in p.as_posix()
    }


def test_reverting_a_change_gets_the_same_plans_back_without_building(tmp_path):
    """Issue 27 point 4 (and 5 through the workflow): edit model a's forward, run, revert, run: a's plans come back
    byte-identical from the early cutoff (its build jobs say so and build nothing); b is never touched."""
    import pytest

    from helpers import build_once, planned_jobs
    from helpers import snakemake as run

    built = build_once(tmp_path, _write_zoo)
    work, config = built["work"], built["config"]
    first_a, first_b = _plans(work, "a"), _plans(work, "b")
    assert len(first_a) == 4 and len(first_b) == 4, (first_a, first_b)
    a_py = built["zoo"] / "twopkg" / "a.py"
    original = a_py.read_text()
    a_py.write_text(original.replace("return self.net(features)", "return self.net(features) * 2.0"))
    jobs = planned_jobs(run(work, "-n", configfile=config).out)
    assert ("freeze", "a") in jobs and ("build", "a") in jobs
    assert not [j for j in jobs if j[1] == "b"], jobs  # the sibling in another module: nothing
    run(work, configfile=config)
    changed = _plans(work, "a")
    assert _plans(work, "b") == first_b
    a_py.write_text(original)  # the revert
    proc = run(work, configfile=config)
    logs = "".join(p.read_text() for p in (work / "artifacts" / "logs" / "build").glob("*a*.log"))
    assert _plans(work, "a") == first_a, "the revert must give back the very plans of before"
    assert logs.count("early cutoff") >= 2, logs[-3000:]  # fp32 and fp16 build jobs: nothing built
    if changed == first_a:
        pytest.fail("the edit must have changed a's plans for this test to mean anything")
    assert not planned_jobs(run(work, "-n", configfile=config).out), proc.out[-2000:]
    # a tolerance change re-validates (the variant's parity, the plans' validation) and builds nothing
    import yaml

    cfg = yaml.safe_load(config.read_text())
    cfg["models"]["a"]["tolerances"] = {"fp16": {"outputs": {"y": {"min_cosine": 0.5}}}}
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    started = __import__("time").time()
    run(work, configfile=config)
    assert _plans(work, "a") == first_a
    fp16_logs = [
        p.read_text()
        for p in (work / "artifacts" / "logs" / "build").glob("*a*fp16*.log")
        if p.stat().st_mtime >= started
    ]
    assert fp16_logs and all("early cutoff" in t for t in fp16_logs), fp16_logs


def test_a_stored_output_damaged_in_place_is_never_restored(tmp_path, monkeypatch):
    import json

    from engine_factory import cutoff, paths

    monkeypatch.chdir(tmp_path)
    plan = "artifacts/plans/k/sm86/fp32/model.plan"
    outputs = {"plan": plan, "provenance": paths.provenance(plan)}
    (tmp_path / plan).parent.mkdir(parents=True)
    (tmp_path / plan).write_bytes(b"plan-bytes")
    digest = __import__("hashlib").sha256(b"plan-bytes").hexdigest()
    (tmp_path / outputs["provenance"]).write_text(json.dumps({"artifact": {"sha256": digest}}))
    cutoff.remember(outputs, "k1")
    for f in outputs.values():
        (tmp_path / f).unlink()
    assert cutoff.restore(outputs, "k1") and (tmp_path / plan).read_bytes() == b"plan-bytes"
    with open(tmp_path / plan, "r+b") as f:  # damaged in place: the stored hard link shares it
        f.truncate(4)
    for f in outputs.values():
        (tmp_path / f).unlink()
    assert not cutoff.restore(outputs, "k1") and not (tmp_path / plan).exists()
    assert not cutoff.restore(outputs, "k2")  # an action never stored
