"""Triton follows the live key (artifacts/live.json): while a candidate key is not promoted, the Triton repositories
serve the live key's plans; `promote` (and `rollback --configfile`) re-writes them at once. The stand-in older key
is made as in tests/deploy/test_gate.py: copies of the built key's plans and validations whose records name their
own paths."""

import json
import shutil

import pytest

from engine_factory import paths
from engine_factory.deploy import gate
from engine_factory.factory import open_workflow

from helpers import build_once, cli, load_test_config, snakemake

NEW, OLD = "rtx-1.7.1.116", "rtx-1.6.1.120"
REPO = "tiny_mlp_fp16"


def served(work) -> tuple[str, list[str]]:
    """The key a repository's record says it serves, and the plans it was made from."""
    record = json.loads((work / paths.provenance(paths.triton_config(REPO))).read_text())
    return record["facts"]["key"], [e["source"] for e in record["facts"]["plans"]]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cfg = {**load_test_config("ops"), "deploy": {"triton": {"enabled": True}}}
    return build_once(tmp_path_factory.mktemp("live"), cfg)


def test_triton_serves_the_live_key_until_the_candidate_is_promoted(built, tmp_path):
    work = tmp_path / "zoo"
    shutil.copytree(built["work"], work, symlinks=True)
    config = str(work / "config" / "zoo.yaml")
    assert served(work) == (NEW, [paths.plan("tiny_mlp", NEW, "89", "fp16")])  # no live key yet: this host's
    for kind in ("plans", "validation"):
        shutil.copytree(work / f"artifacts/tiny_mlp/{kind}/{NEW}", work / f"artifacts/tiny_mlp/{kind}/{OLD}")
    for record in (work / "artifacts/tiny_mlp").glob(f"*/{OLD}/*/*/*.json"):
        record.write_text(record.read_text().replace(f"{NEW}/", f"{OLD}/"))
    gate.set_live(work, OLD, action="promote", why="the fleet runs 1.6")

    # the next run (the nightly's) builds nothing new and writes the repositories from the live key's plans
    with open_workflow(str(work), [config]) as f:
        assert f.live_key == OLD
        assert f.inputs("deploy", {"repository": REPO})["plan_sm89"] == paths.plan("tiny_mlp", OLD, "89", "fp16")
    snakemake(work, configfile=work / "config" / "zoo.yaml")
    assert served(work) == (OLD, [paths.plan("tiny_mlp", OLD, "89", "fp16")])
    proc = cli("status", "--configfile", config, "-d", work)  # status says which key is live
    assert f"live: {OLD} (Triton serves it); {NEW}, built here, is a candidate until promoted" in proc.stdout

    proc = cli("promote", "--configfile", config, "-d", work)  # the gate passes: Triton follows at once
    assert proc.returncode == 0 and "Triton follows it" in proc.stdout, proc.stdout + proc.stderr
    assert gate.read_live(work)["live"] == NEW and served(work)[0] == NEW

    proc = cli("rollback", "--configfile", config, "-d", work)
    assert proc.returncode == 0 and "Triton follows it" in proc.stdout, proc.stdout + proc.stderr
    assert served(work)[0] == OLD
