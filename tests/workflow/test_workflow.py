"""End-to-end: the real workflow on a tiny zoo in a temporary directory, with real TensorRT-RTX plans."""

import json
import os
import re
import socket
from pathlib import Path

import pytest
import yaml

from engine_factory import paths
from engine_factory.provenance import sha256

from helpers import MLP_INPUTS, dry_run, load_test_config, write_config
from helpers import snakemake as run_snakemake

TINY_ZOO = load_test_config("tiny")


def snakemake(workdir: Path, *args, config: dict | None = None, check=True):
    if config is not None:
        write_config(workdir, config)
    return run_snakemake(workdir, *args, check=check)


def planned_jobs(workdir: Path) -> list[tuple[str, str]]:
    """(rule, model wildcard) of every job a dry run would execute."""
    return dry_run(workdir)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("zoo")
    snakemake(workdir, config=TINY_ZOO)
    return workdir


def test_report_and_plans(zoo):
    summary = json.loads((zoo / paths.REPORT_JSON).read_text())
    plans = summary["plans"]
    built = [p for p in plans if p["status"] != "skipped"]
    assert len(built) == 7 + 2 + 2
    skipped = [p for p in plans if p["status"] == "skipped"]
    assert [(s["model"], s["cc"], s["precision"]) for s in skipped] == [("tiny_cnn", "86", "fp8")]
    assert "8.9" in skipped[0]["reason"]
    for p in built:
        plan = zoo / p["plan"]
        assert plan.read_bytes()[:4] == b"vtrt", plan
        v = json.loads((zoo / paths.validation(p["model"], p["key"], p["cc"], p["precision"])).read_text())
        assert set(v["checks"]) == {"onnx_parity", "plan_header", "plan_execution"}
        assert v["checks"]["plan_header"]["status"] == "pass", v["checks"]["plan_header"]
        # no GPU here: execution must be not-run with a reason, and so the plan as a whole is not a pass
        assert v["checks"]["plan_execution"]["status"] == "not-run" and v["checks"]["plan_execution"]["reason"]
        assert v["status"] == ("fail" if v["checks"]["onnx_parity"]["status"] == "fail" else "not-run")
    parity = summary["models"]["tiny_cnn"]["onnx_parity"]
    assert parity["export"]["status"] == parity["sim"]["status"] == parity["fp32"]["status"] == "pass"
    assert parity["fp16"]["status"] == "pass"
    assert summary["models"]["tiny_mlp"]["opset_upgrade"] == "opset 11 converted to 18 by onnx's version converter"
    assert summary["models"]["tiny_cnn"]["simplifier_used"] in ("onnxslim", "onnxsim", "none")
    html = (zoo / paths.REPORT_HTML).read_text()
    assert "tiny_cnn" in html and "sm89" in html
    assert "opset 11 converted to 18" in (zoo / paths.report_page("tiny_mlp")).read_text()
    for model in summary["models"]:  # a page and a figure per model
        assert (zoo / paths.report_page(model)).is_file() and (zoo / paths.report_chart(model)).is_file()


def test_the_report_params_do_not_grow_with_the_zoo(zoo):
    """The report's inputs and settings come through a file: its params (what Snakemake records and compares for a
    re-run, and what a cluster job would carry) name no model, and no rule's params carry the zoo either."""
    import base64

    records = {
        base64.b64decode(f.name).decode(): json.loads(f.read_text())
        for f in (zoo / ".snakemake" / "metadata").iterdir()
    }
    params = {output: json.dumps(record["params"]) for output, record in records.items()}
    assert records[paths.REPORT_JSON]["rule"] == "report" and paths.REPORT_SPEC in params[paths.REPORT_JSON]
    assert not any(model in params[paths.REPORT_JSON] for model in TINY_ZOO["models"]), params[paths.REPORT_JSON]
    longest = max(params, key=lambda output: len(params[output]))
    assert len(params[longest]) < 3000, (longest, params[longest])


