"""GPU pinning and the build job's host/key check, on simulated hosts (no GPU needed)."""

import os

import pytest

from engine_factory import gpus
from engine_factory.backends import Backend
from engine_factory.errors import FactoryError
from engine_factory.stages import check_host_matches_key

HOST = {
    "gpus": [
        {"index": i, "name": "sim", "compute_capability": cc, "uuid": f"GPU-{i}", "cuda_index": i}
        for i, cc in enumerate(["8.6", "8.6", "9.0"])
    ]
}


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(gpus, "LOCK_DIR", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_each_job_gets_its_own_gpu_of_the_right_cc():
    with gpus.pinned_gpu(HOST, "8.6", model="m") as first:
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-0" and first["cuda_index"] == 0
        os.environ.pop("CUDA_VISIBLE_DEVICES")  # a second job is another process: it starts without it
        with gpus.pinned_gpu(HOST, "8.6", model="m") as second:
            assert second["uuid"] == "GPU-1" and os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-1"
            os.environ.pop("CUDA_VISIBLE_DEVICES")
            with pytest.raises(FactoryError, match="no GPU of compute capability 8.6 became free"):
                with gpus.pinned_gpu(HOST, "8.6", model="m", wait_s=0.2):
                    pass
    with gpus.pinned_gpu(HOST, "8.6", model="m") as again:  # released on exit
        assert again["uuid"] == "GPU-0"


def test_no_gpu_of_that_cc():
    with pytest.raises(FactoryError, match=r"model 'm'.*compute capability 8.9; this host has \['8.6', '9.0'\]"):
        with gpus.pinned_gpu(HOST, "8.9", model="m"):
            pass


def test_slurm_or_user_assignment_is_respected(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with gpus.pinned_gpu(HOST, "9.0", model="m") as gpu:
        assert gpu["compute_capability"] == "9.0" and os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_build_refuses_a_host_that_does_not_match_its_key():
    trt = Backend("tensorrt", "trt", None, "10.13.3.9", "trt-10.13.3.9")
    ok = {"model": "m", "key": "trt-10.13.3.9-ampere_plus", "compute_capabilities": ["9.0"]}
    check_host_matches_key(trt, ok, "9.0", HOST)
    with pytest.raises(FactoryError, match="builds key 'trt-10.14.1.48' but the installed backend is 'trt-10.13.3.9'"):
        check_host_matches_key(trt, {**ok, "key": "trt-10.14.1.48"}, "9.0", HOST)
    with pytest.raises(FactoryError, match="builds key 'trt-10.13.3.90'"):  # a prefix is not a match
        check_host_matches_key(trt, {**ok, "key": "trt-10.13.3.90"}, "9.0", HOST)
    with pytest.raises(FactoryError, match=r"compute capability 8.9 but this host's GPUs are \['8.6', '9.0'\]"):
        check_host_matches_key(trt, ok, "8.9", HOST)


def test_probe_names_the_installed_backends():
    import tensorrt_rtx

    from engine_factory.host import probe_host

    backends = probe_host()["backends"]
    assert backends["tensorrt_rtx"] == tensorrt_rtx.__version__
    assert backends["tensorrt"] is None  # full TensorRT is not installable here


def test_pin_only_where_the_job_runs_on_a_gpu():
    with gpus.pinned_gpu_if(False, HOST, "8.9", model="m") as gpu:  # e.g. a TensorRT-RTX build: no GPU needed
        assert gpu is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    with gpus.pinned_gpu_if(True, HOST, "9.0", model="m") as gpu:
        assert gpu["uuid"] == "GPU-2"


def test_a_backend_installed_without_package_metadata_is_found_by_its_declared_version(tmp_path, monkeypatch):
    """TensorRT from a tar install or bindings built from source (tools/trt85) has no dist-info: the first GPU run's
    `ready` said 'no tensorrt runtime is installed here' beside a working TensorRT 8.5.3.1."""
    from engine_factory.host import installed_backends

    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(
        'import ctypes\nraise SystemExit("never imported")\n__version__ = "8.5.3.1"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert installed_backends()["tensorrt"] == "8.5.3.1"
    (tmp_path / "tensorrt" / "__init__.py").write_text("from .tensorrt import *\n")  # no version said: none claimed
    assert installed_backends()["tensorrt"] is None
