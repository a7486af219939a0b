"""report: one JSON summary and one HTML page over models x precisions x targets.

Reads what the other stages wrote (validation.json per plan, parity per ONNX variant, provenance of the exported
and simplified ONNX for the opset-upgrade and simplifier notes); computes nothing new.
"""
from __future__ import annotations

import html

from .. import atomic, paths
from ..atomic import read_json

COLOURS = {"pass": "#c8f7c5", "fail": "#f7c5c5", "not-run": "#f7efc5", "skipped": "#e4e4e4", "missing": "#ffffff",
           "failed": "#f29b9b"}


def model_notes(model: str) -> dict:
    """What happened to a model on its way to ONNX: opset upgrade, simplifier path."""
    exported = (read_json(paths.provenance(paths.onnx(model))) or {}).get("facts", {})
    simplified = (read_json(paths.provenance(paths.sim_onnx(model))) or {}).get("facts", {})
    notes = {"opset": exported.get("opset"), "simplifier_used": simplified.get("simplifier_used"),
             "simplifier_attempts": simplified.get("attempts", [])}
    if exported.get("opset_converted"):
        c = exported["opset_converted"]
        notes["opset_upgrade"] = f"opset {c['from']} converted to {c['to']} by onnx's version converter"
    layout = {k: v for k, v in exported.get("layout", {}).items() if v}
    if layout:  # TensorFlow image inputs: the layout the plan takes
        nchw = exported.get("inputs_as_nchw", [])
        notes["layout"] = layout
        notes["layout_note"] = "plan input layout: " + ", ".join(
            f"{k} {v}" + (" (tf2onnx transposes it to the model's NHWC)" if k in nchw else "")
            for k, v in layout.items())
    return notes


def summarize(jobs: list[dict], skipped: list[dict], models: dict, backend: str | None = None,
              failed: list[dict] = ()) -> dict:
    """Every (model, precision, target) ends as a cell: validated (pass / fail / not-run), skipped (reason), failed
    (the stage, the first lines of its error, its log) or missing (its job did not finish: see Snakemake's output)."""
    cells = []
    for j in jobs:
        v = read_json(paths.validation(**j))
        cell = {**j, "plan": paths.plan(**j), "status": v["status"] if v else "missing"}
        if v:
            cell["checks"] = {name: {"status": c["status"], "reason": c.get("reason", "")}
                              for name, c in v["checks"].items()}
            outputs = v["checks"]["onnx_parity"].get("outputs", {})
            cell["onnx_metrics"] = {k: {m: x for m, x in o.items() if m in ("max_abs", "cosine", "top1_agreement")}
                                    for k, o in outputs.items()}
            perf = v["checks"]["plan_execution"].get("performance")
            if perf:
                cell["performance"] = {"p50_ms": perf["latency_ms"]["p50"], "throughput_per_s": perf["throughput_per_s"],
                                       "speedup_p50": v.get("speedup_p50"),
                                       "baseline": (v.get("baseline") or {}).get("provider")}
        cells.append(cell)
    cells += [{**s, "status": "skipped"} for s in skipped]
    cells += [{**{k: f[k] for k in ("model", "key", "cc", "precision", "stage", "reason", "error", "log")},
               "plan": paths.plan(f["model"], f["key"], f["cc"], f["precision"]), "status": "failed"} for f in failed]
    per_model = {}
    for model, info in models.items():
        parity = {}
        for variant in ["export", "sim", *info["precisions"]]:
            r = read_json(paths.parity(model, variant)) or {"status": "missing", "reason": "no parity result"}
            parity[variant] = {"status": r["status"], "reason": r.get("reason", "")}
        per_model[model] = {**info, **model_notes(model), "onnx_parity": parity}
    counts = {}
    for c in cells:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    return {"backend": backend, "counts": counts, "models": per_model, "plans": cells}


def write_report(json_out: str, html_out: str, *, jobs, skipped, models, backend=None, failed=()) -> dict:
    summary = summarize(jobs, skipped, models, backend, failed)
    atomic.write_json(json_out, summary)
    with atomic.atomic_path(html_out) as tmp:
        tmp.write_text(render_html(summary))
    return {"counts": summary["counts"]}


