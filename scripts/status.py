"""status: for every plan this host and config would produce, is it current, stale (and why) or missing? And which
plans on disk does this host no longer produce (an older TensorRT, a dropped target)?

Snakemake decides what is out of date; this module asks it rather than re-implementing its rules. One
`snakemake --summary` lists every output of the DAG (so every target plan, current or not) and one dry run
(`-n`) gives each pending job with Snakemake's reason; both run at once, with `--nolock`. The reasons are then put
into categories, with the provenance sidecars for the details:

  checkpoint  a source file (checkpoint, TorchScript/ONNX source, calibration set, samples) changed
  input       an upstream artifact changed, is missing or is being re-made
  config      a stage's settings changed (the params diff names the keys), or its set of inputs
  tool        a stage's tool changed version (e.g. onnxslim 0.1.97 -> 0.1.98); see provenance.STAGE_TOOLS
  host        the driver or CUDA version changed: validation re-runs, the plan is kept
  model code  the source of a model's configured class changed (scripts/modelcode.py)
  code        the rule's command changed (workflow upgrade)
  incomplete  a job was interrupted; forced: --forcerun
  failed      (a state) the target's chain holds a recorded failure that still applies: not retried until its
              inputs, settings or tools change (scripts/failures.py)

Sources are compared by content: each job's settings carry the sha256 of the source files it reads, so a checkpoint
replaced by other bytes with an older mtime shows as `checkpoint` here (Snakemake sees a params change).

A new TensorRT version or compute capability is a new key: its plans are `missing`, and the old key's plans are
listed as no longer produced (kept; `prune` removes them).
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from . import paths
from .atomic import read_json

REPO = Path(__file__).resolve().parent.parent
PROFILE = REPO / "workflow" / "profiles" / "default"
HOST_PARAMS = {"driver", "cuda", "driver_version", "cuda_driver_version"}
SOURCE_LABELS = {"source", "calibration", "samples"}


# ------------------------------------------------------------------------------------------------ snakemake
def snakemake_command(directory: str = ".", configfiles=(), *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--workflow-profile", str(PROFILE),
           "--directory", str(directory), "--cores", "1", "--nolock"]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    return cmd + list(extra)


def ask_snakemake(directory: str = ".", configfiles=(), *, dry_run: bool = True) -> dict:
    """Run `--summary` and (if dry_run) `-n` side by side; returns their outputs and the wall time."""
    start = time.monotonic()
    procs = {"summary": subprocess.Popen(snakemake_command(directory, configfiles, "--summary"),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)}
    if dry_run:
        procs["dryrun"] = subprocess.Popen(snakemake_command(directory, configfiles, "-n"), stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True)
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"snakemake {name} failed ({proc.returncode}):\n{(stdout or '')[-3000:]}"
                               f"{(stderr or '')[-3000:]}")
        out[name] = stdout
    out["seconds"] = round(time.monotonic() - start, 2)
    return out


def parse_summary(text: str) -> list[dict]:
    """Rows of `snakemake --summary`: file, date, rule, log, status, plan ("update pending" / "no update")."""
    rows = []
    lines = [line for line in text.splitlines() if "\t" in line]
    for line in lines[1:] if lines and lines[0].startswith("output_file") else lines:
        f = line.split("\t")
        if len(f) >= 6:
            rows.append({"file": f[0], "date": f[1], "rule": f[2], "status": f[-2],
                         "pending": f[-1] == "update pending"})
    return rows


def parse_dryrun(text: str) -> list[dict]:
    """Jobs of a dry run: rule, outputs, wildcards and Snakemake's reason text."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", "\n" + text):
        m = re.match(r"(?:local)?rule (\w+):\n", block)
        if not m:
            continue
        job = {"rule": m.group(1), "output": [], "wildcards": {}, "reason": ""}
        for line in block.splitlines()[1:]:
            key, _, value = line.strip().partition(": ")
            if key == "output":
                job["output"] = [v.strip() for v in value.split(", ")]
            elif key == "reason":
                job["reason"] = value.strip()
            elif key == "wildcards":
                job["wildcards"] = dict(kv.split("=", 1) for kv in value.split(", ") if "=" in kv)
        jobs.append(job)
    return jobs


