"""A damaged artifact is never shipped or shown as good, by any command. After a power loss plans and ONNX files lie
emptied, halved or zeroed with dates that Snakemake calls up to date: a plain run must rebuild them, deploy must never
publish their bytes, the report must not show them built and passing, status must not call them current."""

import json
import os
import shutil
from pathlib import Path

import pytest
from test_faults import mlp_onnx

from engine_factory import fingerprint, paths
from engine_factory.errors import FactoryError
from engine_factory.factory import open_workflow
from engine_factory.fingerprint import file_digest
from engine_factory.ops import status, verify

from helpers import MLP_INPUTS, build_once, snakemake

KEY = "rtx-1.7.1.116"
PLAN = paths.plan("inline", KEY, "89", "fp16")
OTHER_CC = paths.plan("inline", KEY, "86", "fp16")
DAMAGE = ("emptied", "halved", "zeroed")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A user zoo outside the checkout (two ONNX models, two targets, Triton repositories), built once."""
    base = tmp_path_factory.mktemp("damage")
    zoo = base / "zoo"
    mlp_onnx(zoo / "inline.onnx", external=False)
    mlp_onnx(zoo / "external.onnx", external=True)
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.6", "8.9"]},
        "precisions": ["fp32", "fp16"],
        "deploy": {"triton": {"enabled": True}},
        "models": {
            name: {"framework": "onnx", "onnx": str(zoo / f"{name}.onnx"), "inputs": MLP_INPUTS, "outputs": ["scores"]}
            for name in ("inline", "external")
        },
    }
    return build_once(base, cfg)["work"]


@pytest.fixture
def work(built, tmp_path):
    """A copy of the built zoo's working directory (its sources stay where the config names them: up to date)."""
    shutil.copytree(built, tmp_path / "work", symlinks=True)
    return tmp_path / "work"


