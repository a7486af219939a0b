"""summary.json: every (model, precision, target) as one cell with its outcome, its numbers and its links, an
overview that counts outcomes and says each reason once, and what happened to each model on its way to ONNX.

Reads only what the stages wrote (validation.json per plan, parity per ONNX variant, provenance sidecars, failure
records); computes nothing new. Paths in it are relative to the workflow directory (the current directory), and a
link is given only to a file that exists, so a page never points at nothing.
"""

from __future__ import annotations

import datetime
import json
import os
import re

from .. import fingerprint, paths, provenance, signing
from ..atomic import read_json
from ..backends.header import read_header
from ..deploy.gate import METRICS as GATE_METRICS
from ..errors import FactoryError
from ..outcomes import EVIDENCE_TEXT, Evidence, Outcome, evidence_of
from ..precisions import PRECISIONS

# Each cell ends as exactly one of these; "built" (below) counts the cells whose plan exists, whatever its checks.
OUTCOMES = (
    Outcome.PASS,
    Outcome.FAIL,
    Outcome.NOT_RUN,
    Outcome.SKIPPED,
    "failed",
    "not-attempted",
    "missing",
    "damaged",
)
OUTCOME_LABELS = {
    "built": "built",
    Outcome.PASS: "validated pass",
    Outcome.FAIL: "validation fail",
    Outcome.NOT_RUN: "not-run",
    Outcome.SKIPPED: "skipped",
    "failed": "failed to build",
    "not-attempted": "not attempted",
    "missing": "missing",
    "damaged": "damaged",
}
METRICS = ("max_abs", "max_rel", "cosine", "top1_agreement")
TARGET = "{target}"  # stands for the cell's own target in a grouped reason (the group lists its targets)
ERROR_HEAD_LINES = 6  # a failure's first lines shown in the report (the record keeps 12, the log everything)
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # colour codes tools write into errors: not for a page
_CAUSE = re.compile(r"error|exception|cause|failed|cannot|not supported|unsupported|invalid", re.I)


def plain(text: str | None) -> str:
    """Text as a page shows it: without ANSI colour and cursor codes."""
    return ANSI.sub("", text or "")


def error_head(error: str | None) -> str:
    """The first lines of an error, and, where the line that says the cause comes later (a traceback's last line,
    a tool's `ERROR:` after its banner), that line too: the box must not stop before the cause."""
    lines = [ln for ln in plain(error).splitlines() if ln.strip()]
    head = lines[:ERROR_HEAD_LINES]
    rest = lines[ERROR_HEAD_LINES:]
    cause = next((ln for ln in reversed(rest) if _CAUSE.search(ln)), None)
    if cause is not None:
        head += ["…", cause]
    return "\n".join(head)


def _other_targets(error: str, cc: str) -> list[str]:
    """The targets an error names besides `cc`'s own (a build job for several targets that stopped at one)."""
    named = dict.fromkeys(re.findall(r"\bsm(\d+)\b", error))
    return [] if cc in named else [f"sm{t}" for t in named]


def target_name(cc: str) -> str:
    return f"sm{cc}"


def _existing(links: dict) -> dict:
    return {k: p for k, p in links.items() if p and os.path.isfile(p)}


def model_notes(model: str) -> dict:
    """What happened to a model on its way to ONNX: opset (and its upgrade), simplifier path, input layout."""
    exported = (read_json(paths.provenance(paths.onnx(model))) or {}).get("facts", {})
    simplified = (read_json(paths.provenance(paths.sim_onnx(model))) or {}).get("facts", {})
    notes = {
        "opset": exported.get("opset"),
        "simplifier_used": simplified.get("simplifier_used"),
        "simplifier_attempts": simplified.get("attempts", []),
    }
    if exported.get("opset_converted"):
        c = exported["opset_converted"]
        notes["opset_upgrade"] = f"opset {c['from']} converted to {c['to']} by onnx's version converter"
    layout = {k: v for k, v in exported.get("layout", {}).items() if v}
    if layout:  # TensorFlow image inputs: the layout the plan takes
        nchw = exported.get("inputs_as_nchw", [])
        notes["layout"] = layout
        notes["layout_note"] = "plan input layout: " + ", ".join(
            f"{k} {v}" + (" (tf2onnx transposes it to the model's NHWC)" if k in nchw else "")
            for k, v in layout.items()
        )
    return notes


