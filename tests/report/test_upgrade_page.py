"""The report's upgrade page: the gate's comparison (artifacts/gate/comparison.json) shown side by side, in
summary.json (`upgrade`) and report/upgrade.html (a table and a chart per metric), and nothing of it when there is
no comparison. The zoo is a generated one (tests/helpers/report_zoo.py: the files the stages write, no build); a
stand-in live key (rtx-1.6.1.120) is made of copies of its plans and validations, altered where a budget must fail,
and the real gate (deploy/gate.py) compares them, as `promote` does.
"""

import copy
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from engine_factory import paths
from engine_factory.deploy import gate
from engine_factory.errors import FactoryError
from engine_factory.ops import scheduled
from engine_factory.report import write_report
from engine_factory.report.pages import UPGRADE_PAGE

from helpers import report_zoo

NEW, OLD = report_zoo.KEY, "rtx-1.6.1.120"
MODELS = ("net000", "net001", "net002")


class Table(HTMLParser):
    """The upgrade table's cells: {(plan, metric or check, side): text}; the figures' metrics and their SVGs."""

    def __init__(self):
        super().__init__()
        self.cells, self.figures, self.svgs, self.links = {}, [], 0, []
        self.plan, self.cell, self.text, self.figure = None, None, "", None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.links.append(a.get("href"))
        if tag == "tr" and "data-plan" in a:
            self.plan = a["data-plan"]
        if tag == "td" and self.plan and "data-side" in a:
            self.cell, self.text = (self.plan, a.get("data-metric") or a.get("data-check"), a["data-side"]), ""
            if "fail" in (a.get("class") or "").split():
                self.cells.setdefault("failed", []).append(self.cell)
        if tag == "figure" and "data-metric" in a:
            self.figure = a["data-metric"]
        if tag == "svg" and self.figure:
            self.figures.append(self.figure)
            self.figure = None

    def handle_data(self, data):
        if self.cell:
            self.text += data

    def handle_endtag(self, tag):
        if tag == "td" and self.cell:
            self.cells[self.cell] = " ".join(self.text.split())
            self.cell = None


def parse(page: Path) -> Table:
    return parse_html(page.read_text())


def parse_html(html: str) -> Table:
    t = Table()
    t.feed(html)
    return t


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _latency(work: Path, key: str, model: str, precision: str, p50: float, p99: float, max_abs: float) -> None:
    """What validate writes on a GPU host that ran the plan (sm89): its comparison with golden and its latency."""

    def run(v):
        v["checks"]["plan_execution"] = {
            "status": "pass",
            "reason": "all outputs within tolerance",
            "comparison": {"status": "pass", "outputs": {"logits": {"max_abs": max_abs, "cosine": 0.99999}}},
            "performance": {
                "latency_ms": {"p50": p50, "p90": p99, "p99": p99, "mean": p50},
                "throughput_per_s": 4000.0 / p50,
                "batch": 4,
                "iterations": 100,
            },
        }

    _edit(work / paths.validation(model, key, "89", precision), run)


