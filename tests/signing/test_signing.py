"""Signed plans and model directories (scripts/engine_factory/signing.py): sign, tamper (plan bytes, statement,
envelope, a model-directory file), forge (signed by another key, a keyid that lies), rotate (two trusted keys, the old
one retired), revoke (a compromised key's signatures refused, by key file or by key id); a URI signer; the key never
in artifacts or logs; the config keys. Plans here are stand-in bytes: signing never reads them as engines."""

import base64
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from engine_factory import intoto, paths, signing
from engine_factory.errors import FactoryError

PLAN = "artifacts/m/plans/rtx-1.7.1.116/sm86/fp32/model.plan"


def statement_for(plan: str, data: bytes) -> dict:
    return {
        "_type": intoto.STATEMENT_TYPE,
        "predicateType": intoto.PREDICATE_TYPE,
        "predicate": {"x": 1},
        "subject": [{"name": plan, "digest": {"sha256": hashlib.sha256(data).hexdigest()}}],
    }


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keys = {name: signing.generate_key(str(tmp_path / f"{name}.key")) for name in ("old", "new", "thief")}
    Path(PLAN).parent.mkdir(parents=True)
    Path(PLAN).write_bytes(b"plan bytes")
    Path(paths.intoto(PLAN)).write_text(json.dumps(statement_for(PLAN, b"plan bytes")))
    return tmp_path, keys


def trust(*trusted, revoked=()):
    return signing.Trust([f"{k}.key.pub" for k in trusted], [r if len(r) == 64 else f"{r}.key.pub" for r in revoked])


def state(plan=PLAN, t=None, **kw):
    return signing.verify_plan(plan, t or trust("old"), **kw)["state"]


def test_signed_plan_verifies_and_the_envelope_is_standard_dsse(work):
    tmp, keys = work
    out = signing.sign_plan(PLAN, signing.Signer("old.key"))
    assert out == PLAN + ".intoto.dsse.json"
    env = json.loads(Path(out).read_text())
    assert set(env) == {"payload", "payloadType", "signatures"} and env["payloadType"] == "application/vnd.in-toto+json"
    assert base64.b64decode(env["payload"]) == Path(paths.intoto(PLAN)).read_bytes()  # the statement's exact bytes
    assert [s["keyid"] for s in env["signatures"]] == [keys["old"]]
    res = signing.verify_plan(PLAN, trust("old"))
    assert (res["state"], res["keyid"]) == ("signed", keys["old"])
    assert res["signed_sha256"] == hashlib.sha256(b"plan bytes").hexdigest()
    assert state(data=b"plan bytes") == "signed" and state(data=b"other bytes") == "tampered"  # the bytes in hand


def test_unsigned_and_tampered(work):
    assert state() == "unsigned"
    signing.sign_plan(PLAN, signing.Signer("old.key"))
    Path(PLAN).write_bytes(b"plan bytes, patched")  # plan bytes
    assert state() == "tampered"
    Path(PLAN).write_bytes(b"plan bytes")
    assert state() == "signed"
    st = json.loads(Path(paths.intoto(PLAN)).read_text())
    st["predicate"]["x"] = 2  # the statement on disk, edited after signing
    Path(paths.intoto(PLAN)).write_text(json.dumps(st))
    assert state() == "tampered"


def test_a_changed_envelope_is_a_bad_signature(work):
    signing.sign_plan(PLAN, signing.Signer("old.key"))
    env_path = Path(signing.envelope_path(PLAN))
    env = json.loads(env_path.read_text())
    forged = statement_for(PLAN, b"evil plan")  # a payload naming other plan bytes, signature kept
    env_path.write_text(json.dumps({**env, "payload": base64.b64encode(json.dumps(forged).encode()).decode()}))
    Path(PLAN).write_bytes(b"evil plan")
    assert state() == "bad signature"
    env_path.write_text("{not json")
    assert state() == "bad signature"
    env_path.write_text(json.dumps({**env, "payloadType": "text/plain"}))
    assert state() == "bad signature"


