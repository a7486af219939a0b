"""A real upgrade, TensorRT-RTX 1.6.1.120 -> 1.7.1.116 (opt-in: `make test-upgrade`, marker `upgrade`).

The 1.6.1.120 wheels (`tensorrt-rtx-cu13-libs`, `tensorrt-rtx-cu13-bindings`, ~92 MB) are downloaded once with pip
into a cache folder (FACTORY_UPGRADE_CACHE, default ~/.cache/engine-factory) with `--no-deps --target`, and put first on
PYTHONPATH for Snakemake and its jobs: `import tensorrt_rtx` then loads 1.6.1.120 (design.md §13). The installed
package stays 1.7.1.116. A zoo of one tiny ONNX model written here is built with 1.6, then the same zoo is run
again with the default install: the rtx-1.7.1.116 key is built beside rtx-1.6.1.120, whose plans are not touched.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import snakemake, write_config

pytestmark = pytest.mark.upgrade
OLD, NEW = "1.6.1.120", "1.7.1.116"
CACHE = Path(os.environ.get("FACTORY_UPGRADE_CACHE", Path.home() / ".cache" / "engine-factory"))


def old_rtx() -> Path:
    target = CACHE / f"tensorrt-rtx-{OLD}"
    if not (target / "tensorrt_rtx_bindings").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--target",
             str(target), f"tensorrt-rtx-cu13-libs=={OLD}", f"tensorrt-rtx-cu13-bindings=={OLD}"],
            check=True,
        )  # fmt: skip
    return target


def tiny_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def plans(work: Path, key: str) -> dict:
    return {
        p.relative_to(work).as_posix(): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted((work / "artifacts").glob(f"tiny/plans/{key}/*/*/model.plan"))
    }


def test_upgrade_builds_the_new_key_beside_the_old(tmp_path):
    target = old_rtx()
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    tiny_onnx(zoo / "tiny.onnx")
    work = tmp_path / "work"
    cfg = {
        "backend": "tensorrt_rtx",
        "targets": {"rtx": ["8.6"]},
        "precisions": ["fp32", "fp16"],
        "models": {
            "tiny": {
                "framework": "onnx",
                "onnx": str(zoo / "tiny.onnx"),
                "inputs": {"x": {"dtype": "float32", "shape": ["batch", 8], "min": [1, 8], "opt": [2, 8],
                                 "max": [4, 8]}},
                "outputs": ["y"],
            }
        },
    }  # fmt: skip
    config = write_config(work, cfg)
    old_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}
    probe = subprocess.run(
        [sys.executable, "-c", "import tensorrt_rtx; print(tensorrt_rtx.__version__)"],
        env=old_env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == OLD

    snakemake(work, configfile=config, env=old_env)
    old = plans(work, f"rtx-{OLD}")
    assert len(old) == 2, old
    assert not plans(work, f"rtx-{NEW}")

    snakemake(work, configfile=config)  # the upgrade: the default install again
    new = plans(work, f"rtx-{NEW}")
    assert len(new) == 2, new
    assert plans(work, f"rtx-{OLD}") == old  # same mtimes and sha256: the old key untouched
    header = (work / next(iter(new))).read_bytes()[:64]
    assert header[:4] == b"vtrt"
