"""Operations: status (current / stale with the reason / missing / no longer produced), verify (tampered, missing,
orphaned), prune, the scheduled run and its "what changed" summary, in-toto statements, timing caches; with a
simulated TensorRT upgrade and a simulated driver upgrade (host facts overridden through FACTORY_HOST_FACTS).

One tiny zoo (an ONNX-source MLP, fp32 + fp16, one RTX target) is built once; each test that changes something works
on its own copy (the copy keeps file times and Snakemake's metadata, so it is the same workflow state).
"""

import json
import shutil

import pytest
import yaml

from engine_factory import intoto, paths
from engine_factory.backends import load_backend
from engine_factory.ops import prune, scheduled, status, verify
from engine_factory.ops.snakemake import parse_summary
from engine_factory.provenance import sha256, stage_tools

from helpers import build_once, cli, load_test_config, snakemake, write_config

KEY = "rtx-1.7.1.116"
OPS_ZOO = load_test_config("ops")


def config_of(workdir):
    return workdir / "config" / "zoo.yaml"


def run_snakemake(workdir, check=True):
    return snakemake(workdir, check=check, timeout=900)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_once(tmp_path_factory.mktemp("ops"), OPS_ZOO)["work"]


@pytest.fixture
def zoo(built, tmp_path):
    copy = tmp_path / "zoo"
    shutil.copytree(built, copy, symlinks=True)
    return copy


def host_facts(tmp_path, monkeypatch, **facts):
    path = tmp_path / "host.json"
    path.write_text(json.dumps(facts))
    monkeypatch.setenv("FACTORY_HOST_FACTS", str(path))
    return path


def plan_of(precision):
    return paths.plan("tiny_mlp", KEY, "89", precision)


def collect(workdir):
    return status.collect(str(workdir), [str(config_of(workdir))])


# ----------------------------------------------------------------------------------------------------- status
def test_status_all_current_and_the_cli_exit_code(built):
    report = collect(built)
    assert report["counts"] == {"current": 2, "stale": 0, "missing": 0, "failed": 0} and not report["needs_work"]
    assert [(t["key"], t["cc"], t["precision"]) for t in report["targets"]] == [
        (KEY, "89", "fp16"),
        (KEY, "89", "fp32"),
    ]
    assert report["not_produced"] == [] and report["keys"] == [KEY]
    # TensorRT-RTX builds keep no timing cache (no effect, forces a GPU query; NVIDIA: do not use): provenance says so
    for p in ("fp32", "fp16"):
        cache = json.loads((built / paths.provenance(plan_of(p))).read_text())["facts"]["timing_cache"]
        assert cache == {"path": None, "reason": load_backend("tensorrt_rtx").timing_cache_unused}
    assert not (built / paths.timing_cache(KEY, "89")).exists()
    proc = cli("status", "-d", str(built), "--configfile", str(config_of(built)))
    assert proc.returncode == 0 and "2 current, 0 stale, 0 missing" in proc.stdout, proc.stdout + proc.stderr


def test_config_change_is_stale_with_the_changed_key(zoo):
    cfg = json.loads(json.dumps(OPS_ZOO))
    cfg["build"] = {"optimization_level": 2}
    config_of(zoo).write_text(yaml.safe_dump(cfg, sort_keys=False))
    report = collect(zoo)
    assert report["counts"]["stale"] == 2 and report["needs_work"]
    for t in report["targets"]:
        assert t["reruns"] == ["build"]  # no GPU here runs plans: the build job validates them
        assert {"category": "config", "stage": "build", "detail": "build.optimization_level: 3 -> 2"} in t["reasons"]
    proc = cli("status", "-d", str(zoo), "--configfile", str(config_of(zoo)))
    assert proc.returncode == 1 and "build.optimization_level: 3 -> 2" in proc.stdout, proc.stdout
    code, summary = scheduled.run(str(zoo), [str(config_of(zoo))], cores="2")  # the nightly says why it rebuilt
    assert code == 0 and sorted(summary["why"]) == sorted(map(plan_of, ("fp16", "fp32"))), summary
    md = (zoo / "artifacts/scheduled/last-run.md").read_text()
    assert md.count("config: build.optimization_level: 3 -> 2") == 2, md
    for p in ("fp32", "fp16"):
        facts = json.loads((zoo / paths.provenance(plan_of(p))).read_text())["facts"]
        assert facts["optimization_level"] == 2
    assert collect(zoo)["counts"]["current"] == 2


