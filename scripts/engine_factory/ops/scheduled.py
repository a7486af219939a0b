"""The scheduled run (cron / systemd timer): run the factory, then status and verify, and leave a short summary of
what changed since the last run in artifacts/scheduled/:

  last-run.md / last-run.json   new keys built, plans built, re-validated only, removed, failed; status; verify;
                                the upgrade gate's verdict (ops/promote.py: promoted, or held with exit status 1)
  history.jsonl                 one line per run
  snapshot.json                 plans and validations on disk after the run (the next run compares with it)
  logs/run-<UTC time>-<pid>.log each run's own log: the factory's (Snakemake's) output (the newest 60 are kept)
  run.log                       a symlink to the latest run's log
  scheduled.lock                the nightly lock (scripts/engine_factory/ops/runs.py), taken before anything else

One scheduled run at a time per directory: a second one started while the first holds the lock writes nothing but
its own log, touches neither the first's log nor the summary, and exits 75 saying who holds it. Each run reads only
its own log, so its summary says what that run did.

`python -m engine_factory changes` compares the current artifacts with snapshot.json without running anything.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import subprocess
import time
from pathlib import Path

from .. import atomic, paths
from ..atomic import read_json
from ..config import load
from ..deploy import gate
from ..deploy.gate import COMPARISON
from ..errors import FactoryError, ScheduledRunInProgress
from ..outcomes import STALE_MEANS, Outcome
from ..report import verdict as report_verdict
from ..report import write_report
from ..report.pages import UPGRADE_PAGE
from . import emit, load_config, operation_parser, promote, runs, status, verify
from .snakemake import command as snakemake_command

DIR = "scheduled"
LOGS = "logs"  # under DIR
KEEP_LOGS = 60  # run logs kept (the newest); two months of nightlies


def snapshot(directory: str = ".", root: str = paths.ROOT) -> dict:
    """Every plan on disk with its mtime/size, its validation's mtime/status and the driver/CUDA it ran under, and what
    the gate compares of it (`measures`: records only, no hashing). The next run's driver gate reads them."""
    base = Path(directory)
    plans = {}
    for p in sorted(base.glob(paths.plan_glob(root))):
        rel = p.relative_to(base).as_posix()
        t = paths.parse_plan(rel)
        if not t:
            continue
        st = p.stat()
        entry = {**t, "mtime_ns": st.st_mtime_ns, "size": st.st_size, "validation": None}
        v = base / paths.validation(**t)
        if v.exists():
            ran = (read_json(base / paths.provenance(paths.validation(**t))) or {}).get("params") or {}
            entry["validation"] = {
                "mtime_ns": v.stat().st_mtime_ns,
                "status": (read_json(v) or {}).get("status"),
                "host": {"driver": ran.get("driver"), "cuda": ran.get("cuda")},
            }
            entry["measures"] = gate.measures(base, t["model"], t["key"], t["cc"], t["precision"])
        plans[rel] = entry
    return {"taken": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "plans": plans}


def changes(before: dict, after: dict) -> dict:
    old, new = before["plans"], after["plans"]
    built = [p for p, e in new.items() if p not in old or old[p]["mtime_ns"] != e["mtime_ns"]]
    revalidated = [
        p
        for p, e in new.items()
        if p not in built
        and e["validation"]
        and (old[p]["validation"] or {}).get("mtime_ns") != e["validation"]["mtime_ns"]
    ]
    old_keys = {f"{e['key']}/sm{e['cc']}" for e in old.values()}
    new_keys = sorted({f"{new[p]['key']}/sm{new[p]['cc']}" for p in built} - old_keys)
    failing = [p for p in built + revalidated if (new[p]["validation"] or {}).get("status") == Outcome.FAIL]
    return {
        "since": before.get("taken"),
        "until": after.get("taken"),
        "new_keys": new_keys,
        "built": built,
        "revalidated": revalidated,
        "removed": sorted(set(old) - set(new)),
        "validation_failed": failing,
    }


