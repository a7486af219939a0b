"""Faults of an unattended nightly (issue 25): repair deletes only what the factory made inside artifacts/, verify
always finishes, and what it cannot account for it reports and keeps. Each test failed on the code before the fix."""

import json
import shutil
from pathlib import Path

import pytest

from engine_factory import paths
from engine_factory.fingerprint import sha256
from engine_factory.ops import verify

from helpers import build_once, load_test_config, snakemake


def record(work: Path, artifact: str, *, sha: str, inputs=(), side: str | None = None) -> Path:
    """A provenance sidecar as a stage writes it (scripts/engine_factory/provenance.py), `artifact` as given."""
    side = work / (side or paths.provenance(artifact))
    side.parent.mkdir(parents=True, exist_ok=True)
    side.write_text(json.dumps({"artifact": {"path": artifact, "sha256": sha}, "inputs": list(inputs)}))
    return side


@pytest.fixture
def work(tmp_path):
    (tmp_path / "work" / paths.ROOT).mkdir(parents=True)
    return tmp_path / "work"


@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_repair_never_deletes_a_file_outside_artifacts_that_a_record_names(work, tmp_path, how):
    victim = tmp_path / "precious.txt"
    victim.write_text("the user's")
    named = str(victim) if how == "absolute" else f"{paths.ROOT}/../../precious.txt"
    side = record(work, named, sha="0" * 64, side=paths.provenance(paths.onnx("m")))
    report = verify.verify(str(work), repair=True)
    assert victim.read_text() == "the user's"
    assert named not in report["removed"]
    rel = str(side.relative_to(work))
    assert any(p["kind"] == "tampered" and p["path"] == rel and "outside" in p["detail"] for p in report["problems"])


def test_an_input_outside_artifacts_is_never_deleted_by_repair(work, tmp_path):
    """A record whose input is `artifacts/../x` and 'missing'-shaped paths under it: repair resolves before deleting."""
    victim = tmp_path / "x.onnx"
    victim.write_text("outside")
    onnx = work / paths.onnx("m")
    onnx.parent.mkdir(parents=True)
    onnx.write_text("made")
    record(
        work,
        paths.onnx("m"),
        sha="1" * 64,
        inputs=[{"path": f"{paths.ROOT}/../../x.onnx", "label": "c", "sha256": "2" * 64}],
    )
    verify.verify(str(work), repair=True)
    assert victim.read_text() == "outside"