def test_checkpoint_change_is_stale_and_verify_warns(zoo):
    source = zoo / "artifacts/demo/tiny_mlp.opset11.onnx"
    source.write_bytes(source.read_bytes() + b"\0")  # a changed checkpoint (here: the model's ONNX source)
    report = collect(zoo)
    assert report["counts"]["stale"] == 2
    for t in report["targets"]:
        assert {
            "category": "checkpoint",
            "stage": "export",
            "detail": "source file artifacts/demo/tiny_mlp.opset11.onnx changed",
        } in t["reasons"], t["reasons"]
        assert "build" in t["reruns"] and "export" in t["reruns"]
    v = verify.verify(str(zoo))
    # export's and golden's records: made from an earlier source; a warning, not a failure
    assert v["ok"] and v["counts"]["stale"] == 2, v["problems"]
    assert all("artifacts/demo/tiny_mlp.opset11.onnx" in p["detail"] for p in v["problems"])
    assert cli("verify", "-d", str(zoo)).returncode == 0
    assert cli("verify", "-d", str(zoo), "--strict").returncode == 1


def test_driver_upgrade_without_a_gpu_to_run_plans_reruns_nothing(zoo, tmp_path, monkeypatch):
    host_facts(tmp_path, monkeypatch, driver_version="999.99", cuda_driver_version="13.9")
    report = collect(zoo)
    assert report["counts"]["current"] == 2 and not report["needs_work"], report["targets"]


GPU_89 = {"index": 0, "name": "NVIDIA RTX 4000 Ada Generation", "compute_capability": "8.9", "uuid": "GPU-89"}


def test_driver_upgrade_revalidates_only_through_the_scheduled_run(tmp_path, monkeypatch, capsys):
    # a host with a GPU of the target's cc (as the probe reports it): validation is a job of its own on it
    zoo = tmp_path / "gpu-host"
    zoo.mkdir()
    write_config(zoo, OPS_ZOO)
    host_facts(tmp_path, monkeypatch, gpus=[GPU_89], driver_version="570.10", cuda_driver_version="12.8")
    run_snakemake(zoo)
    v = json.loads((zoo / paths.validation("tiny_mlp", KEY, "89", "fp32")).read_text())
    assert v["checks"]["plan_execution"]["status"] == "not-run", v  # no CUDA behind the GPU the facts name
    plans_before = {p: (zoo / plan_of(p)).stat().st_mtime_ns for p in ("fp32", "fp16")}
    scheduled.run(str(zoo), [str(config_of(zoo))], cores="2")  # first scheduled run: the baseline snapshot
    host_facts(tmp_path, monkeypatch, gpus=[GPU_89], driver_version="999.99", cuda_driver_version="13.9")
    report = collect(zoo)
    assert report["counts"]["stale"] == 2
    for t in report["targets"]:
        assert t["reruns"] == ["validate"], t
        assert [r["category"] for r in t["reasons"]] == ["host"]
        assert "-> 999.99" in t["reasons"][0]["detail"] and "cuda" in t["reasons"][0]["detail"]
    capsys.readouterr()
    code, summary = scheduled.run(str(zoo), [str(config_of(zoo))], cores="2")
    assert code == 0, summary
    shown = capsys.readouterr().out  # the run's progress, as it goes (Snakemake's own lines, from its log)
    assert "scheduled: 1 of " in shown and "steps (100%) done" in shown, shown
    ch = summary["changes"]
    assert ch["built"] == [] and ch["new_keys"] == []
    assert sorted(ch["revalidated"]) == sorted(map(plan_of, ("fp16", "fp32")))
    assert summary["failed"] == [] and summary["verify"]["ok"] and summary["status"]["counts"]["current"] == 2
    assert {p: (zoo / plan_of(p)).stat().st_mtime_ns for p in ("fp32", "fp16")} == plans_before  # plans kept
    md = (zoo / "artifacts/scheduled/last-run.md").read_text()
    assert "re-validated only: 2" in md and "plans built: 0" in md and "verify: ok" in md, md
    # the driver upgrade went through the gate's budgets: the validations after it against those before
    driver = summary["gate"]["driver"]
    assert driver["outcome"] == "pass" and driver["plans"] == 2 and driver["to"] == {"driver": "999.99", "cuda": "13.9"}
    assert "driver gate (driver 570.10, CUDA 12.8 -> driver 999.99, CUDA 13.9): ok: 2 plan(s) re-validated" in md, md
    assert len((zoo / "artifacts/scheduled/history.jsonl").read_text().splitlines()) == 2
    # `changes` against the snapshot the run left: nothing since
    proc = cli("changes", "-d", str(zoo))
    assert proc.returncode == 0 and "plans built: 0" in proc.stdout and "re-validated only: 0" in proc.stdout


