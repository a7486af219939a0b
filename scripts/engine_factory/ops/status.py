"""status: for every plan this host and config would produce, is it current, stale (and why), missing or failed?
And which plans on disk does this host no longer produce (an older TensorRT, a dropped target)?

Snakemake decides what is out of date; this module asks it (one `snakemake --summary`,
scripts/engine_factory/ops/snakemake.py) and does not re-implement its rules. The workflow's own resolution
(scripts/engine_factory/factory.py, in this process) gives each target's chain of jobs and each job's current settings;
the artifacts' records (provenance sidecars, or the settings a parity/validation result holds) give what they were made
with. The reasons, by category:

  checkpoint  a source file (checkpoint, TorchScript/ONNX source, calibration set, samples) changed, by content
              (its sha256 is part of the job's settings) or by date
  input       an upstream artifact changed, is missing or is being re-made
  config      a stage's settings changed (the key is named: `build.optimization_level: 3 -> 2`), or its inputs
  model code  the source of a model's configured class changed (scripts/engine_factory/modelcode.py)
  tool        a stage's tool changed version (e.g. onnxslim 0.1.97 -> 0.1.98); see provenance.STAGE_TOOLS
  host        the driver or CUDA version changed: validation re-runs, the plan is kept
  code        the rule's command changed (workflow upgrade)
  missing     the artifact is not there
  damaged     (a state) a file of the target's chain is not what its own provenance record says (emptied, halved,
              zeroed: size, then sha256, judged again only where a stat says it changed; provenance.intact): the
              next run removes it with what was made from it and makes them again
  failed      (a state) the target's chain holds a recorded failure that still applies: not retried until its
              inputs, settings or tools change (scripts/engine_factory/failures.py)

A new TensorRT version or compute capability is a new key: its plans are `missing`, and the old key's plans are
listed as no longer produced (kept; `prune` removes them).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import paths, signing
from ..atomic import read_json
from ..deploy.triton import PUBLISHED, WITHHELD
from ..outcomes import EVIDENCE_TEXT, STALE_MEANS, evidence_of
from . import emit, load_config, operation_parser
from .runs import live_runs
from .snakemake import summary

HOST_PARAMS = {"driver", "cuda", "driver_version", "cuda_driver_version"}
STATES = ("current", "stale", "missing", "failed", "damaged")
# Snakemake does not re-make a missing file while what was made from it is up to date (measured)
NOT_REMADE = (
    " and no run re-makes it while what was made from it is kept: `python -m engine_factory verify --repair` "
    "(make scheduled does it)"
)


def resolve_factory(directory: str = ".", configfiles=()):
    """The workflow's own resolution of this config on this host, as the Snakefile makes it."""
    from ..factory import open_workflow

    return open_workflow(directory, configfiles).resolve()


# ------------------------------------------------------------------------------------------------ reasons
def dict_diff(old, new, prefix: str = "") -> list[tuple[str, object, object]]:
    """[(dotted key, old, new)] of the leaves that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += dict_diff(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def recorded_run(base: Path, rule: str, wildcards: dict) -> dict:
    """{"params", "tools"} an artifact was made with: its provenance sidecar, or the record inside a parity or
    validation result."""
    main = base / paths.main_output(rule, wildcards)
    if rule in paths.WITH_SIDECAR:
        rec = read_json(paths.provenance(str(main))) or {}
        return {"params": rec.get("params"), "tools": rec.get("tools")}
    return (read_json(main) or {}).get("recorded") or {}


def params_reasons(rule: str, inputs: dict, before: dict, now: dict) -> list[dict]:
    """A settings change sorted into categories (see the module doc)."""
    out, config = [], []
    for key, old, new in dict_diff(before, now):
        if key.split(".")[-1] in HOST_PARAMS:
            out.append(("host", f"{key} {old} -> {new}"))
        elif key.startswith("source_sha256."):
            label = key.split(".", 1)[1]
            out.append(("checkpoint", f"source file {inputs.get(label, label)} changed"))
        elif key == "model_code":
            out.append(("model code", f"the model class's source changed ({rule} re-runs)"))
        else:
            config.append(f"{key}: {json.dumps(old)} -> {json.dumps(new)}")
    if config:
        out.append(("config", ", ".join(config)))
    merged: dict[str, list] = {}
    for category, detail in out:
        merged.setdefault(category, []).append(detail)
    return [{"category": c, "stage": rule, "detail": ", ".join(dict.fromkeys(d))} for c, d in merged.items()]


def tool_changes(rule: str, recorded: dict | None) -> list[str]:
    """'onnxslim 0.1.97 -> 0.1.98' for the stage's tools whose version differs from the recorded one."""
    from ..provenance import stage_tools

    if not recorded:
        return []
    return [f"{t} {recorded.get(t, 'absent')} -> {v}" for t, v in stage_tools(rule).items() if recorded.get(t) != v]