def test_forged_by_another_key(work):
    tmp, keys = work
    # an attacker rewrites plan, statement and envelope consistently with their own key
    Path(PLAN).write_bytes(b"evil plan")
    Path(paths.intoto(PLAN)).write_text(json.dumps(statement_for(PLAN, b"evil plan")))
    signing.sign_plan(PLAN, signing.Signer("thief.key"))
    assert state() == "signed by an unknown key"
    env_path = Path(signing.envelope_path(PLAN))
    env = json.loads(env_path.read_text())
    env["signatures"][0]["keyid"] = keys["old"]  # ... and claims the trusted key's id
    env_path.write_text(json.dumps(env))
    assert state() == "bad signature"


def test_rotation_retirement_and_revocation(work):
    tmp, keys = work
    signing.sign_plan(PLAN, signing.Signer("old.key"))
    assert state(t=trust("old", "new")) == "signed"  # during a rotation both keys are trusted
    other = "artifacts/m/plans/rtx-1.7.1.116/sm89/fp32/model.plan"
    Path(other).parent.mkdir(parents=True)
    Path(other).write_bytes(b"b")
    Path(paths.intoto(other)).write_text(json.dumps(statement_for(other, b"b")))
    signing.sign_plan(other, signing.Signer("new.key"))
    assert state(other, trust("old", "new")) == "signed"
    assert state(t=trust("new")) == "signed by an unknown key"  # the old key retired: re-sign before dropping it
    assert state(t=trust("old", "new", revoked=["old"])) == "revoked key"  # compromised: refused though listed
    assert state(t=trust("new", revoked=[keys["old"]])) == "revoked key"  # revoked by id alone
    assert state(other, trust("new", revoked=["old"])) == "signed"
    # a revoked key known by its public key is named even under a keyid that claims to be unknown
    env_path = Path(signing.envelope_path(PLAN))
    env = json.loads(env_path.read_text())
    env["signatures"][0]["keyid"] = "0" * 64
    env_path.write_text(json.dumps(env))
    assert state(t=trust("new", revoked=["old"])) == "revoked key"


def make_model_dir(root: Path) -> Path:
    d = root / "artifacts/triton/m_fp32"
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text('name: "m_fp32"\nplatform: "tensorrt_plan"\n')
    (d / "1" / "model.sm86.plan").write_bytes(b"plan bytes")
    return d


def test_model_directory_signed_as_a_whole(work):
    tmp, keys = work
    d = make_model_dir(tmp)
    assert signing.verify_model_dir(d, trust("old"))["state"] == "unsigned"
    assert signing.sign_model_dir(d, signing.Signer("old.key")) == str(d / "model.sig")
    res = signing.verify_model_dir(d, trust("old"))
    assert (res["state"], res["keyid"]) == ("signed", keys["old"])
    bundle = json.loads((d / "model.sig").read_text())
    assert bundle["mediaType"].startswith("application/vnd.dev.sigstore.bundle") and "dsseEnvelope" in bundle
    assert signing.verify_model_dir(d, trust("new"))["state"] == "signed by an unknown key"
    assert signing.verify_model_dir(d, trust("new", revoked=["old"]))["state"] == "revoked key"
    (d / "1" / "model.sm86.plan").write_bytes(b"patched")
    res = signing.verify_model_dir(d, trust("old"))
    assert res["state"] == "tampered" and "1/model.sm86.plan" in res["detail"], res
    (d / "1" / "model.sm86.plan").write_bytes(b"plan bytes")
    (d / "1" / "model.sm75.plan").write_bytes(b"smuggled")  # a file added
    assert signing.verify_model_dir(d, trust("old"))["state"] == "tampered"
    (d / "1" / "model.sm75.plan").unlink()
    (d / "config.pbtxt").unlink()  # a file removed
    assert signing.verify_model_dir(d, trust("old"))["state"] == "tampered"
    (d / "model.sig").write_text("garbage")
    assert signing.verify_model_dir(d, trust("old"))["state"] == "bad signature"


