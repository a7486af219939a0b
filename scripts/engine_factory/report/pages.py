"""The report's HTML: an index (overview, then the models table, paged) and one page per model, from Jinja2
templates (package data in templates/, autoescaped) with the charts' SVG inlined. Every link is relative to its
page, so the report folder can be browsed from file:// or copied together with artifacts/.
"""

from __future__ import annotations

import math
import os
import posixpath

import jinja2

from .. import paths
from ..outcomes import Outcome
from .summary import OUTCOME_LABELS, OUTCOMES, _precision_order, generic

UPGRADE_PAGE = paths.ROOT + "/report/upgrade.html"  # only while there is a gate comparison (report/__init__.py)
MODELS_PER_PAGE = 100  # rows of the models table per index page (about three screens; the overview stays on page 1)
# outcome columns of the tables ("missing" when present)
COLUMNS = (Outcome.PASS, Outcome.FAIL, Outcome.NOT_RUN, Outcome.SKIPPED, "failed")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("engine_factory.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        labels=OUTCOME_LABELS,
        sci=_sci,
        tolerance=tolerance_text,
        model_page=paths.report_page,
        index_page=paths.REPORT_HTML,
        summary_json=paths.REPORT_JSON,
        upgrade_page=UPGRADE_PAGE,
        metric_value=metric_value,
    )
    return env


def metric_value(x, metric: str) -> str:
    """A gate metric as the upgrade table shows it ("—": that key has no such number)."""
    if x is None:
        return "—"
    if metric == "plan_bytes":
        return f"{x / 1e6:.2f} MB" if x >= 1e5 else f"{x / 1e3:.1f} kB"
    if metric == "warnings":
        return str(int(x))
    if metric == "max_abs":
        return _sci(x)
    return f"{x:.3f}" if metric.startswith("latency") else f"{x:.1f}"


def _sci(x) -> str:
    if x is None or x == "":
        return ""
    x = float(x)
    return "0" if x == 0 else f"{x:.2e}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.4g}"


def tolerance_text(tol: dict | None, output: str, kind: str | None = None) -> str:
    """The bounds one output was held to (the precision's, with the output's own overrides), by its task kind (the
    config's, else the one the comparison inferred)."""
    if not tol:
        return ""
    t = {**{k: v for k, v in tol.items() if k != "outputs"}, **(tol.get("outputs") or {}).get(output, {})}
    parts = []
    if "atol" in t and "rtol" in t:
        parts.append(f"|Δ| ≤ {t['atol']:g} + {t['rtol']:g}·|golden|")
    if "min_cosine" in t:
        parts.append(f"cosine ≥ {t['min_cosine']:g}")
    kind = t.get("kind") or kind
    if "min_top1_agreement" in t and kind in (None, "classifier"):
        parts.append(f"top-{t.get('top_k', 1)} ≥ {t['min_top1_agreement']:g}")
    if kind in ("boxes", "regression"):
        limit = t.get("max_abs_error")
        parts.append(f"max |Δ| ≤ {limit:g}" if limit is not None else "max |Δ| ≤ 1% of the golden's spread")
    if kind == "dense" and t.get("max_mismatch_fraction"):
        parts.append(f"≤ {t['max_mismatch_fraction']:g} of values outside")
    if kind:
        parts.insert(0, kind)
    return "; ".join(parts)


def _href(page: str):
    """A link from `page` (a path relative to the workflow directory) to another such path."""
    base = posixpath.dirname(page)
    return lambda target: posixpath.relpath(str(target).replace(os.sep, "/"), base)


def _worst_loss(info: dict) -> float | None:
    losses = [
        1.0 - m["cosine"]
        for v, r in info["onnx_parity"].items()
        if v not in ("export", "sim")
        for m in (r.get("outputs") or {}).values()
        if "cosine" in m
    ]
    return max(losses) if losses else None


