"""Triton repositories as a user gets them: a zoo of three ONNX models (dynamic batch + dynamic non-batch dim; two
inputs and two outputs; fixed shape) in a temporary folder outside the checkout, built with TensorRT-RTX through the
real workflow; each config.pbtxt parsed back with Triton's own schema (tritonclient's ModelConfig) and compared field
by field; provenance and verify (a tampered plan, repair); the policy (a failed validation never ships); the
load-time check's answers on faked hosts (FACTORY_HOST_FACTS)."""

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from engine_factory import paths
from engine_factory.deploy.triton import read_config

from helpers import build_once, cli, dry_run
from helpers import snakemake as run_snakemake
from triton_zoo import TARGETS, write_zoo, zoo_config

KEY = "rtx-1.7.1.116"
FILES = {"8.6": "model.sm86.plan", "8.9": "model.sm89.plan"}


def pb():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_once(tmp_path_factory.mktemp("deploy"), write_zoo)


def repo(work: Path, name: str) -> Path:
    return work / paths.triton_model(name)


def io(tensors) -> list[tuple]:
    return [(t.name, pb().DataType.Name(t.data_type), list(t.dims)) for t in tensors]


def test_one_command_makes_a_repository_per_model_and_precision(built):
    work = built["work"]
    assert sorted(p.name for p in (work / paths.TRITON_ROOT).iterdir()) == [
        "dyn_fp16",
        "dyn_fp32",
        "fixed_fp32",
        "two_io_fp32",
    ]
    assert [rule for rule, _ in dry_run(work, configfile=built["config"])] == []  # a rerun does nothing


def test_dynamic_batch_model(built):
    cfg = read_config(repo(built["work"], "dyn_fp32") / "config.pbtxt")
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("dyn_fp32", "tensorrt_plan", 16)  # the profile's max
    assert io(cfg.input) == [("x", "TYPE_FP32", [-1, 8])]  # batch left out; the dynamic seq dim is -1
    assert io(cfg.output) == [("y", "TYPE_FP32", [-1, 4])]
    assert cfg.HasField("dynamic_batching")
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 16]  # opt and max of the profile
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    assert dict(cfg.cc_model_filenames) == FILES
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(pb().ModelInstanceGroup.KIND_GPU, 1)]
    # no plan runs on a GPU it was not built for: the default names a file that is never written
    assert cfg.default_model_filename == "model.plan"
    assert not (repo(built["work"], "dyn_fp32") / "1" / "model.plan").exists()
    fp16 = read_config(repo(built["work"], "dyn_fp16") / "config.pbtxt")
    assert io(fp16.input) == io(cfg.input) and io(fp16.output) == io(cfg.output)  # AutoCast keeps the I/O types


def test_two_input_two_output_model(built):
    cfg = read_config(repo(built["work"], "two_io_fp32") / "config.pbtxt")
    assert cfg.max_batch_size == 8
    assert io(cfg.input) == [("a", "TYPE_FP32", [4]), ("b", "TYPE_FP32", [4])]
    assert io(cfg.output) == [("sum", "TYPE_FP32", [4]), ("prod", "TYPE_FP32", [4])]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 8]


def test_fixed_shape_model(built):
    cfg = read_config(repo(built["work"], "fixed_fp32") / "config.pbtxt")
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")  # no batch axis: full shapes
    assert io(cfg.input) == [("x", "TYPE_FP32", [2, 8])]
    assert io(cfg.output) == [("y", "TYPE_FP32", [2, 4])]


def test_version_directory_holds_the_plans_hard_linked(built):
    work = built["work"]
    for name, model in (("dyn_fp32", "dyn"), ("two_io_fp32", "two_io"), ("fixed_fp32", "fixed")):
        version = repo(work, name) / "1"
        assert sorted(p.name for p in version.iterdir()) == sorted(FILES.values())
        for cc, file in FILES.items():
            source = work / paths.plan(model, KEY, paths.cc_tag(cc), "fp32")
            assert os.path.samefile(version / file, source)  # one inode: no second copy of the plan
            assert (version / file).read_bytes()[:4] == b"vtrt"


def test_provenance_names_the_plans_their_digests_and_the_policy(built):
    work = built["work"]
    config = paths.triton_config("two_io_fp32")
    record = json.loads((work / paths.provenance(config)).read_text())
    assert record["stage"] == "deploy" and record["artifact"]["path"] == config
    plans = {e["compute_capability"]: e for e in record["facts"]["plans"]}
    assert set(plans) == set(TARGETS)
    for cc, e in plans.items():
        source = paths.plan("two_io", KEY, paths.cc_tag(cc), "fp32")
        plan_record = json.loads((work / paths.provenance(source)).read_text())
        assert e["source"] == source and e["sha256"] == plan_record["artifact"]["sha256"]
        assert e["validation"] == "not-run" and e["placed_by"] == "hardlink"
    assert record["facts"]["policy"]["include"] == ["pass", "not-run"]
    inputs = {i["label"]: i for i in record["inputs"]}
    assert inputs["plan_sm86"]["provenance"] == paths.provenance(paths.plan("two_io", KEY, "86", "fp32"))
    statement = json.loads((work / paths.intoto(config)).read_text())
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == {
        config: record["artifact"]["sha256"],
        **{e["file"]: e["sha256"] for e in plans.values()},
    }
    assert "TensorRT-RTX plans are not loadable by stock Triton" in record["facts"]["triton_unloadable"]


