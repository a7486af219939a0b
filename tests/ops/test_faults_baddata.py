"""Bad data refused before it is loaded, and smaller faults of a user's zoo (issue 25, points 5 and 8): .npz/.npy
files judged by their .npy headers (an .npz of 17 GB of zeros is 17 MB on disk), ONNX files over protobuf's 2 GiB,
configured paths that Snakemake would read as wildcards, YTE config files, ModelOpt's temporary files in the zoo
folder, and a TensorFlow sidecar that verify --repair removed and the next run made again, every night.

Large files here are declared, never written: .npy headers hand-written into a zip, sparse ONNX files."""

import json
import os
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine_factory import paths
from engine_factory.errors import FactoryError

from helpers import MLP_INPUTS, cli, load_test_config, snakemake, write_config

GB17 = (265_625_000, 16)  # float32 [N, 16]: 17.0e9 bytes


def npz_declaring(path: Path, arrays: dict, *, payload: int = 1 << 20) -> Path:
    """An .npz whose members' .npy headers declare {name: (shape, dtype)} but hold only `payload` bytes of zeros,
    deflated: a 17 GB array in a few kB on disk, written without allocating it."""
    from numpy.lib import format as npy

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (shape, dtype) in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                npy.write_array_header_1_0(
                    f, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": tuple(shape)}
                )
                f.write(bytes(payload))
    return path


def refused(fn, *args, **kw) -> tuple[str, int]:
    """The FactoryError `fn` raises, and the peak of memory numpy and Python allocated meanwhile (tracemalloc)."""
    tracemalloc.start()
    try:
        with pytest.raises(FactoryError) as e:
            fn(*args, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(e.value), peak


# ------------------------------------------------------------------------------------- .npz / .npy by their headers
def test_an_npz_declaring_17_gb_is_refused_from_its_headers(tmp_path):
    from engine_factory.graph.calibration import load_calibration

    zeros = npz_declaring(tmp_path / "zeros.npz", {"features": (GB17, "float32")})
    assert zeros.stat().st_size < 64 << 10
    message, peak = refused(load_calibration, zeros, MLP_INPUTS, model="m")
    assert message.startswith(f"model 'm', config key 'models.m.calibration', file '{zeros}': calibration data holds ")
    assert "265625000 samples, 16212 MiB by the arrays' headers (largest: array 'features', [265625000, 16]" in message
    assert "at most 4096 samples and 1024 MiB" in message and "refused before loading it" in message
    assert "\n" not in message and peak < 32 << 20  # nothing decompressed, nothing allocated
    # samples (the golden's inputs) are held to the same 1 GiB; they are one feed, so no sample count
    message, peak = refused(load_calibration, zeros, MLP_INPUTS, model="m", what="samples")
    assert f"config key 'models.m.samples', file '{zeros}': samples hold 16212 MiB by the arrays' headers" in message
    assert peak < 32 << 20
    # a lone .npy the same, and an array counts at the input's dtype (uint8 data is cast to float32: 4x)
    from numpy.lib import format as npy

    with open(tmp_path / "bytes.npy", "wb") as f:
        npy.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (4096, 16, 5000)})
    message, _ = refused(load_calibration, tmp_path / "bytes.npy", MLP_INPUTS, model="m")
    assert "holds 4096 samples, 1250 MiB" in message and "bytes.npy" in message


def test_a_directory_beyond_the_sample_limit_is_refused_before_any_file_is_loaded(tmp_path, monkeypatch):
    from engine_factory.graph import calibration

    d = tmp_path / "calib"
    d.mkdir()
    for name in ("a", "b", "c"):
        np.savez(d / f"{name}.npz", features=np.zeros((1500, 16), np.float32))
    loaded = []
    monkeypatch.setattr(np, "load", lambda *a, **k: loaded.append(a) or pytest.fail("np.load ran"))
    with pytest.raises(FactoryError) as e:
        calibration.load_calibration(d, MLP_INPUTS, model="m")
    assert f"file '{d / 'c.npz'}': calibration data holds 4500 samples" in str(e.value) and loaded == []


