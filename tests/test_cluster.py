"""Slurm routing from the config (scripts/engine_factory/cluster.py), targets with pools, and the resources each rule
gets in a dry run: no Slurm needed (the real cluster runs are tests/workflow/test_slurm.py, marker `slurm`)."""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from engine_factory import cluster
from engine_factory.backends import Backend
from engine_factory.config import check
from engine_factory.errors import FactoryError
from engine_factory.targets import plan_jobs, target_gpus

from helpers import MLP_INPUTS, REPO

POOLS = {
    "h100": {
        "compute_capability": "9.0",
        "partition": "gpu",
        "constraint": "h100",
        "gres": "gpu:h100:1",
        "runtime": 120,
    },
    "l4": {"compute_capability": "8.9", "partition": "gpu", "gpu_model": "l4"},
}
SLURM = {"cpu": {"partition": "cpu", "runtime": 30, "slurm_extra": "--qos=short --exclusive"}, "pools": POOLS}


def zoo(**top):
    return {
        "models": {
            "tiny_mlp": {
                "framework": "onnx",
                "onnx": "artifacts/demo/tiny_mlp.opset11.onnx",
                "inputs": MLP_INPUTS,
                "outputs": ["scores"],
                "precisions": ["fp16", "fp8"],
                "calibration": "artifacts/demo/tiny_mlp.calib.npz",
            }
        },
        **top,
    }


def test_routes_by_compute_capability():
    cfg = check(zoo(slurm=SLURM))
    assert cluster.resources(cfg) == {
        "slurm_partition": "cpu",
        "constraint": "",
        "gres": "",
        "gpu": 0,
        "gpu_model": "",
        "runtime": 30,
        "slurm_extra": "--exclusive",
        "qos": "short",  # the plugin's own resource: it refuses --qos in slurm_extra, and quotes this one
    }
    assert cluster.resources(cfg, "90") == {
        "slurm_partition": "gpu",
        "constraint": "h100",
        "gres": "gpu:h100:1",
        "gpu": 0,
        "gpu_model": "",
        "runtime": 120,
        "slurm_extra": "",
    }
    l4 = cluster.resources(cfg, "8.9")
    assert (l4["gpu"], l4["gpu_model"], l4["gres"], l4["runtime"]) == (1, "l4", "", 30)  # runtime from slurm.cpu
    assert cluster.resources(cfg, "86") == cluster.resources(cfg)  # no pool of that cc: the CPU route
    assert cluster.resource_names(check(zoo())) == [] and cluster.resources(check(zoo()), "90") == {}
    assert cluster.describe(cfg) == [
        "slurm cpu: -p cpu -t 30 --qos=short --exclusive",
        "slurm pool h100 (sm90): -p gpu -C h100 --gres=gpu:h100:1 -t 120",
        "slurm pool l4 (sm89): -p gpu --gpus=l4:1",
    ]


def test_pools_are_the_full_tensorrt_targets():
    cfg = check(zoo(slurm=SLURM))
    local = [{"compute_capability": "8.6", "name": "local A6000"}]
    gpus = target_gpus(cfg, local)
    assert [(g["pool"], g["compute_capability"]) for g in gpus] == [("h100", "9.0"), ("l4", "8.9")]
    jobs, skipped = plan_jobs(
        cfg, backend=Backend("tensorrt", "trt", None, "10.13.3.9", "trt-10.13.3.9"), key="trt-10.13.3.9", gpus=gpus
    )
    assert sorted((j["cc"], j["precision"]) for j in jobs) == [
        ("89", "fp16"),
        ("89", "fp8"),
        ("90", "fp16"),
        ("90", "fp8"),
    ]
    assert target_gpus(check(zoo()), local) == local  # without pools: the local GPUs, as before


