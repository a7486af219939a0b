"""Signing in the real workflow: a zoo (one ONNX model, TensorRT-RTX, deployed to Triton) with `signing.key` gets an
envelope per plan and a model.sig per model directory, made by local rules; both verify against the key; the sign
logs name the key's id, never the key; a rerun does nothing, a new key re-signs (and only signs); without a key no
sign job is planned."""

import json
import shutil
from pathlib import Path

import yaml
from deploy.triton_zoo import write_models, zoo_config

from engine_factory import paths, signing
from engine_factory.ops import scheduled

from helpers import build_once, cli, dry_run


def write_zoo(root: Path, key: str | None = "keys/factory.key") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_models(root)
    cfg = zoo_config()
    cfg["models"] = {"fixed": cfg["models"]["fixed"]}
    if key:
        (root / "keys").mkdir(exist_ok=True)
        if not (root / key).exists():
            signing.generate_key(str(root / key))
        cfg["signing"] = {"key": key}  # relative to the zoo file
    path = root / "zoo.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_the_workflow_signs_plans_and_model_directories(tmp_path):
    built = build_once(tmp_path, write_zoo)
    work, zoo = built["work"], built["zoo"]
    plans = sorted(p.relative_to(work).as_posix() for p in work.glob(paths.plan_glob()))
    assert plans
    trust = signing.Trust([str(zoo / "keys/factory.key.pub")])
    for plan in plans:
        assert signing.verify_plan(plan, trust, base=str(work))["state"] == "signed", plan
    model_dir = work / paths.triton_model("fixed_fp32")
    assert signing.verify_model_dir(model_dir, trust)["state"] == "signed"
    kid = next(iter(trust.trusted))
    logs = list((work / "artifacts/logs/sign").glob("*.log"))
    assert len(logs) == len(plans) + 1 and all(kid in f.read_text() for f in logs)
    private = (zoo / "keys/factory.key").read_text()
    body = "".join(private.splitlines()[1:-1])[:40]
    assert not [f for f in work.rglob("*") if f.is_file() and body.encode() in f.read_bytes()]
    assert dry_run(work, configfile=built["config"]) == []  # signed: a rerun does nothing

    # verify checks every signature against the config's key; the envelopes and model.sig are records, not orphans
    proc = cli("verify", "-d", work, "--configfile", built["config"], "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report["signatures"]["plans"] == {"signed": len(plans)}, report["signatures"]
    assert report["signatures"]["repositories"] == {"signed": 1}
    # ready with the public key goes past the signature; a changed file in the directory is refused, exit 4
    pub = zoo / "keys/factory.key.pub"
    proc = cli("ready", model_dir, "--trusted-key", pub, "--json")
    assert json.loads(proc.stdout)["repositories"][0]["signature"]["state"] == "signed", proc.stdout
    assert proc.returncode != 4
    config = model_dir / "config.pbtxt"
    original = config.read_bytes()
    config.write_bytes(original + b"\n")
    proc = cli("ready", model_dir, "--trusted-key", pub, "--json")
    assert proc.returncode == 4 and json.loads(proc.stdout)["verdict"] == "refused", proc.stdout
    config.write_bytes(original)

    # the nightly's verify checks the signatures too: an envelope whose signature is not the key's fails it (before:
    # never checked; the factory keeps the file, as Snakemake has nothing to re-make)
    envelope = work / signing.envelope_path(plans[0])
    saved = envelope.read_bytes()
    doc = json.loads(saved)
    sig = doc["signatures"][0]["sig"]
    doc["signatures"][0]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    envelope.write_text(json.dumps(doc))
    code, summary = scheduled.run(str(work), [str(built["config"])], cores="1", extra=("--forcerun", "report"))
    assert not summary["verify"]["ok"] and code != 0, summary["verify"]
    envelope.write_bytes(saved)

    # a new key (rotation): every signature is made again, nothing else runs
    shutil.move(zoo / "keys/factory.key", zoo / "keys/old.key")
    shutil.move(zoo / "keys/factory.key.pub", zoo / "keys/old.key.pub")
    cfg = yaml.safe_load(built["config"].read_text())
    cfg["signing"] = {"key": "keys/new.key"}
    signing.generate_key(str(zoo / "keys/new.key"))
    built["config"].write_text(yaml.safe_dump(cfg))
    assert {rule for rule, _ in dry_run(work, configfile=built["config"])} - {"all"} == {"sign_plan", "sign_repository"}

    # without a key: no sign job
    cfg.pop("signing")
    built["config"].write_text(yaml.safe_dump(cfg))
    assert dry_run(work, configfile=built["config"]) == []


def test_sign_rules_are_local():
    text = (Path(__file__).resolve().parents[2] / "workflow/rules/sign.smk").read_text()
    block = text.split("localrules:", 1)[1].split("\n\n", 1)[0]
    assert "sign_plan" in block and "sign_repository" in block
    assert json.dumps(signing.DEFAULTS)  # the section's defaults stay plain data (they reach the DAG's params)
