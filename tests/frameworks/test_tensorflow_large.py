"""Opt-in (`make test-slow`): Keras ResNet50 and InceptionV3 (weights=None) through the whole chain, with the
per-stage wall time and peak memory that benchmarks/tf_large_models.py records."""

import importlib.util
import json

import pytest

from engine_factory.frameworks.tensorflow import MEM_MB

from helpers import REPO


@pytest.mark.slow
def test_resnet50_and_inception_v3_through_the_chain(tmp_path):
    spec = importlib.util.spec_from_file_location("tf_large_models", REPO / "benchmarks" / "tf_large_models.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.run(tmp_path, cores=2, mem_mb=12000)
    print(json.dumps({k: v for k, v in results.items() if k != "stages"}, indent=1))
    for model, parity in results["parity"].items():
        assert parity == {"export": "pass", "sim": "pass", "fp32": "pass", "fp16": "pass"}, (model, parity)
    assert results["plans"] == {"not-run": 4}  # built and header-checked; no GPU here to execute them
    stages = results["stages"]
    for model in ("resnet50", "inception_v3"):  # the declared memory covers what the jobs really took
        assert stages["export"][model]["peak_rss_mb"] <= MEM_MB["export"]
        assert stages["freeze"][f"{model}.pb"]["peak_rss_mb"] <= MEM_MB["freeze"]
        assert stages["golden"][model]["peak_rss_mb"] <= MEM_MB["golden"]
    summary = json.loads((tmp_path / "artifacts" / "report" / "summary.json").read_text())
    assert summary["models"]["resnet50"]["layout"] == {"x": "NCHW"}
    assert summary["models"]["inception_v3"]["layout"] == {"x": "NHWC"}