@pytest.mark.parametrize(
    "slurm, message",
    [
        (
            {
                "pools": {
                    "a": {"compute_capability": "8.0", "gres": "gpu:1"},
                    "b": {"compute_capability": "8.0", "gres": "gpu:a100:1"},
                }
            },
            r"slurm.pools.b.compute_capability.*pools 'a' and 'b' both have compute capability 8.0",
        ),
        ({"pools": {"a": {"compute_capability": "8.0", "gres": "gpu:1", "gpus": 1}}}, r"slurm.pools.a.*either 'gres'"),
        ({"pools": {"a": {"compute_capability": "8.0", "partition": "gpu"}}}, r"slurm.pools.a.*must ask for a GPU"),
        ({"cpu": {"partition": "cpu", "gres": "gpu:1"}}, r"slurm.cpu.gres.*GPU pools"),
        ({"pools": {"a": {"partition": "gpu", "gres": "gpu:1"}}}, r"slurm.pools.a: 'compute_capability' is a required"),
        (
            {"pools": {"a": {"compute_capability": "9.0", "gres": "gpu:1", "partiton": "gpu"}}},
            r"slurm.pools.a: Additional properties.*'partiton' was unexpected",
        ),
        ({"cpu": {"partition": "cpu", "gres": "'gpu:1'"}}, r"slurm.cpu.gres: .*does not match"),
        (
            {"pools": {"bad name": {"compute_capability": "9.0", "gres": "gpu:1"}}},
            r"slurm.pools: 'bad name' does not match",
        ),
    ],
)
def test_bad_slurm_config_is_named(slurm, message):
    with pytest.raises(FactoryError, match=message):
        check(zoo(slurm=slurm))


def dry_run(tmp_path, cfg, env=None, *targets):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "config.yaml"),
            "-n",
            *targets,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**{k: v for k, v in os.environ.items() if k != "FACTORY_HOST_FACTS"}, **(env or {})},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    jobs = []
    for block in re.split(r"\n(?=rule )", out):
        m = re.match(r"rule (\w+):", block)
        if m:
            wc = re.search(r"wildcards: (.*)", block)
            res = dict(re.findall(r"(\w+)=([^,\n]*)", re.search(r"resources: (.*)", block).group(1)))
            jobs.append((m.group(1), wc.group(1) if wc else "", res))
    return jobs


def test_dry_run_routes_every_rule(tmp_path):
    """TensorRT-RTX: everything on the CPU route except validation of plans whose compute capability has a pool."""
    jobs = dry_run(tmp_path, zoo(backend="tensorrt_rtx", targets={"rtx": ["8.6", "8.9"]}, slurm=SLURM))
    assert {r for r, _, _ in jobs} >= {
        "demo_asset",
        "export",
        "simplify",
        "precision",
        "build_sm86_89",
        "validate_sm86",
        "validate_sm89",
        "report",
    }
    for rule, wildcards, res in jobs:
        if rule in ("all", "outcome"):  # local rules: they run on the submit host
            continue
        pool = rule == "validate_sm89"  # with pools, validations go one cc per job; RTX builds span the targets
        assert res["slurm_partition"] == ("gpu" if pool else "cpu"), (rule, wildcards, res)
        assert (res["gpu_model"], res["gpu"]) == (("l4", "1") if pool else ("", "0")), (rule, res)
        assert res["runtime"] == "30" and "gpu_sm" not in " ".join(res)


def test_dry_run_full_tensorrt_builds_for_pools_not_local_gpus(tmp_path):
    """Full TensorRT (TensorRT-RTX stands in for it, importable as `tensorrt` from the run directory): with pools,
    the keys are the pools' compute capabilities, whatever the local GPUs, and builds go to their pool."""
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(
        "import sys, tensorrt_rtx\nsys.modules[__name__] = tensorrt_rtx\n"
    )
    facts = tmp_path / "host.json"
    facts.write_text(json.dumps({"gpus": [{"index": 0, "name": "local A6000", "compute_capability": "8.6"}]}))
    jobs = dry_run(tmp_path, zoo(backend="auto", slurm=SLURM), {"FACTORY_HOST_FACTS": str(facts)})
    builds = {(rule, wc): res for rule, wc, res in jobs if rule.startswith("build_")}  # one rule per cc
    assert sorted(rule.removeprefix("build_sm") for rule, _ in builds) == ["89", "89", "90", "90"]
    for (rule, wc), res in builds.items():
        assert "key=trt-" in wc and "gpu_sm86" not in res  # no local-GPU resource: the pools' nodes hold the GPUs
        expected = ("gpu", "h100", "gpu:h100:1") if rule == "build_sm90" else ("gpu", "", "")
        assert (res["slurm_partition"], res["constraint"], res["gres"]) == expected, (wc, res)