def job_reasons(base: Path, f, rule: str, wildcards: dict, row: dict) -> list[dict]:
    """Why one pending job re-runs: Snakemake's status of its output, completed from the records."""
    main = paths.main_output(rule, wildcards)
    out = []

    def add(category, detail):
        out.append({"category": category, "stage": rule, "detail": detail})

    if row["status"] == "missing":
        add("missing", f"{main} is missing")
        return out
    inputs = f.inputs(rule, wildcards)
    recorded = recorded_run(base, rule, wildcards)
    if recorded.get("params") is not None:
        out += params_reasons(rule, inputs, recorded["params"], json.loads(json.dumps(f.settings(rule, wildcards))))
    tools = tool_changes(rule, recorded.get("tools"))
    if tools:
        add("tool", ", ".join(tools))
    elif row["status"] == "rule implementation changed":
        add("code", f"the command of rule {rule} changed")
    if row["status"] == "updated input files":
        made = (base / main).stat().st_mtime_ns
        for p in inputs.values():
            if (base / p).exists() and (base / p).stat().st_mtime_ns > made:
                is_source = not p.startswith(paths.ROOT + "/") or paths.made_by_workflow(p)
                add(
                    "checkpoint" if is_source else "input",
                    f"source file {p} changed" if is_source else f"{p} changed since {rule} ran",
                )
    if row["status"] == "set of input files changed":
        add("config", f"the set of input files of {rule} changed")
    if row["status"] == "params changed" and not any(r["category"] != "tool" for r in out):
        add("config", f"params of {rule} changed")
    return out


# ------------------------------------------------------------------------------------------------ status
def target_status(base: Path, f, job: dict, rows: dict, damaged: dict | None = None) -> dict:
    """One plan target: its state, the categorized reasons of its pending chain jobs, what re-runs. `damaged`:
    {path: problem} of the files that fail their own record (Factory.damaged)."""
    reasons, reruns, seen = [], [], set()
    damaged = damaged or {}
    made_by = {paths.main_output(rule, w): paths.stage_of(rule) for rule, w in f.chain(**job)}
    made_by.setdefault(paths.parity(job["model"], job["precision"]), "precision")
    made_by.setdefault(paths.validation(**job), f.job_stage("validate"))
    broken = [
        {"category": "damaged", "stage": stage, "detail": f"{p}: {damaged[p]}"}
        for p, stage in made_by.items()
        if p in damaged
    ]
    for rule, w in f.chain(**job):
        row = rows.get(paths.main_output(rule, w))
        if row and not row["pending"] and row["status"] == "missing":
            reasons.append({"category": "missing", "stage": rule, "detail": f"{row['file']} is missing{NOT_REMADE}"})
            continue
        if not row or not row["pending"]:
            continue
        reruns.append(rule)
        for r in job_reasons(base, f, rule, w, row):
            ident = (r["category"], r["stage"], r["detail"])
            if ident not in seen:
                seen.add(ident)
                reasons.append(r)
    plan = paths.plan(**job)
    validation = rows.get(paths.validation(**job))
    if f.validates_in_build and validation and validation["status"] == "missing":
        # written by the build job, beside its main output (the plan): the chain above does not look at it
        reasons.append(
            {
                "category": "missing",
                "stage": "validate",
                "detail": f"{validation['file']} is missing{'' if validation['pending'] else NOT_REMADE}",
            }
        )
    state = "missing" if not (base / plan).exists() else "stale" if reruns or reasons else "current"
    if state == "missing":  # the plan itself (and so its validation) being missing is the state, not a reason
        reasons = [r for r in reasons if not (r["category"] == "missing" and r["stage"] in ("build", "validate"))]
    if state == "stale" and not reasons:
        reasons.append({"category": "input", "stage": None, "detail": "an upstream job is pending"})
    if broken and state != "missing":  # Snakemake, judging by dates, may call it current: it is not
        state, reasons = "damaged", broken + reasons
    v = read_json(base / paths.validation(**job))
    reasons.sort(key=lambda r: (r["category"], r["stage"] or "", r["detail"]))
    return {
        **job,
        "plan": plan,
        "state": state,
        "reasons": reasons,
        "reruns": sorted(set(reruns)),
        "logs": f.job_logs(job),
        "validation": v.get("status") if v else None,
        # checked or not: "onnx-verified, execution not run here" vs "not verified" (both validation not-run)
        "evidence": EVIDENCE_TEXT[evidence_of(v.get("checks") or {})] if v else None,
    }