def _failed_budgets(failed: list[dict], limit: int = 8) -> list[str]:
    return [f"  - failed {f['budget']}: {f['plan']}: {f['detail']}" for f in failed[:limit]]


def _host(h: dict) -> str:
    return f"driver {h.get('driver')}, CUDA {h.get('cuda')}"


def _names(plans: list[str], limit: int = 8) -> str:
    items = []
    for p in plans[:limit]:
        t = paths.parse_plan(p)
        items.append(f"{t['model']} {t['key']} sm{t['cc']} {t['precision']}" if t else p)
    return ", ".join(items) + (f", … ({len(plans) - limit} more)" if len(plans) > limit else "")


def render(summary: dict) -> str:
    ch = summary["changes"]
    lines = [f"# Engine factory: changes since {ch['since'] or 'the first run'}", ""]
    if "run" in summary:
        r = summary["run"]
        if r.get("locked_out"):
            lines.append(f"- factory run: NOT RUN: the working directory is locked ({r['locked_out']})")
        else:
            lines.append(
                f"- factory run: {'ok' if r['rc'] == 0 else 'FAILED (exit ' + str(r['rc']) + ')'} in "
                f"{r['seconds']} s (log: {r['log']})"
            )
        if r.get("lock") and r["lock"] != "not locked":
            lines.append(f"- before the run: {r['lock']}")
        if r.get("repaired"):
            lines.append(
                f"- repaired before the run (removed, so the run made them again): {len(r['repaired'])} "
                f"file(s) ({', '.join(r['repaired'][:5])}{', …' if len(r['repaired']) > 5 else ''})"
            )
    lines.append(f"- new keys built: {', '.join(ch['new_keys']) or 'none'}")
    lines.append(f"- plans built: {len(ch['built'])}" + (f" ({_names(ch['built'])})" if ch["built"] else ""))
    why = summary.get("why") or {}
    lines += [f"  - {_names([p])}: {why[p]}" for p in ch["built"][:20] if p in why]
    lines.append(
        f"- re-validated only: {len(ch['revalidated'])}"
        + (f" ({_names(ch['revalidated'])})" if ch["revalidated"] else "")
    )
    if ch["removed"]:
        lines.append(f"- removed: {len(ch['removed'])} ({_names(ch['removed'])})")
    failed = summary.get("failed", [])
    lines.append(
        f"- failed (not built or not validated after the run): {len(failed)}"
        + (" (" + "; ".join(f"{f['target']}: {f['why']}" for f in failed[:8]) + ")" if failed else "")
    )
    if ch["validation_failed"]:
        lines.append(f"- validation status fail: {len(ch['validation_failed'])} ({_names(ch['validation_failed'])})")
    if "status" in summary:
        c = summary["status"]["counts"]
        lines.append(
            f"- status: {c['current']} current, {c['stale']} stale, {c['missing']} missing; "
            f"{summary['status']['not_produced']} plans of keys no longer produced (kept)"
        )
        if withheld := (summary["status"].get("triton") or {}).get("withheld"):
            lines.append(f"- Triton repositories withheld (no plan passes the deploy policy): {len(withheld)}")
            lines += [f"  - {name}: {why}" for name, why in sorted(withheld.items())[:8]]
    if "gate" in summary:
        g = summary["gate"]
        verdict = ("promoted" if g.get("promoted") else "HELD") if g["outcome"] != Outcome.NOT_RUN else "not-run"
        lines.append(f"- gate: {verdict}: {g['reason']}" + (f"; live key {g['now_live']}" if g.get("now_live") else ""))
        lines += _failed_budgets(g.get("failed", []))
        if g.get("report"):
            lines.append(f"  - report: {g['report'].get('page') or g['report']['reason']}")
        if d := g.get("driver"):
            lines.append(
                f"- driver gate ({_host(d['from'])} -> {_host(d['to'])}): "
                f"{'ok' if d['outcome'] == Outcome.PASS else 'FAILED'}: {d['plans']} plan(s) re-validated, "
                f"{d['reason']}"
            )
            lines += _failed_budgets(d["failed"])
    if "verify" in summary:
        v = summary["verify"]
        lines.append(
            f"- verify: {'ok' if v['ok'] else 'FAILED'} (tampered {v['counts']['tampered']}, missing "
            f"{v['counts']['missing']}, orphaned {v['counts']['orphaned']}, stale {v['counts']['stale']})"
        )
    if any((summary.get(part) or {}).get("counts", {}).get("stale") for part in ("status", "verify")):
        lines.append(f"- stale: {STALE_MEANS} (status: plans this config builds; verify: every file, older keys too)")
    return "\n".join(lines) + "\n"