def test_snakemake_report_labels_pages_figures_and_validations(zoo):
    out = zoo / "artifacts" / "report" / "snakemake-report.zip"
    run_snakemake(zoo, "--report", str(out))
    import zipfile

    archive = zipfile.ZipFile(out)
    names = archive.namelist()
    text = archive.read(next(n for n in names if n.endswith("/report.html"))).decode()
    for model in TINY_ZOO["models"]:
        assert any(n.endswith(f"/{model}.html") for n in names) and any(n.endswith(f"/{model}.svg") for n in names)
        assert f'"model": "{model}", "result": "model page"' in text
    assert sum(n.endswith("validation.json") for n in names) == 11
    assert '"labels": {"model": "tiny_cnn", "precision": "int8", "target": "sm89"}' in text


def test_provenance_chains_back_to_the_checkpoint(zoo):
    plan = paths.plan("tiny_cnn", "rtx-1.7.1.116", "89", "int8")
    chain, record = [], json.loads((zoo / paths.provenance(plan)).read_text())
    assert record["artifact"]["sha256"] == sha256(zoo / plan)
    assert record["facts"]["timing_cache"]["reason"].startswith("TensorRT-RTX")  # RTX builds keep none
    assert record["host"]["hostname"] == socket.gethostname() and "gpus" in record["host"]
    while True:
        chain.append(record["stage"])
        assert record["tools"]["tensorrt-rtx-cu13"] == "1.7.1.116" and record["workflow"]["commit"]
        for entry in record["inputs"]:
            assert entry["sha256"] == sha256(zoo / entry["path"]), entry["path"]
        parents = [e for e in record["inputs"] if "provenance" in e and e["label"] in ("onnx", "source")]
        if not parents:
            break
        record = json.loads((zoo / parents[0]["provenance"]).read_text())
    assert chain == ["build", "precision", "simplify", "export", "freeze"]
    assert record["inputs"][0]["path"] == "artifacts/demo/tiny_cnn.pth"
    precision = json.loads((zoo / paths.provenance(paths.precision_onnx("tiny_cnn", "int8"))).read_text())
    assert any(e["label"] == "calibration" for e in precision["inputs"])


def test_rerun_is_a_no_op(zoo):
    proc = snakemake(zoo)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_one_models_profile_rebuilds_only_that_model(zoo):
    changed = json.loads(json.dumps(TINY_ZOO))
    changed["models"]["tiny_mlp"]["inputs"]["features"]["max"] = [32, 16]
    (zoo / "config" / "zoo.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    jobs = planned_jobs(zoo)
    models = {m for _, m in jobs if m}
    assert models == {"tiny_mlp"}, jobs
    assert ("build", "tiny_mlp") in jobs and ("report", None) in jobs
    changed["models"]["tiny_cnn"]["precisions"] = ["fp32", "fp16", "int8"]  # drop fp8: nothing rebuilt for it
    (zoo / "config" / "zoo.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    assert {m for _, m in planned_jobs(zoo) if m} == {"tiny_mlp"}
    (zoo / "config" / "zoo.yaml").write_text(yaml.safe_dump(TINY_ZOO, sort_keys=False))


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda c: c["models"]["tiny_cnn"].update(checkpont="x"),
            r"models.tiny_cnn: Additional properties.*'checkpont'",
        ),
        (
            lambda c: c["models"]["tiny_cnn"].update(checkpoint="missing.pth"),
            r"model 'tiny_cnn', config key 'models.tiny_cnn.checkpoint', file 'config/missing.pth': file not found",
        ),
        (
            lambda c: c["models"]["tiny_cnn"].update(precisions=["fp4"]),
            r"models.tiny_cnn.precisions.0: 'fp4' is not one of",
        ),
        (lambda c: c["models"].update({"../up": c["models"]["tiny_cnn"]}), r"model '../up'.*path component"),
        (lambda c: c["models"]["tiny_cnn"].pop("calibration"), r"models.tiny_cnn.calibration"),
        (
            lambda c: c.update(backend="tensorrt"),
            r"backend 'tensorrt' needs NVIDIA TensorRT.*pip install tensorrt.*backend: tensorrt_rtx",
        ),
        (
            lambda c: c.update(tensorrt={"hardware_compatibility_level": "ampere_plus"}),
            r"config key 'tensorrt': TensorRT-RTX supports neither option",
        ),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, edit, message):
    cfg = json.loads(json.dumps(TINY_ZOO))
    edit(cfg)
    proc = snakemake(tmp_path, "-n", config=cfg, check=False)
    assert proc.returncode != 0
    assert re.search(message, proc.stdout + proc.stderr), proc.stdout + proc.stderr
    assert not (tmp_path / "artifacts").exists()