def precision_notes(model: str, precision: str) -> dict:
    """The precision stage's path: the tool that made the variant, the ones that failed before it (the fallback),
    and its warnings (e.g. no Q/DQ node: the variant computes in fp32)."""
    facts = (read_json(paths.provenance(paths.precision_onnx(model, precision))) or {}).get("facts", {})
    if not facts:
        return {}
    from ..graph.precision_search import summary

    failed = [a for a in facts.get("attempts", []) if a.get("status") != "ok"]
    notes = {
        "tool": facts.get("tool"),
        "fallback": [f"{a['tool']}: {a.get('reason', '')[:300]}" for a in failed],
        "warnings": facts.get("warnings", []),
    }
    if "layers" in facts:  # quantized variants: what the label holds ("int8: 2 of 3 layers quantized")
        notes["layers"] = f"{facts['quantized_layers']} of {facts['layers']} layers quantized"
    search = facts.get("search")
    if search:  # the precision search: what it kept, in how many trials, the accuracy at each step
        notes["search"] = {
            "status": search["status"],
            "summary": summary(search),
            "kept": search["kept"],
            "trials": search["trials"],
            "steps": [
                {
                    "trial": st["trial"],
                    "kept": st["excluded"],
                    "status": st["status"],
                    "passes": st["passes"],
                    "seconds": st["seconds"],
                    "cosine": {o: m.get("cosine") for o, m in st.get("accuracy", {}).items()},
                }
                for st in search.get("steps", [])
            ],
        }
    return notes


def parity_entry(result: dict | None) -> dict:
    """One ONNX variant's parity against golden: status, reason, the tolerance it was held to, per-output metrics."""
    if not result:
        return {"status": "missing", "reason": "no parity result"}
    return {
        "status": result["status"],
        "reason": result.get("reason", ""),
        "tolerance": result.get("tolerance", {}),
        "outputs": {
            name: {m: o[m] for m in (*METRICS, "kind") if m in o} for name, o in (result.get("outputs") or {}).items()
        },
        **({"evidence": result["evidence"]} if result.get("evidence") else {}),
    }


def _plan_facts(plan: str) -> dict:
    facts = (read_json(paths.provenance(plan)) or {}).get("facts", {})
    return {k: facts[k] for k in ("plan_bytes", "build_seconds", "warnings") if k in facts}


def damage(plan: str, validation: str) -> str | None:
    """Why a plan on disk (or its validation) is damaged (None: it is not, or it is not there): it is not what its
    provenance record says (size, sha256: provenance.intact, cached by stat), or its header does not read. Emptied,
    halved and zeroed files (a power loss) are kept by Snakemake, which judges by dates."""
    if not os.path.exists(plan):
        return None
    if why := provenance.intact(plan):
        return f"the plan is damaged: {why}"
    if problem := read_header(plan)["problem"]:
        return f"the plan is damaged: its header: {problem}"
    if os.path.exists(validation) and (why := provenance.intact(validation, need_record=False)):
        return f"its validation is damaged: {why}"
    return None