def prepare(directory: str, configfiles=()) -> dict:
    """Before the factory: recover from a killed run (a stale lock), then repair what it left
    (scripts/engine_factory/ops/verify.py)."""
    lock = runs.recover(directory)
    if lock["in_progress"]:
        return {"lock": lock["message"], "blocked": True}
    repaired = verify.verify(directory, repair=True)["removed"]
    return {"lock": lock["message"], "repaired": repaired, "blocked": False}


def _why_rebuilt(directory: str, configfiles) -> dict[str, str]:
    """{plan: why the run will make it} from status before the run: the category and the diff of each reason
    (checkpoint, code, config, tool, host, input, missing); a status that cannot run leaves the reasons out."""
    try:
        st = status.collect(directory, configfiles)
    except FactoryError:
        return {}
    return {
        t["plan"]: "; ".join(f"{r['category']}: {r['detail']}" for r in t["reasons"]) or t["state"]
        for t in st["targets"]
        if t["state"] in ("stale", "missing", "damaged")
    }


ERROR_LINE = re.compile(r"(error|exception|failed|killed|refused|cause:)", re.I)


def _first_error(log: str | None, limit: int = 300) -> str | None:
    """The first line of a job's log that says what went wrong (a person reads it, not the whole log)."""
    try:
        with open(log, errors="replace") as f:
            line = next((ln.strip() for ln in f if ERROR_LINE.search(ln)), None)
    except (OSError, TypeError):
        return None
    return line if line is None or len(line) <= limit else line[: limit - 1] + "…"


def _why_not_current(t: dict, lock_message: str | None, directory: str = ".") -> str:
    if t["state"] == "missing" and lock_message:
        return f"missing: the factory did not run ({lock_message})"
    if t["state"] == "missing":
        logs = t.get("logs") or {}
        for stage in ("build", "validate", "precision", "export"):
            if logs.get(stage) and (error := _first_error(os.path.join(directory, logs[stage]))):
                return f"missing: {stage}: {error} (log {logs[stage]})"
        return f"missing; log {logs.get('build')}"
    return "; ".join(f"{r['category']}: {r['detail']}" for r in t["reasons"])


def run(directory: str = ".", configfiles=(), cores: str = "all", extra=()) -> tuple[int, dict]:
    """Lock, recover, factory, status, verify, summary. Returns (exit status, summary): non-zero if anything failed
    or needs work. Raises ScheduledRunInProgress (exit 75) when another scheduled run holds the directory."""
    base = Path(directory)
    out = base / paths.ROOT / DIR
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    log = out / LOGS / f"run-{stamp}-{os.getpid()}.log"  # this run's alone: the pid tells two of one second apart
    try:
        with runs.scheduled_lock(directory, log.relative_to(base).as_posix()):
            return _run(directory, configfiles, cores, extra, log)
    except ScheduledRunInProgress as e:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"not run: {e}\n")  # its own log; run.log, the summary and the history stay the holder's
        raise


PROGRESS = re.compile(r"^(\d+ of \d+ steps \(.*\) done|Error in rule \w+:)", re.M)