def _compare(work: Path) -> dict:
    """The stand-in live key beside the generated one, then the gate, as `promote` runs it."""
    for model in MODELS:
        for kind in ("plans", "validation"):
            shutil.copytree(work / f"artifacts/{model}/{kind}/{NEW}", work / f"artifacts/{model}/{kind}/{OLD}")
    for i, model in enumerate(MODELS):
        for precision in ("fp32", "fp16"):
            _latency(work, OLD, model, precision, 1.0 + i, 2.0 + i, 1e-4)
            _latency(work, NEW, model, precision, 1.0 + i, 2.0 + i, 2e-4)

            def slower(f):
                f["facts"].update(build_seconds=f["facts"]["build_seconds"] * 2, warnings=["w1", "w2"])

            _edit(work / paths.provenance(paths.plan(model, OLD, "89", precision)), slower)
    _latency(work, NEW, "net001", "fp16", 3.0, 3.1, 2e-4)  # p50 2.0 -> 3.0: +50 %, p99 3.0 -> 3.1: +3 %
    old = work / paths.plan("net002", OLD, "89", "fp32")
    old.write_bytes(old.read_bytes()[: old.stat().st_size // 2])  # the candidate's plan is twice the size
    gate.set_live(work, OLD, action="promote", why="stand-in for the night before")
    verdict = gate.gate(work, {}, NEW)
    gate.write_comparison(work, verdict)
    return verdict


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    work = tmp_path_factory.mktemp("upgrade-zoo")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        generated = report_zoo.generate(len(MODELS), ccs=["86", "89"], precisions=["fp32", "fp16"])
        verdict = _compare(work)
        write_report(paths.REPORT_JSON, paths.REPORT_HTML, **generated["settings"])
    finally:
        os.chdir(cwd)
    return {
        "work": work,
        "settings": generated["settings"],
        "verdict": verdict,
        "summary": json.loads((work / paths.REPORT_JSON).read_text()),
    }


def test_summary_json_carries_both_keys_per_plan_and_the_failed_budgets(report):
    u = report["summary"]["upgrade"]
    assert (u["live"], u["candidate"], u["outcome"], u["verdict"]) == (OLD, NEW, "fail", "hold")
    assert u["metrics"] == list(gate.METRICS)
    # what the candidate built: 3 models x 2 precisions x 2 targets, each beside the live key's
    assert [(r["model"], r["precision"], r["target"]) for r in u["rows"]][:4] == [
        ("net000", "fp32", "sm86"),
        ("net000", "fp32", "sm89"),
        ("net000", "fp16", "sm86"),
        ("net000", "fp16", "sm89"),
    ]
    assert len(u["rows"]) == 12
    rows = {(r["model"], r["precision"], r["target"]): r for r in u["rows"]}
    r = rows[("net001", "fp16", "sm89")]
    assert r["metrics"]["latency_p50_ms"] == {"live": 2.0, "candidate": 3.0, "change_pct": 50.0}
    assert r["metrics"]["latency_p99_ms"]["live"] == 3.0 and r["metrics"]["latency_p99_ms"]["candidate"] == 3.1
    assert r["metrics"]["max_abs"] == {"live": 1e-4, "candidate": 2e-4, "change_pct": 100.0}
    assert r["metrics"]["warnings"] == {"live": 2, "candidate": 1, "change_pct": -50.0}  # its fp16 warning
    assert r["failed_fields"] == ["latency_p50_ms"] and [f["budget"] for f in r["failed"]] == ["latency"]
    size = rows[("net002", "fp32", "sm89")]
    assert size["metrics"]["plan_bytes"]["change_pct"] == 100.0 and size["failed_fields"] == ["plan_bytes"]
    assert size["plans"] == {
        "live": paths.plan("net002", OLD, "89", "fp32"),
        "candidate": paths.plan("net002", NEW, "89", "fp32"),
    }
    # a plan not run on a GPU (sm86 here) has no latency or plan accuracy on either key
    assert rows[("net000", "fp32", "sm86")]["metrics"]["latency_p50_ms"] == {
        "live": None,
        "candidate": None,
        "change_pct": None,
    }
    assert rows[("net000", "fp32", "sm86")]["checks"]["execution"] == {"live": "not-run", "candidate": "not-run"}
    assert sorted(f["budget"] for f in u["failed"]) == ["latency", "size"]
    assert u["failed"] == report["verdict"]["failed"]


def test_the_page_shows_the_table_and_one_chart_per_metric(report):
    work = report["work"]
    page = parse(work / UPGRADE_PAGE)
    c = page.cells
    plan = "net001 fp16 sm89"
    assert c[(plan, "latency_p50_ms", "live")] == "2.000"
    assert c[(plan, "latency_p50_ms", "candidate")] == "3.000 (+50.0 %)"
    assert c[(plan, "latency_p99_ms", "candidate")] == "3.100 (+3.3 %)"
    assert c[(plan, "build_seconds", "live")] == "3.0" and c[(plan, "build_seconds", "candidate")] == "1.5 (-50.0 %)"
    assert c[(plan, "warnings", "live")] == "2" and c[(plan, "warnings", "candidate")] == "1 (-50.0 %)"
    assert c[(plan, "max_abs", "live")] == "1.00e-04"
    assert c[(plan, "onnx_parity", "candidate")] == "pass" and c[(plan, "execution", "live")] == "pass"
    assert c[(plan, "header", "candidate")] == "[89] pass"  # the generated zoo records no header version
    assert c[("net000 fp32 sm86", "latency_p50_ms", "candidate")] == "—"
    # the failed budgets are marked on the candidate's cell they are about
    assert sorted(page.cells["failed"]) == [
        ("net001 fp16 sm89", "latency_p50_ms", "candidate"),
        ("net002 fp32 sm89", "plan_bytes", "candidate"),
    ]
    assert page.figures == list(gate.METRICS)  # one SVG per metric, in the metrics' order
    html = (work / UPGRADE_PAGE).read_text()
    assert html.count("<svg") == len(gate.METRICS)
    assert "1 budget(s) failed" not in html and "2 budget(s) failed" in html
    assert "../gate/comparison.json" in page.links  # links relative to the page, each to a file that exists
    assert all((work / UPGRADE_PAGE).parent.joinpath(link).is_file() for link in page.links)
    # the index (and every page's nav) links to it
    index = (work / paths.REPORT_HTML).read_text()
    assert 'href="upgrade.html"' in index and 'data-verdict="hold"' in index
    assert 'href="../upgrade.html"' in (work / paths.report_page("net000")).read_text()


def test_no_comparison_no_page_and_no_link(report, tmp_path):
    work = tmp_path / "zoo"
    shutil.copytree(report["work"], work, symlinks=True)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        os.remove(gate.COMPARISON)
        write_report(paths.REPORT_JSON, paths.REPORT_HTML, **report["settings"])
    finally:
        os.chdir(cwd)
    summary = json.loads((work / paths.REPORT_JSON).read_text())
    assert "upgrade" not in summary and summary["counts"] == report["summary"]["counts"]
    assert not (work / UPGRADE_PAGE).exists()  # the page of before is gone with its comparison
    for page in (paths.REPORT_HTML, paths.report_page("net000")):
        assert "upgrade" not in (work / page).read_text()


def test_a_metric_no_plan_has_gets_a_line_not_a_chart(report, tmp_path):
    work = tmp_path / "zoo"
    shutil.copytree(report["work"], work, symlinks=True)
    verdict = copy.deepcopy(report["verdict"])
    for r in verdict["rows"]:  # as if no GPU had recorded p99 for either key
        for side in ("live", "candidate"):
            r[side]["latency_p99_ms"] = None
    gate.write_comparison(work, verdict)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        write_report(paths.REPORT_JSON, paths.REPORT_HTML, **report["settings"])
    finally:
        os.chdir(cwd)
    page = parse(work / UPGRADE_PAGE)
    assert page.figures == [m for m in gate.METRICS if m != "latency_p99_ms"]
    assert re.search(
        r'data-metric="latency_p99_ms"><b>latency p99 \(ms\)</b>: no plan has it', (work / UPGRADE_PAGE).read_text()
    )


def test_an_unreadable_comparison_is_one_line_naming_it_and_nothing_is_written(report, tmp_path):
    work = tmp_path / "zoo"
    shutil.copytree(report["work"], work, symlinks=True)
    (work / gate.COMPARISON).write_text('{"rows": [')  # cut short
    before = (work / paths.REPORT_JSON).read_text()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with pytest.raises(FactoryError) as e:
            write_report(paths.REPORT_JSON, paths.REPORT_HTML, **report["settings"])
    finally:
        os.chdir(cwd)
    assert str(e.value).startswith(f"{gate.COMPARISON}: unreadable upgrade comparison") and "\n" not in str(e.value)
    assert (work / paths.REPORT_JSON).read_text() == before


def test_the_nightly_rewrites_the_report_after_the_gate(report, tmp_path):
    """The report rule ran before the gate: the nightly writes it again with the rule's own settings (spec.json)."""
    work = tmp_path / "zoo"
    shutil.copytree(report["work"], work, symlinks=True)
    (work / paths.REPORT_SPEC).write_text(json.dumps(report["settings"]))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        os.remove(gate.COMPARISON)
        write_report(paths.REPORT_JSON, paths.REPORT_HTML, **report["settings"])  # the factory run's report
    finally:
        os.chdir(cwd)
    assert not (work / UPGRADE_PAGE).exists()
    assert scheduled.report_after_gate(str(work)) is None  # no comparison: nothing to add
    gate.write_comparison(work, report["verdict"])  # the gate, after the run
    done = scheduled.report_after_gate(str(work))
    assert done == {"written": True, "page": UPGRADE_PAGE}
    assert json.loads((work / paths.REPORT_JSON).read_text())["upgrade"]["candidate"] == NEW
    assert parse(work / UPGRADE_PAGE).figures == list(gate.METRICS)
    assert scheduled.report_after_gate(str(work)) is None  # the report already shows this comparison


def _side(plan: str, plan_bytes: int) -> dict:
    """One key's side of a comparison row, in the shape gate.compare writes (no GPU run: no latency)."""
    return {
        "plan": plan,
        "plan_bytes": plan_bytes,
        "header": {"status": "pass", "version": "1.7.1.116", "targets": ["8.9"]},
        "build_seconds": 1.0,
        "warnings": 0,
        "onnx_parity": "pass",
        "execution": "not-run",
        "max_abs": None,
        "latency_p50_ms": None,
        "latency_p99_ms": None,
    }


def test_a_large_zoo_draws_the_largest_changes_and_the_table_keeps_every_plan(tmp_path):
    from engine_factory.report import charts, summary

    rows = []
    for i in range(60):  # plan i grew by i % 50 percent; m007 (+7 %) is over a budget of 5 %
        live = paths.plan(f"m{i:03d}", OLD, "89", "fp16")
        rows.append(
            {
                "model": f"m{i:03d}",
                "precision": "fp16",
                "cc": "89",
                "live": _side(live, 1000),
                "candidate": _side(live.replace(OLD, NEW), 1000 + 10 * (i % 50)),
            }
        )
    failed = [{"budget": "size", "plan": rows[7]["candidate"]["plan"], "detail": "1000 -> 1070 bytes (+7.0 % > 5 %)"}]
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps({"live": OLD, "candidate": NEW, "rows": rows, "failed": failed, "outcome": "fail"}))
    u = summary.upgrade(str(path))
    assert len(u["rows"]) == 60 and u["rows"][7]["failed_fields"] == ["plan_bytes"]
    drawn = charts.upgrade_rows(u, "plan_bytes", limit=10)
    plans = list(dict.fromkeys(r["plan"] for r in drawn))
    # the failed one, then the 9 largest growths (+49 .. +41 %), in the table's order
    assert plans == ["m007 fp16 sm89"] + [f"m{i:03d} fp16 sm89" for i in range(41, 50)]
    assert [r["side"] for r in drawn[:2]] == ["live", "candidate"] and drawn[1]["value"] == 1070 / 1e6
    assert charts.upgrade_rows(u, "latency_p50_ms") == [] and charts.upgrade_figure(u, "latency_p50_ms") is None
    from engine_factory.report import pages

    html = pages.upgrade_page(pages._environment(), {"backend": NEW, "upgrade": u}, {}, drawn=10)
    assert "Each chart draws the 10 plans with the largest change (a failed budget first)\nof 60" in html
    assert len(parse_html(html).cells) == 60 * (6 + 2 * len(gate.METRICS)) + 1  # every plan, both keys; "failed"
