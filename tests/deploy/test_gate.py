"""The upgrade gate without a download: one key (rtx-1.7.1.116) is built for real with the installed backend; a
stand-in older key (rtx-1.6.1.120) is made of copies of its plans and validations, then altered where a test needs a
regression (a smaller plan, faster latencies as a GPU host records them in validation.json). The opt-in real upgrade
is tests/upgrade/test_real_upgrade.py.
"""

import json
import shutil

import pytest

from engine_factory import paths
from engine_factory.deploy import gate
from engine_factory.fingerprint import sha256
from engine_factory.ops import prune

from helpers import build_once, cli, load_test_config

NEW, OLD = "rtx-1.7.1.116", "rtx-1.6.1.120"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_once(tmp_path_factory.mktemp("gate"), load_test_config("ops"))["work"]


@pytest.fixture
def zoo(built, tmp_path):
    work = tmp_path / "zoo"
    shutil.copytree(built, work, symlinks=True)
    for kind in ("plans", "validation"):
        shutil.copytree(work / f"artifacts/tiny_mlp/{kind}/{NEW}", work / f"artifacts/tiny_mlp/{kind}/{OLD}")
    for record in (work / "artifacts/tiny_mlp").glob(f"*/{OLD}/*/*/*.json"):  # the copies' records name their paths
        record.write_text(record.read_text().replace(f"{NEW}/", f"{OLD}/"))
    return work


def config(work):
    return str(work / "config" / "zoo.yaml")


def ops(*args, work):
    return cli(*args, "-d", work, env=None)


def record_latency(work, key, precision, p50, p99):
    """What validate writes on a GPU host that ran the plan: plan_execution with its comparison and latency."""
    path = work / paths.VALIDATION.format(model="tiny_mlp", key=key, cc="89", precision=precision)
    val = json.loads(path.read_text())
    val["checks"]["plan_execution"] = {
        "status": "pass",
        "reason": "all outputs within tolerance",
        "comparison": {"status": "pass", "outputs": {"scores": {"max_abs": 1e-4}}},
        "performance": {
            "latency_ms": {"p50": p50, "p90": p99, "p99": p99, "mean": p50, "min": p50},
            "throughput_per_s": 4000.0 / p50,
            "batch": 4,
            "iterations": 100,
            "warmup": 10,
            "shapes": {"features": [4, 16]},
        },
    }
    path.write_text(json.dumps(val))
    side = work / paths.provenance(str(path.relative_to(work)))  # its record, as the validate stage writes it
    record = json.loads(side.read_text())
    record["artifact"].update(
        sha256=sha256(path, cached=False), size=path.stat().st_size, mtime_ns=path.stat().st_mtime_ns
    )
    side.write_text(json.dumps(record))


def test_promote_compares_then_promotes_and_rollback_returns(zoo):
    proc = ops("promote", OLD, "--why", "the fleet runs 1.6", "--configfile", config(zoo), work=zoo)
    assert proc.returncode == 0 and "promoted: rtx-1.6.1.120" in proc.stdout, proc.stdout + proc.stderr
    proc = ops("promote", "--configfile", config(zoo), work=zoo)  # the nightly: the key this host builds
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"candidate {NEW} against live {OLD}: every plan within budget" in proc.stdout
    verdict = json.loads((zoo / gate.COMPARISON).read_text())
    rows = {(r["model"], r["precision"], r["cc"]): r for r in verdict["rows"]}
    assert sorted(rows) == [("tiny_mlp", "fp16", "89"), ("tiny_mlp", "fp32", "89")]
    cand = rows[("tiny_mlp", "fp16", "89")]["candidate"]
    assert cand["header"] == {"status": "pass", "version": "1.7.1.116", "targets": ["8.9"]}
    assert cand["onnx_parity"] == "pass" and cand["build_seconds"] > 0 and cand["warnings"] == 0
    assert cand["layers"]["status"] == "not-run" and cand["execution"] == "not-run"  # no GPU here
    record = gate.read_live(zoo)
    assert record["live"] == NEW and [h["action"] for h in record["history"]] == ["promote", "promote"]
    assert record["history"][0]["why"] == "the fleet runs 1.6" and "@" in record["history"][0]["who"]
    assert record["history"][1]["why"] == "gate: every plan within budget"
    # prune keeps the last promoted key although this host no longer builds it
    assert prune.prune(str(zoo), [config(zoo)])["remove"] == []
    proc = ops("rollback", "--why", "p99 in production", work=zoo)
    assert proc.returncode == 0 and f"{NEW} -> {OLD} is live" in proc.stdout, proc.stdout + proc.stderr
    assert gate.read_live(zoo)["live"] == OLD and gate.read_live(zoo)["history"][-1]["action"] == "rollback"
    assert gate.protected_keys(zoo) == {OLD, NEW}