def not_produced(base: Path, targets: list[dict], root: str = paths.ROOT) -> list[dict]:
    """Plans on disk that this host/config does not produce, with why."""
    produced = {t["plan"] for t in targets}
    keys = sorted({t["key"] for t in targets})
    key_ccs = {(t["key"], t["cc"]) for t in targets}
    models = {t["model"] for t in targets}
    out = []
    for p in sorted(base.glob(paths.plan_glob(root))):
        rel = p.relative_to(base).as_posix()
        t = paths.parse_plan(rel)
        if not t or rel in produced:
            continue
        if t["model"] not in models:
            why = f"model {t['model']} is not in this config"
        elif t["key"] not in keys:
            why = f"key {t['key']} is not built by this host (it builds {', '.join(keys) or 'nothing'})"
        elif (t["key"], t["cc"]) not in key_ccs:
            why = f"sm{t['cc']} is not a target of this host/config"
        else:
            why = f"{t['precision']} is not built for {t['model']} at sm{t['cc']} (not configured, or skipped)"
        out.append({**t, "plan": rel, "why": why})
    return out


def collect(directory: str = ".", configfiles=(), *, root: str = paths.ROOT) -> dict:
    """The status report (a dict; see `render` for the text form)."""
    from ..factory import open_workflow

    base = Path(directory)
    workflow = open_workflow(directory, configfiles)
    f = workflow.resolve()
    live = live_runs(directory)
    with workflow:  # before Snakemake's summary (a read-only call: it leaves damaged files in place)
        damaged = f.damaged()
    if live:  # a file a run in progress is writing (the artifact renamed, its record not yet) is not damage
        since = min(r["started"] for r in live) - 1
        damaged = [d for d in damaged if not _written_since(base / d["path"], since)]
    rows_list, seconds = summary(directory, configfiles)
    rows = {r["file"]: r for r in rows_list}
    where = {d["path"]: d["problem"] for d in damaged}
    with workflow:  # the factory's failure records and content cache live under the workflow directory
        targets = [target_status(Path("."), f, j, rows, where) for j in f.buildable]
    for x in f.failed:
        t = {k: x[k] for k in ("model", "key", "cc", "precision")}
        targets.append(
            {
                **t,
                "plan": paths.plan(**t),
                "state": "failed",
                "reruns": [],
                "validation": None,
                "evidence": None,
                "reasons": [
                    {
                        "category": "failed",
                        "stage": x["stage"],
                        "detail": f"{x['stage']}: {x['reason']} (log {x['log']})",
                    }
                ],
            }
        )
    targets.sort(key=lambda t: (t["model"], t["key"], int(t["cc"]), t["precision"]))
    counts = {s: sum(t["state"] == s for t in targets) for s in STATES}
    if not counts["damaged"]:  # said only when there is damage (the counts' shape before it existed)
        del counts["damaged"]
    keys = sorted({t["key"] for t in targets} | {f.key})
    return {
        "counts": counts,
        "targets": targets,
        "not_produced": not_produced(base, targets, root),
        "keys": keys,
        "mislabelled": mislabelled(base, targets),
        "damaged": damaged,  # every damaged file, the Triton directories' plans included
        "needs_work": bool(counts["stale"] or counts["missing"] or damaged),
        "failed": counts["failed"],
        "in_progress": [r["pid"] for r in live],
        "signing": signing_state(base, targets, f.cfg),
        "triton": triton_state(base, f.deploy_targets),
        # the key Triton serves: this host's, or an earlier one until this host's is promoted (artifacts/live.json)
        "live": {"key": f.live_key or f.key, "candidate": f.key if f.live_key else None},
        "snakemake_seconds": seconds,
    }


