"""Signed plans and Triton model directories: who made an engine, checked before anything deserializes it.

TensorRT's security guidance calls serialized engines executable artifacts (a plan can carry plugin code) and says to
check their integrity before deserializing; `getEngineValidity` is no tamper detection. Two standard formats, so
tools the project did not write can check them (tests/signing/test_interop.py):

  <plan>.intoto.dsse.json   the plan's in-toto statement (scripts/engine_factory/intoto.py) in a DSSE envelope
                            (securesystemslib's `Envelope`; payloadType application/vnd.in-toto+json)
  <model dir>/model.sig     a Triton model directory signed as a whole by OpenSSF `model-signing` (key-based,
                            offline): a Sigstore bundle over a DSSE in-toto statement of every file's sha256

Keys are ECDSA (P-256/384/521: the curves model-signing's key signer takes). A key's id is the sha256 of its public
key as SubjectPublicKeyInfo PEM: model-signing writes exactly that as the bundle's key hint, and the envelopes carry
it as their keyid, so one id names a key everywhere (revocation lists, reports).

The signer is the config's `signing.key`: a PEM private key file (the default), or a securesystemslib signer URI
(`file2:`, `gcpkms:`, `awskms:`, `azurekms:`, `hsm:` ... where the installed securesystemslib extras support it),
then with `signing.public_key`. Only the key's path or URI travels in settings; its bytes stay in this process.
Signing runs in a local rule (workflow/rules/sign.smk), where the key is: Slurm nodes never need it.

Verification trusts only `signing.trusted_keys` (public keys; default: the signing key's own) and refuses
`signing.revoked_keys` (public key files or key ids) whatever else says. One answer per artifact:

  signed                    a trusted key's signature holds and the signed digests are the bytes on disk
  unsigned                  no envelope / no model.sig
  bad signature             unreadable, or a signature that does not verify under the key it names
  signed by an unknown key  a key that is not trusted (e.g. retired: dropped from trusted_keys after a rotation)
  revoked key               a key on the revocation list (a compromised key: its signatures are refused)
  tampered                  the signature holds, but the plan, statement or a model-directory file is not what
                            was signed
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path

from . import atomic, paths
from .errors import FactoryError

ENVELOPE_SUFFIX = ".intoto.dsse.json"
MODEL_SIGNATURE = "model.sig"  # model-signing's own default name; left out of the directory's manifest
PAYLOAD_TYPE = "application/vnd.in-toto+json"
SIGNED, UNSIGNED, BAD, UNKNOWN, REVOKED, TAMPERED = (
    "signed",
    "unsigned",
    "bad signature",
    "signed by an unknown key",
    "revoked key",
    "tampered",
)
STATES = (SIGNED, UNSIGNED, BAD, UNKNOWN, REVOKED, TAMPERED)
DEFAULTS = {"key": None, "public_key": None, "trusted_keys": [], "revoked_keys": []}
PASSWORD_ENV = "ENGINE_FACTORY_SIGNING_PASSWORD"  # an encrypted PEM key's password: never a config value
_URI = re.compile(r"^[a-z][a-z0-9+.-]*:")
_KEY_ID = re.compile(r"^[0-9a-f]{64}$")
_CURVES = {"secp256r1": "ecdsa-sha2-nistp256", "secp384r1": "ecdsa-sha2-nistp384", "secp521r1": "ecdsa-sha2-nistp521"}


def envelope_path(plan: str) -> str:
    return f"{plan}{ENVELOPE_SUFFIX}"


def plan_of_envelope(path: str) -> str:
    return str(path)[: -len(ENVELOPE_SUFFIX)]


def model_signature(model_dir) -> str:
    return str(Path(model_dir) / MODEL_SIGNATURE)


def settings(cfg: dict) -> dict:
    return {**DEFAULTS, **(cfg.get("signing") or {})}


def enabled(cfg: dict) -> bool:
    return bool(settings(cfg)["key"])


def checking(cfg: dict) -> bool:
    """Signatures are checked where a signing key or trusted public keys are configured (a verifying host may hold
    only the public keys)."""
    s = settings(cfg)
    return bool(s["key"] or s["trusted_keys"])


def is_uri(key: str) -> bool:
    return bool(_URI.match(key)) and not os.path.exists(key)


def resolve_paths(section: dict, resolve) -> dict:
    """The section with its key files passed through `resolve` (config.py: relative to the config file); signer URIs
    and key ids are kept as they are."""
    out = dict(section)
    for k in ("key", "public_key"):
        if isinstance(out.get(k), str) and not _URI.match(out[k]):
            out[k] = resolve(out[k])
    for k in ("trusted_keys", "revoked_keys"):
        if isinstance(out.get(k), list):
            out[k] = [resolve(v) if isinstance(v, str) and not _KEY_ID.match(v) else v for v in out[k]]
    return out


def check(cfg: dict) -> None:
    """Config time: the keys named are readable and of a curve model-signing takes (one line naming the key)."""
    s = settings(cfg)
    for k in ("public_key",):
        if s[k]:
            load_public_key(s[k])
    for i, path in enumerate(s["trusted_keys"]):
        if not os.path.isfile(path):
            raise FactoryError("trusted public key file not found", key=f"signing.trusted_keys[{i}]", path=path)
    for i, entry in enumerate(s["revoked_keys"]):
        if not _KEY_ID.match(entry) and not os.path.isfile(entry):
            raise FactoryError(
                "neither a key id (64 hex digits) nor a public key file", key=f"signing.revoked_keys[{i}]", path=entry
            )
    if s["key"] and not is_uri(s["key"]) and not os.path.isfile(s["key"]):
        raise FactoryError("signing key file not found", key="signing.key", path=s["key"])


# ------------------------------------------------------------------------------------------------ keys
def key_id(public_key) -> str:
    """sha256 of the SubjectPublicKeyInfo PEM: model-signing's key hint, our envelopes' keyid."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _check_curve(public_key, where: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name not in _CURVES:
        raise FactoryError(
            "signing keys are ECDSA P-256, P-384 or P-521 (model-signing's key signer takes no other)", path=where
        )
    return _CURVES[public_key.curve.name]