def _validated_cell(job: dict) -> dict:
    """`job`: the plan's model, key, cc, precision, and the logs of the jobs that built and validated it."""
    logs = job.get("logs", {})
    j = {k: job[k] for k in ("model", "key", "cc", "precision")}
    plan, validation = paths.plan(**j), paths.validation(**j)
    v = read_json(validation)
    cell = {
        **j,
        "target": target_name(j["cc"]),
        "plan": plan,
        "status": v["status"] if v else "missing",
        "links": _existing(
            {
                "plan": plan,
                "provenance": paths.provenance(plan),
                "intoto": paths.intoto(plan),
                "signature": signing.envelope_path(plan),
                "validation": validation,
                "build_log": logs.get("build"),
                "validate_log": logs.get("validate"),
            }
        ),
    }
    if why := damage(plan, validation):  # a plan or verdict that is not what was recorded: never shown as built
        cell["links"].pop("plan", None)
        return {**cell, "status": "damaged", "reason": why, "evidence": Evidence.NONE, "evidence_text": None}
    cell["facts"] = _plan_facts(plan)
    cell["signed"] = "signature" in cell["links"]  # an envelope is there; `verify` says whether it holds
    # what was established, beside the outcome: a not-run whose ONNX variant passed is checked; nothing run is not
    cell["evidence"] = evidence_of(v["checks"]) if v else Evidence.NONE
    cell["evidence_text"] = EVIDENCE_TEXT[cell["evidence"]]
    if not v:
        return cell
    cell["checks"] = {name: {"status": c["status"], "reason": c.get("reason", "")} for name, c in v["checks"].items()}
    parity = v["checks"]["onnx_parity"]
    cell["onnx_metrics"] = {
        k: {m: x for m, x in o.items() if m in ("max_abs", "cosine", "top1_agreement")}
        for k, o in parity.get("outputs", {}).items()
    }
    cell["tolerance"] = parity.get("tolerance", {})
    execution = v["checks"]["plan_execution"]
    perf = execution.get("performance")
    if perf:
        base = v.get("baseline") or {}
        base_ms = base.get("latency_ms") or {}
        cell["performance"] = {
            "p50_ms": perf["latency_ms"]["p50"],
            "p90_ms": perf["latency_ms"].get("p90"),
            "throughput_per_s": perf["throughput_per_s"],
            "speedup_p50": v.get("speedup_p50"),
            "baseline": base.get("provider"),
            "baseline_p50_ms": base_ms.get("p50"),
            # onnxruntime ran the same batch (the profile's opt shape): its throughput likewise
            "baseline_throughput_per_s": perf["batch"] * 1000.0 / base_ms["mean"]
            if base_ms.get("mean") and perf.get("batch")
            else None,
        }
    if execution.get("comparison"):  # executed on a GPU: the plan's own figures against golden
        cell["plan_metrics"] = {
            k: {m: x for m, x in o.items() if m in (*METRICS, "kind")}
            for k, o in execution["comparison"].get("outputs", {}).items()
        }
    return cell


def _failed_cell(f: dict) -> dict:
    """A target whose chain failed; "not-attempted" where its job (building several targets) stopped at another
    target first: the error names that target, not this one, so it is not this target's failure."""
    plan = paths.plan(f["model"], f["key"], f["cc"], f["precision"])
    error, reason = plain(f.get("error")), plain(f.get("reason"))
    cell = {
        **{k: f[k] for k in ("model", "key", "cc", "precision", "stage", "log")},
        "reason": reason,
        "error": error,
        "target": target_name(f["cc"]),
        "plan": plan,
        "status": "failed",
        "error_head": error_head(error),
        "links": _existing({"log": f.get("log"), "record": f.get("record")}),
    }
    others = _other_targets(error, f["cc"])
    if others:
        cell.update(status="not-attempted", reason=f"its {f['stage']} job stopped at {', '.join(others)} first")
    return cell


def generic(text: str, cc: str) -> str:
    """A reason without its cell's own target ("failed to build a plan for sm86", "no GPU of compute capability 8.6"),
    so that the same failure on every target is one reason."""
    text = re.sub(rf"\bsm{re.escape(cc)}\b", TARGET, plain(text))
    return re.sub(rf"(?<![\d.]){re.escape(paths.cc_dotted(cc))}(?![\d.])", TARGET, text)


