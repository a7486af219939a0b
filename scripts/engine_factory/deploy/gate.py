"""The upgrade gate: compare a candidate key's plans with the live key's, judge them against the budgets, and keep
the record of which key is live (artifacts/live.json).

A key (rtx-1.7.1.116) is live as a whole: Triton, `ready` and `status` follow it. After an upgrade the nightly builds
the candidate key beside the live one; `compare` reads, for every (model, precision, compute capability) both keys
built, what the factory recorded without running anything (plan provenance: header/targets, size, build time, builder
warnings; validation.json: the variant's ONNX parity, the plan header check, and on a GPU host execution accuracy and
latency p50/p99). Layer information needs the engine inspector, which deserializes the plan on a GPU of its compute
capability: `not-run` where none is here. `judge` applies the budgets (config `gate`, README "Upgrades"):
a candidate whose plans all meet them is promoted; otherwise it is held and the live key's plans stay live.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from pathlib import Path

from .. import paths
from ..atomic import write_json
from ..errors import FactoryError
from ..outcomes import Outcome

LIVE = paths.ROOT + "/live.json"
COMPARISON = paths.ROOT + "/gate/comparison.json"
# Defaults (config `gate`): accuracy may not get worse than the tolerance (a candidate whose checks fail where the
# live key's passed is held), latency p50/p99 may not regress more than 10 %, a plan may not grow more than 20 %.
BUDGET_DEFAULTS = {"latency_regression_pct": 10.0, "size_regression_pct": 20.0, "accuracy": "tolerance"}
METRICS = ("plan_bytes", "build_seconds", "warnings", "max_abs", "latency_p50_ms", "latency_p99_ms")


def budgets(cfg: dict) -> dict:
    return {**BUDGET_DEFAULTS, **(cfg.get("gate") or {})}


def read_live(directory=".") -> dict:
    p = Path(directory) / LIVE
    if not p.exists():
        return {"live": None, "history": []}
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise FactoryError(f"{LIVE}: unreadable live record ({e}); restore it or run `promote KEY`") from e


def last_promoted(record: dict, *, before: str | None = None) -> str | None:
    """The key promoted before the live one (rollback's target; prune keeps it)."""
    keys = [h["key"] for h in record.get("history", []) if h.get("action") in ("promote", "rollback")]
    while keys and keys[-1] == (before or record.get("live")):
        keys.pop()
    return keys[-1] if keys else None


def protected_keys(directory=".") -> set[str]:
    record = read_live(directory)
    return {k for k in (record.get("live"), last_promoted(record)) if k}


def set_live(directory, key: str, *, action: str, why: str, verdict: dict | None = None) -> dict:
    """Make `key` the live key, appending who/what/why/when to the record's history (its provenance)."""
    record = read_live(directory)
    entry = {
        "action": action,
        "key": key,
        "from": record.get("live"),
        "who": f"{getpass.getuser()}@{socket.gethostname()}",
        "why": why,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if verdict is not None:
        entry["verdict"] = {k: verdict[k] for k in ("outcome", "failed") if k in verdict}
    record = {"live": key, "history": [*record.get("history", []), entry]}
    write_json(Path(directory) / LIVE, record)
    return record


def keys_built(directory=".") -> set[str]:
    return {p.parts[-4] for p in Path(directory).glob(paths.ROOT + "/*/plans/*/sm*/*/model.plan")}


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def measures(base: Path, model: str, key: str, cc: str, precision: str) -> dict | None:
    """What the gate compares of one plan, from its records (None: no plan on disk)."""
    plan = base / paths.PLAN.format(model=model, key=key, cc=cc, precision=precision)
    if not plan.exists():
        return None
    facts = (_load(Path(paths.provenance(str(plan)))) or {}).get("facts", {})
    val = _load(base / paths.VALIDATION.format(model=model, key=key, cc=cc, precision=precision)) or {}
    checks = val.get("checks", {})
    header = checks.get("plan_header", {})
    parity = checks.get("onnx_parity", {})
    run = checks.get("plan_execution", {})
    lat = (run.get("performance") or {}).get("latency_ms") or {}
    outs = (run.get("comparison") or {}).get("outputs") or {}
    side = {
        "plan": plan.relative_to(base).as_posix(),
        "plan_bytes": plan.stat().st_size,
        "header": {
            "status": header.get("status", Outcome.NOT_RUN),
            "version": header.get("details", {}).get("header_version"),
            "targets": header.get("details", {}).get("header_targets", facts.get("targets")),
        },
        "build_seconds": facts.get("build_seconds"),
        "warnings": len(facts.get("warnings") or []),
        "warning_lines": list(facts.get("warnings") or [])[:5],
        "onnx_parity": parity.get("status", Outcome.NOT_RUN),
        "execution": run.get("status", Outcome.NOT_RUN),
        "execution_reason": run.get("reason"),
        "max_abs": max((o.get("max_abs", 0.0) for o in outs.values() if isinstance(o, dict)), default=None),
        "latency_p50_ms": lat.get("p50"),
        "latency_p99_ms": lat.get("p99"),
        "layers": {"status": Outcome.NOT_RUN, "reason": "the engine inspector deserializes the plan: needs a GPU"},
    }
    if side["execution"] == Outcome.NOT_RUN:
        side["max_abs"] = side["latency_p50_ms"] = side["latency_p99_ms"] = None
    return side


def compare(directory, live: str, candidate: str) -> list[dict]:
    """One row per (model, precision, cc) the candidate built, with the live key's side beside it (None if absent)."""
    base = Path(directory)
    rows = []
    for plan in sorted(base.glob(paths.ROOT + f"/*/plans/{candidate}/sm*/*/model.plan")):
        model, cc, precision = plan.parts[-6], plan.parts[-3].removeprefix("sm"), plan.parts[-2]
        rows.append(
            {
                "model": model,
                "precision": precision,
                "cc": cc,
                "live": measures(base, model, live, cc, precision),
                "candidate": measures(base, model, candidate, cc, precision),
            }
        )
    return rows


def _pct(new, old):
    return None if new is None or not old else 100.0 * (new - old) / old


def judge(rows: list[dict], budget: dict) -> list[dict]:
    """The failed budgets, one entry per (plan, budget). A row with no live side has nothing to regress against."""
    failed = []
    for r in rows:
        live, cand = r["live"], r["candidate"]
        if live is None:
            continue

        def fail(name, detail, cand=cand):
            failed.append({"budget": name, "plan": cand["plan"], "detail": detail})

        # accuracy: no worse than the tolerance, i.e. a check the live key passed must pass for the candidate
        for check in ("onnx_parity", "execution"):
            if live[check] == Outcome.PASS and cand[check] not in (Outcome.PASS,):
                fail("accuracy", f"{check} {live[check]} -> {cand[check]}")
        if cand["header"]["status"] == Outcome.FAIL:
            fail("header", "plan header check failed")
        growth = _pct(cand["plan_bytes"], live["plan_bytes"])
        if growth is not None and growth > budget["size_regression_pct"]:
            fail(
                "size",
                f"{live['plan_bytes']} -> {cand['plan_bytes']} bytes "
                f"(+{growth:.1f} % > {budget['size_regression_pct']} %)",
            )
        for q in ("latency_p50_ms", "latency_p99_ms"):
            slower = _pct(cand[q], live[q])
            if slower is not None and slower > budget["latency_regression_pct"]:
                fail(
                    "latency",
                    f"{q} {live[q]:.3f} -> {cand[q]:.3f} (+{slower:.1f} % > {budget['latency_regression_pct']} %)",
                )
    return failed


def gate(directory, cfg: dict, candidate: str) -> dict:
    """Compare `candidate` with the live key and decide. The first key ever built goes live without comparison."""
    record = read_live(directory)
    live = record.get("live")
    budget = budgets(cfg)
    if live is None or live == candidate:
        rows = compare(directory, candidate, candidate) if live else []
        return {"live": live, "candidate": candidate, "budgets": budget, "rows": rows, "failed": [],
                "outcome": Outcome.PASS, "reason": "no other live key" if live is None else "already live"}  # fmt: skip
    rows = compare(directory, live, candidate)
    failed = judge(rows, budget)
    missing = [f"{r['model']}/{r['precision']}/sm{r['cc']}" for r in rows if r["candidate"] is None]
    reason = "every plan within budget" if not failed else f"{len(failed)} budget(s) failed"
    return {"live": live, "candidate": candidate, "budgets": budget, "rows": rows, "failed": failed,
            "missing": missing, "outcome": Outcome.FAIL if failed else Outcome.PASS, "reason": reason}  # fmt: skip


def driver_gate(before: dict, after: dict, revalidated: list[str], budget: dict) -> dict | None:
    """A driver or CUDA upgrade keeps the key and its plans and re-validates them in place: the same budgets judge
    each plan's validation after it against the one before (`before`/`after`: the nightly's snapshots' plans, with
    `measures` and the validation's `host`). There is no older plan to keep live: a plan that fails its validation
    leaves its Triton repository at the deploy job (the policy), and the nightly exits non-zero naming it. None: no
    re-validated plan's driver or CUDA changed."""
    rows = []
    for p in revalidated:
        old, new = before.get(p) or {}, after.get(p) or {}
        was, now = (old.get("validation") or {}).get("host"), (new.get("validation") or {}).get("host")
        if was is None or now is None or was == now or not old.get("measures") or not new.get("measures"):
            continue
        rows.append({**{k: new[k] for k in ("model", "precision", "cc")}, "live": old["measures"],
                     "candidate": new["measures"], "host": {"from": was, "to": now}})  # fmt: skip
    if not rows:
        return None
    failed = judge(rows, budget)
    return {
        "outcome": Outcome.FAIL if failed else Outcome.PASS,
        "plans": len(rows),
        "from": rows[0]["host"]["from"],
        "to": rows[0]["host"]["to"],
        "failed": failed,
        "reason": f"{len(failed)} budget(s) failed" if failed else "every re-validated plan within budget",
    }


def write_comparison(directory, verdict: dict) -> Path:
    p = Path(directory) / COMPARISON
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, verdict)
    return p