def damage(path: Path, how: str) -> None:
    """What a power loss leaves: the file emptied, its first half only, or its size in zeros."""
    data = path.read_bytes()
    path.write_bytes({"emptied": b"", "halved": data[: len(data) // 2], "zeroed": bytes(len(data))}[how])


def recorded_sha256(work: Path, artifact: str) -> str:
    return json.loads((work / paths.provenance(artifact)).read_text())["artifact"]["sha256"]


def config(work: Path) -> list[str]:
    return [str(work / "config" / "zoo.yaml")]


# ------------------------------------------------------------------------------------------------ a plain run
def test_a_plain_run_rebuilds_a_zeroed_plan_and_deploys_the_good_bytes(work):
    """Zeroed: the size holds, so only the sha256 tells. Before: Snakemake kept the plan (newer than its inputs) and
    the deploy job, re-run by its date, published the zeros into the Triton repository."""
    damage(work / PLAN, "zeroed")
    dry = snakemake(work, "-n")  # read-only: removes nothing
    assert not any((work / PLAN).read_bytes()) and (work / PLAN).stat().st_size > 0
    run = snakemake(work)
    assert file_digest(work / PLAN) == recorded_sha256(work, PLAN)
    served = work / paths.TRITON_ROOT / "inline_fp16" / paths.TRITON_VERSION / "model.sm89.plan"
    assert file_digest(served) == recorded_sha256(work, PLAN)
    assert f"damaged: {PLAN}" in dry.out and f"damaged: {PLAN}" in run.out, run.out[-3000:]
    assert verify.verify(str(work))["ok"]


def test_a_plain_run_rebuilds_what_was_made_from_a_halved_onnx(work):
    """Before: a damaged intermediate was kept, and the plans made from it were never made again from good bytes."""
    sim = work / paths.sim_onnx("inline")
    good = recorded_sha256(work, paths.sim_onnx("inline"))
    damage(sim, "halved")
    snakemake(work)
    assert file_digest(sim) == good
    report = verify.verify(str(work))
    assert report["ok"], report["problems"]


def test_a_plain_run_writes_a_damaged_report_again(work):
    """The report has no record: its summary must parse and its page end as a page. Before: both were kept."""
    damage(work / paths.REPORT_JSON, "halved")
    damage(work / paths.REPORT_HTML, "zeroed")
    snakemake(work)
    assert len(json.loads((work / paths.REPORT_JSON).read_text())["plans"]) == 8
    assert (work / paths.REPORT_HTML).read_text().rstrip().endswith("</html>")


def test_a_run_beside_nothing_damaged_reads_no_bytes(work, monkeypatch):
    """The start's check is a stat per file while nothing changed: after one check no file is read again."""
    monkeypatch.chdir(work)
    f = open_workflow(".", config(work)).resolve()
    assert PLAN in f.recorded_files() and paths.sim_onnx("inline") in f.recorded_files()
    assert f.damaged() == []  # the first check after a build reads each file once (Snakemake touched them)

    def no_reading(path):
        raise AssertionError(f"{path} read although nothing changed")

    monkeypatch.setattr(fingerprint, "file_digest", no_reading)
    fingerprint._CACHE.entries = None  # as a new process: the verdicts come from the cache file
    assert f.damaged() == []


# ------------------------------------------------------------------------------------------------ deploy
def _deploy(work: Path, repository: str) -> dict:
    from engine_factory.deploy.triton import write_repository

    os.chdir(work)  # the caller's monkeypatch puts the directory back
    f = open_workflow(".", config(work)).resolve()
    w = {"repository": repository}
    return write_repository(
        paths.deploy_record(repository), inputs=f.inputs("deploy", w), settings=f.settings("deploy", w)
    )


@pytest.mark.parametrize("how", DAMAGE)
def test_deploy_leaves_a_damaged_plan_out_with_its_reason(work, how, monkeypatch):
    """Before: deploy hard-linked whatever plan its validation named and recorded the damaged bytes' sha256."""
    damage(work / PLAN, how)
    monkeypatch.chdir(work)
    result = _deploy(work, "inline_fp16")
    assert set(result["plans"]) == {"8.6"} and result["left_out"]["8.9"].startswith("damaged: "), result
    model_dir = work / paths.TRITON_ROOT / "inline_fp16"
    assert not (model_dir / paths.TRITON_VERSION / "model.sm89.plan").exists()
    record = json.loads((work / paths.provenance(paths.triton_config("inline_fp16"))).read_text())
    assert record["facts"]["left_out"]["8.9"].startswith("damaged: ")
    assert [e["compute_capability"] for e in record["facts"]["plans"]] == ["8.6"]


def test_deploy_publishes_nothing_when_every_plan_is_damaged(work, monkeypatch):
    monkeypatch.chdir(work)
    damage(work / PLAN, "halved")
    damage(work / OTHER_CC, "emptied")
    result = _deploy(work, "inline_fp16")  # withheld, and why: the next run removes the damaged plans and rebuilds them
    assert result["status"] == "withheld" and all(f"{cc} damaged: " in result["reason"] for cc in ("8.6", "8.9"))
    assert not (work / paths.TRITON_ROOT / "inline_fp16").exists()  # the earlier directory is not left servable
    assert json.loads((work / paths.deploy_record("inline_fp16")).read_text())["status"] == "withheld"


# ------------------------------------------------------------------------------------------------ report, status
@pytest.mark.parametrize("how", DAMAGE)
def test_the_report_shows_a_damaged_plan_as_damaged(work, how, monkeypatch):
    """Before: the cell said built, with its validation's passing header check."""
    from engine_factory.report import verdict, write_report

    damage(work / PLAN, how)
    monkeypatch.chdir(work)
    f = open_workflow(".", config(work)).resolve()
    write_report(paths.REPORT_JSON, paths.REPORT_HTML, **f.report_settings())
    summary = json.loads(Path(paths.REPORT_JSON).read_text())
    cell = next(c for c in summary["plans"] if c["plan"] == PLAN)
    assert cell["status"] == "damaged" and "plan" not in cell["links"] and "checks" not in cell, cell
    assert summary["overview"]["outcomes"]["built"] == 7 and summary["overview"]["outcomes"]["damaged"] == 1
    assert "damaged" in Path(paths.report_page("inline")).read_text()
    others = [c["status"] for c in summary["plans"] if c["plan"] != PLAN]
    assert "damaged" not in others
    with pytest.raises(FactoryError, match="1 target"):  # the run's verdict (outcome rule) is no success either
        verdict(paths.REPORT_JSON, paths.OUTCOME)


@pytest.mark.parametrize("how", DAMAGE)
def test_status_calls_a_damaged_plan_damaged_and_leaves_it(work, how):
    """Before: status asked Snakemake, which judges by dates, and called the plan current."""
    damage(work / PLAN, how)
    before = (work / PLAN).read_bytes()
    report = status.collect(str(work), config(work))
    target = next(t for t in report["targets"] if t["plan"] == PLAN)
    assert target["state"] == "damaged" and target["reasons"][0]["stage"] == "build", target
    assert report["needs_work"] and report["counts"]["current"] == 7
    assert "1 damaged" in status.render(report)
    assert (work / PLAN).read_bytes() == before  # status is read-only: the next run removes it