def _written_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return True  # gone meanwhile: the run is re-making it


def signing_state(base: Path, targets: list[dict], cfg: dict) -> dict:
    """Whether plans get signed here and how many on disk have an envelope (presence only: `verify` checks them)."""
    on_disk = [t["plan"] for t in targets if (base / t["plan"]).exists()]
    signed = sum((base / signing.envelope_path(p)).exists() for p in on_disk)
    return {"configured": signing.enabled(cfg), "signed": signed, "unsigned": len(on_disk) - signed}


def mislabelled(base: Path, targets: list[dict]) -> list[dict]:
    """The (model, precision) variants that are not what their label says (their parity's `label_problem`, e.g.
    "int8 requested, 0 of 3 layers quantized"): their plans are built, and are fp32 plans."""
    out = {}
    for t in targets:
        parity = read_json(base / paths.parity(t["model"], t["precision"])) or {}
        if parity.get("label_problem"):
            out[(t["model"], t["precision"])] = {
                "model": t["model"],
                "precision": t["precision"],
                "problem": parity["label_problem"],
            }
    return list(out.values())


def _summarize(details: list[str]) -> str:
    unique = list(dict.fromkeys(details))
    return unique[0] + (f" (+{len(unique) - 1} other)" if len(unique) > 1 else "")


def _group_lines(report: dict, verbose: bool) -> list[str]:
    """Default: one line per model, state and reason classes (each reason said once); -v: every plan in full."""
    lines, groups = [], {}
    for t in report["targets"]:
        if t["state"] == "current" and not verbose:
            continue
        classes = tuple(sorted({r["category"] for r in t["reasons"]}))
        groups.setdefault((t["model"], t["state"], classes if not verbose else id(t)), []).append(t)
    for (model, state, _), items in groups.items():
        plans = ", ".join(f"sm{t['cc']} {t['precision']}" for t in items)
        if verbose:
            t = items[0]
            lines.append(
                f"  {model} {t['key']} {plans}: {state}"
                + (f" ({t['validation']}; {t['evidence']})" if t["validation"] else "")
                + (f" [re-runs {', '.join(t['reruns'])}]" if t["reruns"] else "")
            )
            lines += [f"      {r['category']}: {r['detail']}" for r in t["reasons"]]
            continue
        by_class: dict[str, list] = {}
        for t in items:
            for r in t["reasons"]:
                by_class.setdefault(r["category"], []).append(r["detail"])
        why = "; ".join(f"{k}: {_summarize(v)}" for k, v in by_class.items())
        reruns = sorted({r for t in items for r in t["reruns"]})
        lines.append(
            f"  {model}: {len(items)} {state}"
            + (f" - {why}" if why else "")
            + (f" [re-runs {', '.join(reruns)}]" if reruns else "")
            + (f" ({plans})" if len(items) <= 4 else "")
        )
    return lines


def triton_state(base: Path, repositories) -> dict:
    """What each configured Triton repository's deploy record says: {published: [names], withheld: {name: why},
    pending: [names not deployed yet]}."""
    out = {"published": [], "withheld": {}, "pending": []}
    for name in repositories:
        record = read_json(base / paths.deploy_record(name)) or {}
        if record.get("status") == WITHHELD:
            out["withheld"][name] = str(record.get("reason", ""))
        else:
            out["published" if record.get("status") == PUBLISHED else "pending"].append(name)
    return out