def reason_groups(cells: list[dict]) -> list[dict]:
    """Each distinct reason once, with how many cells it holds for: a not-run or failing check (by check), a skip,
    a failure (by stage and its first line). Largest first."""
    groups: dict[tuple, dict] = {}

    def add(outcome, what, reason, cell):
        reason = generic(reason, cell["cc"])
        if any(g["reason"] == reason and g["outcome"] == outcome for g in said):
            return  # one cell, two checks with the same reason (parity and execution): said once
        said.append({"reason": reason, "outcome": outcome})
        g = groups.setdefault(
            (outcome, what, reason), {"outcome": outcome, "what": what, "reason": reason, "count": 0, "cells": []}
        )
        g["count"] += 1
        g["cells"].append({k: cell[k] for k in ("model", "precision", "target")})

    for c in cells:
        said: list[dict] = []
        if c["status"] in (Outcome.NOT_RUN, Outcome.FAIL):
            for name, check in c.get("checks", {}).items():
                if check["status"] == c["status"]:
                    add(c["status"], name, check["reason"], c)
        elif c["status"] == Outcome.SKIPPED:
            add(Outcome.SKIPPED, "skipped", c.get("reason", ""), c)
        elif c["status"] in ("failed", "not-attempted"):
            add(c["status"], c["stage"], c["reason"], c)
        elif c["status"] == "missing":
            add("missing", "validate", "its job did not finish (see Snakemake's output)", c)
        elif c["status"] == "damaged":
            add("damaged", "damaged", c["reason"], c)
    totals = {o: sum(c["status"] == o for c in cells) for o in OUTCOMES}
    out = sorted(groups.values(), key=lambda g: (OUTCOMES.index(g["outcome"]), -g["count"], g["what"], g["reason"]))
    for g in out:
        g["of"] = totals[g["outcome"]]
        g["targets"] = sorted({c["target"] for c in g["cells"]}, key=lambda t: int(t[2:]))
        # the placeholder never reaches a page: one target named, several said as "each target" and listed
        g["per_target"] = TARGET in g["reason"]
        g["reason"] = g["reason"].replace(TARGET, g["targets"][0] if len(g["targets"]) == 1 else "each target")
    return out


def _tally(cells: list[dict]) -> dict:
    counts = {"targets": len(cells), "built": sum(1 for c in cells if "plan" in c.get("links", {}))}
    counts.update({o: sum(c["status"] == o for c in cells) for o in OUTCOMES})
    return counts


def overview(cells: list[dict]) -> dict:
    """Outcome counts over every cell, per precision and per target, and the reasons grouped."""
    precisions = sorted({c["precision"] for c in cells}, key=_precision_order)
    targets = sorted({c["target"] for c in cells}, key=lambda t: int(t[2:]))
    return {
        "outcomes": _tally(cells),
        "by_precision": {p: _tally([c for c in cells if c["precision"] == p]) for p in precisions},
        "by_target": {t: _tally([c for c in cells if c["target"] == t]) for t in targets},
        "reasons": reason_groups(cells),
    }


SHIP = {  # a (model, precision)'s verdict in the index's grid, best first: what a person may ship
    "verified": "verified on GPU",
    "onnx-verified": "ONNX verified, not executed here",
    "emulation-verified": "emulation verified, not executed here",
    "not-verified": "not verified",
    "fails": "fails",
    "not-built": "not built",
    "skipped": "skipped",
}


def _accuracy(outputs: dict) -> str:
    """The figure a person reads: the worst cosine over the outputs, and the worst box/regression error in the
    output's units, top-1 agreement of classifiers where it is below 1."""
    parts = []
    cos = [o["cosine"] for o in outputs.values() if o.get("cosine") is not None]
    if cos:
        parts.append(f"cos {min(cos):.6f}")
    boxes = [o["max_abs"] for o in outputs.values() if o.get("kind") in ("boxes", "regression") and "max_abs" in o]
    if boxes:
        parts.append(f"max |Δ| {max(boxes):.3g}")
    top1 = [o["top1_agreement"] for o in outputs.values() if o.get("kind") == "classifier" and "top1_agreement" in o]
    if top1 and min(top1) < 1:
        parts.append(f"top-1 {min(top1):.3f}")
    return ", ".join(parts)