_REASONS = ["Forced execution", "Missing output files: ", "Incomplete output files: ", "Updated input files: ",
            "Input files updated by another job: ", "Set of input files has changed since last execution",
            "Code has changed since last execution", "Params have changed since last execution: ",
            "Software environment definition has changed since last execution"]


def split_reason(reason: str) -> list[tuple[str, str]]:
    """Snakemake's `; `-joined reason as [(prefix, payload)] (payloads may contain '; ' inside params JSON)."""
    starts = sorted((m.start(), p) for p in _REASONS for m in re.finditer(re.escape(p), reason)
                    if m.start() == 0 or reason[max(0, m.start() - 2):m.start()] == "; ")
    parts = []
    for i, (pos, prefix) in enumerate(starts):
        end = starts[i + 1][0] - 2 if i + 1 < len(starts) else len(reason)
        parts.append((prefix.rstrip(": ").strip(), reason[pos + len(prefix):end].strip()))
    if not parts and reason:
        parts.append(("other", reason))
    return parts


_PY_STR = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def parse_params_change(payload: str) -> tuple[list, list]:
    """Snakemake's params change text ("... before: 'a','b' now: 'c' ") -> (before values, now values); each value
    is a param as Snakemake stored it (a Python literal of its text), JSON-decoded where it is JSON."""
    def literals(text: str, pos: int) -> tuple[list, int]:
        out = []
        if text.startswith("<nothing exclusive>", pos):
            return out, pos + len("<nothing exclusive>")
        while (m := _PY_STR.match(text, pos)):
            value = ast.literal_eval(m.group(0))
            try:
                out.append(json.loads(value))
            except ValueError:
                out.append(value)
            pos = m.end()
            if text[pos:pos + 1] != ",":
                break
            pos += 1
        return out, pos
    i = payload.find("before: ")
    if i < 0:
        return [], []
    before, pos = literals(payload, i + len("before: "))
    if not payload.startswith(" now: ", pos):
        return before, []
    now, _ = literals(payload, pos + len(" now: "))
    return before, now


def dict_diff(old, new, prefix: str = "") -> list[tuple[str, object, object]]:
    """[(dotted key, old, new)] of the leaves that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += dict_diff(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if old == new else [(prefix.rstrip("."), old, new)]


# ------------------------------------------------------------------------------------------------ categories
def _tool_changes(base: Path, job: dict) -> list[str]:
    """'onnxslim 0.1.97 -> 0.1.98' for the job's stage tools that differ from the provenance of what it made
    (for parity/validate, which have no sidecar: of their ONNX/plan input)."""
    from .provenance import stage_tools

    rule = job["rule"]
    current = stage_tools(rule)
    if not current:
        return []
    candidates = [o for o in job["output"] if not o.endswith((".provenance.json", ".intoto.json"))]
    w = job["wildcards"]
    if rule == "validate" and {"model", "key", "cc", "precision"} <= set(w):
        candidates.append(paths.plan(w["model"], w["key"], w["cc"], w["precision"]))
    if rule == "parity" and {"model", "variant"} <= set(w):
        v = w["variant"]
        candidates.append(paths.onnx(w["model"]) if v == "export" else paths.sim_onnx(w["model"]) if v == "sim"
                          else paths.precision_onnx(w["model"], v))
    for c in candidates:
        record = read_json(base / paths.provenance(c))
        if record:
            recorded = record.get("tools", {})
            return [f"{t} {recorded.get(t, 'absent')} -> {v}" for t, v in current.items() if recorded.get(t) != v]
    return []


def job_reasons(base: Path, job: dict, chain: set[str]) -> list[dict]:
    """Snakemake's reason for one job as categorized reasons; propagation from another chain job adds none."""
    out = []
    rule = job["rule"]

    def add(category, detail):
        out.append({"category": category, "stage": rule, "detail": detail})

    for kind, payload in split_reason(job["reason"]):
        files = [f.strip() for f in payload.split(", ") if f.strip()]
        if kind == "Missing output files":
            main = [f for f in files if not f.endswith((".provenance.json", ".intoto.json"))]
            add("missing", f"{(main or files)[0]} is missing")
        elif kind == "Incomplete output files":
            add("incomplete", f"{rule} was interrupted: {payload}")
        elif kind == "Updated input files":
            for f in files:
                if os.path.exists(base / paths.provenance(f)) or f in chain:
                    add("input", f"{f} changed since {rule} ran")
                else:
                    add("checkpoint", f"source file {f} changed")
        elif kind == "Input files updated by another job":
            for f in files:
                if f not in chain and not f.endswith(".json"):
                    add("input", f"{f} is being re-made")
        elif kind == "Set of input files has changed since last execution":
            add("config", f"the set of input files of {rule} changed")
        elif kind == "Code has changed since last execution":
            tools = _tool_changes(base, job)
            add("tool", ", ".join(tools)) if tools else add("code", f"the command of rule {rule} changed")
        elif kind == "Software environment definition has changed since last execution":
            add("tool", f"software environment of {rule} changed")
        elif kind == "Params have changed since last execution":
            before, now = parse_params_change(payload)
            diffs = dict_diff(before[0], now[0]) if len(before) == len(now) == 1 else []
            if not diffs:
                add("config", f"params of {rule} changed")
            host = [d for d in diffs if d[0].split(".")[-1] in HOST_PARAMS]
            sources = [d for d in diffs if d[0].startswith("source_sha256.")]
            code = [d for d in diffs if d[0] == "model_code"]
            other = [d for d in diffs if d not in host + sources + code]
            if host:
                add("host", ", ".join(f"{k} {a} -> {b}" for k, a, b in host))
            for _ in sources:  # the source's path is the job's input of that label
                add("checkpoint", f"the content of {rule}'s source file(s) changed")
                break
            if code:
                add("model code", f"the model class's source changed ({rule} re-runs)")
            if other:
                add("config", ", ".join(f"{k}: {json.dumps(a)} -> {json.dumps(b)}" for k, a, b in other))
        elif kind == "Forced execution":
            add("forced", f"{rule} forced")
        else:
            add("other", payload or kind)
    return out


