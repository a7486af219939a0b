"""`verify` with signatures (ops/verify.py, signing.check_artifacts): each plan's envelope and each Triton model
directory's model.sig checked against the configured keys only. A forged chain (plan, sidecar and statement rewritten
to agree) passes the unsigned checks and is caught by the signature; unsigned, bad signature, unknown (forged or
retired) and revoked keys are reported and fail; repair acts on none of them; the signature files are records, not
orphans; without keys configured plans are reported unsigned and nothing fails for it."""

import hashlib
import json
from pathlib import Path

import pytest
from test_signing import PLAN, trust

from engine_factory import intoto, paths, provenance, signing
from engine_factory.ops.verify import render, verify

SOURCE = "checkpoint.bin"
MODEL = "artifacts/triton/m_fp32"


def record_plan(data: bytes) -> None:
    Path(PLAN).write_bytes(data)
    provenance.write(PLAN, stage="build", inputs={"checkpoint": SOURCE}, params={}, host={})
    intoto.write_statement(PLAN)


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("old", "new", "thief"):
        signing.generate_key(str(tmp_path / f"{name}.key"))
    Path(SOURCE).write_bytes(b"weights")
    Path(PLAN).parent.mkdir(parents=True)
    record_plan(b"plan bytes")
    return tmp_path


def kinds(report) -> dict:
    return {p["path"]: p["kind"] for p in report["problems"]}


def test_without_keys_plans_are_unsigned_and_nothing_fails(work):
    report = verify(".")
    assert report["ok"], report["problems"]
    assert report["signatures"] == {"checked": False, "plans": {"unsigned": 1}, "repositories": {}}
    assert "plans 1 unsigned" in render(report) and "no signing keys configured" in render(report)
    signing.sign_plan(PLAN, signing.Signer("old.key"))
    report = verify(".")  # an envelope is a record, not an orphan, even where nobody checks it
    assert report["ok"] and not report["problems"], report["problems"]


def test_signed_plan_verifies_and_its_envelope_is_no_orphan(work):
    signing.sign_plan(PLAN, signing.Signer("old.key"))
    report = verify(".", trust=trust("old"))
    assert report["ok"] and not report["problems"], report["problems"]
    assert report["signatures"]["plans"] == {"signed": 1}
    Path(PLAN).unlink()
    Path(paths.provenance(PLAN)).unlink()
    Path(paths.intoto(PLAN)).unlink()
    assert kinds(verify(".", trust=trust("old")))[signing.envelope_path(PLAN)] == "orphaned"


def test_unsigned_fails_where_keys_are_configured(work):
    report = verify(".", trust=trust("old"))
    assert not report["ok"] and kinds(report) == {signing.envelope_path(PLAN): "unsigned"}
    assert report["counts"]["unsigned"] == 1


def test_a_forged_chain_passes_the_records_and_fails_the_signature(work):
    signing.sign_plan(PLAN, signing.Signer("old.key"))
    record_plan(b"evil plan")  # plan, sidecar and statement rewritten to agree with each other
    assert verify(".")["ok"]  # the records alone are fooled: why signatures exist
    report = verify(".", trust=trust("old"))
    assert not report["ok"] and kinds(report)[PLAN] == "tampered", report["problems"]


def test_a_statement_changed_under_a_valid_signature_is_the_statement_tampered(work):
    signing.sign_plan(PLAN, signing.Signer("old.key"))
    st = json.loads(Path(paths.intoto(PLAN)).read_text())
    st["predicate"]["note"] = "edited"
    Path(paths.intoto(PLAN)).write_text(json.dumps(st))
    assert kinds(verify(".", trust=trust("old")))[paths.intoto(PLAN)] == "tampered"


@pytest.mark.parametrize(
    "case, state",
    [
        ("forged", "signed by an unknown key"),
        ("retired", "signed by an unknown key"),
        ("revoked", "revoked key"),
        ("envelope", "bad signature"),
    ],
)
def test_signature_states_fail_and_repair_does_not_act_on_them(work, case, state):
    t = trust("old")
    if case == "forged":  # the thief rebuilds the whole chain and signs it with its own key
        record_plan(b"evil plan")
        signing.sign_plan(PLAN, signing.Signer("thief.key"))
    else:
        signing.sign_plan(PLAN, signing.Signer("old.key"))
    if case == "retired":
        t = trust("new")
    elif case == "revoked":
        t = trust("new", revoked=["old"])
    elif case == "envelope":
        env_path = Path(signing.envelope_path(PLAN))
        env = json.loads(env_path.read_text())
        env["signatures"][0]["sig"] = env["signatures"][0]["sig"][:-8] + "AAAAAAAA"
        env_path.write_text(json.dumps(env))
    report = verify(".", trust=t)
    assert not report["ok"] and kinds(report) == {signing.envelope_path(PLAN): state}, report["problems"]
    assert f"{state}" in render(report)
    before = sorted(str(p) for p in Path("artifacts").rglob("*"))
    verify(".", trust=t, repair=True)
    assert Path(PLAN).exists() and Path(signing.envelope_path(PLAN)).exists()  # reported, never obeyed
    assert [p for p in before if p.startswith("artifacts/m/")] == sorted(str(p) for p in Path("artifacts/m").rglob("*"))


def deploy(data: bytes = b"plan bytes") -> Path:
    d = Path(MODEL)
    (d / "1").mkdir(parents=True)
    config = d / "config.pbtxt"
    config.write_text(
        'name: "m_fp32"\nplatform: "tensorrt_plan"\ncc_model_filenames [{ key: "8.6" value: "model.sm86.plan" }]\n'
    )
    (d / "1" / "model.sm86.plan").write_bytes(data)
    plans = [{"file": f"{MODEL}/1/model.sm86.plan", "sha256": hashlib.sha256(data).hexdigest()}]
    provenance.write(str(config), stage="deploy", inputs={}, params={}, facts={"plans": plans}, host={})
    return d


def test_model_directories(work):
    signing.sign_plan(PLAN, signing.Signer("old.key"))
    d = deploy()
    report = verify(".", trust=trust("old"))
    assert kinds(report) == {f"{MODEL}/model.sig": "unsigned"}
    signing.sign_model_dir(d, signing.Signer("old.key"))
    report = verify(".", trust=trust("old"))
    assert report["ok"] and not report["problems"], report["problems"]  # model.sig: a record, not an orphan
    assert report["signatures"]["repositories"] == {"signed": 1}
    (d / "1" / "libplugin.so").write_bytes(b"\x7fELF")  # a file slipped into the signed directory
    report = verify(".", trust=trust("old"))
    assert kinds(report)[f"{MODEL}/model.sig"] == "tampered", report["problems"]
    assert "libplugin.so" in next(p["detail"] for p in report["problems"] if p["path"] == f"{MODEL}/model.sig")
