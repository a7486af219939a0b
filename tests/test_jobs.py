"""How jobs' processes start (scripts/engine_factory/jobs.py, scripts/engine_factory/forkserver.py) and what a forked
job inherits ready-made (scripts/engine_factory/frameworks/pytorch.py reuse_onnx_registry, provenance.stage_tools): each
cost a measured share of every job (issue 13, benchmarks/README.md), and each must leave a job's result as it was."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO

MAIN_SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
if __name__ == "__mp_main__":  # multiprocessing re-ran this script to prepare a child
    open({marker!r}, "a").write("re-run\\n")
if __name__ == "__main__":
    from engine_factory import jobs
    jobs.PRELOAD, jobs.WARMUP = [], []  # the mechanism alone, without the libraries' imports
    if {without_setup!r}:
        jobs.PRELOAD = []
        import multiprocessing
        ctx = multiprocessing.get_context("forkserver")
    else:
        ctx = jobs._mp_context(True, [])
    child = ctx.Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    sys.exit(child.exitcode)
"""


@pytest.mark.parametrize("without_setup", [False, True])
def test_forkserver_children_do_not_rerun_snakemakes_main_script(tmp_path, without_setup):
    marker = tmp_path / "reruns.txt"
    script = tmp_path / "snakemake_like_main.py"  # run as a script, as bin/snakemake is: __main__ has a __file__
    script.write_text(MAIN_SCRIPT.format(repo=str(REPO), marker=str(marker), without_setup=without_setup))
    env = {k: v for k, v in os.environ.items() if k != "ENGINE_FACTORY_MAIN_SCRIPT"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    if without_setup:  # the control: multiprocessing's own behaviour, which the setup module avoids
        assert marker.read_text() == "re-run\n"
    else:
        assert not marker.exists()


def test_stage_tools_from_the_snakefiles_versions_equal_the_installed_ones(monkeypatch):
    from engine_factory import provenance

    monkeypatch.delenv(provenance.TOOLS_ENV, raising=False)
    installed = {stage: provenance.stage_tools(stage) for stage in provenance.STAGE_TOOLS}
    monkeypatch.setenv(provenance.TOOLS_ENV, json.dumps(provenance.tool_versions()))
    assert {stage: provenance.stage_tools(stage) for stage in provenance.STAGE_TOOLS} == installed
    assert installed["precision"]["nvidia-modelopt"] and installed["freeze"] == {"torch": installed["freeze"]["torch"]}


REGISTRY_SCRIPT = """
import sys, torch
sys.path.insert(0, {repo!r})
from torch import nn
from torch.onnx._internal.exporter import _registration
from engine_factory.frameworks.pytorch import reuse_onnx_registry

def export(path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    ep = torch.export.export(net, (torch.zeros(2, 3, 8, 8),))
    torch.onnx.export(ep, (), path, dynamo=True, opset_version=18, external_data=False, verbose=False)
    return open(path, "rb").read()

torch.manual_seed(0); plain = export({tmp!r} + "/plain.onnx")
assert reuse_onnx_registry() and not reuse_onnx_registry()  # patched once
builds = []
listed = _registration.onnxscript_apis.get_torchlib_ops
_registration.onnxscript_apis.get_torchlib_ops = lambda: builds.append(1) or listed()  # counts registry builds
torch.manual_seed(0); first = export({tmp!r} + "/first.onnx")
torch.manual_seed(0); second = export({tmp!r} + "/second.onnx")
a = _registration.ONNXRegistry().from_torchlib(opset_version=18)
a.functions["engine-factory::probe"] = ["x"]  # what a call's custom translation does to its registry
b = _registration.ONNXRegistry().from_torchlib(opset_version=18)
built_once = len(builds) == 1
from onnxscript.function_libs.torch_lib import registration
relu = registration.default_registry["aten::relu"].overloads[0]
registration.default_registry.register(relu, "engine_factory::probe")  # a model package's own torchlib function
_registration.ONNXRegistry().from_torchlib(opset_version=18)
print(plain == first == second, "engine-factory::probe" in b.functions, len(b.functions) == len(a.functions) - 1,
      built_once, len(builds) == 2)
"""


def test_the_reused_onnx_registry_exports_the_same_bytes_each_export_gets_its_own_and_new_functions_rebuild_it(
    tmp_path,
):
    proc = subprocess.run(
        [sys.executable, "-c", REGISTRY_SCRIPT.format(repo=str(REPO), tmp=str(tmp_path))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["True", "False", "True", "True", "True"]