def _follow(proc: subprocess.Popen, log: Path, every: float = 2.0) -> int:
    """Wait for the factory, printing Snakemake's progress lines ('12 of 40 steps (30%) done', 'Error in rule
    build:') from its log as they come, so a person watching a long nightly sees it move. Returns its exit status."""
    seen = 0
    while True:
        rc = proc.poll()
        with open(log, "rb") as f:
            f.seek(seen)
            data = f.read()
        data = data[: data.rfind(b"\n") + 1]  # whole lines only; the rest is read next time
        for m in PROGRESS.finditer(data.decode(errors="replace")):
            print(f"scheduled: {m.group(1)}", flush=True)
        seen += len(data)
        if rc is not None:
            return rc
        time.sleep(every)


def _point_run_log(out: Path, log: Path) -> None:
    """run.log -> this run's log (replaced atomically: a reader sees the previous run's or this one's)."""
    tmp = out / f"run.log.tmp{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(log.relative_to(out).as_posix(), tmp)
    os.replace(tmp, out / "run.log")


def _prune_logs(logs: Path, keep: int = KEEP_LOGS) -> None:
    for old in sorted(logs.glob("run-*.log"))[:-keep]:  # names sort by time
        old.unlink(missing_ok=True)


def _run(directory: str, configfiles, cores: str, extra, log: Path) -> tuple[int, dict]:
    """The scheduled run proper, under the nightly lock."""
    base = Path(directory)
    out = base / paths.ROOT / DIR
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    _prune_logs(log.parent)
    _point_run_log(out, log)
    before = read_json(out / "snapshot.json") or snapshot(directory)
    ready = prepare(directory, configfiles)
    why = _why_rebuilt(directory, configfiles) if not ready["blocked"] else {}
    cmd = [c for c in snakemake_command(directory, configfiles, "--keep-going", *extra) if c != "--nolock"]
    cmd[cmd.index("--cores") + 1] = str(cores)
    start = time.monotonic()
    with open(log, "w") as f:
        rc = 1 if ready["blocked"] else _follow(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT), log)
        if ready["blocked"]:
            f.write(f"not run: {ready['lock']}\n")
    seconds = round(time.monotonic() - start, 1)
    locked_out = ready["lock"] if ready["blocked"] or "Directory cannot be locked" in log.read_text() else None
    after = snapshot(directory)
    st = status.collect(directory, configfiles)
    vr = verify.verify(directory, trust=verify.trust_of(configfiles, directory))  # signatures where keys are set
    failed = [
        {
            "target": f"{t['model']} {t['key']} sm{t['cc']} {t['precision']}",
            "why": _why_not_current(t, locked_out, directory),
        }
        for t in st["targets"]
        if t["state"] != "current"
    ]
    changed = changes(before, after)
    zoo = _zoo(directory, configfiles)
    summary = {
        "run": {
            "rc": rc,
            "seconds": seconds,
            "log": log.relative_to(base).as_posix(),
            "command": " ".join(cmd),
            "lock": ready["lock"],
            "repaired": ready.get("repaired", []),
            **({"locked_out": locked_out} if locked_out else {}),
        },
        "changes": changed,
        "why": {p: why[p] for p in changed["built"] if p in why},
        "failed": failed,
        "status": {"counts": st["counts"], "not_produced": len(st["not_produced"]), "triton": st["triton"]},
        "verify": {"ok": vr["ok"], "counts": vr["counts"]},
        "gate": _gate(directory, configfiles, rc == 0 and not st["needs_work"] and not st["failed"] and vr["ok"], zoo),
    }
    driver = gate.driver_gate(before["plans"], after["plans"], changed["revalidated"], gate.budgets(zoo[0] or {}))
    if driver:
        summary["gate"]["driver"] = driver
    if after_gate := report_after_gate(directory):
        summary["gate"]["report"] = after_gate
    atomic.write_json(out / "last-run.json", summary)
    with atomic.atomic_path(out / "last-run.md") as tmp:
        tmp.write_text(render(summary))
    with open(out / "history.jsonl", "a") as f:
        ch = summary["changes"]
        f.write(
            json.dumps(
                {
                    "until": ch["until"],
                    "rc": rc,
                    "new_keys": ch["new_keys"],
                    "built": len(ch["built"]),
                    "revalidated": len(ch["revalidated"]),
                    "removed": len(ch["removed"]),
                    "failed": len(failed),
                    "verify_ok": vr["ok"],
                    "log": summary["run"]["log"],
                }
            )
            + "\n"
        )
    atomic.write_json(out / "snapshot.json", after)
    code = 0 if rc == 0 and not st["needs_work"] and not st["failed"] and vr["ok"] else 1
    held = Outcome.FAIL in (summary["gate"]["outcome"], (summary["gate"].get("driver") or {}).get("outcome"))
    return (1 if held else code), summary


