"""Checked before deserializing: `ready` (deploy/readiness.py, ops/ready.py) refuses a Triton model directory whose
model.sig does not hold (unsigned, a plan or config changed, forged by another key, a retired key, a revoked key)
with exit status 4 before a plan's header is read; the factory's own runtime (backends/runtime.py) verifies the
plan's envelope against the very bytes it hands TensorRT and refuses before deserializing. Plans are stand-in bytes;
the header reader and TensorRT are replaced by tripwires that fail the test if anything reaches them."""

import argparse
import hashlib
import json
from pathlib import Path

import pytest
from test_signing import PLAN, statement_for, trust

from engine_factory import paths, signing
from engine_factory.backends import header, runtime
from engine_factory.deploy import readiness
from engine_factory.ops import ready as ready_op

HOST = {"gpus": [{"index": 0, "compute_capability": "8.6"}], "backends": {"tensorrt": "10.13.0.35"}}


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("old", "new", "thief"):
        signing.generate_key(str(tmp_path / f"{name}.key"))
    d = tmp_path / "artifacts/triton/m_fp32"
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text(
        'name: "m_fp32"\nplatform: "tensorrt_plan"\ncc_model_filenames [{ key: "8.6" value: "model.sm86.plan" }]\n'
    )
    (d / "1" / "model.sm86.plan").write_bytes(b"plan bytes")
    return d


@pytest.fixture
def tripwire(monkeypatch):
    """Any read of a plan's header (the first interpretation of its bytes) fails the test."""

    def boom(*a, **k):
        raise AssertionError("a plan was read before its signature was checked")

    monkeypatch.setattr(header, "read_header", boom)


def check(d, t):
    return readiness.check_repository(d, host=HOST, trust=t)


def test_a_signed_directory_goes_on_to_the_header_checks(work):
    signing.sign_model_dir(work, signing.Signer("old.key"))
    report = check(work, trust("old"))
    assert report["signature"]["state"] == "signed"
    assert report["verdict"] == "needs rebuild"  # the stand-in bytes are no plan: the header check ran
    assert "damaged" in report["plans"][0]["reason"]
    no_keys = readiness.check_repository(work, host=HOST)  # no trusted key given: not checked, said so
    assert no_keys["signature"]["state"] == "not checked"


@pytest.mark.parametrize(
    "damage, state",
    [
        ("unsigned", "unsigned"),
        ("plan", "tampered"),
        ("config", "tampered"),
        ("extra file", "tampered"),
        ("forged", "signed by an unknown key"),
        ("retired", "signed by an unknown key"),
        ("revoked", "revoked key"),
        ("garbage sig", "bad signature"),
    ],
)
def test_ready_refuses_before_reading_a_plan(work, tripwire, damage, state):
    t = trust("old")
    if damage != "unsigned":
        signer = {"forged": "thief", "retired": "old", "revoked": "old"}.get(damage, "old")
        signing.sign_model_dir(work, signing.Signer(f"{signer}.key"))
    if damage == "plan":
        (work / "1" / "model.sm86.plan").write_bytes(b"plan bytes, patched")
    elif damage == "config":
        (work / "config.pbtxt").write_text((work / "config.pbtxt").read_text() + "max_batch_size: 8\n")
    elif damage == "extra file":
        (work / "1" / "libevil_plugin.so").write_bytes(b"\x7fELF")
    elif damage == "retired":  # rotated: the new key is trusted, the old one dropped
        t = trust("new")
    elif damage == "revoked":
        t = trust("new", revoked=["old"])
    elif damage == "garbage sig":
        (work / "model.sig").write_text("{not json")
    report = check(work, t)
    assert (report["verdict"], report["signature"]["state"]) == ("refused", state), report["reason"]
    assert [p["answer"] for p in report["plans"]] == ["refused"]


def test_the_command_exits_4_and_takes_keys_from_flags(work, tripwire, capsys, monkeypatch):
    monkeypatch.setattr(readiness, "check_repository", _with_host(readiness.check_repository))
    monkeypatch.setattr(ready_op, "check_repository", readiness.check_repository)
    args = argparse.Namespace(
        repository=[str(work)],
        runtime_version=None,
        trusted_key=["old.key.pub"],
        revoked_key=[],
        configfile=None,
        json=False,
    )
    assert ready_op.main(args) == 4
    assert "refused" in capsys.readouterr().out
    signing.sign_model_dir(work, signing.Signer("thief.key"))
    assert ready_op.main(args) == 4
    assert "signed by an unknown key" in capsys.readouterr().out


def _with_host(f):
    return lambda d, **kw: f(d, **{**kw, "host": HOST})


# ------------------------------------------------------------------------------------------------ the runtime
class _Trt:
    """A stand-in TensorRT whose deserialize fails the test when called, or records the bytes it was given."""

    __name__, __version__ = "tensorrt", "10.13.0.35"
    given: list = []
    allow = False

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            if not _Trt.allow:
                raise AssertionError("deserialized a plan that was not verified")
            _Trt.given.append(bytes(data))
            return None  # "cannot load": the run stops there, not-run


