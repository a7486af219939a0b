"""The deploy decisions without a workflow run: the policy's config errors (one line naming the key), ONNX types and
batch axes to Triton's config (Triton's own message, compared field by field), which plans the factory hands the
deploy job (never a failed target), and which backend's plans Triton can load (the backend module answers)."""

import pytest

from engine_factory import paths
from engine_factory.config import check
from engine_factory.deploy.triton import POLICY_DEFAULTS, model_config
from engine_factory.errors import FactoryError

from triton_zoo import zoo_config


def cfg_of(**deploy) -> dict:
    return check(zoo_config(**deploy), check_files=False)


@pytest.mark.parametrize(
    "deploy, message",
    [
        (
            {"name": "{model}_{key}"},
            "config key 'deploy.triton.name': '{model}_{key}' uses ['key']; a name may use "
            "{model} and {precision} only",
        ),
        (
            {"name": "{model}"},
            "config key 'deploy.triton.name': '{model}' names both ('dyn', 'fp32') and ('dyn', "
            "'fp16') 'dyn': add {precision} (or {model})",
        ),
        ({"name": "{model}/{precision}"}, "deploy.triton.name: '{model}/{precision}' does not match"),
        ({"include": ["pass", "fail"]}, "deploy.triton.include.1: 'fail' is not one of ['pass', 'not-run']"),
    ],
)
def test_policy_errors_name_the_key(deploy, message):
    with pytest.raises(FactoryError) as e:
        cfg_of(**deploy)
    assert message in str(e.value)


def test_one_name_per_model_is_fine_with_one_precision():
    cfg = cfg_of(name="{model}", precisions=["fp32"])
    assert cfg["deploy"]["triton"]["name"] == "{model}"


def test_a_model_may_not_take_a_folder_of_the_workflow():
    raw = zoo_config()
    raw["models"]["triton"] = raw["models"].pop("fixed")
    with pytest.raises(FactoryError, match="model 'triton', config key 'models.triton': the name is reserved"):
        check(raw, check_files=False)


def onnx_file(path, inputs, outputs):
    import onnx
    from onnx import helper

    nodes = [helper.make_node("Identity", [i], [o]) for (i, _, _), (o, _, _) in zip(inputs, outputs)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info(*o) for o in outputs],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return str(path)


def spec(shape, lo, opt, hi):
    return {"shape": shape, "min": lo, "opt": opt, "max": hi}


def test_data_types_and_batch_axis(tmp_path):
    from onnx import TensorProto as T
    from tritonclient.grpc import model_config_pb2 as pb

    path = onnx_file(
        tmp_path / "m.onnx",
        [("ids", T.INT64, ["batch", 5]), ("mask", T.BOOL, ["batch"]), ("h", T.FLOAT16, ["batch", 3])],
        [("o1", T.INT64, ["batch", 5]), ("o2", T.BOOL, ["batch"]), ("o3", T.BFLOAT16, ["batch", 3])],
    )
    specs = {
        "ids": spec(["batch", 5], [1, 5], [4, 5], [32, 5]),
        "mask": spec(["batch"], [1], [4], [32]),
        "h": spec(["batch", 3], [1, 3], [4, 3], [32, 3]),
    }
    cfg = model_config(
        "m",
        model="m",
        onnx_path=path,
        input_specs=specs,
        plan_files={"9.0": "model.sm90.plan"},
        pol=POLICY_DEFAULTS,
        default_file=None,
    )
    assert [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in cfg.input] == [
        ("ids", "TYPE_INT64", [5]),
        ("mask", "TYPE_BOOL", []),
        ("h", "TYPE_FP16", [3]),
    ]
    assert [pb.DataType.Name(t.data_type) for t in cfg.output] == ["TYPE_INT64", "TYPE_BOOL", "TYPE_BF16"]
    assert cfg.max_batch_size == 32
    # a profile whose batch starts above 1 is no Triton batch (Triton sends batches from 1): full shapes
    specs["ids"]["min"][0] = specs["mask"]["min"][0] = specs["h"]["min"][0] = 2
    cfg = model_config(
        "m",
        model="m",
        onnx_path=path,
        input_specs=specs,
        plan_files={"9.0": "model.sm90.plan"},
        pol=POLICY_DEFAULTS,
        default_file="model.sm90.plan",
    )
    assert cfg.max_batch_size == 0 and [list(t.dims) for t in cfg.input] == [[-1, 5], [-1], [-1, 3]]
    assert cfg.default_model_filename == "model.sm90.plan" and not cfg.HasField("dynamic_batching")