def test_a_candidate_over_budget_is_held_and_the_summary_names_budget_and_plans(zoo):
    assert ops("promote", OLD, "--configfile", config(zoo), work=zoo).returncode == 0
    old_plan = zoo / paths.plan("tiny_mlp", OLD, "89", "fp32")
    old_plan.write_bytes(old_plan.read_bytes()[: old_plan.stat().st_size // 2])  # the candidate is 100 % larger
    record_latency(zoo, OLD, "fp16", 1.0, 2.0)
    record_latency(zoo, NEW, "fp16", 1.5, 2.1)  # p50 +50 %, p99 +5 %
    proc = ops("promote", "--configfile", config(zoo), work=zoo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED size" in proc.stdout and paths.plan("tiny_mlp", NEW, "89", "fp32") in proc.stdout
    assert "FAILED latency" in proc.stdout and "latency_p50_ms 1.000 -> 1.500" in proc.stdout
    assert "latency_p99_ms" not in proc.stdout  # within 10 %
    assert f"held: the live key stays {OLD}" in proc.stdout
    verdict = json.loads((zoo / gate.COMPARISON).read_text())
    assert verdict["outcome"] == "fail" and {f["budget"] for f in verdict["failed"]} == {"size", "latency"}
    assert gate.read_live(zoo)["live"] == OLD and (zoo / paths.plan("tiny_mlp", OLD, "89", "fp16")).exists()
    # a person may override the gate; the record says so
    proc = ops("promote", NEW, "--force", "--configfile", config(zoo), work=zoo)
    assert proc.returncode == 0 and gate.read_live(zoo)["live"] == NEW
    assert gate.read_live(zoo)["history"][-1]["why"].endswith("(forced)")


def test_budgets_come_from_the_config():
    assert gate.budgets({}) == gate.BUDGET_DEFAULTS
    assert gate.budgets({"gate": {"latency_regression_pct": 3}})["latency_regression_pct"] == 3


def test_rollback_without_history_is_one_line(tmp_path):
    proc = cli("rollback", "-d", tmp_path)
    assert proc.returncode == 1 and "no earlier promoted key" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_nightly_holds_a_regressed_candidate_and_exits_non_zero(zoo):
    from engine_factory.ops import scheduled

    gate.set_live(zoo, OLD, action="promote", why="stand-in for the night before")
    record_latency(zoo, OLD, "fp16", 1.0, 2.0)
    record_latency(zoo, NEW, "fp16", 1.0, 2.5)  # p99 +25 %
    code, summary = scheduled.run(str(zoo), [config(zoo)], cores="2")
    assert summary["run"]["rc"] == 0 and summary["verify"]["ok"], summary
    assert code == 1 and summary["gate"]["outcome"] == "fail" and not summary["gate"]["promoted"]
    assert [f["budget"] for f in summary["gate"]["failed"]] == ["latency"]
    text = (zoo / "artifacts/scheduled/last-run.md").read_text()
    assert "- gate: HELD: 1 budget(s) failed; live key rtx-1.6.1.120" in text
    assert f"failed latency: {paths.plan('tiny_mlp', NEW, '89', 'fp16')}: latency_p99_ms 2.000 -> 2.500" in text
    assert gate.read_live(zoo)["live"] == OLD and (zoo / paths.plan("tiny_mlp", OLD, "89", "fp16")).exists()


def _measured(execution="pass", p50=1.0, size=1000):
    return {
        "plan": "artifacts/m/plans/k/sm90/fp16/model.plan",
        "plan_bytes": size,
        "header": {"status": "pass"},
        "onnx_parity": "pass",
        "execution": execution,
        "latency_p50_ms": p50,
        "latency_p99_ms": p50 * 2,
    }


def _snap(host, **measured):
    t = {"model": "m", "key": "k", "cc": "90", "precision": "fp16"}
    return {"p": {**t, "validation": {"host": host}, "measures": _measured(**measured)}}


def test_a_driver_upgrade_goes_through_the_same_budgets():
    """Same key, same plans: the validation after the driver change against the one before."""
    old, new = {"driver": "570.10", "cuda": "12.8"}, {"driver": "580.1", "cuda": "13.0"}
    budget = dict(gate.BUDGET_DEFAULTS)
    ok = gate.driver_gate(_snap(old), _snap(new, p50=1.05), ["p"], budget)
    assert ok["outcome"] == "pass" and ok["plans"] == 1 and ok["from"] == old and ok["to"] == new, ok
    slower = gate.driver_gate(_snap(old), _snap(new, p50=1.5), ["p"], budget)
    assert slower["outcome"] == "fail" and [f["budget"] for f in slower["failed"]] == ["latency", "latency"], slower
    wrong = gate.driver_gate(_snap(old), _snap(new, execution="fail"), ["p"], budget)
    assert [f["detail"] for f in wrong["failed"]] == ["execution pass -> fail"], wrong
    # nothing to judge: the same driver (a tolerance change re-validates too), or a plan not re-validated
    assert gate.driver_gate(_snap(old), _snap(old, execution="fail"), ["p"], budget) is None
    assert gate.driver_gate(_snap(old), _snap(new, execution="fail"), [], budget) is None