def render_html(summary: dict) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>Engine factory report</title><style>",
           "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;margin:1em 0}",
           "td,th{border:1px solid #999;padding:4px 8px;font-size:13px;vertical-align:top} small{color:#444}",
           "</style></head><body><h1>Engine factory report</h1>",
           f"<p>Backend: <b>{e(str(summary['backend']))}</b>. Plans: "
           + ", ".join(f"{e(k)} {v}" for k, v in sorted(summary["counts"].items())) + ".</p>",
           "<p><i>not-run</i> means the check could not run on the host that made this report (reason given); "
           "it is never counted as a pass.</p>"]
    for model, info in summary["models"].items():
        cells = [c for c in summary["plans"] if c["model"] == model]
        ccs = sorted({c["cc"] for c in cells}, key=int)
        out.append(f"<h2>{e(model)} <small>({e(info['framework'])})</small></h2><ul>")
        for f in info.get("failed", []):
            out.append(f"<li style='color:#a00'>failed at {e(f['stage'])}: {e(f['reason'][:400])} "
                       f"<small>(log: {e(str(f['log']))})</small></li>")
        if info.get("opset_upgrade"):
            out.append(f"<li>{e(info['opset_upgrade'])}</li>")
        if info.get("layout_note"):
            out.append(f"<li>{e(info['layout_note'])}</li>")
        out.append(f"<li>ONNX opset {e(str(info.get('opset')))}; simplified by "
                   f"<b>{e(str(info.get('simplifier_used')))}</b>"
                   + "".join(f" <small>[{e(a.get('tool', ''))}: {e(a.get('status', ''))} {e(a.get('reason', ''))}]"
                             "</small>" for a in info.get("simplifier_attempts", []) if a.get("status") != "ok")
                   + "</li></ul>")
        out.append("<table><tr><th>precision</th><th>ONNX parity (onnxruntime)</th>"
                   + "".join(f"<th>sm{e(cc)}</th>" for cc in ccs) + "</tr>")
        for precision in info["precisions"]:
            p = info["onnx_parity"].get(precision, {})
            row = [f"<td><b>{e(precision)}</b></td>",
                   f"<td style='background:{COLOURS.get(p.get('status'), '#fff')}'>{e(p.get('status', ''))}"
                   f"<br><small>{e(p.get('reason', ''))}</small></td>"]
            for cc in ccs:
                c = next((c for c in cells if c["cc"] == cc and c["precision"] == precision), None)
                if c is None:
                    row.append("<td></td>")
                    continue
                if c["status"] == "failed":
                    row.append(f"<td style='background:{COLOURS['failed']}'><b>failed</b> at {e(c['stage'])}<br>"
                               f"<small>{e(c['error'][:400])}</small><br><small>log: {e(str(c['log']))}</small></td>")
                    continue
                detail = c.get("reason", "") if c["status"] == "skipped" else "<br>".join(
                    f"{e(k)}: {e(v['status'])} <small>{e(v['reason'])}</small>" for k, v in c.get("checks", {}).items()
                    if k != "onnx_parity")  # the row's ONNX parity column already shows it
                if c["status"] == "skipped":
                    detail = e(detail)
                perf = c.get("performance")
                if perf:
                    speedup = f", {perf['speedup_p50']:.1f}x vs {perf['baseline']}" if perf.get("speedup_p50") else ""
                    detail += f"<br><small>p50 {perf['p50_ms']:.3f} ms, {perf['throughput_per_s']:.0f}/s{e(speedup)}</small>"
                row.append(f"<td style='background:{COLOURS[c['status']]}'><b>{e(c['status'])}</b><br>{detail}</td>")
            out.append("<tr>" + "".join(row) + "</tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def verdict(summary_path: str, out: str, log: str | None = None) -> None:
    """The run's verdict (the `outcome` rule): raise naming the failed targets, so the run's exit status says that
    something failed, else record that none did."""
    from ..errors import FactoryError

    summary = read_json(summary_path) or {}
    failed = [p for p in summary.get("plans", []) if p.get("status") == "failed"]
    lines = [f"  {p['model']} {p['precision']} sm{p['cc']}: {p['stage']}: {p['reason']} (log {p['log']})"
             for p in failed[:20]]
    text = (f"{len(failed)} of {len(summary.get('plans', []))} targets failed; they are not retried until their "
            "inputs, settings or tools change (retry: make run RETRY_FAILED=1 or FACTORY_RETRY_FAILED=1); report: "
            f"{paths.REPORT_HTML}\n" + "\n".join(lines)) if failed else "no target failed"
    if log:
        with atomic.atomic_path(log) as tmp:
            tmp.write_text(text + "\n")
    if failed:
        raise FactoryError(text)
    atomic.write_json(out, {"failed": 0, "counts": summary.get("counts", {})})