def _zoo(directory: str, configfiles) -> tuple[dict | None, str | None]:
    """The zoo's config for the gates (loaded once), or why it does not load (the gate is then not run)."""
    try:
        return load(configfiles or (), workdir=directory), None
    except FactoryError as e:
        return None, str(e)


def _gate(directory: str, configfiles, complete: bool, zoo: tuple[dict | None, str | None]) -> dict:
    """The upgrade gate (ops/promote.py) once the run is complete: the candidate is promoted or held (exit 1)."""
    if not complete:
        return {"outcome": Outcome.NOT_RUN, "reason": "the run is not complete: nothing is promoted"}
    cfg, why = zoo
    if cfg is None:
        return {"outcome": Outcome.NOT_RUN, "reason": why}
    try:
        v = promote.promote(directory, cfg, configfiles)
    except FactoryError as e:
        return {"outcome": Outcome.NOT_RUN, "reason": str(e)}
    keep = ("outcome", "reason", "live", "candidate", "failed", "promoted", "now_live")
    return {k: v[k] for k in keep} | {"comparison": COMPARISON}


def report_after_gate(directory: str) -> dict | None:
    """The report rule ran before the gate wrote its comparison: write the report again now, with the settings the
    rule ran with (artifacts/report/spec.json), so that it shows tonight's comparison (upgrade.html). The comparison
    is also an input of the rule, so the next run finds the report current. None: nothing to do (no comparison, or
    the report is newer than it)."""
    base = Path(directory)
    comparison, summary, spec = base / COMPARISON, base / paths.REPORT_JSON, base / paths.REPORT_SPEC
    if not comparison.exists() or not spec.exists():
        return None
    if summary.exists() and summary.stat().st_mtime_ns >= comparison.stat().st_mtime_ns:
        return None
    with contextlib.chdir(base):  # the report's paths are relative to the workflow directory
        try:
            write_report(paths.REPORT_JSON, paths.REPORT_HTML, **read_json(paths.REPORT_SPEC))
        except Exception as e:  # the nightly's own summary is still written; it says why the report is not
            return {"written": False, "reason": f"the report was not written again after the gate: {e}"}
        if os.path.exists(paths.OUTCOME):  # its input (summary.json) is newer now: the outcome rule's verdict again
            with contextlib.suppress(FactoryError):  # a failed target: outcome.json stays older, the rule says so
                report_verdict(paths.REPORT_JSON, paths.OUTCOME)
    return {"written": True, "page": UPGRADE_PAGE}


def add_parser(subparsers) -> None:
    p = operation_parser(
        subparsers,
        "scheduled",
        "run the factory, then status and verify; write artifacts/scheduled/last-run.md",
        "python -m engine_factory scheduled -d ~/zoo --configfile ~/zoo/my-zoo.yaml --cores 8",
    )
    p.add_argument("--cores", default="all")
    p.set_defaults(func=main)


def main(args) -> int:
    load_config(args)
    code, summary = run(args.directory, args.configfile or (), cores=args.cores)
    emit(summary, render, args.json, end="")
    return code