def render(report: dict, verbose: bool = False) -> str:
    c = report["counts"]
    lines = [
        f"status: {c['current']} current, {c['stale']} stale, {c['missing']} missing, {c['failed']} failed"
        + (f", {c['damaged']} damaged" if c.get("damaged") else "")
        + " "
        f"(keys {', '.join(report['keys']) or 'none'}; asked snakemake in {report['snakemake_seconds']} s)"
    ]
    if c["stale"]:
        lines.append(f"stale: {STALE_MEANS}; the next run makes them again (why: below)")
    live = report.get("live") or {}
    if live.get("candidate"):
        lines.append(
            f"live: {live['key']} (Triton serves it); {live['candidate']}, built here, is a candidate until promoted "
            "(`promote`: the upgrade gate)"
        )
    lines += _group_lines(report, verbose)
    if sig := report.get("signing"):
        lines.append(
            f"signing: {sig['signed']} plan(s) with a signed envelope, {sig['unsigned']} unsigned"
            + ("" if sig["configured"] else " (no signing.key configured: plans are not signed)")
        )
    if (tr := report.get("triton")) and (tr["published"] or tr["withheld"] or tr["pending"]):
        lines.append(
            f"Triton repositories: {len(tr['published'])} published, {len(tr['withheld'])} withheld"
            + (f", {len(tr['pending'])} not deployed yet" if tr["pending"] else "")
            + (" (no plan passes the deploy policy: nothing of theirs is served):" if tr["withheld"] else "")
        )
        lines += [f"  {name}: {why}" for name, why in sorted(tr["withheld"].items())]
    if report.get("damaged"):
        lines.append(
            f"{len(report['damaged'])} damaged file(s), not what their provenance record says (the next run removes "
            "them with what was made from them and makes them again; `verify` checks everything):"
        )
        lines += [f"  {d['path']}: {d['problem']}" for d in report["damaged"]]
    if report["not_produced"]:
        groups: dict[tuple, list] = {}
        for t in report["not_produced"]:
            groups.setdefault((t["key"], t["cc"], t["why"]), []).append(f"{t['model']} {t['precision']}")
        lines.append(
            f"{len(report['not_produced'])} plan(s) on disk that this host/config no longer produces "
            "(kept; `python -m engine_factory prune` lists what it would remove):"
        )
        lines += [f"  {key} sm{cc}: {len(items)} plan(s) - {why}" for (key, cc, why), items in sorted(groups.items())]
    if report.get("mislabelled"):
        lines.append(f"{len(report['mislabelled'])} variant(s) not what their label says (their validation fails):")
        lines += [f"  {m['model']} {m['precision']}: {m['problem']}" for m in report["mislabelled"]]
    if report["failed"]:
        lines.append(
            f"{report['failed']} failed target(s): not retried until their inputs, settings or tools change "
            "(retry now: make run RETRY_FAILED=1)"
        )
    if report.get("in_progress") and report["needs_work"]:
        lines.append(
            f"a factory run is in progress (pid {', '.join(map(str, report['in_progress']))}): what is "
            "stale or missing may be being made now"
        )
    else:
        lines.append(
            "needs work: run the factory (make run)"
            if report["needs_work"]
            else "nothing to do" + (" but fix the failed targets" if report["failed"] else "")
        )
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    p = operation_parser(
        subparsers,
        "status",
        "current / stale (why) / missing / failed per plan this host and config "
        "would build; exit 1 if anything needs work or failed",
        "python -m engine_factory status -d ~/zoo --configfile ~/zoo/my-zoo.yaml -v",
    )
    p.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="every plan and every reason (default: one line per model and reason class)",
    )
    p.set_defaults(func=main)


def main(args) -> int:
    load_config(args)
    report = collect(args.directory, args.configfile or ())
    emit(report, lambda r: render(r, verbose=args.verbose), args.json)
    return 1 if report["needs_work"] or report["failed"] else 0