def test_a_signer_uri(work):
    tmp, keys = work
    signer = signing.Signer(f"file2:{tmp}/new.key", "new.key.pub")  # securesystemslib's file signer URI
    assert signer.key_file is None and signer.key_id == keys["new"]
    signing.sign_plan(PLAN, signer)
    assert state(t=trust("new")) == "signed"
    d = make_model_dir(tmp)
    signing.sign_model_dir(d, signer)  # the bundle made through securesystemslib, verified by model-signing
    assert signing.verify_model_dir(d, trust("new"))["state"] == "signed"
    with pytest.raises(FactoryError, match="signing.public_key"):
        signing.Signer(f"file2:{tmp}/new.key")


def test_the_key_never_enters_artifacts_or_logs(work):
    tmp, keys = work
    d = make_model_dir(tmp)
    cfg = {"signing": {**signing.DEFAULTS, "key": "old.key"}}
    out = signing.sign_stage(str(tmp / "sign.log"), cfg=cfg, plans=[PLAN], repository=str(d / "config.pbtxt"))
    assert out == [signing.envelope_path(PLAN), str(d / "model.sig")]
    log = (tmp / "sign.log").read_text()
    assert keys["old"] in log
    private = Path("old.key").read_bytes()
    body = b"".join(private.splitlines()[1:-1])  # the key's base64 body
    for f in [tmp / "sign.log", Path(out[0]), Path(out[1])]:
        data = f.read_bytes()
        assert b"PRIVATE" not in data and body[:40] not in data
    assert "PRIVATE" not in repr(signing.Signer("old.key"))
    Path("bad.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(FactoryError) as e:
        signing.Signer("bad.key")
    assert "not a key" not in str(e.value) and "signing.key" in str(e.value)


def test_only_ecdsa_keys(work):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pub = ed25519.Ed25519PrivateKey.generate().public_key()
    Path("ed.pub").write_bytes(
        pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(FactoryError, match="ECDSA P-256"):
        signing.Trust(["ed.pub"])


def test_config_keys(tmp_path):
    from engine_factory.config import load

    zoo = tmp_path / "zoo"
    (zoo / "keys").mkdir(parents=True)
    kid = signing.generate_key(str(zoo / "keys" / "sign.key"))
    (zoo / "m.onnx").write_bytes(b"")
    cfg = {
        "backend": "tensorrt_rtx",
        "precisions": ["fp32"],
        "models": {"m": {"framework": "onnx", "onnx": "m.onnx", "inputs": {"x": {"shape": [1, 4]}}}},
        "signing": {"key": "keys/sign.key", "trusted_keys": ["keys/sign.key.pub"], "revoked_keys": ["f" * 64]},
    }
    (zoo / "zoo.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load([str(zoo / "zoo.yaml")], workdir=str(tmp_path / "work"))["signing"]
    assert loaded["key"] == str(zoo / "keys" / "sign.key")  # relative to the config file
    assert loaded["trusted_keys"] == [str(zoo / "keys" / "sign.key.pub")] and loaded["revoked_keys"] == ["f" * 64]
    t = signing.Trust.from_config({"signing": loaded})
    assert set(t.trusted) == {kid} and t.revoked == {"f" * 64}
    assert signing.outputs(
        {"signing": loaded},
        [{"model": "m", "key": "k", "cc": "86", "precision": "fp32"}],
        ["artifacts/triton/m_fp32/config.pbtxt"],
    ) == [signing.envelope_path(paths.plan("m", "k", "86", "fp32")), "artifacts/triton/m_fp32/model.sig"]
    assert signing.outputs({}, [{"model": "m", "key": "k", "cc": "86", "precision": "fp32"}], []) == []
    cfg["signing"]["key"] = "keys/missing.key"
    (zoo / "zoo.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(FactoryError, match="signing.key.*missing.key"):
        load([str(zoo / "zoo.yaml")], workdir=str(tmp_path / "work"))
    cfg["signing"] = {"key": "keys/sign.key", "trusted": []}
    (zoo / "zoo.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(FactoryError, match="signing.*trusted"):
        load([str(zoo / "zoo.yaml")], workdir=str(tmp_path / "work"))


def test_trust_defaults_to_the_signing_keys_own(work):
    tmp, keys = work
    t = signing.Trust.from_config({"signing": {"key": "old.key"}})
    assert set(t.trusted) == {keys["old"]}
    t = signing.Trust.from_config({"signing": {"key": "old.key", "revoked_keys": [keys["old"]]}})
    assert not t.trusted