def test_pickles_and_members_that_are_no_array_are_refused(tmp_path):
    from engine_factory.graph.calibration import load_calibration

    np.savez(tmp_path / "objects.npz", features=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(FactoryError, match=r"objects\.npz': array 'features' holds Python objects \(dtype object"):
        load_calibration(tmp_path / "objects.npz", MLP_INPUTS, model="m")
    # np.load reads a member that is no .npy array whole, as bytes: refused before that
    np.savez(tmp_path / "extra.npz", features=np.ones((4, 16), np.float32))
    with zipfile.ZipFile(tmp_path / "extra.npz", "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("notes.txt", b"\0" * 4096)
    with pytest.raises(FactoryError, match=r"cannot read calibration data \(ValueError: member 'notes.txt' is not"):
        load_calibration(tmp_path / "extra.npz", MLP_INPUTS, model="m")


# ------------------------------------------------------------------------------------- ONNX over 2 GiB
def test_an_onnx_model_over_2_gb_is_named_so_before_it_is_parsed(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from engine_factory.frameworks.onnx import external_data_files, import_onnx

    big = tmp_path / "zoo" / "big.onnx"
    big.parent.mkdir()
    with open(big, "wb") as f:  # sparse: 2.5 GB declared, nothing written
        f.truncate(2_500_000_000)
    out = tmp_path / "artifacts" / "big" / "onnx" / "model.onnx"
    kw = {"input_specs": MLP_INPUTS, "outputs": ["scores"], "opset": 18}
    message, peak = refused(import_onnx, str(big), str(out), model="big", **kw)
    assert message.startswith(f"model 'big', file '{big}': the ONNX file is 2.33 GiB, larger than 2 GB"), message
    assert "corrupt" not in message and "not a valid" not in message and peak < 32 << 20
    assert external_data_files(str(big)) == []  # the DAG's look for external data does not read it either
    assert not out.parent.exists() or not list(out.parent.iterdir())

    # a small model file whose external tensor (2.2 GB, sparse) makes the model too large for one message
    n = 550_000_000
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[n])
    w.data_location = TensorProto.EXTERNAL
    for k, v in {"location": "w.bin", "offset": "0", "length": str(4 * n)}.items():
        w.external_data.add(key=k, value=v)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["scores"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(tmp_path / "zoo" / "ext.onnx"))
    with open(tmp_path / "zoo" / "w.bin", "wb") as f:
        f.truncate(4 * n)
    message, peak = refused(import_onnx, str(tmp_path / "zoo" / "ext.onnx"), str(out), model="ext", **kw)
    assert "the ONNX model with its external data is 2.05 GiB, larger than 2 GB" in message and peak < 32 << 20


# ------------------------------------------------------------------------------------- paths Snakemake would format
def test_a_path_holding_a_wildcard_is_a_config_error_naming_model_and_key(tmp_path):
    from ops.test_faults import mlp_onnx

    from engine_factory.config import check
    from engine_factory.frameworks.onnx import external_data_files

    cfg = load_test_config("ops")
    zoo = tmp_path / "zoo"
    mlp_onnx(zoo / "mlp{}.onnx", external=False)
    mlp_onnx(zoo / "mlp{name}.onnx", external=False)
    cfg["models"]["tiny_mlp"]["onnx"] = str(zoo / "mlp{}.onnx")  # a bare {} is no wildcard: it works
    check(json.loads(json.dumps(cfg)))
    cfg["models"]["tiny_mlp"]["onnx"] = str(zoo / "mlp{name}.onnx")
    with pytest.raises(FactoryError) as e:
        check(json.loads(json.dumps(cfg)))
    assert str(e.value).startswith("model 'tiny_mlp', config key 'models.tiny_mlp.onnx', file ")
    assert "holds '{name}', which Snakemake reads as a wildcard" in str(e.value)
    # through Snakemake: the factory's one line, not Snakemake's WildcardError naming neither model nor key
    write_config(tmp_path / "work", cfg)
    proc = snakemake(tmp_path / "work", "-n", check=False)
    assert proc.returncode != 0 and "WildcardError" not in proc.out
    assert "models.tiny_mlp.onnx" in proc.out and "{name}" in proc.out
    # an external data file named so inside the ONNX file is refused too (it would be a job input)
    mlp_onnx(zoo / "ext" / "w.onnx", external=True)
    (zoo / "ext" / "w.onnx.weights").rename(zoo / "ext" / "w{x}.bin")
    import onnx

    proto = onnx.load(str(zoo / "ext" / "w.onnx"), load_external_data=False)
    proto.graph.initializer[0].external_data[0].value = "w{x}.bin"
    onnx.save(proto, str(zoo / "ext" / "w.onnx"))
    with pytest.raises(FactoryError, match=r"external data location 'w\{x\}.bin' holds '\{x\}'"):
        external_data_files(str(zoo / "ext" / "w.onnx"))


# ------------------------------------------------------------------------------------- YTE configs
def test_a_yte_config_is_refused_by_name_before_a_command_asks_snakemake(tmp_path):
    from engine_factory.config import load

    marker = tmp_path / "yte-ran"
    cfg = load_test_config("ops")
    text = write_config(tmp_path, cfg).read_text()
    yte = tmp_path / "config" / "yte.yaml"
    yte.write_text(f'__use_yte__: true\n?str(__import__("pathlib").Path("{marker}").touch()): 1\n' + text)
    with pytest.raises(FactoryError) as e:
        load([yte], workdir=str(tmp_path))
    assert str(e.value).startswith(f"config key '__use_yte__', file '{yte}': a YTE template (__use_yte__)")
    proc = cli("status", "-d", tmp_path, "--configfile", yte)
    assert proc.returncode != 0 and "a YTE template" in proc.stderr and not marker.exists()


# ------------------------------------------------------------------------------------- ModelOpt's temporary files
def test_a_failed_modelopt_run_leaves_nothing_in_the_zoo_folder(tmp_path, monkeypatch):
    """onnxruntime's symbolic shape inference, which ModelOpt's calibration calls, saves sym_shape_infer_temp.onnx
    and a <uuid>.data file into the working directory when it cannot infer a shape (here: a custom op); a job's
    working directory is the user's zoo folder."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from engine_factory.graph.precision import make_precision_variant

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["h"]),
            helper.make_node("Foo", ["h"], ["h2"], domain="custom"),  # no shape inference knows it
            helper.make_node("Relu", ["h2"], ["scores"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 16])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("custom", 1)])
    model.ir_version = 9
    zoo = tmp_path / "zoo"
    (zoo / "artifacts").mkdir(parents=True)
    onnx.save(model, str(zoo / "artifacts" / "model.sim.onnx"))
    np.savez(zoo / "calib.npz", features=np.random.default_rng(1).standard_normal((16, 16)).astype(np.float32))
    before = sorted(os.listdir(zoo))
    monkeypatch.chdir(zoo)
    with pytest.raises(FactoryError, match="no tool could make the fp8 variant"):
        make_precision_variant(
            "artifacts/model.sim.onnx",
            "artifacts/model.fp8.onnx",
            "fp8",
            model="m",
            input_specs=MLP_INPUTS,
            calibration_path="calib.npz",
        )
    assert [f for f in sorted(os.listdir(zoo)) if f not in before and f != "artifacts"] == []


# ------------------------------------------------------------------------------------- the TensorFlow sidecar
def test_a_tensorflow_sidecar_is_accounted_for_while_the_export_fails(tmp_path, monkeypatch):
    """The freeze succeeds and the export fails every night (an op tf2onnx cannot convert) or has not run: the
    sidecar model.pb.io.json was accounted for only by the export's record, so verify called it orphaned, repair
    removed it, and the next run froze again to make it: a loop. It has its own record now."""
    from frameworks.test_tensorflow import CNN_NHWC

    from engine_factory import stages
    from engine_factory.demo import make_asset
    from engine_factory.frameworks.tensorflow import freeze_settings
    from engine_factory.ops import verify

    make_asset(str(tmp_path / "zoo" / "tf_cnn.keras"))
    m = {
        "framework": "tensorflow",
        "format": "keras",
        "checkpoint": str(tmp_path / "zoo" / "tf_cnn.keras"),
        "inputs": CNN_NHWC,
        "outputs": ["logits"],
    }
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    io, pb = paths.frozen_io("cnn"), paths.frozen("cnn", "pb")
    spec = {
        "inputs": {"source": m["checkpoint"]},
        "outputs": {"frozen": pb, "io": io, "provenance": paths.provenance(pb)},
        "params": {"framework": "tensorflow", **freeze_settings("cnn", m)},
    }
    stages.run("freeze_tf", spec)
    assert verify.verify(str(work))["problems"] == []
    assert verify.verify(str(work), repair=True)["removed"] == [] and (work / io).exists()
    record = json.loads((work / paths.provenance(io)).read_text())
    assert record["artifact"]["path"] == io and record["facts"] == {"sidecar_of": pb}
    # a freeze that fails leaves no record of an earlier sidecar behind (Snakemake removes the outputs it declares)
    (work / io).unlink()
    with pytest.raises(FactoryError):
        stages.run("freeze_tf", {**spec, "inputs": {"source": str(tmp_path / "zoo" / "missing.keras")}})
    assert not (work / paths.provenance(io)).exists()
