"""The report at scale, from a generated zoo's results (the files the stages write, for 120 models: ~2,000
targets); the report only reads files, so this is what it sees on a real zoo of that size."""

import json
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from engine_factory import paths
from engine_factory.report import pages, write_report
from engine_factory.report.summary import generic

from helpers import report_zoo

MODELS = 120


class Links(HTMLParser):
    """Every href/src of a page, and the rows of its tables by table id/class."""

    def __init__(self):
        super().__init__()
        self.links, self.rows, self.table = [], {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("href", "src"):
            if a.get(name):
                self.links.append(a[name])
        if tag == "table":
            self.table = a.get("id") or a.get("class")
        if tag == "tr" and self.table:
            self.rows[self.table] = self.rows.get(self.table, 0) + 1


def parse(page: Path) -> Links:
    p = Links()
    p.feed(page.read_text())
    return p


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    work = tmp_path_factory.mktemp("big-zoo")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        generated = report_zoo.generate(MODELS)
        write_report(paths.REPORT_JSON, paths.REPORT_HTML, **generated["settings"])
    finally:
        os.chdir(cwd)
    return {"work": work, **generated, "summary": json.loads((work / paths.REPORT_JSON).read_text())}


def test_overview_counts_every_target_once(big):
    o = big["summary"]["overview"]["outcomes"]
    expected = big["expected"]
    assert {k: o[k] for k in expected} == expected
    assert o["targets"] == sum(expected.values()) == MODELS * 5 * 4
    assert o["built"] == expected["pass"] + expected["fail"] + expected["not-run"]
    # by precision and by target, the same cells again
    for table in ("by_precision", "by_target"):
        assert sum(t["targets"] for t in big["summary"]["overview"][table].values()) == o["targets"]
    html = (big["work"] / paths.REPORT_HTML).read_text()
    for key in ("built", "not-run", "skipped", "failed"):
        assert re.search(rf'data-outcome="{key}"><span class="n">{o[key]}</span>', html), key


def test_each_reason_is_said_once_with_its_count(big):
    html = (big["work"] / paths.REPORT_HTML).read_text()
    o = big["summary"]["overview"]["outcomes"]
    assert html.count(report_zoo.NO_GPU) == 1
    assert re.search(re.escape(report_zoo.NO_GPU) + rf" <b class=\"count\">\(all {o['not-run']}\)</b>", html)
    assert html.count(report_zoo.SKIP_FP8) == 1
    # the same build error on four targets is one reason, not four
    groups = [g for g in big["summary"]["overview"]["reasons"] if g["outcome"] == "failed"]
    assert len(groups) == 1 and groups[0]["count"] == o["failed"], groups
    assert "failed to build a plan for each target" in groups[0]["reason"] and "{target}" not in html
    assert groups[0]["targets"] == ["sm80", "sm86", "sm89", "sm120"]
    assert f"failed to build a plan for each target: (all {o['failed']}; on sm80, sm86, sm89, sm120)" in re.sub(
        "<[^>]+>", "", html
    )


def test_pages_stay_short_and_every_link_resolves(big):
    work = big["work"]
    index_pages = [work / paths.REPORT_HTML, *sorted(work.glob(paths.REPORT_LIST_GLOB))]
    assert len(index_pages) == math.ceil(MODELS / pages.MODELS_PER_PAGE) == 2
    model_pages = sorted((work / paths.REPORT_PAGES).glob("*.html"))
    assert [p.stem for p in model_pages] == sorted(big["summary"]["models"])
    checked = 0
    for page in index_pages + model_pages:
        parsed = parse(page)
        assert parsed.rows.get("models", 0) <= pages.MODELS_PER_PAGE + 1  # + its heading row
        assert parsed.rows.get("matrix", 0) <= 1 + 5  # a model page: one row per precision
        text = page.read_text()
        for link in parsed.links:
            if link.startswith("#"):  # within the page: the anchor exists
                assert f'id="{link[1:]}"' in text, f"{page.name}: no anchor {link}"
                continue
            assert not re.match(r"^(/|[a-z]+:)", link), f"{page.name}: not a relative link: {link}"
            target = (page.parent / link.split("#")[0]).resolve()
            assert target.is_file(), f"{page.name}: {link} does not resolve"
            checked += 1
    assert checked > MODELS * 20
    sizes = [p.stat().st_size for p in index_pages + model_pages]
    assert max(sizes) < 300_000, max(sizes)


def test_a_model_page_has_its_numbers_links_and_figure(big):
    page = (big["work"] / paths.report_page("net001")).read_text()
    cell = next(
        c
        for c in big["summary"]["plans"]
        if c["model"] == "net001" and c["precision"] == "fp16" and c["target"] == "sm89"
    )
    assert set(cell["links"]) == {"plan", "provenance", "intoto", "validation", "build_log", "validate_log"}
    for link in cell["links"].values():
        assert os.path.relpath(link, paths.REPORT_PAGES) in page
    assert f"{cell['facts']['plan_bytes'] / 1e6:.2f} MB" in page and "builder warning(s)" in page
    assert report_zoo.WARNING.split(".")[0] in page  # the TensorRT-RTX layernorm warning, from the build's facts
    assert "cosine ≥ 0.999" in page and "|Δ| ≤ 0.01 + 0.01·|golden|" in page  # the tolerance held to
    assert "<svg" in page and (big["work"] / paths.report_chart("net001")).read_text().startswith("<svg")


def test_a_failure_shows_stage_error_and_log(big):
    page = (big["work"] / paths.report_page("net003")).read_text()
    assert "failed at <b>build</b>" in page
    assert "Could not infer output types for operation: ConvTranspose" in page
    assert "second line of the builder&#39;s error" in page  # the first lines of the error, escaped
    failed = next(f for f in big["settings"]["failed"] if f["model"] == "net003")
    assert f'href="{os.path.relpath(failed["log"], paths.REPORT_PAGES)}"' in page


def test_text_from_files_is_escaped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generated = report_zoo.generate(4)
    for f in generated["settings"]["failed"]:
        f["error"] = f["reason"] = "<script>alert(1)</script> & more"
        f["error_head"] = f["error"]
    write_report(paths.REPORT_JSON, paths.REPORT_HTML, **generated["settings"])
    page = (tmp_path / paths.report_page("net003")).read_text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page


def test_unchanged_figures_are_not_rendered_again_and_dropped_models_leave_no_page(tmp_path, monkeypatch):
    import vl_convert

    monkeypatch.chdir(tmp_path)
    generated = report_zoo.generate(3)
    write_report(paths.REPORT_JSON, paths.REPORT_HTML, **generated["settings"])
    cached = sorted((tmp_path / paths.REPORT_CHART_CACHE).iterdir())
    assert len(cached) == 3 + 1  # one figure per model and the overview

    rendered, original = [], vl_convert.vegalite_to_svg

    def counting(spec):
        rendered.append(spec)
        return original(spec)

    monkeypatch.setattr(vl_convert, "vegalite_to_svg", counting)
    s = generated["settings"]
    keep = lambda items: [x for x in items if x["model"] != "net002"]  # noqa: E731
    write_report(
        paths.REPORT_JSON,
        paths.REPORT_HTML,
        jobs=keep(s["jobs"]),
        skipped=keep(s["skipped"]),
        failed=keep(s["failed"]),
        backend=s["backend"],
        models={m: v for m, v in s["models"].items() if m != "net002"},
    )
    assert [r["datasets"].keys() for r in rendered] == [{"outcomes": 0}.keys()]  # only the zoo's counts changed
    assert len(list((tmp_path / paths.REPORT_CHART_CACHE).iterdir())) == 2 + 1  # unused figures swept
    assert not (tmp_path / paths.report_page("net002")).exists()
    assert not (tmp_path / paths.report_chart("net002")).exists()
    assert (tmp_path / paths.report_page("net001")).exists()
    assert "net002" not in (tmp_path / paths.REPORT_HTML).read_text()


@pytest.mark.parametrize(
    "text, cc, expected",
    [
        ("tensorrt_rtx 1.7.1.116 failed to build a plan for sm86: x", "86", "failed to build a plan for {target}: x"),
        ("no GPU of compute capability 8.6 here (GPUs: A (8.9))", "86", "no GPU of compute capability {target} here"),
        ("tensorrt_rtx 1.8.6.0 on sm860", "86", "tensorrt_rtx 1.8.6.0 on sm860"),  # versions and other targets kept
    ],
)
def test_a_reason_without_its_own_target(text, cc, expected):
    assert expected in generic(text, cc)


def test_a_gpu_run_shows_latency_against_onnxruntime(big):
    """net000's sm89 plans carry a (recorded) GPU run: the matrix shows latency, throughput and the speed-up, and
    the figure gains the latency/throughput panel."""
    cells = [c for c in big["summary"]["plans"] if c["model"] == "net000" and c["target"] == "sm89"]
    assert cells and all(
        c["status"] == "pass"
        and c["performance"]["baseline_p50_ms"] == 2.0
        and c["performance"]["baseline_throughput_per_s"] == 2000.0
        for c in cells
    )
    page = (big["work"] / paths.report_page("net000")).read_text()
    assert "p50 0.250 ms" in page and "8.0× vs onnxruntime CPUExecutionProvider" in page
    assert "plan vs golden: logits cos 0.999990" in page
    svg = (big["work"] / paths.report_chart("net000")).read_text()
    assert "latency p50 (ms)" in svg and "throughput (/s)" in svg
    assert "latency p50 (ms)" not in (big["work"] / paths.report_chart("net001")).read_text()


def test_the_report_says_which_plans_are_signed(tmp_path, monkeypatch):
    """Issue 29: the report, not only summary.json and status, says how many plans carry an envelope, and each
    plan's links name its signature (before: the HTML said nothing of signing)."""
    from engine_factory import signing

    monkeypatch.chdir(tmp_path)
    generated = report_zoo.generate(2)
    plans = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob(paths.plan_glob()))
    Path(signing.envelope_path(plans[0])).write_text("{}")  # presence only: verify judges it
    write_report(paths.REPORT_JSON, paths.REPORT_HTML, **generated["settings"])
    s = json.loads(Path(paths.REPORT_JSON).read_text())["signing"]
    assert s == {"signed": 1, "unsigned": len(plans) - 1}
    html = Path(paths.REPORT_HTML).read_text()
    assert 'data-signed="1">1 plans signed' in html and f'data-unsigned="{len(plans) - 1}"' in html
    model = paths.parse_plan(plans[0])["model"]
    page = (tmp_path / paths.REPORT_PAGES / f"{model}.html").read_text()
    envelope = signing.envelope_path(plans[0]).split("/", 1)[1]  # links are relative to artifacts/
    assert re.search(r'<a href="[./]*' + re.escape(envelope) + r'">signature</a>', page), page
