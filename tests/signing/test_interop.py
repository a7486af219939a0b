"""The factory's signatures verify with tools the project did not write: the `model_signing` CLI (OpenSSF
model-signing 1.1.1) on a signed Triton model directory, securesystemslib's DSSE verifier on a plan's envelope, and
the DSSE v1 protocol computed by hand (PAE over the payload, ECDSA P-256 with cryptography) — and each refuses what
was changed after signing."""

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from engine_factory import intoto, paths, signing

MODEL_SIGNING = Path(sys.executable).with_name("model_signing")
PLAN = "artifacts/m/plans/rtx-1.7.1.116/sm86/fp32/model.plan"


def make(tmp: Path):
    signing.generate_key(str(tmp / "f.key"))
    Path(PLAN).parent.mkdir(parents=True)
    Path(PLAN).write_bytes(b"plan bytes")
    Path(paths.intoto(PLAN)).write_text(
        json.dumps(
            {
                "_type": intoto.STATEMENT_TYPE,
                "predicateType": intoto.PREDICATE_TYPE,
                "predicate": {},
                "subject": [{"name": PLAN, "digest": {"sha256": hashlib.sha256(b"plan bytes").hexdigest()}}],
            }
        )
    )
    d = tmp / "artifacts/triton/m_fp32"
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text('name: "m_fp32"\n')
    (d / "1" / "model.sm86.plan").write_bytes(b"plan bytes")
    signer = signing.Signer(str(tmp / "f.key"))
    signing.sign_plan(PLAN, signer)
    signing.sign_model_dir(d, signer)
    return d


def cli_verify(d: Path, pub: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MODEL_SIGNING), "verify", "key", str(d), "--signature", str(d / "model.sig"), "--public_key", str(pub)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_model_signing_cli_verifies_the_model_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = make(tmp_path)
    ok = cli_verify(d, tmp_path / "f.key.pub")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "succeeded" in (ok.stdout + ok.stderr).lower()
    other = tmp_path / "o.key"
    signing.generate_key(str(other))
    assert cli_verify(d, tmp_path / "o.key.pub").returncode != 0  # another key
    (d / "1" / "model.sm86.plan").write_bytes(b"patched")
    assert cli_verify(d, tmp_path / "f.key.pub").returncode != 0  # a changed plan


def test_model_signing_api_with_a_uri_signer(tmp_path, monkeypatch):
    from model_signing import verifying

    monkeypatch.chdir(tmp_path)
    d = make(tmp_path)
    signing.sign_model_dir(d, signing.Signer(f"file2:{tmp_path}/f.key", str(tmp_path / "f.key.pub")))
    verifying.Config().use_elliptic_key_verifier(public_key=tmp_path / "f.key.pub").verify(d, d / "model.sig")


def test_securesystemslib_verifies_the_envelope(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    env = Envelope.from_dict(json.loads(Path(signing.envelope_path(PLAN)).read_text()))
    pub = serialization.load_pem_public_key((tmp_path / "f.key.pub").read_bytes())
    key = SSlibKey.from_crypto(pub, keyid=env.signatures and next(iter(env.signatures)))
    assert list(env.verify([key], 1)) == [key.keyid]
    statement = json.loads(env.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["digest"]["sha256"] == hashlib.sha256(Path(PLAN).read_bytes()).hexdigest()


def test_dsse_protocol_by_hand(tmp_path, monkeypatch):
    """https://github.com/secure-systems-lab/dsse/blob/v1.0.0/protocol.md: sig over
    PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    import pytest
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    env = json.loads(Path(signing.envelope_path(PLAN)).read_text())
    body, ptype = base64.b64decode(env["payload"]), env["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(body), body)
    pub = serialization.load_pem_public_key((tmp_path / "f.key.pub").read_bytes())
    sig = base64.b64decode(env["signatures"][0]["sig"])
    pub.verify(sig, pae, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        pub.verify(sig, pae.replace(b"plan", b"PLAN"), ec.ECDSA(hashes.SHA256()))
