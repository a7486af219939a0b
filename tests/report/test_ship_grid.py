"""The report decides (issue 26, point 9): the index opens with a model × precision grid of what can ship (accuracy
and how it was established), reasons folded below; a build job that stopped at its first target leaves the others
"not attempted"; no `{target}` placeholder, no ANSI codes, no "opset None"; the failure box reaches the cause."""

import json
import os
import re

import pytest

from engine_factory import paths
from engine_factory.report import write_report
from engine_factory.report.summary import ERROR_HEAD_LINES, error_head

from helpers import report_zoo

ANSI_ERROR = (
    "\x1b[31mtensorrt_rtx failed to build a plan for sm80:\x1b[0m\n"
    + "".join(f"  [W] builder banner line {n}\n" for n in range(ERROR_HEAD_LINES + 2))
    + "  [E] ERROR: Concat dims 1 vs 2: the cause\n"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    work = tmp_path_factory.mktemp("grid-zoo")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        generated = report_zoo.generate(4, fail_every=2)  # i % 2 == 3 never: no failures of its own
        s = generated["settings"]
        # net001 bf16: one build job for four targets stopped at sm80 (its error, recorded for all four)
        bf16 = [j for j in s["jobs"] if j["model"] == "net001" and j["precision"] == "bf16"]
        s["jobs"] = [j for j in s["jobs"] if j not in bf16]
        for j in bf16:
            job = {k: j[k] for k in ("model", "key", "cc", "precision")}
            s["failed"].append({**job, "stage": "build", "error": ANSI_ERROR, "reason": ANSI_ERROR.splitlines()[0],
                                "log": j["logs"]["build"], "record": None})  # fmt: skip
        # net002 never got exported: no provenance, no opset
        os.remove(paths.provenance(paths.onnx("net002")))
        os.remove(paths.provenance(paths.sim_onnx("net002")))
        # net003 bf16: onnxruntime could not run its variant and nothing else checked it
        parity = json.loads(open(paths.parity("net003", "bf16")).read())
        parity.update(status="not-run", reason="onnxruntime CPU cannot run this model: NOT_IMPLEMENTED", outputs={})
        with open(paths.parity("net003", "bf16"), "w") as f:
            json.dump(parity, f)
        for j in s["jobs"]:
            if j["model"] == "net003" and j["precision"] == "bf16":
                v = json.loads(open(paths.validation(j["model"], j["key"], j["cc"], "bf16")).read())
                v["checks"]["onnx_parity"] = parity
                with open(paths.validation(j["model"], j["key"], j["cc"], "bf16"), "w") as f:
                    json.dump(v, f)
        write_report(paths.REPORT_JSON, paths.REPORT_HTML, **s)
    finally:
        os.chdir(cwd)
    return {"work": work, "summary": json.loads((work / paths.REPORT_JSON).read_text()),
            "html": (work / paths.REPORT_HTML).read_text()}  # fmt: skip


def test_the_index_opens_with_the_grid_and_folds_the_reasons(report):
    html = report["html"]
    assert html.index('id="grid"') < html.index('id="overview"') < html.index('<details id="reasons">')
    grid = report["summary"]["overview"]["grid"]
    assert set(grid) == {"net000", "net001", "net002", "net003"}
    # net000's plans ran on sm89 (the zoo's GPU run): verified there, with the plan's own figure
    assert grid["net000"]["fp32"]["verdict"] == "verified"
    assert grid["net000"]["fp32"]["established"] == "plan executed on sm89"
    assert grid["net000"]["fp32"]["accuracy"] == "cos 0.999990"
    # the others: ONNX verified, not executed here; by the ONNX variant in onnxruntime
    cell = grid["net002"]["fp16"]
    assert cell["verdict"] == "onnx-verified" and cell["established"] == "ONNX variant in onnxruntime"
    assert cell["label"] in html and cell["accuracy"] in html
    assert grid["net003"]["bf16"]["verdict"] == "not-verified" and grid["net003"]["bf16"]["accuracy"] == ""
    assert grid["net001"]["bf16"]["verdict"] == "not-built"
    assert grid["net000"]["fp8"]["plans"] == 2 and grid["net000"]["fp8"]["targets"] == 4  # two skipped
    assert re.search(r'data-verdict="not-verified" data-precision="bf16"><b>not verified</b>', html)


def test_targets_never_attempted_are_not_failed_with_another_targets_error(report):
    cells = {c["target"]: c for c in report["summary"]["plans"] if c["model"] == "net001" and c["precision"] == "bf16"}
    assert cells["sm80"]["status"] == "failed"
    for t in ("sm86", "sm89", "sm120"):
        assert cells[t]["status"] == "not-attempted"
        assert cells[t]["reason"] == "its build job stopped at sm80 first"
    assert report["summary"]["overview"]["outcomes"]["not-attempted"] == 3
    failed = [g for g in report["summary"]["overview"]["reasons"] if g["outcome"] == "failed"]
    assert len(failed) == 1 and failed[0]["count"] == 1  # the error said once, for the target that had it


def test_no_placeholder_no_ansi_no_none(report):
    pages = [report["html"], *(p.read_text() for p in (report["work"] / paths.REPORT_PAGES).glob("*.html"))]
    for text in pages:
        assert "{target}" not in text and "\x1b" not in text and "[31m" not in text
        assert "opset <b>None" not in text and "by <b>None" not in text
        assert ">None<" not in text
    page = (report["work"] / paths.report_page("net002")).read_text()
    assert "no ONNX export yet" in page and "not simplified" in page


def test_the_failure_box_reaches_the_cause(report):
    page = (report["work"] / paths.report_page("net001")).read_text()
    assert "ERROR: Concat dims 1 vs 2: the cause" in page
    head = error_head(ANSI_ERROR)
    assert head.splitlines()[0] == "tensorrt_rtx failed to build a plan for sm80:"
    assert head.splitlines()[-1].strip() == "[E] ERROR: Concat dims 1 vs 2: the cause"
    assert len(head.splitlines()) == ERROR_HEAD_LINES + 2  # the head, an ellipsis, the cause