# ------------------------------------------------------------------------------------- no value reaches a shell
# snakemake-executor-plugin-slurm builds one sbatch command line and runs it with shell=True on the submit host; it
# quotes partition, constraint, runtime, qos and account, but writes --gres, --gpus and slurm_extra in as they are.
SHELL_PAYLOADS = ["; touch {marker}", "$(touch {marker})", "`touch {marker}`", "\ntouch {marker}", " && touch {marker}"]
SHELL_PAYLOADS += ["' ; touch '{marker}", " --exclusive;touch {marker}"]
# each field: (route, field, valid value the payload rides on)
FIELDS = [
    ("cpu", "partition", "cpu"),
    ("cpu", "constraint", "skylake"),
    ("cpu", "slurm_extra", "--qos=x"),
    ("pools.h100", "partition", "gpu"),
    ("pools.h100", "constraint", "h100"),
    ("pools.h100", "gres", "gpu:h100:1"),
    ("pools.h100", "slurm_extra", "--exclusive"),
    ("pools.l4", "gpu_model", "l4"),
    ("pools.h100", "runtime", "120"),
    ("cpu", "cpus_per_task", "4"),
    ("pools.l4", "gpus", "1"),
]


def _with(route: str, field: str, value) -> dict:
    slurm = json.loads(json.dumps(SLURM))
    (slurm["cpu"] if route == "cpu" else slurm["pools"][route.split(".")[1]])[field] = value
    return slurm


@pytest.mark.parametrize("route, field, good", FIELDS, ids=[f"{r}.{f}" for r, f, _ in FIELDS])
@pytest.mark.parametrize("payload", SHELL_PAYLOADS, ids=range(len(SHELL_PAYLOADS)))
def test_a_shell_payload_in_any_slurm_field_is_a_config_error_naming_the_key(tmp_path, route, field, good, payload):
    marker = tmp_path / "pwned"
    value = good + payload.format(marker=marker)
    with pytest.raises(FactoryError) as e:
        check(zoo(slurm=_with(route, field, value)))
    assert f"slurm.{route}.{field}" in str(e.value)
    if field in ("partition", "constraint", "slurm_extra"):  # (the schema refuses the others first, in its words)
        assert "\n" not in str(e.value), str(e.value)  # one line, the payload's newline shown escaped
    assert not marker.exists()


@pytest.mark.parametrize(
    "route, field, value, message",
    [
        ("pools.h100", "gres", "gpu:1\n", "is not valid here"),  # the schema's `$` lets a trailing newline through
        ("pools.l4", "gpu_model", "l4\n", "is not valid here"),
        ("cpu", "slurm_extra", "--mail-type=END\nrm -rf x", r"'rm' is not an sbatch option"),
        ("cpu", "slurm_extra", "--job-name=x", r"'--job-name=x' is not an sbatch option slurm_extra passes on"),
        ("cpu", "slurm_extra", "-p gpu", r"'-p' is not an sbatch option"),
        ("cpu", "slurm_extra", "--comment=x", r"'--comment=x' is not an sbatch option"),
        ("cpu", "slurm_extra", "--qos", r"--qos needs a value"),
        ("cpu", "slurm_extra", "--requeue=yes", r"--requeue takes no value"),
        ("cpu", "slurm_extra", "--qos 'a b'", r"--qos: \"'a\" is not a valid value"),
        ("cpu", "slurm_extra", "--mail-type=SOMETIMES", r"--mail-type: 'SOMETIMES' is not a valid value"),
        ("pools.h100", "runtime", True, r"slurm.pools.h100.runtime"),
        ("pools.h100", "runtime", 1.5, r"slurm.pools.h100.runtime"),
    ],
)
def test_refused_slurm_values_say_why(route, field, value, message):
    with pytest.raises(FactoryError, match=message) as e:
        check(zoo(slurm=_with(route, field, value)))
    assert f"slurm.{route}.{field}" in str(e.value)


class _Resources(dict):
    __getattr__ = dict.__getitem__


class _Job:
    """What the plugin's command builders read of a job."""

    name, threads = "build", 1

    def __init__(self, resources: dict):
        self.resources = _Resources({"mem_mb": 2000, **resources})