def test_tensorrt_upgrade_is_a_new_key_old_plans_kept_then_pruned(zoo, tmp_path, monkeypatch):
    host_facts(tmp_path, monkeypatch, backend_versions={"tensorrt_rtx": "1.8.0.1"})
    report = collect(zoo)
    assert report["keys"] == ["rtx-1.8.0.1"]
    assert report["counts"] == {"current": 0, "stale": 0, "missing": 2, "failed": 0} and report["needs_work"]
    assert all(t["reruns"] == ["build"] for t in report["targets"]), report  # the ONNX chain is reused
    old = report["not_produced"]
    assert sorted(t["plan"] for t in old) == sorted(map(plan_of, ("fp16", "fp32")))
    assert all("key rtx-1.7.1.116 is not built by this host (it builds rtx-1.8.0.1)" == t["why"] for t in old)
    # the installed module is still 1.7.1.116: the build jobs refuse the new key, the scheduled run says so
    code, summary = scheduled.run(str(zoo), [str(config_of(zoo))], cores="2")
    assert code == 1 and summary["run"]["rc"] != 0
    assert len(summary["failed"]) == 2 and summary["changes"]["built"] == []
    log = (zoo / paths.log("build", "tiny_mlp", "rtx-1.8.0.1", "sm89", "fp32")).read_text()
    assert "this job builds key 'rtx-1.8.0.1' but the installed backend is 'rtx-1.7.1.116'" in log
    assert not (zoo / paths.plan("tiny_mlp", "rtx-1.8.0.1", "89", "fp32")).exists()
    assert all((zoo / plan_of(p)).exists() for p in ("fp32", "fp16"))  # old plans kept
    # prune: lists the old key (plans, validations, timing cache); --keep spares it; --delete removes it. RTX builds
    # keep no timing cache: this one stands for a full-TensorRT key's (or one an earlier workflow version left)
    cache = zoo / paths.timing_cache(KEY, "89")
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"timing cache")
    listed = prune.prune(str(zoo), [str(config_of(zoo))])
    kinds = sorted({v["kind"] for v in listed["remove"]})
    assert kinds == ["plans", "timing cache", "validation"] and not listed["deleted"]
    assert (zoo / plan_of("fp32")).exists()
    assert prune.prune(str(zoo), [str(config_of(zoo))], keep=[KEY])["remove"] == []
    assert prune.prune(str(zoo), [str(config_of(zoo))], keep=[f"{KEY}/sm89"])["remove"] == []
    # the new key's plans are missing (the builds were refused): deleting the old ones needs --force
    proc = cli("prune", "-d", str(zoo), "--configfile", str(config_of(zoo)), "--delete")
    assert proc.returncode == 2 and "build them first" in proc.stderr and (zoo / plan_of("fp32")).exists()
    proc = cli("prune", "-d", str(zoo), "--configfile", str(config_of(zoo)), "--delete", "--force")
    assert proc.returncode == 0 and "removed" in proc.stdout, proc.stdout + proc.stderr
    assert not (zoo / "artifacts/tiny_mlp/plans" / KEY).exists()
    assert not (zoo / "artifacts/tiny_mlp/validation" / KEY).exists() and not cache.exists()
    assert (zoo / paths.precision_onnx("tiny_mlp", "fp16")).exists()  # upstream artifacts are not keys
    assert verify.verify(str(zoo))["ok"]