def test_verify_catches_a_tampered_plan_and_repair_redeploys(built, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(built["work"], work, symlinks=True)  # the copy's repository plans are files of their own
    ok = cli("verify", "-d", work)
    assert ok.returncode == 0 and "4 Triton repositories" in ok.stdout, ok.stdout
    plan = work / paths.triton_model("two_io_fp32") / "1" / "model.sm89.plan"
    data = bytearray(plan.read_bytes())
    data[200] ^= 0xFF
    plan.write_bytes(bytes(data))
    (work / paths.triton_model("fixed_fp32") / "labels.txt").write_text("cat\n")
    proc = cli("verify", "-d", work, "--json")
    assert proc.returncode == 1
    problems = {(p["kind"], p["path"]) for p in json.loads(proc.stdout)["problems"]}
    assert problems == {
        ("tampered", f"{paths.triton_model('two_io_fp32')}/1/model.sm89.plan"),
        ("orphaned", f"{paths.triton_model('fixed_fp32')}/labels.txt"),
    }, problems
    config = work / paths.triton_config("dyn_fp32")
    config.write_text(config.read_text() + "\nno_such_field: 1\n")
    text = cli("verify", "-d", work).stdout
    assert "not a Triton ModelConfig" in text and 'no field named "no_such_field"' in text, text
    cli("verify", "-d", work, "--repair")
    assert not (work / paths.triton_model("two_io_fp32") / "1" / "model.sm89.plan").exists()
    assert [j for j in dry_run(work, configfile=built["config"]) if j[0] == "deploy"] == [("deploy", None)] * 2
    run_snakemake(work, configfile=built["config"])
    assert cli("verify", "-d", work).returncode == 0
    assert dict(read_config(work / paths.triton_config("two_io_fp32")).cc_model_filenames) == FILES


def test_a_deleted_repository_is_deployed_again(built, tmp_path):
    """The deploy job's output is its record: a model directory gone while its record says published is found
    (verify: missing; a run: damaged, the record removed) and the next run writes it again."""
    work = tmp_path / "work"
    shutil.copytree(built["work"], work, symlinks=True)
    shutil.rmtree(work / paths.triton_model("dyn_fp32"))
    v = json.loads(cli("verify", "-d", work, "--json").stdout)
    assert {(p["kind"], p["path"]) for p in v["problems"]} == {("missing", paths.triton_config("dyn_fp32"))}, v
    proc = run_snakemake(work, configfile=built["config"])
    assert "missing, though its deploy record says published" in proc.out, proc.out[-3000:]
    assert dict(read_config(work / paths.triton_config("dyn_fp32")).cc_model_filenames) == FILES
    assert cli("verify", "-d", work).returncode == 0


def test_a_failed_validation_never_ships(built, tmp_path):
    """Per GPU: a plan whose validation failed is left out of cc_model_filenames (here the sm89 result reads as a GPU
    execution failure would); a precision whose every plan fails has no repository, and says why in one line."""
    work = tmp_path / "work"
    shutil.copytree(built["work"], work, symlinks=True)
    result = work / paths.validation("dyn", KEY, "89", "fp32")
    v = json.loads(result.read_text())
    v["status"] = "fail"
    v["checks"]["plan_execution"] = {"status": "fail", "reason": "max abs error 0.5 > atol 1e-05"}
    result.write_text(json.dumps(v))
    proc = cli("deploy", "-d", work, "--configfile", built["config"], "--repository", "dyn_fp32")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = read_config(work / paths.triton_config("dyn_fp32"))
    assert dict(cfg.cc_model_filenames) == {"8.6": "model.sm86.plan"}
    assert sorted(p.name for p in (work / paths.triton_model("dyn_fp32") / "1").iterdir()) == ["model.sm86.plan"]
    record = json.loads((work / paths.provenance(paths.triton_config("dyn_fp32"))).read_text())
    assert record["facts"]["left_out"] == {"8.9": "validation fail (plan_execution: max abs error 0.5 > atol 1e-05)"}
    # a real failure: fp16 tolerances nothing meets -> both dyn fp16 validations fail -> no dyn_fp16 repository
    cfg = zoo_config()
    cfg["models"]["dyn"]["tolerances"] = {"fp16": {"atol": 0, "rtol": 0, "min_cosine": 1}}
    configfile = built["config"].parent / "strict.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(work, configfile=configfile, check=False)
    assert proc.returncode == 0, proc.out[-3000:]  # withheld is a result: the run is not failed for it
    record = json.loads((work / paths.deploy_record("dyn_fp16")).read_text())
    assert record["status"] == "withheld" and record["reason"].startswith(
        "no plan of fp16 passes the deploy policy (include: pass, not-run): 8.6 validation fail"
    ), record
    assert "withheld: no plan of fp16" in (work / paths.job_log("deploy", {"repository": "dyn_fp16"})).read_text()
    assert not (work / paths.triton_model("dyn_fp16")).exists()  # the earlier repository is gone with it
    assert (work / paths.triton_config("dyn_fp32")).exists()
    assert [j for j in dry_run(work, configfile=configfile) if j[0] == "deploy"] == []  # withheld stays so: no re-run
    text = cli("status", "-d", work, "--configfile", configfile).stdout
    assert "1 withheld" in text and "  dyn_fp16: no plan of fp16 passes the deploy policy" in text, text


def host_facts(tmp_path: Path, **facts) -> dict:
    path = tmp_path / "host.json"
    path.write_text(json.dumps(facts))
    return {**os.environ, "FACTORY_HOST_FACTS": str(path)}


GPU_86 = {"index": 0, "name": "NVIDIA RTX A4000", "compute_capability": "8.6", "uuid": "GPU-1"}
GPU_90 = {"index": 1, "name": "NVIDIA H100", "compute_capability": "9.0", "uuid": "GPU-2"}


def ready(directory, env, *args):
    proc = cli("ready", directory, "--json", *args, env=env)
    report = json.loads(proc.stdout)["repositories"][0]
    return proc.returncode, report, {p["compute_capability"]: p for p in report["plans"]}


def test_ready_check_answers(built, tmp_path):
    d = repo(built["work"], "dyn_fp32")
    # no GPU here (as on this machine): cannot run here, in plain words and exit 3
    code, report, plans = ready(d, host_facts(tmp_path, gpus=[]))
    assert (
        code == 3
        and report["verdict"] == "cannot run here"
        and report["reason"].startswith("cannot run here: no CUDA GPU")
    )
    assert {p["answer"] for p in plans.values()} == {"cannot run here"}
    # an 8.6 GPU and the runtime that built the plans: the 8.6 plan is ready, the 8.9 one is not for this host
    code, report, plans = ready(d, host_facts(tmp_path, gpus=[GPU_86]))
    assert plans["8.6"]["answer"] == "ready" and plans["8.6"]["version"] == "1.7.1.116"
    assert plans["8.9"]["answer"] == "not for this host"
    # ... but stock Triton cannot load a TensorRT-RTX plan, and the check says so (the backend module answers)
    assert code == 3 and report["triton_loadable"] is False
    assert "TensorRT-RTX plans are not loadable by stock Triton" in report["reason"]
    # another runtime version: needs rebuild, naming the key
    code, report, plans = ready(d, host_facts(tmp_path, gpus=[GPU_86], backends={"tensorrt_rtx": "1.8.0.1"}))
    assert plans["8.6"]["answer"] == "needs rebuild" and plans["8.6"]["rebuild_key"] == "rtx-1.8.0.1/sm86"
    _, same, plans = ready(d, host_facts(tmp_path, gpus=[GPU_86]), "--runtime-version", "1.8.0.1")
    assert plans["8.6"]["rebuild_key"] == "rtx-1.8.0.1/sm86"  # the serving runtime's version, given by hand
    # a GPU no plan is for, and that the backend has no target for
    _, report, _ = ready(d, host_facts(tmp_path, gpus=[GPU_90]))
    assert report["gpus"] == [
        {
            "compute_capability": "9.0",
            "plan": None,
            "answer": "cannot run here",
            "reason": "no plan for compute capability 9.0, and none can be built for it: "
            "TensorRT-RTX has no sm90 target (its AOT targets: 7.5, 8.0, 8.6, 8.9, "
            "12.0, 12.1)",
        }
    ]
    text = cli("ready", d, env=host_facts(tmp_path, gpus=[GPU_86]))
    assert "model.sm86.plan: ready: rtx-1.7.1.116 plan for 8.6" in text.stdout, text.stdout
    # a damaged plan header: needs rebuild
    damaged = tmp_path / "damaged"
    shutil.copytree(d, damaged)
    (damaged / "1" / "model.sm86.plan").write_bytes(b"vtrt" + bytes(60))
    _, _, plans = ready(damaged, host_facts(tmp_path, gpus=[GPU_86]))
    assert plans["8.6"]["answer"] == "needs rebuild" and "damaged" in plans["8.6"]["reason"]


def test_ready_on_what_is_no_repository_is_one_line(tmp_path):
    proc = cli("ready", tmp_path)
    assert proc.returncode == 1
    assert (
        proc.stderr == f"error: file '{tmp_path / 'config.pbtxt'}': cannot read the Triton model config: No such "
        "file or directory\n"
    )
    (tmp_path / "config.pbtxt").write_text('name: "x"\nplatform: 7 7\n')
    proc = cli("ready", tmp_path)
    assert (
        proc.returncode == 1
        and proc.stderr.startswith(f"error: file '{tmp_path / 'config.pbtxt'}': not a Triton ModelConfig: 2:")
        and proc.stderr.count("\n") == 1
    )
