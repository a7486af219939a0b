"""Faults of an unattended nightly (issue 25): repair deletes only what the factory made inside artifacts/, verify
always finishes, and what it cannot account for it reports and keeps. Each test failed on the code before the fix."""

import json
from pathlib import Path

import pytest

from engine_factory import paths
from engine_factory.fingerprint import sha256
from engine_factory.ops import verify


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