# ----------------------------------------------------------------------------------------------------- verify
def test_verify_clean(built):
    report = verify.verify(str(built))
    assert report["ok"] and report["problems"] == [], report["problems"]
    assert report["plans_verified"] == 2 and report["statements"] == 2
    proc = cli("verify", "-d", str(built))
    assert proc.returncode == 0 and "tampered 0, missing 0, orphaned 0" in proc.stdout


def test_verify_tampered_plan_deleted_input_and_orphan(zoo):
    plan = zoo / plan_of("fp32")
    plan.write_bytes(plan.read_bytes()[:-1] + b"\x01")
    (zoo / paths.precision_onnx("tiny_mlp", "fp16")).unlink()
    stray = zoo / "artifacts/tiny_mlp/plans" / KEY / "sm89/fp32/model.tmp123.plan"
    stray.write_bytes(b"partial")
    report = verify.verify(str(zoo))
    assert not report["ok"]
    found = {(p["kind"], p["path"]) for p in report["problems"]}
    assert ("tampered", plan_of("fp32")) in found  # against its sidecar and its in-toto statement
    assert sum(1 for p in report["problems"] if p["kind"] == "tampered" and p["path"] == plan_of("fp32")) == 2
    assert ("missing", paths.precision_onnx("tiny_mlp", "fp16")) in found
    assert ("orphaned", stray.relative_to(zoo).as_posix()) in found
    proc = cli("verify", "-d", str(zoo))
    assert proc.returncode == 1 and "FAILED" in proc.stdout
    # status asks Snakemake: the run's target asks for every validation (issue 25: what a killed job did not make is
    # made again), so with the validation gone too the next run re-makes the variant and the validation (pending)
    validation = paths.validation("tiny_mlp", KEY, "89", "fp16")
    (zoo / validation).unlink()
    t = {t["precision"]: t for t in collect(zoo)["targets"]}
    assert t["fp16"]["state"] == "stale", t["fp16"]
    variant = paths.precision_onnx("tiny_mlp", "fp16")
    for stage, path in (("validate", validation), ("precision", variant)):
        assert {"category": "missing", "stage": stage, "detail": f"{path} is missing"} in t["fp16"]["reasons"], t
    # what the hint says: the repair removes what was made from the missing files, the next run re-makes the chain
    assert cli("verify", "-d", str(zoo), "--repair").returncode == 0
    counts = collect(zoo)["counts"]
    assert counts["stale"] + counts["missing"] == 2
    run_snakemake(zoo)
    assert (zoo / validation).exists() and verify.verify(str(zoo))["ok"]
    assert collect(zoo)["counts"]["current"] == 2


# -------------------------------------------------------------------------------------------------- in-toto
def test_intoto_statement_is_slsa_provenance_of_the_plan(built):
    plan = plan_of("fp16")
    st = json.loads((built / paths.intoto(plan)).read_text())
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    assert st["subject"] == [{"name": plan, "digest": {"sha256": sha256(built / plan)}}]
    bd = st["predicate"]["buildDefinition"]
    assert bd["buildType"] == intoto.BUILD_TYPE
    assert bd["externalParameters"]["key"] == KEY and bd["externalParameters"]["precision"] == "fp16"
    deps = {d["name"]: d for d in bd["resolvedDependencies"]}
    # the chain back to the source: precision ONNX, simplified, exported, and the user's ONNX file
    for f in (
        paths.precision_onnx("tiny_mlp", "fp16"),
        paths.sim_onnx("tiny_mlp"),
        paths.onnx("tiny_mlp"),
        "artifacts/demo/tiny_mlp.opset11.onnx",
    ):
        assert deps[f]["digest"]["sha256"] == sha256(built / f), f
    # the user's file is read by the export and (the reference outputs) by golden
    assert deps["artifacts/demo/tiny_mlp.opset11.onnx"]["annotations"]["consumedBy"] in ("export", "golden")
    assert "gitCommit" in deps["workflow"]["digest"]
    rd = st["predicate"]["runDetails"]
    assert rd["builder"]["id"] == intoto.BUILDER_ID and rd["builder"]["version"]["tensorrt-rtx-cu13"] == "1.7.1.116"
    assert rd["metadata"]["startedOn"] <= rd["metadata"]["finishedOn"]
    assert rd["byproducts"] == []  # TensorRT-RTX: no timing cache (full TensorRT's: the test below)


