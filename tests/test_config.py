import copy

import pytest

from engine_factory import paths
from engine_factory.backends import Backend
from engine_factory.config import check, model_settings
from engine_factory.errors import FactoryError
from engine_factory.targets import plan_jobs

from helpers import CNN_INPUTS


def base(**model):
    m = {
        "framework": "pytorch",
        "checkpoint": "artifacts/demo/tiny_cnn.pth",
        "model": "engine_factory.demo.models:TinyCNN",
        "inputs": copy.deepcopy(CNN_INPUTS),
        "calibration": "artifacts/demo/tiny_cnn.calib.npz",
        **model,
    }
    return {"models": {"tiny_cnn": m}}


def test_defaults_filled_and_repo_config_valid():
    cfg = check(base())
    assert cfg["backend"] == "auto" and cfg["targets"]["rtx"] == ["8.0", "8.6", "8.9", "12.0"]
    s = model_settings(cfg, "tiny_cnn")
    assert s["precisions"] == ["fp32", "fp16", "bf16", "int8", "fp8"]
    assert s["tolerances"]["fp16"]["atol"] == 1e-2
    from engine_factory.config import load_file

    demo = load_file("config/config.yaml")
    assert set(demo["models"]) == {"tiny_cnn", "two_tower", "tiny_mlp", "tf_cnn", "tf_two_head", "tf1_mlp"}


def test_unknown_key_is_named():
    with pytest.raises(FactoryError, match=r"models.tiny_cnn: .*'checkpont' was unexpected"):
        check(base(checkpont="x"))


def test_unknown_precision_is_named():
    with pytest.raises(FactoryError, match=r"models.tiny_cnn.precisions.1: 'int4' is not one of"):
        check(base(precisions=["fp16", "int4"]))


@pytest.mark.parametrize("name", ["../evil", "a/b", "has space", ".hidden", "a..b"])
def test_unsafe_model_name(name):
    cfg = base()
    cfg["models"] = {name: cfg["models"]["tiny_cnn"]}
    with pytest.raises(FactoryError) as e:
        check(cfg)
    assert name in str(e.value) and "path component" in str(e.value)


def test_missing_checkpoint_named(tmp_path):
    with pytest.raises(
        FactoryError,
        match=r"model 'tiny_cnn', config key 'models.tiny_cnn.checkpoint', "
        r"file '/nonexistent/x.pth': file not found",
    ):
        check(base(checkpoint="/nonexistent/x.pth"))


def test_quantized_precisions_need_calibration():
    cfg = base()
    del cfg["models"]["tiny_cnn"]["calibration"]
    with pytest.raises(FactoryError, match="models.tiny_cnn.calibration"):
        check(cfg)
    cfg["models"]["tiny_cnn"]["precisions"] = ["fp32", "fp16"]
    check(cfg)  # no int8/fp8: no calibration needed


def test_profile_checks():
    cfg = base()
    del cfg["models"]["tiny_cnn"]["inputs"]["x"]["opt"]
    with pytest.raises(FactoryError, match="dynamic: give min, opt and max"):
        check(cfg)
    cfg = base()
    cfg["models"]["tiny_cnn"]["inputs"]["x"]["min"] = [16, 3, 32, 32]
    with pytest.raises(FactoryError, match="min <= opt <= max"):
        check(cfg)
    cfg = base()
    cfg["models"]["tiny_cnn"]["inputs"]["x"]["opt"] = [4, 3, 30, 32]
    with pytest.raises(FactoryError, match="fixed at 32"):
        check(cfg)


def test_pytorch_needs_exactly_one_source():
    with pytest.raises(FactoryError, match="exactly one of checkpoint, torchscript"):
        check(base(torchscript="artifacts/demo/x.pt"))


def test_plan_jobs_skip_with_reasons():
    cfg = check(base())
    jobs, skipped = plan_jobs(
        cfg, backend=Backend("tensorrt_rtx", "rtx", None, "1.7.1.116", "rtx-1.7.1.116"), key="rtx-1.7.1.116", gpus=[]
    )
    keys = {(j["cc"], j["precision"]) for j in jobs}
    assert ("89", "fp8") in keys and ("120", "fp8") in keys
    assert {(s["cc"], s["precision"]) for s in skipped} == {("80", "fp8"), ("86", "fp8")}
    assert all("sm89" in s["reason"] or "8.9" in s["reason"] for s in skipped)
    assert paths.plan(**jobs[0]) == "artifacts/tiny_cnn/plans/rtx-1.7.1.116/sm80/fp32/model.plan"
    # full TensorRT: one target per distinct local compute capability
    gpus = [{"compute_capability": "9.0"}, {"compute_capability": "9.0"}, {"compute_capability": "8.6"}]
    jobs, _ = plan_jobs(
        cfg, backend=Backend("tensorrt", "trt", None, "10.13.3.9", "trt-10.13.3.9"), key="trt-10.13.3.9", gpus=gpus
    )
    assert sorted({j["cc"] for j in jobs}) == ["86", "90"]


def test_cc_tags_round_trip():
    for cc in ["8.0", "8.6", "8.9", "12.0", "12.1"]:
        assert paths.cc_dotted(paths.cc_tag(cc)) == cc