def load_public_key(path: str):
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise FactoryError(f"not a readable PEM public key ({type(e).__name__})", path=str(path)) from None
    _check_curve(key, str(path))
    return key


def sslib_key(public_key):
    """The securesystemslib key of a cryptography public key, with our key id."""
    from securesystemslib.signer import SSlibKey

    return SSlibKey.from_crypto(public_key, keyid=key_id(public_key), scheme=_check_curve(public_key, "public key"))


def generate_key(private_path: str, public_path: str | None = None) -> str:
    """A new P-256 key: PKCS#8 PEM private key (mode 0600) and its public key beside it (`<private>.pub` by default).
    Returns the key id. The same as `openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8
    -nocrypt`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite a key
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    Path(public_path or f"{private_path}.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key_id(key.public_key())


class Signer:
    """The configured signer: a securesystemslib signer (for DSSE) and what model-signing needs for a directory."""

    def __init__(self, key: str, public_key: str | None = None):
        from cryptography.hazmat.primitives import serialization
        from securesystemslib.signer import CryptoSigner
        from securesystemslib.signer import Signer as SslibSigner

        self.key = key
        if not is_uri(key):  # a PEM key file: the public key comes from it
            password = os.environ.get(PASSWORD_ENV)
            try:
                private = serialization.load_pem_private_key(
                    Path(key).read_bytes(), password.encode() if password else None
                )
            except (OSError, ValueError, TypeError) as e:  # the message could quote key material: not shown
                raise FactoryError(
                    f"signing key is not a readable PEM private key ({type(e).__name__}; an "
                    f"encrypted one takes its password from ${PASSWORD_ENV})",
                    key="signing.key",
                    path=key,
                ) from None
            self.public = private.public_key()
            self.sslib = CryptoSigner(private, sslib_key(self.public))
            self.key_file = key
        else:
            if not public_key:
                raise FactoryError(
                    "a signer URI needs signing.public_key (the PEM public key of that signer)",
                    key="signing.public_key",
                )
            self.public = load_public_key(public_key)
            try:
                self.sslib = SslibSigner.from_priv_key_uri(key, sslib_key(self.public))
            except Exception as e:  # securesystemslib raises per scheme; the URI names no secret
                raise FactoryError(
                    f"securesystemslib cannot load this signer: {type(e).__name__}: {e}", key="signing.key"
                ) from None
            self.key_file = None
        self.key_id = key_id(self.public)

    def __repr__(self) -> str:  # never the key material
        return f"Signer({self.key_id[:12]}…)"


def load_signer(cfg: dict) -> Signer:
    s = settings(cfg)
    if not s["key"]:
        raise FactoryError("no signing key is configured", key="signing.key")
    return Signer(s["key"], s["public_key"])


class Trust:
    """The public keys signatures are checked against: trusted ones by id, revoked ids (with the key where given)."""

    def __init__(self, trusted: list[str] = (), revoked: list[str] = ()):
        self.trusted = {}
        for path in trusted:
            key = load_public_key(path)
            self.trusted[key_id(key)] = key
        self.revoked, self.revoked_keys = set(), {}
        for entry in revoked:
            if _KEY_ID.match(str(entry)):
                self.revoked.add(str(entry))
            else:
                key = load_public_key(entry)
                self.revoked.add(key_id(key))
                self.revoked_keys[key_id(key)] = key
        for kid in self.revoked:  # revocation wins over trust
            self.trusted.pop(kid, None)

    @classmethod
    def from_config(cls, cfg: dict) -> Trust:
        s = settings(cfg)
        trusted = list(s["trusted_keys"])
        if not trusted and s["key"]:  # the signing key's own public key
            trusted = [s["public_key"]] if s["public_key"] else []
            if not trusted and not is_uri(s["key"]):
                t = cls((), s["revoked_keys"])
                kid_key = Signer(s["key"]).public
                if key_id(kid_key) not in t.revoked:
                    t.trusted[key_id(kid_key)] = kid_key
                return t
        return cls(trusted, s["revoked_keys"])

    def _revoked_signer(self, verify) -> str | None:
        """The id of a revoked key (known by its public key) that `verify(key)` accepts, if any."""
        for kid, key in self.revoked_keys.items():
            try:
                verify(key)
                return kid
            except Exception:
                continue
        return None


# ------------------------------------------------------------------------------------------------ DSSE
def sign_statement(statement: str, signer: Signer, out: str) -> str:
    """Wrap the statement file's exact bytes in a DSSE envelope signed by `signer`; written atomically to `out`."""
    from securesystemslib.dsse import Envelope

    payload = Path(statement).read_bytes()
    doc = json.loads(payload)
    if doc.get("_type") != "https://in-toto.io/Statement/v1":
        raise FactoryError("not an in-toto Statement v1", path=statement)
    env = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    env.sign(signer.sslib)
    atomic.write_json(out, env.to_dict())
    return out