def test_a_folder_symlink_out_of_artifacts_is_not_followed(work, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    for name in ("a.txt", "b.onnx", "c.json"):
        (home / name).write_text(name)
    (work / paths.ROOT / "scratch").symlink_to(home)
    report = verify.verify(str(work), repair=True)
    assert sorted(p.name for p in home.iterdir()) == ["a.txt", "b.onnx", "c.json"]
    assert report["removed"] == []
    assert [p["kind"] for p in report["problems"] if p["path"].startswith(f"{paths.ROOT}/scratch")] == ["foreign"]


def test_a_users_file_under_artifacts_is_reported_and_kept(work):
    notes = work / paths.ROOT / "notes" / "todo.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("call Bob")
    report = verify.verify(str(work), repair=True)
    assert notes.read_text() == "call Bob"
    assert report["ok"] and report["counts"]["foreign"] == 1
    assert "foreign" in verify.render(report) and "removed" not in verify.render(report)


def test_a_stray_factory_file_is_still_repaired(work):
    """What a stage makes (an ONNX without its sidecar) is still removed: the next run makes it again."""
    stray = work / paths.onnx("m")
    stray.parent.mkdir(parents=True)
    stray.write_text("x")
    report = verify.verify(str(work), repair=True)
    assert report["removed"] == [paths.onnx("m")] and not stray.exists()


def test_a_record_naming_dev_zero_is_damage_and_verify_finishes(work):
    onnx = work / paths.onnx("m")
    onnx.parent.mkdir(parents=True)
    onnx.write_text("made")
    record(
        work,
        paths.onnx("m"),
        sha=sha256(onnx, cached=False),
        inputs=[{"path": "/dev/zero", "label": "checkpoint", "sha256": "3" * 64}],
    )
    report = verify.verify(str(work))  # before: read /dev/zero for ever
    assert not report["ok"]
    assert any("/dev/zero" in p["detail"] and "regular" in p["detail"] for p in report["problems"])


def test_an_artifact_record_naming_a_device_is_refused(work):
    record(work, "/dev/zero", sha="4" * 64, side=paths.provenance(paths.onnx("m")))
    report = verify.verify(str(work))
    assert not report["ok"] and report["files_hashed"] == 0


# What verify vouches for, on a real run: results (parity, validation) carry their own records, and the report's
# summary.json must say what the validations say (issue 25, point 4).

KEY = "rtx-1.7.1.116"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_once(tmp_path_factory.mktemp("nightly"), load_test_config("ops"))["work"]


@pytest.fixture
def zoo(built, tmp_path):
    copy = tmp_path / "zoo"
    shutil.copytree(built, copy, symlinks=True)
    return copy


def validation_of(precision: str) -> str:
    return paths.validation("tiny_mlp", KEY, "89", precision)


def test_every_result_has_its_record_and_verify_is_clean(built):
    results = [validation_of("fp32"), validation_of("fp16"), paths.parity("tiny_mlp", "export")]
    for result in results:
        record = json.loads((built / paths.provenance(result)).read_text())
        assert record["artifact"]["sha256"] == sha256(built / result, cached=False)
    report = verify.verify(str(built))
    assert report["ok"] and report["problems"] == [], report["problems"]


@pytest.mark.parametrize("damage", ["emptied", "halved", "zeroed", "forged"])
def test_a_damaged_validation_is_tampered_and_repair_makes_it_again(zoo, damage):
    """Before: a damaged validation was at most a 'stale' warning, and the report went on showing it."""
    v = zoo / validation_of("fp32")
    data = v.read_bytes()
    v.write_bytes(
        {
            "emptied": b"",
            "halved": data[: len(data) // 2],
            "zeroed": bytes(len(data)),
            "forged": data.replace(b'"status": "not-run"', b'"status": "pass"', 1),
        }[damage]
    )
    assert v.read_bytes() != data
    report = verify.verify(str(zoo))
    assert not report["ok"]
    assert {"tampered"} <= {p["kind"] for p in report["problems"] if p["path"] == validation_of("fp32")}
    repaired = verify.verify(str(zoo), repair=True)
    assert validation_of("fp32") in repaired["removed"] and paths.REPORT_JSON in repaired["removed"]
    snakemake(zoo)
    after = verify.verify(str(zoo))
    assert after["ok"] and after["counts"]["stale"] == 0, after["problems"]
    assert json.loads(v.read_text())["status"] == json.loads(data)["status"]


def test_a_summary_that_disagrees_with_its_validations_is_tampered(zoo):
    summary = zoo / paths.REPORT_JSON
    doc = json.loads(summary.read_text())
    cell = next(c for c in doc["plans"] if c.get("links", {}).get("validation"))
    cell["status"] = "fail" if cell["status"] != "fail" else "pass"
    summary.write_text(json.dumps(doc))
    report = verify.verify(str(zoo))
    assert not report["ok"]
    assert [p["path"] for p in report["problems"]] == [paths.REPORT_JSON], report["problems"]
    summary.write_bytes(summary.read_bytes()[:100])  # halved by a power cut
    assert "not the report's summary" in verify.verify(str(zoo))["problems"][0]["detail"]


def test_a_result_made_before_results_had_records_is_an_unrecorded_warning(zoo):
    """Not 'stale' (made from something changed since): nothing says what it was made from."""
    (zoo / paths.provenance(validation_of("fp16"))).unlink()
    report = verify.verify(str(zoo))
    assert report["ok"] and [p["kind"] for p in report["problems"]] == ["unrecorded"], report["problems"]
    assert "without a provenance record" in report["problems"][0]["detail"]


def test_a_source_folder_input_is_hashed_as_the_stage_hashed_it(work, tmp_path):
    """A SavedModel or TF1 checkpoint is a folder: verify hashes it like the freeze did, not as 'not a regular file'
    (which repair would act on: remove the frozen model, freeze again, for ever)."""
    saved = tmp_path / "zoo" / "saved_model"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"graph")
    (saved / "variables" / "variables.index").write_bytes(b"index")
    frozen = work / paths.ROOT / "m" / "frozen" / "model.pb"
    frozen.parent.mkdir(parents=True)
    frozen.write_bytes(b"frozen")
    rel = str(frozen.relative_to(work))
    record(
        work,
        rel,
        sha=sha256(frozen, cached=False),
        inputs=[{"path": str(saved), "label": "checkpoint", "sha256": sha256(saved, cached=False)}],
    )
    report = verify.verify(str(work))
    assert report["ok"] and report["problems"] == [], report["problems"]
    (saved / "variables" / "variables.index").write_bytes(b"changed")
    assert [p["kind"] for p in verify.verify(str(work))["problems"]] == ["stale"]
