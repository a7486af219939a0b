"""The report's charts as Vega-Lite specs (authored with altair), rendered to SVG offline by vl-convert: the SVG is
inlined in the pages (readable without JavaScript or network) and written beside them for Snakemake's report.

One figure per model (accuracy loss, plan size and build time, and latency/throughput when a GPU run exists, side
by side), one for the zoo, and on the upgrade page one per gate metric (the live key's bars beside the candidate's).
vl-convert costs ~0.13 s a call whatever the chart (measured), so each model page gets one call, and a figure
whose spec is unchanged comes from the content cache (artifacts/cache/report-charts/). The specs are built once per
layout with named data sets; each model only brings its rows.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os

import altair as alt

from ..outcomes import Outcome
from .summary import OUTCOMES, _precision_order

FLOOR = 1e-9  # log scale: an exact match (1 - cosine = 0, max abs = 0) is drawn at the floor
COLOURS = {
    Outcome.PASS: "#3b9c4a",
    Outcome.FAIL: "#d1453b",
    Outcome.NOT_RUN: "#e0b43a",
    Outcome.SKIPPED: "#a9a9a9",
    "failed": "#8e1b1b",
    "not-attempted": "#cfcfcf",
    "missing": "#dddddd",
    "damaged": "#c0509a",
}
TOLERANCE_COLOUR = "#d1453b"
WIDTH, HEIGHT = 180, 150
PARTS = ("accuracy", "plans", "performance")


# ------------------------------------------------------------------------------------------------ the rows
def accuracy_rows(parity: dict) -> list[dict]:
    """1 - cosine and max abs of each ONNX variant's outputs against golden, and the tolerance each was held to
    (1 - min_cosine; atol, the floor of the elementwise bound)."""
    rows = []
    for order, (variant, p) in enumerate(parity.items()):
        for output, m in (p.get("outputs") or {}).items():
            if "cosine" in m:
                rows.append(
                    {
                        "variant": variant,
                        "order": order,
                        "output": output,
                        "metric": "1 - cosine",
                        "kind": "measured",
                        "value": max(1.0 - m["cosine"], FLOOR),
                    }
                )
            if "max_abs" in m:
                rows.append(
                    {
                        "variant": variant,
                        "order": order,
                        "output": output,
                        "metric": "max abs",
                        "kind": "measured",
                        "value": max(m["max_abs"], FLOOR),
                    }
                )
        tol = p.get("tolerance") or {}
        if "min_cosine" in tol:
            rows.append(
                {
                    "variant": variant,
                    "order": order,
                    "output": "tolerance",
                    "metric": "1 - cosine",
                    "kind": "tolerance",
                    "value": max(1.0 - tol["min_cosine"], FLOOR),
                }
            )
        if "atol" in tol:
            rows.append(
                {
                    "variant": variant,
                    "order": order,
                    "output": "tolerance",
                    "metric": "max abs",
                    "kind": "tolerance",
                    "value": max(tol["atol"], FLOOR),
                }
            )
    return rows if any(r["kind"] == "measured" for r in rows) else []


def plan_rows(cells: list[dict]) -> list[dict]:
    """Plan size and build time per precision and target (each plan's provenance facts)."""
    rows = []
    for c in cells:
        f, order = c.get("facts") or {}, _precision_order(c["precision"])
        if "plan_bytes" in f:
            rows.append(
                {
                    "precision": c["precision"],
                    "order": order,
                    "group": c["target"],
                    "measure": "plan size (MB)",
                    "value": f["plan_bytes"] / 1e6,
                }
            )
        if "build_seconds" in f:
            rows.append(
                {
                    "precision": c["precision"],
                    "order": order,
                    "group": c["target"],
                    "measure": "build time (s)",
                    "value": f["build_seconds"],
                }
            )
    return rows


def performance_rows(cells: list[dict]) -> list[dict]:
    """Latency (p50) and throughput of each executed plan beside onnxruntime on the same ONNX variant."""
    rows = []
    for c in cells:
        p = c.get("performance")
        if not p:
            continue
        label, order = f"{c['precision']} {c['target']}", _precision_order(c["precision"])
        engines = [("plan", p["p50_ms"], p["throughput_per_s"])]
        if p.get("baseline_p50_ms"):
            engines.append(
                (
                    f"onnxruntime {p.get('baseline') or ''}".strip(),
                    p["baseline_p50_ms"],
                    p.get("baseline_throughput_per_s"),
                )
            )
        for engine, latency, throughput in engines:
            rows.append(
                {"precision": label, "order": order, "group": engine, "measure": "latency p50 (ms)", "value": latency}
            )
            if throughput:
                rows.append(
                    {
                        "precision": label,
                        "order": order,
                        "group": engine,
                        "measure": "throughput (/s)",
                        "value": throughput,
                    }
                )
    return rows


def outcome_rows(overview: dict) -> list[dict]:
    rows = []
    for axis, table in (("by precision", overview["by_precision"]), ("by target", overview["by_target"])):
        for order, (group, t) in enumerate(table.items()):
            rows += [
                {"axis": axis, "group": group, "order": order, "outcome": o, "rank": OUTCOMES.index(o), "count": t[o]}
                for o in OUTCOMES
                if t[o]
            ]
    return rows


# ------------------------------------------------------------------------------------------------ the specs
def _accuracy_chart() -> alt.FacetChart:
    x = alt.X("variant:N", sort=alt.EncodingSortField("order", op="min"), title=None)
    y = alt.Y("value:Q", scale=alt.Scale(type="log"), title=None, axis=alt.Axis(format=".0e", tickCount=6))
    points = (
        alt.Chart()
        .mark_point(filled=True, size=50)
        .encode(x=x, y=y, color=alt.Color("output:N", title="output"))
        .transform_filter(alt.datum.kind == "measured")
    )
    ticks = (
        alt.Chart()
        .mark_tick(color=TOLERANCE_COLOUR, thickness=2, size=16)
        .encode(x=x, y=y)
        .transform_filter(alt.datum.kind == "tolerance")
    )
    return (
        alt.layer(points, ticks, data=alt.Data(name="accuracy"))
        .properties(width=WIDTH, height=HEIGHT)
        .facet(column=alt.Column("metric:N", title="accuracy loss vs golden (red tick: tolerance)"))
        .resolve_scale(y="independent")
    )


def _bars(name: str, colour_title: str) -> alt.FacetChart:
    return (
        alt.Chart(alt.Data(name=name))
        .mark_bar()
        .encode(
            x=alt.X("precision:N", title=None, sort=alt.EncodingSortField("order", op="min")),
            xOffset="group:N",
            y=alt.Y("value:Q", title=None, stack=None),
            color=alt.Color("group:N", title=colour_title),
        )
        .properties(width=WIDTH, height=HEIGHT)
        .facet(column=alt.Column("measure:N", title=None))
        .resolve_scale(y="independent")
    )


BUILDERS = {
    "accuracy": _accuracy_chart,
    "plans": lambda: _bars("plans", "target"),
    "performance": lambda: _bars("performance", "engine"),
}


@functools.cache
def _template(parts: tuple[str, ...]) -> dict:
    return alt.hconcat(*(BUILDERS[p]() for p in parts)).resolve_scale(color="independent").to_dict()


@functools.cache
def _outcomes_template() -> dict:
    present = list(OUTCOMES)
    return (
        alt.Chart(alt.Data(name="outcomes"))
        .mark_bar()
        .encode(
            x=alt.X("group:N", title=None, sort=alt.EncodingSortField("order", op="min")),
            y=alt.Y("count:Q", title="targets"),
            color=alt.Color(
                "outcome:N", sort=present, scale=alt.Scale(domain=present, range=[COLOURS[o] for o in present])
            ),
            order=alt.Order("rank:Q"),
        )
        .properties(width=WIDTH, height=130)
        .facet(column=alt.Column("axis:N", title=None))
        .resolve_scale(x="independent")
        .to_dict()
    )


def model_figure(parity: dict, cells: list[dict]) -> dict | None:
    """One model's figure: accuracy loss per precision, plan size and build time, latency and throughput (each
    only when it has numbers); None when there is nothing to draw."""
    data = {"accuracy": accuracy_rows(parity), "plans": plan_rows(cells), "performance": performance_rows(cells)}
    parts = tuple(p for p in PARTS if data[p])
    if not parts:
        return None
    return {**copy.deepcopy(_template(parts)), "datasets": {p: data[p] for p in parts}}


def outcomes_figure(overview: dict) -> dict | None:
    rows = outcome_rows(overview)
    return {**copy.deepcopy(_outcomes_template()), "datasets": {"outcomes": rows}} if rows else None


# ------------------------------------------------------------------------------------------------ the upgrade
SIDES = ("live", "candidate")
SIDE_COLOURS = ("#8c8c8c", "#2f6fb0")
UPGRADE_PLANS = 40  # plans drawn per metric (the largest changes); the page's table has every plan
UPGRADE_SCALE = {"plan_bytes": 1e-6}  # drawn in MB
UPGRADE_LOG = {"max_abs"}  # spans decades: a log axis, an exact match drawn at FLOOR


def upgrade_rows(upgrade: dict, metric: str, limit: int = UPGRADE_PLANS) -> list[dict]:
    """Both keys' value of `metric` per (model, precision, target): the plans with the largest change (a failed
    budget first), in the table's order."""
    have = [r for r in upgrade["rows"] if any(r["metrics"][metric][s] is not None for s in SIDES)]

    def weight(r):
        m = r["metrics"][metric]
        return (metric in r["failed_fields"], abs(m["change_pct"] or 0.0))

    keep = {id(r) for r in sorted(have, key=weight, reverse=True)[:limit]}
    scale = UPGRADE_SCALE.get(metric, 1.0)
    rows = []
    for order, r in enumerate(x for x in have if id(x) in keep):
        for rank, side in enumerate(SIDES):
            v = r["metrics"][metric][side]
            if v is None:
                continue
            v = v * scale
            rows.append(
                {
                    "plan": f"{r['model']} {r['precision']} {r['target']}",
                    "order": order,
                    "side": side,
                    "rank": rank,
                    "value": max(v, FLOOR) if metric in UPGRADE_LOG else v,
                }
            )
    return rows


@functools.cache
def _upgrade_template(title: str, log: bool) -> dict:
    y = alt.Y("value:Q", title=None, stack=None)
    if log:
        y = alt.Y("value:Q", title=None, stack=None, scale=alt.Scale(type="log"), axis=alt.Axis(format=".0e"))
    return (
        alt.Chart(alt.Data(name="upgrade"), title=title)
        .mark_bar()
        .encode(
            x=alt.X("plan:N", title=None, sort=alt.EncodingSortField("order", op="min"), axis=alt.Axis(labelAngle=-40)),
            xOffset=alt.XOffset("side:N", sort=list(SIDES)),
            y=y,
            color=alt.Color(
                "side:N", title="key", sort=list(SIDES), scale=alt.Scale(domain=list(SIDES), range=list(SIDE_COLOURS))
            ),
            tooltip=["plan:N", "side:N", "value:Q"],
        )
        .properties(height=HEIGHT)
        .to_dict()
    )


def upgrade_figure(upgrade: dict, metric: str) -> dict | None:
    """One metric's chart: grouped bars, the live key's beside the candidate's, per plan; None when no plan has it
    (latency and accuracy without a GPU run)."""
    rows = upgrade_rows(upgrade, metric)
    if not rows:
        return None
    title = upgrade["labels"][metric] if metric not in UPGRADE_SCALE else f"{upgrade['labels'][metric]} (MB)"
    spec = copy.deepcopy(_upgrade_template(title, metric in UPGRADE_LOG))
    plans = len({r["plan"] for r in rows})
    return {**spec, "width": max(WIDTH, 34 * plans), "datasets": {"upgrade": rows}}


# ------------------------------------------------------------------------------------------------ rendering
class Renderer:
    """Vega-Lite -> SVG through vl-convert, with a content cache: a spec seen before is not rendered again.
    `sweep()` removes the cached figures this report did not use."""

    def __init__(self, cache_dir: str):
        import vl_convert

        self.vlc, self.cache_dir, self.used = vl_convert, cache_dir, set()
        self.version = vl_convert.__version__ if hasattr(vl_convert, "__version__") else ""

    def svg(self, spec: dict) -> str:
        from ..atomic import atomic_path

        digest = hashlib.sha256(json.dumps([self.version, spec], sort_keys=True).encode()).hexdigest()
        path = os.path.join(self.cache_dir, f"{digest}.svg")
        self.used.add(f"{digest}.svg")
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            pass
        svg = self.vlc.vegalite_to_svg(spec)
        with atomic_path(path) as tmp:
            tmp.write_text(svg)
        return svg

    def sweep(self) -> None:
        if os.path.isdir(self.cache_dir):
            for name in os.listdir(self.cache_dir):
                if name not in self.used:
                    os.remove(os.path.join(self.cache_dir, name))