def chain_files(model: str, key: str, cc: str, precision: str) -> set[str]:
    """Every file one plan target depends on inside the workflow (a job making any of them re-makes it)."""
    return {paths.frozen(model, "pt2"), paths.frozen(model, "pt"), paths.onnx(model), paths.sim_onnx(model),
            paths.precision_onnx(model, precision), paths.golden(model), paths.parity(model, precision),
            paths.plan(model, key, cc, precision), paths.validation(model, key, cc, precision)}


# ------------------------------------------------------------------------------------------------ status
def known_failures(directory: str, configfiles=()) -> list[dict]:
    """The plan targets that end failed (scripts/factory.py), resolved as the Snakefile resolves them."""
    from .config import load
    from .factory import resolve

    cwd = os.getcwd()
    try:
        cfg = load(configfiles, workdir=directory)
        os.chdir(directory)
        return resolve(cfg).failed
    finally:
        os.chdir(cwd)


def collect(directory: str = ".", configfiles=(), *, root: str = paths.ROOT) -> dict:
    """The status report (a dict; see `render` for the text form)."""
    base = Path(directory)
    sm = ask_snakemake(directory, configfiles)
    rows = parse_summary(sm["summary"])
    jobs = parse_dryrun(sm["dryrun"])
    by_output = {}
    for job in jobs:
        for o in job["output"]:
            by_output[o] = job
    targets = []
    for row in rows:
        if row["rule"] != "build" or not row["file"].endswith("model.plan"):
            continue
        t = paths.parse_plan(row["file"])
        if not t:
            continue
        chain = chain_files(**t)
        pending = {id(j): j for f in chain if (j := by_output.get(f))}
        reasons, seen = [], set()
        for job in pending.values():
            for r in job_reasons(base, job, chain):
                ident = (r["category"], r["stage"], r["detail"])
                if ident not in seen:
                    seen.add(ident)
                    reasons.append(r)
        reasons.sort(key=lambda r: (r["category"], r["stage"] or "", r["detail"]))
        plan = paths.plan(**t)
        validation = paths.validation(**t)
        v = read_json(base / validation)
        state = "missing" if not (base / plan).exists() else "stale" if pending else "current"
        if state == "missing":  # the plan itself (and so its validation) being missing is the state, not a reason
            reasons = [r for r in reasons if not (r["category"] == "missing" and r["stage"] in ("build", "validate"))]
        if state == "stale" and not reasons:
            reasons.append({"category": "input", "stage": None, "detail": "an upstream job is pending"})
        targets.append({**t, "plan": plan, "state": state, "reasons": reasons,
                        "reruns": sorted({j["rule"] for j in pending.values()}),
                        "validation": v.get("status") if v else None})
    for f in known_failures(directory, configfiles):
        t = {k: f[k] for k in ("model", "key", "cc", "precision")}
        targets.append({**t, "plan": paths.plan(**t), "state": "failed", "reruns": [],
                        "reasons": [{"category": "failed", "stage": f["stage"],
                                     "detail": f"{f['stage']}: {f['reason']} (log {f['log']})"}],
                        "validation": None})
    targets.sort(key=lambda t: (t["model"], t["key"], int(t["cc"]), t["precision"]))
    produced = {t["plan"] for t in targets}
    keys = sorted({t["key"] for t in targets})
    key_ccs = {(t["key"], t["cc"]) for t in targets}
    models = {t["model"] for t in targets}
    not_produced = []
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
        not_produced.append({**t, "plan": rel, "why": why})
    counts = {s: sum(t["state"] == s for t in targets) for s in STATES}
    return {"counts": counts, "targets": targets, "not_produced": not_produced, "keys": keys,
            "needs_work": bool(counts["stale"] or counts["missing"]), "failed": counts["failed"],
            "snakemake_seconds": sm["seconds"]}