def ship_cell(cells: list[dict], parity: dict) -> dict:
    """One (model, precision) of the grid: its verdict (SHIP), the accuracy figure and how it was established."""
    statuses = {c["status"] for c in cells}
    built = [c for c in cells if c["status"] in (Outcome.PASS, Outcome.FAIL, Outcome.NOT_RUN)]
    executed = [c for c in cells if c["status"] == Outcome.PASS]
    if Outcome.FAIL in statuses or parity.get("status") == Outcome.FAIL:
        failing = next((c for c in cells if c["status"] == Outcome.FAIL), None)
        verdict, how = "fails", ("plan on " + failing["target"]) if failing and failing.get("plan_metrics") else None
        outputs = (failing or {}).get("plan_metrics") or parity.get("outputs") or {}
    elif executed:
        verdict, how = "verified", "plan executed on " + ", ".join(c["target"] for c in executed)
        outputs = executed[0].get("plan_metrics") or parity.get("outputs") or {}
    elif built and parity.get("status") == Outcome.PASS:
        emulated = parity.get("evidence") == "emulated"
        verdict = "emulation-verified" if emulated else "onnx-verified"
        how = "fp32 emulation of its tensors (onnxruntime cannot run it)" if emulated else "ONNX variant in onnxruntime"
        outputs = parity.get("outputs") or {}
    elif built:
        verdict, how, outputs = "not-verified", None, {}
    elif statuses and statuses <= {Outcome.SKIPPED}:
        verdict, how, outputs = "skipped", None, {}
    else:
        verdict, how, outputs = "not-built", None, {}
    if verdict == "fails" and not how and outputs:
        how = "ONNX variant in onnxruntime"
    return {
        "verdict": verdict,
        "label": SHIP[verdict],
        "accuracy": _accuracy(outputs),
        "established": how,
        "plans": len(built),
        "targets": len(cells),
    }


def ship_grid(cells: list[dict], per_model: dict) -> dict:
    """{model: {precision: ship_cell}}: the index's first table."""
    grid = {}
    for model, info in per_model.items():
        mine = [c for c in cells if c["model"] == model]
        grid[model] = {
            p: ship_cell([c for c in mine if c["precision"] == p], info["onnx_parity"].get(p) or {})
            for p in info["precisions"]
        }
    return grid


def _precision_order(p: str) -> int:
    return PRECISIONS.index(p) if p in PRECISIONS else len(PRECISIONS)


def signing_counts(cells: list[dict]) -> dict:
    """Plans on disk with / without a DSSE envelope when the report was made (`verify` says whether they hold)."""
    built = [c for c in cells if "plan" in c.get("links", {})]
    return {
        "signed": sum(1 for c in built if c.get("signed")),
        "unsigned": sum(1 for c in built if not c.get("signed")),
    }


def summarize(
    jobs: list[dict],
    skipped: list[dict],
    models: dict,
    backend: str | None = None,
    failed: list[dict] = (),
    comparison: str | None = None,
) -> dict:
    """Every (model, precision, target) ends as a cell: validated (pass / fail / not-run), skipped (reason), failed
    (the stage, the first lines of its error, its log), missing (its job did not finish: see Snakemake's output) or
    damaged (its plan or validation is not what its record says: the next run rebuilds it). `comparison`: the
    upgrade gate's file; where it exists, `upgrade` carries it."""
    with fingerprint.deferred():  # each plan's verdict cached (damage): the content cache written once, not per plan
        cells = [_validated_cell(j) for j in jobs]
    cells += [{**s, "target": target_name(s["cc"]), "status": Outcome.SKIPPED, "links": {}} for s in skipped]
    cells += [_failed_cell(f) for f in failed]
    per_model = {}
    for model, info in models.items():
        variants = ["export", "sim", *info["precisions"]]
        parity = {v: parity_entry(read_json(paths.parity(model, v))) for v in variants}
        per_model[model] = {
            **info,
            **model_notes(model),
            "onnx_parity": parity,
            "precision_notes": {p: precision_notes(model, p) for p in info["precisions"]},
            "links": _existing(
                {
                    **{f"parity_{v}": paths.parity(model, v) for v in variants},
                    "onnx_provenance": paths.provenance(paths.onnx(model)),
                    "sim_provenance": paths.provenance(paths.sim_onnx(model)),
                }
            ),
            "counts": _tally([c for c in cells if c["model"] == model]),
        }
    counts = {}
    for c in cells:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    section = upgrade(comparison) if comparison else None
    return {
        "backend": backend,
        "counts": counts,
        "evidence": {e: n for e in Evidence if (n := sum(c.get("evidence") == e for c in cells))},  # built cells
        "overview": {**overview(cells), "grid": ship_grid(cells, per_model)},
        "models": per_model,
        "plans": cells,
        "signing": signing_counts(cells),
        **({"upgrade": section} if section else {}),  # the gate's comparison, when there is one
    }