def _sbatch_argv(tmp_path, resources: dict) -> list[str]:
    """The plugin's own sbatch command line for a job with `resources`, run by a shell as the plugin runs it
    (`shell=True`), against a stand-in sbatch that records its arguments."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    job = _Job(resources)
    validate_slurm_extra(job)  # the plugin's own check: no option it sets itself
    account = resources.get("slurm_account")
    partition = resources.get("slurm_partition")
    call = get_submit_command(
        job,
        {
            "run_uuid": "uuid",
            "slurm_logfile": tmp_path / "%j.log",
            "comment_str": "rule_build",
            "account": f" -A {shlex.quote(account)}" if account else "",  # as the plugin's get_account_arg
            "partition": f" -p {shlex.quote(partition)}" if partition else "",  # and get_partition_arg
            "workdir": str(tmp_path),
        },
    )
    call += set_gres_string(job) + ' --wrap="true"'
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "sbatch").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done > "$ARGV"\necho 1\n')
    (bin_dir / "sbatch").chmod(0o755)
    argv = tmp_path / "argv"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ARGV": str(argv)}
    proc = subprocess.run(call, shell=True, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, (call, proc.stderr)
    return argv.read_text().split("\0")[:-1]


def test_the_stand_in_sbatch_catches_what_the_plugin_passes_through(tmp_path):
    """The harness can fail: the plugin runs a raw slurm_extra (what the factory handed it before the fix)."""
    marker = tmp_path / "pwned"
    _sbatch_argv(tmp_path, {"slurm_extra": f"--exclusive; touch {marker}; true"})
    assert marker.exists()


def test_the_plugin_gets_every_allowed_option_as_one_argument_each(tmp_path):
    extra = (
        "--qos=normal --account proj-1 --reservation=maint_a --wckey=w1 --mail-type=END,FAIL --mail-user=ops@x.org "
        "--licenses=matlab@db:2,fluent --nice=-5 --priority=TOP --hint=nomultithread --signal=B:USR1@90 --tmp=10G "
        "--nodelist=gpu[01-04],gpu7 --threads-per-core=1 --exclusive --exclusive=user --requeue --oversubscribe"
    )
    slurm = {
        "cpu": {"partition": "cpu", "runtime": 30, "cpus_per_task": 2},
        "pools": {
            "h100": {
                "compute_capability": "9.0",
                "partition": "gpu,gpu_long",
                "constraint": "[h100&ib]|(a100_80g*2)",
                "gres": "gpu:h100:1",
                "slurm_extra": extra,
            },
            "l4": {"compute_capability": "8.9", "gpu_model": "l4.24g", "gpus": 2},
        },
    }
    cfg = check(zoo(slurm=slurm))
    argv = _sbatch_argv(tmp_path, cluster.resources(cfg, "90"))
    for expected in (
        ["-A", "proj-1"],
        ["-p", "gpu,gpu_long"],
        ["-t", "30"],
        ["-C", "[h100&ib]|(a100_80g*2)"],
        ["--qos=normal"],
        ["--gres=gpu:h100:1"],
        ["--nodelist=gpu[01-04],gpu7", "--threads-per-core=1", "--exclusive", "--exclusive=user", "--requeue"],
        ["--mail-type=END,FAIL", "--mail-user=ops@x.org", "--licenses=matlab@db:2,fluent", "--nice=-5"],
        ["--signal=B:USR1@90", "--tmp=10G"],
    ):
        assert any(argv[i : i + len(expected)] == expected for i in range(len(argv))), (expected, argv)
    assert "--wrap=true" in argv  # nothing after slurm_extra was swallowed
    argv = _sbatch_argv(tmp_path, cluster.resources(cfg, "89"))
    assert "--gpus=l4.24g:2" in argv and not any(a.startswith("--qos") for a in argv)  # qos is that pool's alone
    assert cluster.describe(cfg)[1].startswith("slurm pool h100 (sm90): -p gpu,gpu_long -C '[h100&ib]|(a100_80g*2)'")


def test_a_payload_never_reaches_the_workflow(tmp_path):
    """The Snakefile refuses the config before building the DAG (so before any submission), naming the key."""
    marker = tmp_path / "pwned"
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(zoo(slurm=_with("pools.h100", "slurm_extra", f"--qos=x$(touch {marker})")))
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--workflow-profile",
            str(REPO / "workflow" / "profiles" / "slurm"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "config.yaml"),
            "-n",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config key 'slurm.pools.h100.slurm_extra'" in out, out
    assert not marker.exists()