def sign_plan(plan: str, signer: Signer) -> str:
    return sign_statement(paths.intoto(plan), signer, envelope_path(plan))


def _result(state: str, detail: str, **more) -> dict:
    return {"state": state, "detail": detail, **more}


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_envelope(envelope: str, trust: Trust) -> dict:
    """The envelope's signatures against `trust`: {state, detail, keyid, statement (the signed payload, parsed)}.
    Tampering with what it describes is the caller's (verify_plan's) question."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import Signature

    try:
        with open(envelope, "rb") as f:
            env = Envelope.from_dict(json.load(f))
    except FileNotFoundError:
        return _result(UNSIGNED, "no DSSE envelope")
    except Exception as e:
        return _result(BAD, f"not a DSSE envelope ({type(e).__name__})")
    if env.payload_type != PAYLOAD_TYPE:
        return _result(BAD, f"payloadType is {env.payload_type!r}, not {PAYLOAD_TYPE}")
    if not env.signatures:
        return _result(UNSIGNED, "DSSE envelope without signatures")
    pae = env.pae()
    answers = []
    for kid, sig in env.signatures.items():
        if kid in trust.revoked:
            answers.append((REVOKED, kid, f"signed by revoked key {kid[:12]}…"))
        elif kid in trust.trusted:
            try:
                sslib_key(trust.trusted[kid]).verify_signature(sig, pae)
                answers.append((SIGNED, kid, f"signed by trusted key {kid[:12]}…"))
            except Exception:
                answers.append((BAD, kid, f"the signature does not verify under key {kid[:12]}… it names"))
        else:
            revoked = trust._revoked_signer(  # securesystemslib matches keyids first: the probe takes the key's own
                lambda key, sig=sig: sslib_key(key).verify_signature(Signature(key_id(key), sig.signature), pae)
            )
            answers.append(
                (REVOKED, revoked, f"signed by revoked key {revoked[:12]}…")
                if revoked
                else (UNKNOWN, kid, f"signed by key {kid[:12]}…, which is not trusted")
            )
    state, kid, detail = min(answers, key=lambda a: (SIGNED, REVOKED, BAD, UNKNOWN).index(a[0]))
    if state != SIGNED:
        return _result(state, detail, keyid=kid)
    try:
        statement = json.loads(env.payload)
    except ValueError:
        return _result(BAD, "signed payload is not JSON", keyid=kid)
    return _result(SIGNED, detail, keyid=kid, statement=statement, payload=env.payload)


def verify_plan(plan: str, trust: Trust, *, base: str = ".", data: bytes | None = None) -> dict:
    """A plan against its signed statement: the envelope's signature, then the signed subject's sha256 against the
    plan's bytes (`data`, when the caller holds the bytes it will deserialize) and the statement on disk against the
    signed one. Paths are relative to `base` (the statement names the plan by its workflow path)."""
    full = Path(base) / plan
    res = verify_envelope(str(Path(base) / envelope_path(plan)), trust)
    if res["state"] != SIGNED:
        return res
    st, payload = res.pop("statement"), res.pop("payload")
    try:
        subject = st["subject"][0]
        signed_digest, name = subject["digest"]["sha256"], subject["name"]
    except (TypeError, KeyError, IndexError):
        return _result(BAD, "signed payload is not an in-toto statement with a sha256 subject", keyid=res["keyid"])
    if name != plan:
        return _result(TAMPERED, f"the signed statement is for {name}, not this plan", keyid=res["keyid"])
    found = hashlib.sha256(data).hexdigest() if data is not None else _sha256(full) if full.exists() else None
    if found != signed_digest:
        return _result(
            TAMPERED,
            f"plan sha256 {str(found)[:12]}… is not the signed {signed_digest[:12]}…",
            keyid=res["keyid"],
            signed_sha256=signed_digest,
        )
    statement = Path(base) / paths.intoto(plan)
    if statement.exists() and statement.read_bytes() != payload:
        return _result(
            TAMPERED,
            f"{paths.intoto(plan)} differs from the statement that was signed",
            keyid=res["keyid"],
            signed_sha256=signed_digest,
        )
    return {**res, "signed_sha256": signed_digest, "statement": st}


# ------------------------------------------------------------------------------------------------ model directories
def _hashing_config():
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=[MODEL_SIGNATURE])


def sign_model_dir(model_dir, signer: Signer) -> str:
    """Sign every file of a Triton model directory with model-signing (Sigstore bundle, key-based, offline) into
    `<model_dir>/model.sig`, written under a temporary name and renamed."""
    from model_signing import signing as ms

    model_dir = Path(model_dir)
    out = model_signature(model_dir)
    with atomic.atomic_path(out) as tmp:
        if signer.key_file:  # the library's own key signer
            cfg = ms.Config().set_hashing_config(_hashing_config())
            password = os.environ.get(PASSWORD_ENV)
            cfg.use_elliptic_key_signer(private_key=signer.key_file, password=password)
            cfg.sign(model_dir, tmp)
        else:  # a URI signer (KMS, HSM): the same bundle, the signature made by securesystemslib's signer
            _bundle_signer(signer).sign(_payload(model_dir)).write(Path(tmp))
    return out


def _payload(model_dir: Path):
    from model_signing._signing import signing as ms_signing

    return ms_signing.Payload(_hashing_config().hash(model_dir))


def _bundle_signer(signer: Signer):
    """model-signing's EC key signer with the signature made by a securesystemslib signer: the bundle is the one
    model-signing writes (verification material: the public key's hint), so its verifier takes it as is."""
    from google.protobuf import json_format
    from model_signing._signing import sign_ec_key
    from model_signing._signing import sign_sigstore_pb as sigstore_pb
    from model_signing._signing import signing as ms_signing
    from sigstore_models import intoto as intoto_pb
    from sigstore_models.bundle import v1 as bundle_pb

    class BundleSigner(sign_ec_key.Signer):
        def __init__(self, outer: Signer):  # no private key here: it stays where the URI points
            self._outer = outer
            self._private_key = _PublicOnly(outer.public)

        def sign(self, payload):
            raw = json_format.MessageToJson(payload.statement.pb).encode("utf-8")
            sig = bytes.fromhex(self._outer.sslib.sign(sigstore_pb.pae(raw)).signature)
            envelope = intoto_pb.Envelope(
                payload=base64.b64encode(raw),
                payload_type=ms_signing._IN_TOTO_JSON_PAYLOAD_TYPE,
                signatures=[intoto_pb.Signature(sig=base64.b64encode(sig), keyid="")],
            )
            return sigstore_pb.Signature(
                bundle_pb.Bundle(
                    media_type=sigstore_pb._BUNDLE_MEDIA_TYPE,
                    verification_material=self._get_verification_material(),
                    dsse_envelope=envelope,
                )
            )

    return BundleSigner(signer)


class _PublicOnly:
    """Stands in for the private key where model-signing only asks it for its public key."""

    def __init__(self, public):
        self._public = public

    def public_key(self):
        return self._public


def _bundle_hint(sig_path: str) -> str | None:
    with open(sig_path) as f:
        bundle = json.load(f)
    return ((bundle.get("verificationMaterial") or {}).get("publicKey") or {}).get("hint")


def _verify_dir_with(model_dir: Path, key) -> None:
    """model-signing's verifier with one public key (it reads the key from a file)."""
    import tempfile

    from cryptography.hazmat.primitives import serialization
    from model_signing import verifying

    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with tempfile.NamedTemporaryFile(suffix=".pub") as f:
        f.write(pem)
        f.flush()
        verifying.Config().use_elliptic_key_verifier(public_key=f.name).verify(model_dir, model_signature(model_dir))


def _mismatch(message: str) -> str:
    """model-signing's manifest difference, without its digests' bytes: which files changed, appeared, went."""
    changed = re.findall(r"Hash mismatch for '([^']+)'", message)
    others = re.findall(r"((?:Extra|Missing) files [^\]\"]*)", message)
    parts = ([f"changed since signing: {', '.join(changed)}"] if changed else []) + others
    return "; ".join(parts)[:300] or message.splitlines()[0][:300]


def verify_model_dir(model_dir, trust: Trust) -> dict:
    """A Triton model directory against its model.sig: the key, the signature, then every file's sha256 (a file
    added, removed or changed is `tampered`)."""
    model_dir = Path(model_dir)
    sig = model_signature(model_dir)
    if not os.path.exists(sig):
        return _result(UNSIGNED, f"no {MODEL_SIGNATURE}")
    try:
        hint = _bundle_hint(sig)
    except (OSError, ValueError, AttributeError) as e:
        return _result(BAD, f"{MODEL_SIGNATURE} is not a Sigstore bundle ({type(e).__name__})")
    if hint in trust.revoked:
        return _result(REVOKED, f"signed by revoked key {hint[:12]}…", keyid=hint)
    candidates = [hint] if hint in trust.trusted else [] if hint else list(trust.trusted)
    if not candidates:
        revoked = trust._revoked_signer(lambda key: _verify_dir_with(model_dir, key))
        if revoked:
            return _result(REVOKED, f"signed by revoked key {revoked[:12]}…", keyid=revoked)
        return _result(UNKNOWN, f"signed by key {str(hint)[:12]}…, which is not trusted", keyid=hint)
    last = None
    for kid in candidates:
        try:
            _verify_dir_with(model_dir, trust.trusted[kid])
            return _result(SIGNED, f"signed by trusted key {kid[:12]}…; every file is what was signed", keyid=kid)
        except ValueError as e:
            if str(e).startswith("Signature mismatch"):  # the signature holds, the files differ
                return _result(TAMPERED, _mismatch(str(e)), keyid=kid)
            last = e
        except Exception as e:  # cryptography's InvalidSignature, a malformed bundle
            last = e
    return _result(BAD, f"the signature does not verify ({type(last).__name__})", keyid=hint)


# ------------------------------------------------------------------------------------------------ a whole tree
def check_artifacts(base, plans: list[str], model_dirs: list[str], trust: Trust | None) -> list[dict]:
    """Every plan's envelope and every Triton model directory's model.sig (paths relative to `base`), one answer
    each: {path (the plan / the model directory), record (the envelope / model.sig), state, detail, blame (the file a
    `tampered` answer points at: the plan when its bytes are not the signed ones, else the statement or model.sig)}.
    Without `trust` nothing is verified: what has a signature file says `not checked`, the rest `unsigned`."""
    base = Path(base)
    out = []
    for plan in plans:
        env = envelope_path(plan)
        if trust is None:
            res = _result("not checked" if (base / env).exists() else UNSIGNED, "no trusted keys configured")
        else:
            res = verify_plan(plan, trust, base=str(base))
            res.pop("statement", None)
        blame = plan if res.get("signed_sha256") and res["signed_sha256"] != _digest_or_none(base / plan) else env
        if res["state"] == TAMPERED and blame == env:
            blame = paths.intoto(plan)  # the signature holds, the plan is the signed one: the statement was changed
        out.append({"path": plan, "record": env, "blame": blame, **res})
    for d in model_dirs:
        sig = model_signature(d)
        if trust is None:
            res = _result("not checked" if (base / sig).exists() else UNSIGNED, "no trusted keys configured")
        else:
            res = verify_model_dir(base / d, trust)
        out.append({"path": d, "record": sig, "blame": sig, **res})
    return out


def _digest_or_none(path: Path) -> str | None:
    return _sha256(path) if path.is_file() else None


# ------------------------------------------------------------------------------------------------ the stage
def outputs(cfg: dict, jobs: list[dict], deploy_configs: list[str]) -> list[str]:
    """What the workflow's rule all asks of the sign rules: nothing without a signing key; else an envelope per plan
    job and a model.sig per Triton repository."""
    if not enabled(cfg):
        return []
    plans = [paths.plan(j["model"], j["key"], j["cc"], j["precision"]) for j in jobs]
    return [envelope_path(p) for p in plans] + [model_signature(os.path.dirname(c)) for c in deploy_configs]


def sign_stage(log: str, *, cfg: dict, plans: list[str] = (), repository: str | None = None) -> list[str]:
    """The sign rules' body (workflow/rules/sign.smk): an envelope per plan (its statement exists: the build stage
    wrote it) and/or the model directory of a deployed config.pbtxt. The log names what was signed and the key's id,
    never the key."""
    signer = load_signer(cfg)
    out = [sign_plan(p, signer) for p in plans]
    if repository:
        out.append(sign_model_dir(Path(repository).parent, signer))
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.writelines(f"signed {p} with key {signer.key_id}\n" for p in out)
    return out