STATES = ("current", "stale", "missing", "failed")


def _summarize(details: list[str]) -> str:
    unique = list(dict.fromkeys(details))
    return unique[0] + (f" (+{len(unique) - 1} other)" if len(unique) > 1 else "")


def render(report: dict, verbose: bool = False) -> str:
    """Text form. Default: one line per model, state and reason class (each reason said once); -v: every plan with
    its reasons in full."""
    c = report["counts"]
    lines = [f"status: {c['current']} current, {c['stale']} stale, {c['missing']} missing, {c['failed']} failed "
             f"(keys {', '.join(report['keys']) or 'none'}; asked snakemake in {report['snakemake_seconds']} s)"]
    groups: dict[tuple, list] = {}
    for t in report["targets"]:
        if t["state"] == "current" and not verbose:
            continue
        classes = tuple(sorted({r["category"] for r in t["reasons"]}))
        groups.setdefault((t["model"], t["state"], classes if not verbose else id(t)), []).append(t)
    for (model, state, _), items in groups.items():
        plans = ", ".join(f"sm{t['cc']} {t['precision']}" for t in items)
        if verbose:
            t = items[0]
            lines.append(f"  {model} {t['key']} {plans}: {state}" + (f" ({t['validation']})" if t["validation"] else "")
                         + (f" [re-runs {', '.join(t['reruns'])}]" if t["reruns"] else ""))
            lines += [f"      {r['category']}: {r['detail']}" for r in t["reasons"]]
            continue
        by_class: dict[str, list] = {}
        for t in items:
            for r in t["reasons"]:
                by_class.setdefault(r["category"], []).append(r["detail"])
        why = "; ".join(f"{k}: {_summarize(v)}" for k, v in by_class.items())
        reruns = sorted({r for t in items for r in t["reruns"]})
        lines.append(f"  {model}: {len(items)} {state}" + (f" - {why}" if why else "")
                     + (f" [re-runs {', '.join(reruns)}]" if reruns else "")
                     + (f" ({plans})" if len(items) <= 4 else ""))
    if report["not_produced"]:
        groups2: dict[tuple, list] = {}
        for t in report["not_produced"]:
            groups2.setdefault((t["key"], t["cc"], t["why"]), []).append(f"{t['model']} {t['precision']}")
        lines.append(f"{len(report['not_produced'])} plan(s) on disk that this host/config no longer produces "
                     "(kept; `python -m scripts prune` lists what it would remove):")
        for (key, cc, why), items in sorted(groups2.items()):
            lines.append(f"  {key} sm{cc}: {len(items)} plan(s) - {why}")
    if report["failed"]:
        lines.append(f"{report['failed']} failed target(s): not retried until their inputs, settings or tools change "
                     "(retry now: make run RETRY_FAILED=1)")
    lines.append("needs work: run the factory (make run)" if report["needs_work"] else "nothing to do"
                 + (" but fix the failed targets" if report["failed"] else ""))
    return "\n".join(lines)


def main(args) -> int:
    report = collect(args.directory, args.configfile or ())
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(render(report, verbose=args.verbose))
    return 1 if report["needs_work"] or report["failed"] else 0