def _model_rows(summary: dict, by_model: dict) -> list[dict]:
    rows = []
    for name, info in summary["models"].items():
        cells = by_model.get(name, [])
        rows.append(
            {
                "name": name,
                "info": info,
                "worst": _worst_loss(info),
                "plan_mb": sum((c.get("facts") or {}).get("plan_bytes", 0) for c in cells) / 1e6,
                "tokens": " ".join(f"{c['precision']}|{c['target']}|{c['status']}" for c in cells),
            }
        )
    return rows


def _columns(summary: dict) -> tuple:
    rare = ("not-attempted", "missing", "damaged")  # columns only where a target has them
    return COLUMNS + tuple(k for k in rare if summary["overview"]["outcomes"].get(k))


def index_pages(env, summary: dict, by_model: dict, outcomes_svg) -> dict[str, str]:
    """{path: html} of the index (overview + first models) and its further pages of models."""
    rows = _model_rows(summary, by_model)
    count = max(1, math.ceil(len(rows) / MODELS_PER_PAGE))
    pages = [paths.REPORT_HTML] + [paths.report_list_page(n) for n in range(2, count + 1)]
    out = {}
    for n, page in enumerate(pages, 1):
        chunk = rows[(n - 1) * MODELS_PER_PAGE : n * MODELS_PER_PAGE]
        out[page] = env.get_template("index.html.j2").render(
            summary=summary,
            o=summary["overview"]["outcomes"],
            rows=chunk,
            page=n,
            pages=pages,
            first=(n - 1) * MODELS_PER_PAGE + 1 if chunk else 0,
            last=(n - 1) * MODELS_PER_PAGE + len(chunk),
            columns=_columns(summary),
            outcome_keys=OUTCOMES,
            outcomes_svg=outcomes_svg if n == 1 else None,
            href=_href(page),
        )
    return out


def model_page(env, summary: dict, name: str, cells: list[dict], figure: str | None) -> str:
    from .summary import reason_groups

    info = summary["models"][name]
    reasons = reason_groups(cells)
    refs = {}
    for i, g in enumerate(reasons, 1):
        for c in g["cells"]:
            refs.setdefault((c["precision"], c["target"]), []).append(i)
    grid = {
        (c["precision"], c["target"]): {**c, "reason_refs": refs.get((c["precision"], c["target"]), [])} for c in cells
    }
    page = paths.report_page(name)
    parity_links = [(v, info["links"].get(f"parity_{v}")) for v in info["onnx_parity"]]
    return env.get_template("model.html.j2").render(
        summary=summary,
        name=name,
        info=info,
        cells=grid,
        reasons=reasons,
        figure=figure,
        failures=_failure_groups(cells),
        precisions=sorted({c["precision"] for c in cells} | set(info["precisions"]), key=_precision_order),
        targets=sorted({c["target"] for c in cells}, key=lambda t: int(t[2:])),
        columns=_columns(summary),
        parity_links=parity_links,
        href=_href(page),
    )


def _failure_groups(cells: list[dict]) -> list[dict]:
    """A model's failures, the same error on several targets said once (with each target's log)."""
    groups: dict[tuple, dict] = {}
    for c in cells:
        if c["status"] == "failed":
            key = (c["stage"], c["precision"], generic(c["error_head"], c["cc"]))
            groups.setdefault(
                key,
                {
                    "stage": c["stage"],
                    "precision": c["precision"],
                    "error_head": c["error_head"],
                    "shown_for": c["target"],
                    "cells": [],
                },
            )["cells"].append(c)
    return list(groups.values())


def upgrade_page(env, summary: dict, figures: dict[str, str | None], drawn: int) -> str:
    """The upgrade page: the gate's verdict, the live key's plans beside the candidate's (every metric), and a chart
    per metric (`figures`: {metric: inlined SVG, None where no plan has that number}; each draws `drawn` plans at
    most)."""
    u = summary["upgrade"]
    return env.get_template("upgrade.html.j2").render(
        summary=summary,
        u=u,
        figures=figures,
        drawn_of=(drawn, len(u["rows"])) if len(u["rows"]) > drawn else None,
        href=_href(UPGRADE_PAGE),
    )