def test_an_output_without_the_batch_axis_means_no_batching(tmp_path):
    from onnx import TensorProto as T

    path = onnx_file(tmp_path / "m.onnx", [("x", T.FLOAT, ["batch", 4])], [("y", T.FLOAT, ["n", 4])])
    cfg = model_config(
        "m",
        model="m",
        onnx_path=path,
        input_specs={"x": spec(["batch", 4], [1, 4], [2, 4], [8, 4])},
        plan_files={},
        pol=POLICY_DEFAULTS,
        default_file=None,
    )
    assert cfg.max_batch_size == 0 and list(cfg.output[0].dims) == [-1, 4]


def test_a_type_triton_lacks_is_named(tmp_path):
    from onnx import TensorProto as T

    path = onnx_file(tmp_path / "m.onnx", [("x", T.COMPLEX64, [2])], [("y", T.COMPLEX64, [2])])
    with pytest.raises(
        FactoryError, match="model 'm': tensor 'x' has ONNX type COMPLEX64, which Triton has no data type for"
    ):
        model_config(
            "m",
            model="m",
            onnx_path=path,
            input_specs={"x": spec([2], [2], [2], [2])},
            plan_files={},
            pol=POLICY_DEFAULTS,
            default_file=None,
        )


def test_a_failed_target_is_no_input_of_its_repository(tmp_path, monkeypatch):
    from engine_factory import failures
    from engine_factory.factory import resolve

    monkeypatch.chdir(tmp_path)  # the workflow directory: failure records live under its artifacts/
    cfg, host = cfg_of(), {"gpus": [], "hostname": "h"}
    f = resolve(cfg, host)
    assert set(f.deploy_targets) == {"dyn_fp32", "dyn_fp16", "two_io_fp32", "fixed_fp32"}
    key = f.key
    targets = f.target_set("build", precision="fp32", cc="89").tag  # one RTX build job: every target of fp32
    w = {"model": "dyn", "key": key, "precision": "fp32", "targets": targets}
    failures.record(
        "build",
        w,
        f.inputs("build", w),
        f.settings("build", w),
        FactoryError("Could not infer output types", model="dyn"),
    )  # as the build stage records it
    f = resolve(cfg, host)
    assert [(x["model"], x["cc"], x["stage"]) for x in f.failed] == [("dyn", "86", "build"), ("dyn", "89", "build")]
    assert "dyn_fp32" not in f.deploy_targets and "dyn_fp16" in f.deploy_targets
    inputs = f.inputs("deploy", {"repository": "dyn_fp16"})
    assert inputs == {
        "onnx": paths.precision_onnx("dyn", "fp16"),
        **{
            f"{kind}_sm{cc}": getattr(paths, kind)("dyn", key, cc, "fp16")
            for cc in ("86", "89")
            for kind in ("plan", "validation")
        },
    }
    assert f.settings("deploy", {"repository": "dyn_fp16"})["compute_capabilities"] == ["8.6", "8.9"]
    with pytest.raises(FactoryError, match="no Triton repository 'nope' is configured"):
        f.inputs("deploy", {"repository": "nope"})


def test_disabled_means_no_repositories():
    from engine_factory.factory import resolve

    assert resolve(cfg_of(enabled=False), {"gpus": [], "hostname": "h"}).deploy_outputs() == []


def test_the_backend_says_whether_triton_loads_its_plans():
    from engine_factory.backends import load_backend
    from engine_factory.backends.registry import spec_of

    rtx = load_backend("tensorrt_rtx")
    assert "not loadable by stock Triton" in rtx.triton_unloadable
    assert spec_of("tensorrt").TRITON_UNLOADABLE is None  # full TensorRT: what tensorrt_plan loads
    assert spec_of("tensorrt").portable_across_cc("trt-10.13.3.9-ampere_plus")
    assert not spec_of("tensorrt").portable_across_cc("trt-10.13.3.9") and not rtx.spec.portable_across_cc(rtx.key)


def test_help_has_examples(tmp_path):
    from helpers import cli

    for command in ("deploy", "ready"):
        proc = cli(command, "-h", cwd=tmp_path)
        assert proc.returncode == 0 and "example" in proc.stdout, proc.stdout
    assert "exit status: 0 ready, 2 needs rebuild, 3 cannot run here" in cli("ready", "-h").stdout