def test_local_gpus_become_resources_and_pin_validation(zoo, tmp_path):
    """Two (simulated) sm86 GPUs: a gpu_sm86 resource of 2, and each sm86 validation job asks for one of them."""
    facts = {
        "gpus": [
            {
                "index": i,
                "name": "simulated A6000",
                "compute_capability": "8.6",
                "uuid": f"GPU-sim-{i}",
                "cuda_index": i,
            }
            for i in range(2)
        ],
        "driver_version": "580.1",
        "cuda_driver_version": "13.0",
    }
    (tmp_path / "host.json").write_text(json.dumps(facts))
    env = {**os.environ, "FACTORY_HOST_FACTS": str(tmp_path / "host.json")}
    out = run_snakemake(zoo, "-n", "--forcerun", "validate_sm86", "validate_sm89", env=env).out
    jobs = [b for b in re.split(r"\n(?=rule )", out) if b.startswith("rule validate_")]  # one cc per job with GPUs
    assert jobs and all(("gpu_sm86=1" in b) == b.startswith("rule validate_sm86:") for b in jobs), out
    # the driver is a param of validation only: with the simulated driver, validation re-runs, nothing is rebuilt
    rules = {rule for rule, _ in dry_run(zoo, env=env)}
    assert rules == {"validate", "report", "outcome", "all"}, rules


def test_onnx_the_parser_rejects_fails_with_its_errors_and_leaves_no_plan(tmp_path):
    """A valid ONNX file (a custom-domain op) that TensorRT's parser cannot import: the build names the model, the
    file and the parser's own messages; no plan is left behind."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FancyOp", ["features"], ["scores"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 16])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)]),
        str(tmp_path / "custom.onnx"),
    )
    import numpy as np

    features = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    np.savez(tmp_path / "samples.npz", features=features, scores=features)  # the op's reference outputs
    custom = {"framework": "onnx", "onnx": str(tmp_path / "custom.onnx"), "inputs": MLP_INPUTS, "outputs": ["scores"]}
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.9"]},
        "precisions": ["fp32"],
        "models": {"custom": {**custom, "samples": str(tmp_path / "samples.npz")}, "custom_unrun": custom},
    }
    proc = snakemake(tmp_path, "--keep-going", config=cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(
        r"model 'custom', file 'artifacts/custom/onnx/model.fp32.onnx': tensorrt_rtx \S+ cannot parse the "
        r"ONNX model at node #0 \(FancyOp\): .*FancyOp",
        out,
    ), out[-3000:]
    # without samples no golden: neither the source nor the imported model runs in onnxruntime; the error says what
    # to give
    assert re.search(
        r"model 'custom_unrun', config key 'models.custom_unrun.samples', file '.*custom.onnx': "
        r"onnxruntime cannot run the source ONNX .* nor the imported model",
        out,
    ), out[-3000:]
    for model in cfg["models"]:
        assert not (tmp_path / paths.plan(model, "rtx-1.7.1.116", "89", "fp32")).exists()
        assert not list((tmp_path / "artifacts" / model).rglob("*.tmp*"))


def test_bad_calibration_fails_with_model_and_file_and_leaves_nothing(tmp_path):
    import numpy as np

    np.savez(tmp_path / "calib.npz", x=np.zeros((8, 3, 28, 28), np.float32))  # wrong spatial size
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.9"]},
        "models": {
            "bad_calib": {
                **TINY_ZOO["models"]["tiny_cnn"],
                "precisions": ["int8"],
                "calibration": str(tmp_path / "calib.npz"),
            }
        },
    }
    proc = snakemake(tmp_path, config=cfg, check=False)
    assert proc.returncode != 0
    assert re.search(r"model 'bad_calib'.*calib.npz", proc.stdout + proc.stderr), proc.stdout + proc.stderr
    assert not (tmp_path / paths.precision_onnx("bad_calib", "int8")).exists()
    assert not list((tmp_path / "artifacts" / "bad_calib" / "onnx").glob("*tmp*"))