@pytest.fixture
def plan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("old", "thief"):
        signing.generate_key(str(tmp_path / f"{name}.key"))
    Path(PLAN).parent.mkdir(parents=True)
    Path(PLAN).write_bytes(b"plan bytes")
    Path(paths.intoto(PLAN)).write_text(json.dumps(statement_for(PLAN, b"plan bytes")))
    monkeypatch.setattr(runtime, "load_backend", lambda b: argparse.Namespace(module=_Trt))
    monkeypatch.setattr(runtime, "get_logger", lambda trt: argparse.Namespace(errors=lambda: []))
    monkeypatch.setattr(runtime, "make_cuda", lambda kind, dev: argparse.Namespace(name="fake", close=lambda: None))
    _Trt.given, _Trt.allow = [], False
    return Path(PLAN)


def execute(t):
    return runtime.execute_plan(
        PLAN, backend="tensorrt", compute_capability="8.6", inputs={}, expected={}, tolerance={}, host=HOST, trust=t
    )


@pytest.mark.parametrize("damage", ["unsigned", "plan", "statement", "envelope", "forged", "revoked"])
def test_the_runtime_refuses_before_deserializing(plan, damage):
    t = trust("old", revoked=["old"]) if damage == "revoked" else trust("old")
    if damage != "unsigned":
        signing.sign_plan(PLAN, signing.Signer("thief.key" if damage == "forged" else "old.key"))
    if damage == "plan":
        plan.write_bytes(b"plan bytes, patched")
    elif damage == "statement":
        st = json.loads(Path(paths.intoto(PLAN)).read_text())
        st["predicate"]["x"] = 2
        Path(paths.intoto(PLAN)).write_text(json.dumps(st))
    elif damage == "envelope":
        env = json.loads(Path(signing.envelope_path(PLAN)).read_text())
        env["signatures"][0]["sig"] = env["signatures"][0]["sig"][:-8] + "AAAAAAAA"
        Path(signing.envelope_path(PLAN)).write_text(json.dumps(env))
    res = execute(t)
    assert res["status"] == "fail" and res["reason"].startswith("refused before deserializing"), res
    assert res["signature"]["state"] != "signed"


def test_the_runtime_deserializes_the_bytes_it_verified(plan):
    signing.sign_plan(PLAN, signing.Signer("old.key"))
    _Trt.allow = True
    res = execute(trust("old"))
    assert res["status"] == "not-run" and "cannot load this plan" in res["reason"], res
    assert [hashlib.sha256(b).hexdigest() for b in _Trt.given] == [hashlib.sha256(b"plan bytes").hexdigest()]


# ------------------------------------------------------------------------------------- the factory's validate jobs
def test_validate_jobs_on_a_gpu_host_check_each_plans_envelope_before_running_it(tmp_path, monkeypatch):
    """Where signing is on and public keys are configured, a validate job waits for the plans' envelopes (inputs)
    and hands the runtime the trusted keys (before: validation ran plans unchecked); a GPU node never needs the
    private key, so with that alone nothing changes."""
    from deploy.triton_zoo import zoo_config

    from engine_factory import stages
    from engine_factory.config import check
    from engine_factory.factory import resolve
    from engine_factory.validation import validate

    monkeypatch.chdir(tmp_path)
    signing.generate_key(str(tmp_path / "f.key"))
    host = {"gpus": [{"index": 0, "compute_capability": "8.9"}], "hostname": "gpu"}
    cfg = check(zoo_config(), check_files=False)
    cfg["signing"] = {"key": str(tmp_path / "f.key"), "trusted_keys": [str(tmp_path / "f.key.pub")]}
    f = resolve(cfg, host)
    ts = f.target_set("validate", precision="fp32", cc="89")
    w = {"model": "dyn", "key": f.key, "precision": "fp32", "targets": ts.tag}
    plan = paths.plan("dyn", f.key, "89", "fp32")
    assert f.inputs("validate", w)["envelope_sm89"] == signing.envelope_path(plan)
    settings = f.settings("validate", w)
    assert settings["trust"] == {"trusted_keys": [str(tmp_path / "f.key.pub")], "revoked_keys": []}

    seen = {}

    def fake_validate_plan(out, **kw):  # what the stage hands the validation (the runtime gets it from there)
        seen.update(kw)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("{}")
        return {"status": "not-run"}

    monkeypatch.setattr(validate, "validate_plan", fake_validate_plan)
    monkeypatch.setattr(stages, "_result", lambda *a: None)
    stages._validate_one({"parity": "p", "golden": "g", "onnx": "o"}, "v.json", plan, settings, "8.9")
    assert isinstance(seen["trust"], signing.Trust) and len(seen["trust"].trusted) == 1

    cfg["signing"] = {"key": str(tmp_path / "f.key")}  # the private key alone: the nodes would need it
    f = resolve(cfg, host)
    assert "envelope_sm89" not in f.inputs("validate", w) and "trust" not in f.settings("validate", w)
