"""Issue 16 end to end: a user's zoo (outside the checkout) with an ONNX model that has one int8-sensitive Gemm,
twice: `plain` without a search (its int8 plans' validation fails, the report says so) and `searched` with
`precision_search.int8` (the search keeps exactly the sensitive node in fp32, validation's ONNX parity passes, the
report names the node and the trials). An unchanged rerun runs nothing; a changed budget re-runs only that model's
int8 precision job and what depends on it."""

import json
import shutil

import numpy as np
import pytest
import yaml

from engine_factory import paths

from helpers import build_once, planned_jobs
from helpers import snakemake as run_snakemake
from helpers.sensitive_models import SENSITIVE, sensitive_inputs, sensitive_mlp

KEY = "rtx-1.7.1.116"


def write_zoo(root):
    root.mkdir(parents=True)
    sensitive_mlp(root / "sensitive.onnx")
    np.savez(root / "calib.npz", features=np.random.default_rng(3).standard_normal((64, 32)).astype(np.float32))
    model = {
        "framework": "onnx",
        "onnx": "sensitive.onnx",
        "inputs": sensitive_inputs(),
        "outputs": ["scores"],
        "precisions": ["fp32", "int8"],
        "calibration": "calib.npz",
    }
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.9"]},
        "models": {"plain": dict(model), "searched": {**model, "precision_search": {"int8": {"budget_s": 120}}}},
    }
    (root / "zoo.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root / "zoo.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_once(tmp_path_factory.mktemp("search"), write_zoo, check=False)


def test_search_passes_where_plain_int8_fails_and_the_report_says_what_was_kept(built):
    work = built["work"]
    summary = json.loads((work / paths.REPORT_JSON).read_text())
    cells = {(c["model"], c["precision"]): c for c in summary["plans"]}
    plain, searched = cells[("plain", "int8")], cells[("searched", "int8")]
    assert plain["status"] == "fail" and plain["checks"]["onnx_parity"]["status"] == "fail", plain
    assert searched["checks"]["onnx_parity"]["status"] == "pass", searched
    assert searched["status"] == "not-run"  # plans cannot execute without a GPU: never a pass
    assert SENSITIVE in searched["checks"]["onnx_parity"]["reason"]
    notes = summary["models"]["searched"]["precision_notes"]["int8"]
    assert notes["search"]["status"] == "pass" and notes["search"]["kept"] == {"fp32": [SENSITIVE]}
    assert notes["layers"] == "2 of 3 layers quantized"
    assert "search" not in summary["models"]["plain"]["precision_notes"]["int8"]
    page = (work / paths.report_page("searched")).read_text()
    assert f"kept 1 node(s) in fp32 ({SENSITIVE})" in page and 'data-search="pass"' in page
    validation = json.loads((work / paths.validation("searched", KEY, "89", "int8")).read_text())
    assert validation["checks"]["onnx_parity"]["precision_search"]["kept"] == {"fp32": [SENSITIVE]}
    assert (work / paths.plan("searched", KEY, "89", "int8")).read_bytes()[:4] == b"vtrt"


def test_unchanged_rerun_runs_nothing_and_a_changed_setting_reruns_only_its_job(built, tmp_path):
    work, configfile = built["work"], built["config"]
    dry = run_snakemake(work, "-n", configfile=configfile, check=False)
    assert "Nothing to be done" in dry.out or planned_jobs(dry.out) == [], dry.out[-2000:]
    cfg = yaml.safe_load(configfile.read_text())
    cfg["models"]["searched"]["precision_search"]["int8"]["budget_s"] = 60
    shutil.copy(configfile, tmp_path / "orig.yaml")
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))  # in place (relative paths), same key order
    try:
        jobs = planned_jobs(run_snakemake(work, "-n", configfile=configfile).out)
    finally:
        shutil.copy(tmp_path / "orig.yaml", configfile)
    assert [j for j in jobs if j[0] == "precision"] == [("precision", "searched")], jobs
    assert {m for _, m in jobs if m} == {"searched"}, jobs
