"""The report: where a user decides which plans to ship, at any zoo size.

    artifacts/report/summary.json            every (model, precision, target): outcome, numbers, links; the overview
    artifacts/report/index.html              overview (counts per outcome, reasons said once, chart), models table
    artifacts/report/index-{n}.html          further pages of the models table (100 models a page)
    artifacts/report/overview.svg            the overview's chart (outcomes per precision and per target)
    artifacts/report/models/{model}.html     one page per model: failures, plans matrix, parity numbers, figure
    artifacts/report/charts/{model}.svg      each model's figure (also inlined in its page), for --report
    artifacts/report/upgrade.html            the upgrade gate's comparison (artifacts/gate/comparison.json), live key
                                             beside candidate, a chart per metric; only while that file exists

Entry points: `write_report` (the report stage, and the Snakefile's `onerror:` handler) and `verdict` (the
`outcome` rule). summary.py reads the results, charts.py draws, pages.py renders the templates.
"""

from __future__ import annotations

import glob
import os

from .. import atomic, paths
from ..atomic import read_json
from ..deploy.gate import COMPARISON
from .summary import model_notes, summarize

__all__ = ["model_notes", "summarize", "verdict", "write_report"]


def write_report(
    json_out: str, html_out: str, *, jobs, skipped, models, backend=None, failed=(), comparison=COMPARISON
) -> dict:
    """summary.json, the index pages, one page per model and the charts; each written whole or not at all (the
    pages and charts folders are replaced whole, so a model no longer in the zoo leaves no page behind). Where the
    upgrade gate's `comparison` exists, summary.json carries it (`upgrade`) and upgrade.html shows it; otherwise
    there is no upgrade page (one left from before is removed)."""
    from . import charts
    from .pages import UPGRADE_PAGE, _environment, index_pages, model_page, upgrade_page

    summary = summarize(jobs, skipped, models, backend, failed, comparison)
    env = _environment()
    by_model: dict[str, list] = {}
    for c in summary["plans"]:
        by_model.setdefault(c["model"], []).append(c)
    renderer = charts.Renderer(paths.REPORT_CHART_CACHE)
    overview = charts.outcomes_figure(summary["overview"])
    outcomes_svg = renderer.svg(overview) if overview else None
    with atomic.atomic_path(paths.REPORT_CHARTS) as charts_tmp, atomic.atomic_path(paths.REPORT_PAGES) as pages_tmp:
        charts_tmp.mkdir()
        pages_tmp.mkdir()
        for name, info in summary["models"].items():
            cells = by_model.get(name, [])
            spec = charts.model_figure(info["onnx_parity"], cells)
            svg = renderer.svg(spec) if spec else None
            if svg:
                (charts_tmp / f"{name}.svg").write_text(svg)
            (pages_tmp / f"{name}.html").write_text(model_page(env, summary, name, cells, svg))
    if "upgrade" in summary:  # before the index that links to it
        u = summary["upgrade"]
        figures = {m: (renderer.svg(spec) if (spec := charts.upgrade_figure(u, m)) else None) for m in u["metrics"]}
        with atomic.atomic_path(UPGRADE_PAGE) as tmp:
            tmp.write_text(upgrade_page(env, summary, figures, charts.UPGRADE_PLANS))
    elif os.path.exists(UPGRADE_PAGE):
        os.remove(UPGRADE_PAGE)
    renderer.sweep()
    index = index_pages(env, summary, by_model, outcomes_svg)
    for stale in glob.glob(paths.REPORT_LIST_GLOB):  # pages of a larger zoo than this one
        if stale not in index:
            os.remove(stale)
    for page, html in index.items():
        if page != paths.REPORT_HTML:
            with atomic.atomic_path(page) as tmp:
                tmp.write_text(html)
    with atomic.atomic_path(paths.REPORT_OVERVIEW_CHART) as tmp:
        tmp.write_text(outcomes_svg or "<svg xmlns='http://www.w3.org/2000/svg'/>")  # an output: always written
    atomic.write_json(json_out, summary)
    with atomic.atomic_path(html_out) as tmp:
        tmp.write_text(index[paths.REPORT_HTML])
    return {"counts": summary["counts"]}


def verdict(summary_path: str, out: str, log: str | None = None) -> None:
    """The run's verdict (the `outcome` rule): raise naming the failed targets, so the run's exit status says that
    something failed, else record that none did."""
    from ..errors import FactoryError

    summary = read_json(summary_path) or {}
    failed = [p for p in summary.get("plans", []) if p.get("status") == "failed"]
    damaged = [p for p in summary.get("plans", []) if p.get("status") == "damaged"]  # damaged since the run began
    lines = [
        f"  {p['model']} {p['precision']} sm{p['cc']}: {p['stage']}: {p['reason']} (log {p['log']})"
        for p in failed[:20]
    ]
    text = (
        (
            f"{len(failed)} of {len(summary.get('plans', []))} targets failed; they are not retried until their "
            "inputs, settings or tools change (retry: make run RETRY_FAILED=1 or FACTORY_RETRY_FAILED=1); report: "
            f"{paths.REPORT_HTML}\n" + "\n".join(lines)
        )
        if failed
        else "no target failed"
    )
    if damaged:
        text += f"\n{len(damaged)} target(s) damaged (the next run rebuilds them):\n" + "\n".join(
            f"  {p['model']} {p['precision']} sm{p['cc']}: {p.get('reason', '')}" for p in damaged[:20]
        )
    if log:
        with atomic.atomic_path(log) as tmp:
            tmp.write_text(text + "\n")
    if failed or damaged:
        raise FactoryError(text)
    atomic.write_json(out, {"failed": 0, "counts": summary.get("counts", {})})
