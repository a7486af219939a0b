"""A recorded failure is retried in the run where something upstream of it changes (issue 27), not one run later.

The zoo: an ONNX source whose op (a custom-domain FancyOp, with its reference outputs given as samples) onnxruntime's
checks never run but TensorRT-RTX's parser rejects, so the model's build fails and is recorded. Judged by the build's
own inputs' bytes, that failure would still apply at the start of the run that replaces the source (the precision
ONNX it read is only made again during that run): the run would re-make the ONNX, leave the build out, report the
old error, and retry it one run later. Here the same run builds the plan, and nothing reports the old error.
"""

import json
import os
import re

import numpy as np
import pytest
import yaml

from engine_factory import paths, provenance

from helpers import MLP_INPUTS, build_once, cli, planned_jobs
from helpers import snakemake as run_snakemake

KEY = "rtx-1.7.1.116"
PLAN = paths.plan("m", KEY, "89", "fp32")


def save_onnx(path, op: str, domain: str = "") -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["features"], ["scores"], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 16])],
    )
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))


def write_zoo(root):
    root.mkdir(parents=True)
    save_onnx(root / "m.onnx", "FancyOp", "com.example")  # the builder rejects it: "cannot parse ... FancyOp"
    features = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    np.savez(root / "samples.npz", features=features, scores=np.abs(features))  # what the good source (Abs) gives
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.9"]},
        "precisions": ["fp32"],
        "models": {
            "m": {
                "framework": "onnx",
                "onnx": str(root / "m.onnx"),
                "inputs": MLP_INPUTS,
                "outputs": ["scores"],
                "samples": str(root / "samples.npz"),
            }
        },
    }
    (root / "zoo.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root / "zoo.yaml"


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    """The zoo run once: its build failed and is recorded."""
    built = build_once(tmp_path_factory.mktemp("retry"), write_zoo, check=False)
    work = built["work"]
    assert built["proc"].returncode != 0
    records = sorted(p.relative_to(work).as_posix() for p in (work / "artifacts" / "failed").rglob("*.json"))
    assert records == [f"artifacts/failed/build/m.{KEY}.sm89.fp32.json"], built["proc"].out[-3000:]
    return built


def dry_run(work, configfile, env=None):
    proc = run_snakemake(work, "-n", configfile=configfile, env=env)
    return {rule for rule, _ in planned_jobs(proc.out)}


def test_a_failure_stays_out_while_nothing_upstream_changes_and_is_retried_when_an_upstream_tool_or_setting_does(
    failed, tmp_path
):
    work, configfile = failed["work"], failed["config"]
    assert "build" not in dry_run(work, configfile)  # nothing changed: the known failure is not retried
    # another version of a simplify tool (as an upgrade of the venv would be; the Snakefile reads the versions from
    # FACTORY_TOOL_VERSIONS where set): the simplify job runs again, and so does the build in the same run
    versions = {**provenance.tool_versions(), "onnxslim": "0.0.0+test"}
    env = {**os.environ, provenance.TOOLS_ENV: json.dumps(versions)}
    assert {"simplify", "precision", "build"} <= dry_run(work, configfile, env)
    # a setting of the simplify job (upstream of the build; no setting of the build itself): the simplified ONNX,
    # and so the precision ONNX the build reads, are made again in this run, and so is the build
    cfg = yaml.safe_load(configfile.read_text())
    cfg["simplifier"] = "onnxsim"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert {"simplify", "precision", "build"} <= dry_run(work, changed)


def test_a_replaced_source_retries_the_failure_in_the_same_run(failed):
    work, configfile = failed["work"], failed["config"]
    save_onnx(failed["zoo"] / "m.onnx", "Abs")  # the user fixes the source: the builder takes this one
    proc = run_snakemake(work, configfile=configfile, check=False)
    out = proc.out
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"rule build_sm89:", out), out[-4000:]
    assert (work / PLAN).read_bytes()[:4] == b"vtrt"
    assert not list((work / "artifacts" / "failed").rglob("*.json"))  # the record went with the success
    summary = json.loads((work / paths.REPORT_JSON).read_text())
    [plan] = [p for p in summary["plans"] if p["model"] == "m"]
    assert plan["status"] != "failed" and "FancyOp" not in json.dumps(summary), plan
    assert "FancyOp" not in (work / paths.REPORT_HTML).read_text()
    st = cli("status", "-d", work, "--configfile", configfile)
    assert st.returncode == 0 and "0 failed" in st.stdout and "FancyOp" not in st.stdout, st.stdout + st.stderr