# ---------------------------------------------------------------------------------------------- unit level
def test_settings_changes_are_sorted_into_categories():
    before = {
        "driver": "580.1",
        "build": {"optimization_level": 3},
        "source_sha256": {"source": "aa"},
        "model_code": "c1",
        "q": "it's",
    }
    now = {
        "driver": "590.2",
        "build": {"optimization_level": 2},
        "source_sha256": {"source": "bb"},
        "model_code": "c2",
        "q": "it's",
    }
    reasons = status.params_reasons("freeze", {"source": "zoo/unet.pth"}, before, now)
    assert {r["category"]: r["detail"] for r in reasons} == {
        "host": "driver 580.1 -> 590.2",
        "checkpoint": "source file zoo/unet.pth changed",
        "model code": "the model class's source changed (freeze re-runs)",
        "config": "build.optimization_level: 3 -> 2",
    }
    assert status.dict_diff({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == [
        ("a.c", 2, 3),
        ("d", "<absent>", 0),
    ]


def test_tool_upgrade_is_named_from_the_recorded_versions():
    """Each rule's command ends with its stage's tool versions, so an upgrade is a code change to Snakemake; status
    names the tool by comparing with the versions the artifact's record holds."""
    recorded = {**stage_tools("simplify"), "onnxslim": "0.0.1"}
    assert status.tool_changes("simplify", recorded) == [f"onnxslim 0.0.1 -> {stage_tools('simplify')['onnxslim']}"]
    assert status.tool_changes("simplify", stage_tools("simplify")) == []


def test_summary_parsing_and_changes():
    text = (
        "output_file\tdate\trule\tlog-file(s)\tstatus\tplan\n"
        "artifacts/m/plans/k/sm89/fp16/model.plan\t-\tbuild\t-\tmissing\tupdate pending\n"
        "artifacts/report/summary.json\tTue\treport\tx.log\tok\tno update\n"
    )
    rows = parse_summary(text)
    assert rows[0] == {
        "file": "artifacts/m/plans/k/sm89/fp16/model.plan",
        "date": "-",
        "rule": "build",
        "status": "missing",
        "pending": True,
    }
    assert rows[1]["pending"] is False

    def snap(**plans):
        return {
            "taken": "t",
            "plans": {
                p: {**paths.parse_plan(p), "mtime_ns": m, "size": 1, "validation": {"mtime_ns": v, "status": s}}
                for p, (m, v, s) in plans.items()
            },
        }

    a = "artifacts/m/plans/rtx-1.7.1.116/sm89/fp16/model.plan"
    b = "artifacts/m/plans/rtx-1.8.0.1/sm89/fp16/model.plan"
    c = "artifacts/m/plans/rtx-1.7.1.116/sm89/fp32/model.plan"
    ch = scheduled.changes(
        snap(**{a: (1, 1, "pass"), c: (1, 1, "pass")}), snap(**{a: (1, 2, "fail"), b: (5, 5, "pass")})
    )
    assert ch["built"] == [b] and ch["new_keys"] == ["rtx-1.8.0.1/sm89"] and ch["revalidated"] == [a]
    assert ch["removed"] == [c] and ch["validation_failed"] == [a]
    assert "new keys built: rtx-1.8.0.1/sm89" in scheduled.render({"changes": ch})


def test_a_missing_plan_in_the_nightly_summary_says_its_first_error_line(tmp_path):
    """Before: 'missing; log artifacts/logs/build/...' and nothing a person could act on."""
    log = tmp_path / "artifacts/logs/build/m.log"
    log.parent.mkdir(parents=True)
    log.write_text("building m\nwarning: slow\nengine factory: build failed: out of memory; cause: ...\nTraceback\n")
    t = {"state": "missing", "reasons": [], "logs": {"build": "artifacts/logs/build/m.log"}}
    why = scheduled._why_not_current(t, None, str(tmp_path))
    assert (
        why
        == "missing: build: engine factory: build failed: out of memory; cause: ... (log artifacts/logs/build/m.log)"
    )
    assert scheduled._why_not_current({**t, "logs": {}}, None, str(tmp_path)) == "missing; log None"