# ------------------------------------------------------------------------------------------------ the upgrade
GATE_LABELS = {  # the gate's metrics (deploy/gate.py METRICS) as a page names them
    "plan_bytes": "plan size",
    "build_seconds": "build time (s)",
    "warnings": "builder warnings",
    "max_abs": "max |Δ| vs golden (plan executed)",
    "latency_p50_ms": "latency p50 (ms)",
    "latency_p99_ms": "latency p99 (ms)",
}
CHECKS = ("header", "onnx_parity", "execution")  # each key's check outcomes shown beside the numbers


def _failed_field(f: dict) -> str:
    """The column a failed budget is about: judge's detail starts with the check or latency it names."""
    if f["budget"] in ("latency", "accuracy"):
        return f["detail"].split()[0]
    return {"size": "plan_bytes", "header": "header"}.get(f["budget"], f["budget"])


def _change_pct(live, candidate) -> float | None:
    return None if live is None or candidate is None or not live else 100.0 * (candidate - live) / live


def upgrade(path: str) -> dict | None:
    """The upgrade gate's comparison (artifacts/gate/comparison.json, written by `promote` and the nightly) as the
    report shows it: both keys, the verdict, and per plan both keys' values of every metric, with the budgets that
    failed on it. None when there is no comparison."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            c = json.load(f)
        rows_in, failed = c["rows"], c.get("failed") or []
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FactoryError(f"{path}: unreadable upgrade comparison ({e}); run `promote` again or remove it") from e
    by_plan: dict[str, list] = {}
    for f in failed:
        by_plan.setdefault(f["plan"], []).append({**f, "field": _failed_field(f)})
    rows = []
    for r in rows_in:
        live, cand = r.get("live") or {}, r.get("candidate") or {}
        mine = by_plan.get(cand.get("plan"), [])
        rows.append(
            {
                "model": r["model"],
                "precision": r["precision"],
                "cc": r["cc"],
                "target": target_name(r["cc"]),
                "plans": {"live": live.get("plan"), "candidate": cand.get("plan")},
                "checks": {k: {"live": live.get(k), "candidate": cand.get(k)} for k in CHECKS},
                "metrics": {
                    m: {
                        "live": live.get(m),
                        "candidate": cand.get(m),
                        "change_pct": _change_pct(live.get(m), cand.get(m)),
                    }
                    for m in GATE_METRICS
                },
                "failed": mine,
                "failed_fields": sorted({f["field"] for f in mine}),
            }
        )
    rows.sort(key=lambda r: (r["model"], _precision_order(r["precision"]), int(r["cc"])))
    outcome = c.get("outcome")
    return {
        "comparison": path,
        "written": datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.UTC).isoformat(timespec="seconds"),
        "live": c.get("live"),
        "candidate": c.get("candidate"),
        "outcome": outcome,
        # the gate's decision (a person may still promote a held key with --force: artifacts/live.json says)
        "verdict": "promote" if outcome == Outcome.PASS else "hold" if outcome == Outcome.FAIL else outcome,
        "reason": c.get("reason", ""),
        "budgets": c.get("budgets", {}),
        "failed": failed,
        "missing": c.get("missing", []),
        "metrics": list(GATE_METRICS),
        "labels": {m: GATE_LABELS.get(m, m) for m in GATE_METRICS},
        "rows": rows,
    }
